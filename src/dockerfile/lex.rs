//! Variable substitution and word splitting with BuildKit's rules (a port of
//! `frontend/dockerfile/shell/lex.go` and the `parseWords`/`parseNameVal` line parsers): `$VAR`,
//! `${VAR}`, `${VAR:-x}`, `${VAR-x}`, `${VAR:+x}`, `${VAR+x}`, `${VAR:?msg}`, `${VAR?msg}`, single
//! and double quotes, and the escape character of the Dockerfile (`\` or `` ` ``).

/// What is wrong with a word or an instruction's arguments, without a location: the caller
/// locates it (`Loc::error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError(pub String);

impl std::fmt::Display for LexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl LexError {
    /// The word expands past [`MAX_EXPANSION`].
    pub fn is_too_long(&self) -> bool {
        self.0.contains(TOO_LONG)
    }
}

const TOO_LONG: &str = "the limit for one word";

impl From<String> for LexError {
    fn from(s: String) -> Self {
        LexError(s)
    }
}

impl From<&str> for LexError {
    fn from(s: &str) -> Self {
        LexError(s.to_string())
    }
}

/// The most bytes of variable values one word may expand: `ARG A1=${A0}${A0}` chained 40 times
/// would otherwise build a 1 TiB string (issue "Hardening", item 12).
pub const MAX_EXPANSION: usize = 1 << 20;

/// Looks a variable up; `None` when it is not set (set-but-empty is `Some("")`).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The shell-word processor.
#[derive(Debug, Clone, Copy)]
pub struct Lex {
    pub escape: char,
    /// Quotes are ordinary characters (BuildKit's `SkipProcessQuotes`, used for heredoc bodies:
    /// `$VAR` is expanded everywhere, quotes stay as written).
    pub skip_quotes: bool,
}

impl Lex {
    pub fn new(escape: char) -> Self {
        Lex { escape, skip_quotes: false }
    }

    /// Expands variables and removes quotes, keeping the whole input as one word.
    pub fn word(&self, word: &str, env: Lookup) -> Result<String, LexError> {
        self.run(word, env).map(|(w, _)| w)
    }

    /// Expands variables, then splits into words on unquoted white space.
    pub fn words(&self, word: &str, env: Lookup) -> Result<Vec<String>, LexError> {
        self.run(word, env).map(|(_, ws)| ws)
    }

