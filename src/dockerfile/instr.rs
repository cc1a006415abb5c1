//! Turning `parse-dockerfile` instructions into [`Instr`]s: which flags each instruction
//! takes (and which Docker flags spxpack does not implement), continuation lines joined the
//! way BuildKit joins them, COPY/ADD sources and heredocs, HEALTHCHECK options and durations.

use std::collections::BTreeMap;
use std::sync::Arc;

use parse_dockerfile as pd;

use super::instructions::{CmdLine, Copy, From, Health, Heredoc, Instr, Loc, Op, Run, Src};
use super::lex;
use crate::error::{Error, Result};

/// Byte offsets of line starts, for turning spans into line:column.
pub(super) struct Lines<'a> {
    pub(super) text: &'a str,
    starts: Vec<usize>,
    pub(super) file: Arc<str>,
}

impl<'a> Lines<'a> {
    pub(super) fn new(text: &'a str, file: Arc<str>) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { text, starts, file }
    }
    pub(super) fn loc(&self, pos: usize) -> Loc {
        let line = self.starts.partition_point(|&s| s <= pos);
        let start = self.starts[line - 1];
        let col = self.text.get(start..pos).map(|s| s.chars().count()).unwrap_or(0) + 1;
        Loc { file: self.file.clone(), line, col }
    }
    pub(super) fn line_start(&self, line: usize) -> Option<usize> {
        self.starts.get(line.checked_sub(1)?).copied()
    }
}

/// The instruction's first logical line starting at `start`, continuations joined
/// (BuildKit drops comment and empty lines inside a continuation).
fn logical_line(text: &str, start: usize, escape: char) -> String {
    let mut out = String::new();
    let mut first = true;
    for raw in text[start..].split('\n') {
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if !first {
            let t = l.trim_start();
            if t.starts_with('#') || t.is_empty() {
                continue;
            }
        }
        first = false;
        let trimmed = l.trim_end_matches([' ', '\t']);
        match trimmed.strip_suffix(escape) {
            Some(head) => out.push_str(head),
            None => {
                out.push_str(l);
                break;
            }
        }
    }
    out.trim().to_string()
}

/// Shell-form text as the parser keeps it (escaped newlines inside) → one line.
fn join_shell(raw: &str, escape: char) -> String {
    if !raw.contains('\n') {
        return raw.to_string();
    }
    let mut out = String::new();
    let mut first = true;
    for raw in raw.split('\n') {
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if !first {
            let t = l.trim_start();
            if t.starts_with('#') || t.is_empty() {
                continue;
            }
        }
        first = false;
        let trimmed = l.trim_end_matches([' ', '\t']);
        match trimmed.strip_suffix(escape) {
            Some(head) => out.push_str(head),
            None => out.push_str(l),
        }
    }
    out
}

