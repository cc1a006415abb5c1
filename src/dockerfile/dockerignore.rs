//! `.dockerignore` with moby `patternmatcher` semantics (not gitignore): patterns are cleaned like
//! Go's `filepath.Clean` and are relative to the context root (a leading `/` is dropped); a
//! pattern matches a path or any of its parents; `*` and `?` never cross `/`; `**` crosses
//! directories; `[^…]` is a negated class; `!` re-includes and the last matching pattern wins.
//! The same matcher decides COPY wildcards' exclusions.

use std::path::Path;

use regex::Regex;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
enum Kind {
    Exact,
    Prefix(String),
    Suffix(String),
    Regex(Regex),
}

/// One pattern of an ignore file.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The cleaned pattern, as shown in messages.
    pub text: String,
    /// 1-based line in the ignore file.
    pub line: usize,
    pub exclusion: bool,
    kind: Kind,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(p) => path.starts_with(p.as_str()),
            Kind::Suffix(s) => path.ends_with(s.as_str()) || (s.starts_with('/') && path == &s[1..]),
            Kind::Regex(r) => r.is_match(path),
        }
    }
}

/// A compiled list of patterns.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub patterns: Vec<Pattern>,
    /// Where the patterns came from, for messages (`.dockerignore`).
    pub source: String,
}

impl Matcher {
    /// Reads `file` (missing file = no patterns). `shown` names it in messages.
    pub fn from_file(file: &Path, shown: &str) -> Result<Self> {
        let text = match crate::input::read(file, crate::input::MAX_TEXT) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Matcher::default()),
            Err(e) => return Err(Error::io("cannot read", file, e)),
        };
        let text = String::from_utf8_lossy(&text);
        Self::parse(&text, shown)
    }

    /// Parses ignore-file text (`ignorefile.ReadAll` + `patternmatcher.New`).
    pub fn parse(text: &str, shown: &str) -> Result<Self> {
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let raw = if i == 0 { raw.trim_start_matches('\u{feff}') } else { raw };
            if raw.starts_with('#') {
                continue;
            }
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            if exclusion && p.is_empty() {
                return Err(Error::input(format!("{shown}:{}: illegal exclusion pattern \"!\"", i + 1)));
            }
            let kind = compile(&cleaned)
                .map_err(|e| Error::input(format!("{shown}:{}: invalid pattern {cleaned:?}: {e}", i + 1)))?;
            patterns.push(Pattern { text: cleaned, line: i + 1, exclusion, kind });
        }
        Ok(Matcher { patterns, source: shown.to_string() })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern re-includes (`!`); then excluded directories must still be walked.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// `MatchesOrParentMatches`: whether `path` (slash separated, relative to the root, cleaned)
    /// is excluded, and by which pattern.
    pub fn excluded_by(&self, path: &str) -> Option<&Pattern> {
        if path.is_empty() || path == "." {
            return None;
        }
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => {
                let parent = &path[..i];
                let mut v = Vec::new();
                for (j, c) in parent.char_indices() {
                    if c == '/' {
                        v.push(&parent[..j]);
                    }
                }
                v.push(parent);
                v
            }
            None => Vec::new(),
        };
        let mut matched: Option<&Pattern> = None;
        for p in &self.patterns {
            if p.exclusion != matched.is_some() {
                continue;
            }
            let hit = p.matches(path) || parents.iter().any(|d| p.matches(d));
            if hit {
                matched = if p.exclusion { None } else { Some(p) };
            }
        }
        matched
    }

    pub fn excludes(&self, path: &str) -> bool {
        self.excluded_by(path).is_some()
    }
}

