//! The Dockerfile front end's entry: parses the text with `parse-dockerfile` (parser
//! directives, continuations, heredocs, exec vs shell form, JSON arrays) and has [`super::instr`]
//! turn each instruction into a typed [`Instr`] (see [`super::instructions`]) that carries a
//! `file:line:col` [`Loc`]. Variables are not expanded here; the stage dispatcher does that with
//! the state of the build at each step.

use std::sync::Arc;

use parse_dockerfile as pd;

use super::instr::{self, Lines};
use super::instructions::{Dockerfile, Instr, Loc, Stage};
use crate::error::{Error, Result};

const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parses a Dockerfile. `file` is how messages name it (as the user gave it).
pub fn parse(text: &str, file: &str) -> Result<Dockerfile> {
    let file: Arc<str> = Arc::from(file);
    let lines = Lines::new(text, file.clone());
    let df = pd::parse(text).map_err(|e| parse_error(&lines, &e))?;
    let escape = df.parser_directives.escape.as_ref().map(|d| d.value.value).unwrap_or('\\');
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in &df.instructions {
        if let pd::Instruction::From(f) = ins {
            stages.push(Stage { from: instr::convert_from(f, &lines, escape)?, instrs: Vec::new() });
            continue;
        }
        let i = instr::convert(ins, &lines, escape)?;
        match stages.last_mut() {
            Some(s) => s.instrs.push(i),
            None => meta_args.push(i),
        }
    }
    Ok(Dockerfile { file, escape, meta_args, stages })
}

/// Parses an ONBUILD trigger stored in a base image, located at the FROM that triggered it.
pub fn parse_trigger(expr: &str, at: &Loc, escape: char) -> Result<Instr> {
    let text = format!("FROM scratch\n{expr}\n");
    let lines = Lines::new(&text, at.file.clone());
    let bad = |m: String| at.error(format!("ONBUILD trigger {expr:?} from the base image: {m}"));
    let df = pd::parse(&text).map_err(|e| bad(format!("{e:#}")))?;
    let [_, ins] = df.instructions.as_slice() else { return Err(bad("expected one instruction".into())) };
    let mut i = instr::convert(ins, &lines, escape).map_err(|e| bad(e.message().to_string()))?;
    i.loc = at.clone();
    Ok(i)
}

fn parse_error(lines: &Lines, e: &pd::Error) -> Error {
    let msg = format!("{e:#}");
    let line = e.line().max(1);
    // parse-dockerfile reports the offset of the line start as the column for lines > 1;
    // point at the first non-blank character of the line then.
    let mut col = e.column().max(1);
    if let Some(start) = lines.line_start(line)
        && line > 1
        && e.column() == start
    {
        let l = lines.text[start..].lines().next().unwrap_or("");
        col = l.chars().take_while(|c| c.is_whitespace()).count() + 1;
    }
    let loc = Loc { file: lines.file.clone(), line, col };
    if let Some(word) = msg.strip_prefix("unknown instruction '").and_then(|m| m.strip_suffix('\'')) {
        let upper = word.to_uppercase();
        let hint = match INSTRUCTIONS.iter().find(|i| edit_distance(i, &upper) <= 2) {
            Some(s) => format!("did you mean {s}? Dockerfile instructions are {}", INSTRUCTIONS.join(", ")),
            None => format!("Dockerfile instructions are {}", INSTRUCTIONS.join(", ")),
        };
        return loc.error(format!("unknown instruction {word}")).with_hint(hint);
    }
    if msg.contains("expected at least one FROM") || e.line() == 0 {
        return Error::input(format!("{}: {msg}", lines.file)).with_hint("a Dockerfile starts with FROM (after ARGs)");
    }
    loc.error(msg)
}

pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::instr::parse_duration;
    use crate::dockerfile::instructions::{CmdLine, Op, Src};

    #[test]
    fn parses_forms_and_locations() {
        let t = "# escape=\\\nARG BASE=busybox\nFROM ${BASE} AS Build\nENV A=1 \\\n    B=2\nCMD echo a \\\n  b\n\
                 COPY --chown=1:2 --link a b /d/\nCOPY <<EOF /h\nhi $A\nEOF\nONBUILD COPY x \\\n  /y\n\
                 HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f x\nFROM build\n";
        let d = parse(t, "Dockerfile").unwrap();
        assert_eq!(d.meta_args.len(), 1);
        assert_eq!(d.stages.len(), 2);
        assert_eq!(d.stages[0].from.name.as_deref(), Some("build"));
        assert_eq!(d.stages[0].from.loc.to_string(), "Dockerfile:3:1");
        let ins = &d.stages[0].instrs;
        assert_eq!(ins[0].text, "ENV A=1     B=2");
        assert!(matches!(&ins[1].op, Op::Cmd(CmdLine::Shell(s)) if s == "echo a   b"));
        let Op::Copy(c) = &ins[2].op else { panic!() };
        assert!(c.link && c.chown.as_deref() == Some("1:2") && c.srcs.len() == 2);
        let Op::Copy(h) = &ins[3].op else { panic!() };
        assert!(matches!(&h.srcs[0], Src::Heredoc { name, body, expand: true } if name == "EOF" && body == "hi $A\n"));
        assert!(matches!(&ins[4].op, Op::Onbuild(e) if e == "COPY x   /y"));
        let Op::Healthcheck(Some(hc)) = &ins[5].op else { panic!() };
        assert_eq!((hc.interval, hc.retries), (90_000_000_000, 3));
        assert_eq!(hc.test, vec!["CMD-SHELL", "curl -f x"]);
    }

    #[test]
    fn errors_point_at_the_input() {
        let e = parse("FROM x\nCOPY a b\n  FOOO bar\n", "df").unwrap_err();
        assert_eq!(e.to_string(), "df:3:3: unknown instruction FOOO");
        assert!(e.hint().unwrap().contains("FROM"));
        let e = parse("FROM x\nCOPY --frm=a b c\n", "df").unwrap_err();
        assert_eq!(e.to_string(), "df:2:6: unknown flag --frm for COPY");
        assert!(e.hint().unwrap().contains("--from"));
        let e = parse("FROM x\nCOPY --chown a b\n", "df").unwrap_err();
        assert!(e.to_string().contains("missing a value"), "{e}");
        let e = parse("FROM x\nCOPY --from=$X a b\n", "df").unwrap_err();
        assert!(e.to_string().starts_with("df:2:6:"), "{e}");
        let e = parse("FROM x\nCOPY a\n", "df").unwrap_err();
        assert!(e.to_string().starts_with("df:2:1:") && e.to_string().contains("two arguments"), "{e}");
        assert!(parse("COPY a b\n", "df").is_err());
        assert!(parse("FROM x\nHEALTHCHECK --interval=1x CMD a\n", "df").unwrap_err().to_string().contains("unit"));
        assert!(parse("FROM x AS 1a\n", "df").is_err());
        assert_eq!(parse_duration("1.5s").unwrap(), 1_500_000_000);
        assert_eq!(parse_duration("2h45m").unwrap(), 9_900_000_000_000);
    }
}