    fn run(&self, word: &str, env: Lookup) -> Result<(String, Vec<String>), LexError> {
        let mut sw = ShellWord {
            chars: word.chars().collect(),
            pos: 0,
            env,
            escape: self.escape,
            skip_quotes: self.skip_quotes,
            expanded: 0,
        };
        sw.process_stop_on(None).map_err(|e| LexError(format!("failed to process {word:?}: {e}")))
    }
}

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    env: Lookup<'a>,
    escape: char,
    skip_quotes: bool,
    /// Bytes of variable values substituted so far, capped at [`MAX_EXPANSION`].
    expanded: usize,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), LexError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '\'' | '"' | '$' if ch == '$' || !self.skip_quotes => {
                    let tmp = match ch {
                        '\'' => self.single_quote()?,
                        '"' => self.double_quote()?,
                        _ => self.dollar()?,
                    };
                    result.push_str(&tmp);
                    if ch == '$' {
                        words.add_string(&tmp);
                    } else {
                        words.add_raw_string(&tmp);
                    }
                }
                _ => {
                    let mut ch = self.next().expect("peeked");
                    if ch == self.escape {
                        match self.next() {
                            None => break,
                            Some(c) => ch = c,
                        }
                        words.add_raw_char(ch);
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        if let Some(s) = stop {
            return Err(format!("unexpected end of statement while looking for matching {s}").into());
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, LexError> {
        let mut out = String::new();
        self.next(); // the quote
        loop {
            match self.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, LexError> {
        let mut out = String::new();
        self.next(); // the quote
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                Some('"') => {
                    self.next();
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(_) => {
                    let mut ch = self.next().expect("peeked");
                    if ch == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.escape => {
                                ch = self.next().expect("peeked");
                            }
                            _ => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// The value of `name`, counted against [`MAX_EXPANSION`].
    fn get(&mut self, name: &str) -> Result<Option<String>, LexError> {
        let v = (self.env)(name);
        self.expanded = self.expanded.saturating_add(v.as_ref().map_or(0, String::len));
        if self.expanded > MAX_EXPANSION {
            return Err(format!(
                "expanding ${{{name}}} makes the value longer than {} MiB, {TOO_LONG}",
                MAX_EXPANSION >> 20
            )
            .into());
        }
        Ok(v)
    }

    fn dollar(&mut self) -> Result<String, LexError> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.get(&name)?.unwrap_or_default());
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.name();
        let ch = self.next();
        match ch {
            Some('}') => Ok(self.get(&name)?.unwrap_or_default()),
            Some(op @ ('?' | '-' | '+')) => {
                let word = self.stop_word()?;
                let value = self.get(&name)?;
                match (op, value) {
                    ('?', None) => Err(unset_message(&name, &word, "is not allowed to be unset")),
                    ('-', None) => Ok(word),
                    ('+', Some(_)) => Ok(word),
                    ('+', None) => Ok(String::new()),
                    (_, Some(v)) => Ok(v),
                    _ => unreachable!(),
                }
            }
            Some(':') => {
                let modifier = self.next();
                let word = self.stop_word()?;
                let value = self.get(&name)?;
                let v = value.clone().unwrap_or_default();
                match modifier {
                    Some('+') => Ok(if v.is_empty() { v } else { word }),
                    Some('-') => Ok(if v.is_empty() { word } else { v }),
                    Some('?') => match value {
                        None => Err(unset_message(&name, &word, "is not allowed to be unset")),
                        Some(v) if v.is_empty() => Err(unset_message(&name, &word, "is not allowed to be empty")),
                        Some(v) => Ok(v),
                    },
                    Some(m) => Err(format!("unsupported modifier ({m}) in substitution").into()),
                    None => Err("syntax error: missing '}'".into()),
                }
            }
            Some(c @ ('#' | '%' | '/')) => Err(format!(
                "${{{name}{c}…}} pattern substitution is not supported; use ${{VAR}}, ${{VAR:-x}}, ${{VAR:+x}} or ${{VAR:?x}}"
            )
            .into()),
            None => Err("syntax error: missing '}'".into()),
            Some(_) => Err("missing ':' in substitution".into()),
        }
    }

    fn stop_word(&mut self) -> Result<String, LexError> {
        match self.process_stop_on(Some('}')) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err("syntax error: missing '}'".into()),
            Err(e) => Err(e),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(c);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

fn unset_message(name: &str, word: &str, default: &str) -> LexError {
    LexError(format!("{name}: {}", if word.is_empty() { default } else { word }))
}

/// Splits an instruction's arguments into words on unquoted white space, keeping quotes and
/// escapes in the words (they are removed later by [`Lex::word`]).
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut b = String::new();
    let mut pos = 0;
    loop {
        let at_end = pos >= chars.len();
        let ch = if at_end { '\0' } else { chars[pos] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !b.is_empty() {
                words.push(b);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !b.is_empty() {
                    words.push(std::mem::take(&mut b));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                b.push(ch);
                pos += 1;
                b.push(chars[pos]);
                pos += 1;
                continue;
            }
            b.push(ch);
            pos += 1;
            continue;
        }
        // in a quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            b.push(ch);
            pos += 1;
            b.push(chars[pos]);
            pos += 1;
            continue;
        }
        b.push(ch);
        pos += 1;
    }
    words
}

/// A `key=value` (or legacy `key value`) pair of ENV or LABEL, still unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// The legacy `ENV KEY value` form was used.
    pub legacy: bool,
}

/// Parses the arguments of ENV and LABEL (`parseNameVal`).
pub fn parse_name_val(rest: &str, instruction: &str, escape: char) -> Result<Vec<KeyValue>, LexError> {
    let rest = rest.trim();
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Err(format!("{instruction} requires at least one argument").into());
    }
    if !words[0].contains('=') {
        let mut parts = rest.splitn(2, [' ', '\t', '\r', '\x0b', '\x0c']);
        let key = parts.next().unwrap_or_default().to_string();
        let value = parts.next().map(|v| v.trim_start_matches([' ', '\t', '\r', '\x0b', '\x0c'])).unwrap_or("");
        if value.is_empty() && !rest.contains(char::is_whitespace) {
            return Err(format!("{instruction} must have two arguments").into());
        }
        return Ok(vec![KeyValue { key, value: value.to_string(), legacy: true }]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!("syntax error - can't find = in {w:?}. Must be of the form: name=value").into());
        };
        if k.is_empty() {
            return Err(format!("{instruction} names can not be blank").into());
        }
        out.push(KeyValue { key: k.to_string(), value: v.to_string(), legacy: false });
    }
    Ok(out)
}

/// Parses the arguments of ARG: `NAME` or `NAME=default`, several per line.
pub fn parse_args(rest: &str, escape: char) -> Result<Vec<(String, Option<String>)>, LexError> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Err("ARG requires at least one argument".into());
    }
    let mut out = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some(("", _)) => return Err("ARG names can not be blank".into()),
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((w, None)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("a".into()),
            "E" => Some(String::new()),
            "SP" => Some("x y".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> Result<String, LexError> {
        Lex::new('\\').word(s, &env)
    }

    #[test]
    fn substitutions_follow_buildkit() {
        assert_eq!(w("$A/${A}/$U/${U}").unwrap(), "a/a//");
        assert_eq!(w("${U:-def}|${E:-def}|${A:-def}").unwrap(), "def|def|a");
        assert_eq!(w("${U-def}|${E-def}|${A-def}").unwrap(), "def||a");
        assert_eq!(w("${U:+alt}|${E:+alt}|${A:+alt}").unwrap(), "||alt");
        assert_eq!(w("${U+alt}|${E+alt}|${A+alt}").unwrap(), "|alt|alt");
        assert_eq!(w("${A:?x}").unwrap(), "a");
        assert_eq!(w("${U:?must be set}").unwrap_err().0, r#"failed to process "${U:?must be set}": U: must be set"#);
        assert!(w("${E:?}").unwrap_err().0.contains("E: is not allowed to be empty"));
        assert!(w("${U?}").unwrap_err().0.contains("U: is not allowed to be unset"));
        assert!(w("${A").unwrap_err().0.contains("missing '}'"));
        assert!(w("${:x}").unwrap_err().0.contains("bad substitution"));
        assert!(w("${A#x}").unwrap_err().0.contains("not supported"));
        assert_eq!(w("${U:-${A}b}").unwrap(), "ab");
        assert_eq!(w("$").unwrap(), "$");
        assert_eq!(w("a$").unwrap(), "a$");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w(r#""$A 'q'" '$A' \$A a\ b"#).unwrap(), "a 'q' $A $A a b");
        assert_eq!(w(r#""a\"b\\c\d""#).unwrap(), r#"a"b\c\d"#);
        assert!(w("'open").unwrap_err().0.contains("single-quote"));
        assert!(w("\"open").unwrap_err().0.contains("double-quote"));
        let tick = Lex::new('`');
        assert_eq!(tick.word("a`$A C:\\dir", &env).unwrap(), "a$A C:\\dir");
        let heredoc = Lex { escape: '\\', skip_quotes: true };
        assert_eq!(heredoc.word(r#"say "$A" '$A' \$A"#, &env).unwrap(), r#"say "a" 'a' $A"#);
    }

    #[test]
    fn expansion_is_capped_at_one_mib_per_word() {
        let half = "x".repeat(MAX_EXPANSION / 2);
        let big = |k: &str| (k == "H").then(|| half.clone());
        let lx = Lex::new('\\');
        assert_eq!(lx.word("${H}$H", &big).unwrap().len(), MAX_EXPANSION);
        let e = lx.word("${H}${H}$H", &big).unwrap_err();
        assert!(e.is_too_long() && e.0.contains("expanding ${H} makes the value longer than 1 MiB"), "{e}");
        // the text written in the Dockerfile is not counted, only substituted values
        assert!(lx.word(&format!("{half}{half}{half}"), &big).is_ok());
        assert!(lx.word("${U:-${H}}${H}${H:+$H}", &big).unwrap_err().is_too_long());
    }

    #[test]
    fn words_split_after_expansion() {
        let lx = Lex::new('\\');
        assert_eq!(lx.words("80 $SP \"q r\"", &env).unwrap(), vec!["80", "x", "y", "q r"]);
    }

    #[test]
    fn env_and_label_forms() {
        let kv = parse_name_val(r#"A=1 B="two words" C=three\ x"#, "ENV", '\\').unwrap();
        assert_eq!(
            kv.iter().map(|k| (k.key.as_str(), k.value.as_str())).collect::<Vec<_>>(),
            vec![("A", "1"), ("B", "\"two words\""), ("C", "three\\ x")]
        );
        let legacy = parse_name_val("LANG en_US.UTF-8  x", "ENV", '\\').unwrap();
        assert_eq!(legacy, vec![KeyValue { key: "LANG".into(), value: "en_US.UTF-8  x".into(), legacy: true }]);
        assert!(parse_name_val("A=1 B", "ENV", '\\').unwrap_err().0.contains("can't find ="));
        assert!(parse_name_val("ONLY", "ENV", '\\').unwrap_err().0.contains("two arguments"));
        assert!(parse_name_val("=x", "LABEL", '\\').unwrap_err().0.contains("blank"));
        let lbl = parse_name_val(r#""c d"="e f" g=h"#, "LABEL", '\\').unwrap();
        assert_eq!(lbl[0].key, "\"c d\"");
        assert_eq!(
            parse_args("A B=2 C=", '\\').unwrap(),
            vec![("A".into(), None), ("B".into(), Some("2".into())), ("C".into(), Some(String::new()))]
        );
    }
}