/// Go's `filepath.Clean` for slash-separated paths.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// patternmatcher's `compile`: exact, prefix (`dir/**`), suffix (`**/name`) or a regex.
fn compile(pattern: &str) -> Result<Kind> {
    check_syntax(pattern)?;
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut kind = 0u8; // 0 exact, 1 prefix, 2 suffix, 3 regex
    let mut i = 0;
    let mut idx = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if ch == '*' {
            if chars.get(i) == Some(&'*') {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == 0 {
                        kind = 1;
                    } else {
                        re.push_str(".*");
                        kind = 3;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = 3;
                }
                if idx == 0 {
                    kind = 2;
                }
            } else {
                re.push_str("[^/]*");
                kind = 3;
            }
        } else if ch == '?' {
            re.push_str("[^/]");
            kind = 3;
        } else if ".+()|{}$".contains(ch) {
            re.push('\\');
            re.push(ch);
        } else if ch == '\\' {
            if let Some(&n) = chars.get(i) {
                i += 1;
                re.push_str(&regex::escape(&n.to_string()));
                kind = 3;
            } else {
                re.push_str("\\\\");
            }
        } else if ch == '[' || ch == ']' {
            re.push(ch);
            kind = 3;
        } else {
            re.push(ch);
        }
        idx += 1;
    }
    Ok(match kind {
        0 => Kind::Exact,
        1 => Kind::Prefix(pattern[..pattern.len() - 2].to_string()),
        2 => Kind::Suffix(pattern[2..].to_string()),
        _ => {
            re.push('$');
            Kind::Regex(
                Regex::new(&re)
                    .map_err(|e| Error::input(e.to_string().lines().last().unwrap_or("bad pattern").to_string()))?,
            )
        }
    })
}

/// `filepath.Match(pattern, ".")`'s syntax check: classes must be closed, a trailing `\` is bad.
fn check_syntax(p: &str) -> Result<()> {
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err(Error::input("trailing backslash"));
                }
                i += 2;
            }
            '[' => {
                let mut j = i + 1;
                if chars.get(j) == Some(&'^') {
                    j += 1;
                }
                let start = j;
                while j < chars.len() && (chars[j] != ']' || j == start) {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(Error::input("unterminated character class"));
                }
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pats: &str) -> Matcher {
        Matcher::parse(pats, ".dockerignore").unwrap()
    }

    #[test]
    fn moby_semantics() {
        let x = m("*.md\n!README.md\n/build\nsrc/**/*.o\n**/secret\n# comment\n  \ndocs/*\n");
        assert!(x.excludes("a.md"));
        assert!(!x.excludes("README.md"));
        assert!(!x.excludes("sub/a.md"), "* does not cross /, unlike gitignore");
        assert!(x.excludes("build"));
        assert!(x.excludes("build/deep/file"), "a match on a parent excludes the children");
        assert!(x.excludes("src/a.o") && x.excludes("src/x/y/a.o"));
        assert!(x.excludes("secret") && x.excludes("a/b/secret") && x.excludes("a/secret/inner"));
        assert!(x.excludes("docs/x") && !x.excludes("docs"));
        assert_eq!(x.excluded_by("a.md").unwrap().line, 1);
        assert!(!x.excludes("."));
    }

    #[test]
    fn classes_escapes_and_cleaning() {
        let x = m("f[0-9].txt\ng[^a].txt\n./x/../y\nq\\*\n");
        assert!(x.excludes("f1.txt") && !x.excludes("fa.txt"));
        assert!(x.excludes("gb.txt") && !x.excludes("ga.txt"));
        assert!(x.excludes("y"));
        assert!(x.excludes("q*") && !x.excludes("qq"));
        assert!(Matcher::parse("a[b", ".dockerignore").unwrap_err().to_string().contains(".dockerignore:1"));
        assert!(Matcher::parse("!", ".dockerignore").is_err());
        assert_eq!(clean("a//b/./c/.."), "a/b");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("../x"), "../x");
        // last match wins; re-include then exclude again
        let y = m("*\n!keep\nkeep/tmp\n");
        assert!(y.excludes("other") && !y.excludes("keep") && !y.excludes("keep/a") && y.excludes("keep/tmp/b"));
        let z = m("**\n!a/**\n");
        assert!(z.excludes("b") && !z.excludes("a/b/c"));
    }
}