fn cmdline(c: &pd::Command, escape: char) -> CmdLine {
    match c {
        pd::Command::Exec(v) => CmdLine::Exec(v.value.iter().map(|s| s.value.to_string()).collect()),
        pd::Command::Shell(s) => CmdLine::Shell(join_shell(s.value, escape)),
        _ => CmdLine::Shell(String::new()),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Str,
    Bool,
    /// Known to Docker, not implemented by spxpack.
    Unsupported,
}

/// Checks flags against what the instruction accepts; returns name → (value, loc).
fn flags(
    given: &[pd::Flag],
    allowed: &[(&str, FlagKind)],
    instr: &str,
    lines: &Lines,
) -> Result<BTreeMap<String, (String, Loc)>> {
    let mut out = BTreeMap::new();
    for f in given {
        let name = f.name.value.to_string();
        let loc = lines.loc(f.span().start);
        let Some((_, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
            let list: Vec<String> =
                allowed.iter().filter(|(_, k)| *k != FlagKind::Unsupported).map(|(n, _)| format!("--{n}")).collect();
            let hint = if list.is_empty() {
                format!("{instr} takes no flags")
            } else {
                format!("{instr} accepts {}", list.join(", "))
            };
            return Err(loc.error(format!("unknown flag --{name} for {instr}")).with_hint(hint));
        };
        let value = f.value.as_ref().map(|v| v.value.to_string());
        let value = match (kind, value) {
            (FlagKind::Unsupported, _) => {
                return Err(Error::unsupported(format!("{loc}: {instr} --{name} is not supported by spxpack yet"))
                    .with_hint(format!("remove --{name}, or build this Dockerfile with docker buildx")));
            }
            (FlagKind::Bool, None) => "true".to_string(),
            (FlagKind::Bool, Some(v)) if v == "true" || v == "false" => v,
            (FlagKind::Bool, Some(v)) => {
                return Err(loc.error(format!("--{name} takes true or false, not {v:?}")));
            }
            (FlagKind::Str, None) => return Err(loc.error(format!("missing a value on flag --{name}"))),
            (FlagKind::Str, Some(v)) => v,
        };
        if out.insert(name.clone(), (value, loc.clone())).is_some() {
            return Err(loc.error(format!("flag --{name} is given twice")));
        }
    }
    Ok(out)
}

pub(super) fn convert_from(f: &pd::FromInstruction, lines: &Lines, escape: char) -> Result<From> {
    let loc = lines.loc(f.from.span.start);
    let fl = flags(&f.options, &[("platform", FlagKind::Str)], "FROM", lines)?;
    let name = match &f.as_ {
        Some((_, n)) => {
            let lower = n.value.to_lowercase();
            let ok = lower.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && lower.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !ok {
                return Err(lines.loc(n.span.start).error(format!(
                    "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                    n.value
                )));
            }
            Some(lower)
        }
        None => None,
    };
    Ok(From {
        text: logical_line(lines.text, f.from.span.start, escape),
        loc,
        image: f.image.value.to_string(),
        name,
        platform: fl.get("platform").map(|(v, _)| v.clone()),
    })
}

pub(super) fn convert(ins: &pd::Instruction, lines: &Lines, escape: char) -> Result<Instr> {
    use pd::Instruction as I;
    let Some(start) = keyword_start(ins) else {
        return Err(Error::unsupported(format!("{}: unsupported instruction", lines.loc(0))));
    };
    let loc = lines.loc(start);
    let text = logical_line(lines.text, start, escape);
    let op = match ins {
        I::Arg(a) => Op::Arg(lex::parse_args(&a.arguments.value, escape).map_err(|e| loc.error(e))?),
        I::Env(e) => Op::Env(lex::parse_name_val(&e.arguments.value, "ENV", escape).map_err(|m| loc.error(m))?),
        I::Label(l) => Op::Label(lex::parse_name_val(&l.arguments.value, "LABEL", escape).map_err(|m| loc.error(m))?),
        I::Copy(c) => {
            let fl = flags(&c.options, &COPY_FLAGS, "COPY", lines)?;
            Op::Copy(copy_op(false, &c.src, &c.dest, fl, &text, &loc)?)
        }
        I::Add(c) => {
            let fl = flags(&c.options, &ADD_FLAGS, "ADD", lines)?;
            Op::Copy(copy_op(true, &c.src, &c.dest, fl, &text, &loc)?)
        }
        I::Workdir(w) => Op::Workdir(w.arguments.value.to_string()),
        I::User(u) => Op::User(u.arguments.value.to_string()),
        I::Expose(e) => Op::Expose(e.arguments.iter().map(|a| a.value.to_string()).collect()),
        I::Volume(v) => {
            let list: Vec<String> = match &v.arguments {
                pd::JsonOrStringArray::Json(j) => j.value.iter().map(|s| s.value.to_string()).collect(),
                pd::JsonOrStringArray::String(s) => s.iter().map(|s| s.value.to_string()).collect(),
            };
            if list.iter().any(|v| v.trim().is_empty()) {
                return Err(loc.error("VOLUME specified can not be an empty string"));
            }
            Op::Volume(list.into_iter().map(|v| v.trim().to_string()).collect())
        }
        I::Cmd(c) => Op::Cmd(cmdline(&c.arguments, escape)),
        I::Entrypoint(c) => Op::Entrypoint(cmdline(&c.arguments, escape)),
        I::Shell(s) => Op::Shell(s.arguments.iter().map(|a| a.value.to_string()).collect()),
        I::Stopsignal(s) => {
            let v = s.arguments.value.trim().to_string();
            if v.contains(char::is_whitespace) {
                return Err(loc.error("STOPSIGNAL requires exactly one argument"));
            }
            Op::StopSignal(v)
        }
        I::Maintainer(m) => Op::Maintainer(m.name.value.to_string()),
        I::Healthcheck(h) => Op::Healthcheck(healthcheck(h, lines, &loc, escape)?),
        I::Onbuild(o) => {
            let inner = convert(&o.instruction, lines, escape)?;
            if matches!(inner.op, Op::Maintainer(_)) {
                return Err(loc.error("MAINTAINER isn't allowed as an ONBUILD trigger"));
            }
            Op::Onbuild(inner.text)
        }
        I::Run(r) => Op::Run(run_op(r, lines, &text, escape)?),
        I::From(_) => unreachable!("FROM is handled by the caller"),
        _ => return Err(loc.error("unsupported instruction")),
    };
    Ok(Instr { loc, text, op })
}

/// Where the instruction's keyword starts; `None` for an instruction spxpack does not know.
fn keyword_start(ins: &pd::Instruction) -> Option<usize> {
    use pd::Instruction as I;
    Some(match ins {
        I::Add(x) => x.add.span.start,
        I::Arg(x) => x.arg.span.start,
        I::Cmd(x) => x.cmd.span.start,
        I::Copy(x) => x.copy.span.start,
        I::Entrypoint(x) => x.entrypoint.span.start,
        I::Env(x) => x.env.span.start,
        I::Expose(x) => x.expose.span.start,
        I::From(x) => x.from.span.start,
        I::Healthcheck(x) => x.healthcheck.span.start,
        I::Label(x) => x.label.span.start,
        I::Maintainer(x) => x.maintainer.span.start,
        I::Onbuild(x) => x.onbuild.span.start,
        I::Run(x) => x.run.span.start,
        I::Shell(x) => x.shell.span.start,
        I::Stopsignal(x) => x.stopsignal.span.start,
        I::User(x) => x.user.span.start,
        I::Volume(x) => x.volume.span.start,
        I::Workdir(x) => x.workdir.span.start,
        _ => return None,
    })
}

/// COPY's flags.
const COPY_FLAGS: [(&str, FlagKind); 6] = [
    ("from", FlagKind::Str),
    ("chown", FlagKind::Str),
    ("chmod", FlagKind::Str),
    ("link", FlagKind::Bool),
    ("parents", FlagKind::Unsupported),
    ("exclude", FlagKind::Unsupported),
];

/// ADD's flags.
const ADD_FLAGS: [(&str, FlagKind); 7] = [
    ("chown", FlagKind::Str),
    ("chmod", FlagKind::Str),
    ("link", FlagKind::Bool),
    ("checksum", FlagKind::Unsupported),
    ("keep-git-dir", FlagKind::Unsupported),
    ("unpack", FlagKind::Unsupported),
    ("exclude", FlagKind::Unsupported),
];

/// RUN, kept whole for the executor: its flags as written (checked and parsed by
/// [`super::run_flags`] when the stage runs, with the stage's variables) and its heredocs.
fn run_op(r: &pd::RunInstruction, lines: &Lines, text: &str, escape: char) -> Result<Run> {
    let mut fl = Vec::new();
    for f in &r.options {
        let name = f.name.value.to_string();
        let floc = lines.loc(f.span().start);
        if !["mount", "network", "security", "device"].contains(&name.as_str()) {
            return Err(floc
                .error(format!("unknown flag --{name} for RUN"))
                .with_hint("RUN accepts --mount, --network, --security, --device"));
        }
        let Some(v) = f.value.as_ref().map(|v| v.value.to_string()) else {
            return Err(floc.error(format!("missing a value on flag --{name}")));
        };
        if name != "mount" && fl.iter().any(|(n, _)| *n == name) {
            return Err(floc.error(format!("flag --{name} is given twice")));
        }
        fl.push((name, v));
    }
    let mut names = heredoc_names(text);
    Ok(Run {
        cmd: cmdline(&r.arguments, escape),
        flags: fl,
        heredocs: r
            .here_docs
            .iter()
            .map(|h| Heredoc {
                name: names.next().unwrap_or_else(|| "EOF".into()),
                body: h.value.to_string(),
                expand: h.expand,
            })
            .collect(),
    })
}

/// Heredoc names in order of appearance on the first line: `<<EOF`, `<<-EOF`, `<<"EOF"`.
fn heredoc_names(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace()
        .filter_map(|w| w.find("<<").map(|i| &w[i + 2..]))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_start_matches('-').trim_matches(|c| c == '"' || c == '\'').to_string())
}

fn copy_op(
    add: bool,
    srcs: &[pd::Source],
    dest: &pd::UnescapedString,
    mut fl: BTreeMap<String, (String, Loc)>,
    text: &str,
    loc: &Loc,
) -> Result<Copy> {
    let name = if add { "ADD" } else { "COPY" };
    let mut names = heredoc_names(text);
    let mut out = Vec::new();
    for s in srcs {
        out.push(match s {
            pd::Source::Path(p) => Src::Path(p.value.to_string()),
            pd::Source::HereDoc(h) => Src::Heredoc {
                name: names.next().unwrap_or_else(|| "EOF".into()),
                body: h.value.to_string(),
                expand: h.expand,
            },
            _ => return Err(loc.error(format!("unsupported {name} source"))),
        });
    }
    if dest.value.starts_with("<<") {
        return Err(loc.error(format!("{name} cannot accept a heredoc as a destination")));
    }
    let from = fl.remove("from");
    if let Some((f, floc)) = &from
        && f.contains('$')
    {
        return Err(floc
            .error("variable expansion is not supported for --from")
            .with_hint("define a stage with FROM ${VAR} AS name and copy from that stage"));
    }
    Ok(Copy {
        add,
        srcs: out,
        dest: dest.value.to_string(),
        from,
        chown: fl.remove("chown").map(|(v, _)| v),
        chmod: fl.remove("chmod"),
        link: fl.remove("link").is_some_and(|(v, _)| v == "true"),
    })
}

fn healthcheck(h: &pd::HealthcheckInstruction, lines: &Lines, loc: &Loc, escape: char) -> Result<Option<Health>> {
    let fl = flags(
        &h.options,
        &[
            ("interval", FlagKind::Str),
            ("timeout", FlagKind::Str),
            ("start-period", FlagKind::Str),
            ("start-interval", FlagKind::Str),
            ("retries", FlagKind::Str),
        ],
        "HEALTHCHECK",
        lines,
    )?;
    let args = match &h.arguments {
        pd::HealthcheckArguments::None { .. } => {
            if !fl.is_empty() {
                return Err(loc.error("HEALTHCHECK NONE takes no flags"));
            }
            return Ok(None);
        }
        pd::HealthcheckArguments::Cmd { arguments, .. } => arguments,
        _ => return Err(loc.error("unknown HEALTHCHECK type (try CMD)")),
    };
    let test = match cmdline(args, escape) {
        CmdLine::Exec(v) if v.is_empty() => return Err(loc.error("missing command after HEALTHCHECK CMD")),
        CmdLine::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
        CmdLine::Shell(s) if s.trim().is_empty() => return Err(loc.error("missing command after HEALTHCHECK CMD")),
        CmdLine::Shell(s) => vec!["CMD-SHELL".to_string(), s],
    };
    let dur = |n: &str| -> Result<u64> {
        let Some((v, floc)) = fl.get(n) else { return Ok(0) };
        let d = parse_duration(v).map_err(|e| floc.error(format!("--{n}: {e}")))?;
        if d != 0 && d < 1_000_000 {
            return Err(floc.error(format!("interval --{n} cannot be less than 1ms")));
        }
        Ok(d)
    };
    let retries = match fl.get("retries") {
        None => 0,
        Some((v, floc)) => {
            let r: i64 = v.parse().map_err(|_| floc.error(format!("--retries: invalid number {v:?}")))?;
            if r < 0 {
                return Err(floc.error(format!("--retries cannot be negative ({r})")));
            }
            r as u64
        }
    };
    Ok(Some(Health {
        test,
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start-period")?,
        start_interval: dur("start-interval")?,
        retries,
    }))
}

/// Go's `time.ParseDuration` (non-negative): `300ms`, `1.5h`, `2h45m`, `0`.
pub fn parse_duration(s: &str) -> Result<u64> {
    let bad = || Error::input(format!("invalid duration {s:?}"));
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(Error::input(format!("{}: missing or unknown unit (use ns, us, ms, s, m, h)", bad()))),
        };
        rest = &rest[unit_len..];
        total += n * mult;
    }
    Ok(total.round() as u64)
}
