//! The typed instructions of a Dockerfile (BuildKit's `instructions`): what the front end
//! ([`super::parse`], [`super::instr`]) produces and the stage dispatcher consumes. Every
//! instruction carries the `file:line:col` [`Loc`] its errors point at.

use std::fmt;
use std::sync::Arc;

use super::lex::KeyValue;
use crate::error::Error;

/// Where an instruction (or one of its flags) starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

impl Loc {
    /// An input error located here, with a pointer to the Dockerfile reference as the hint
    /// (call sites with a better hint replace it).
    pub fn error(&self, msg: impl fmt::Display) -> Error {
        Error::input(format!("{self}: {msg}"))
            .with_hint("see the Dockerfile reference: https://docs.docker.com/reference/dockerfile/")
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub file: Arc<str>,
    pub escape: char,
    /// ARG instructions before the first FROM.
    pub meta_args: Vec<Instr>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub from: From,
    pub instrs: Vec<Instr>,
}

#[derive(Debug, Clone)]
pub struct From {
    pub loc: Loc,
    /// The base as written (variables not yet expanded).
    pub image: String,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    pub platform: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Instr {
    pub loc: Loc,
    /// The instruction as written, continuations joined (used in history and ONBUILD).
    pub text: String,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdLine {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone)]
pub enum Src {
    Path(String),
    Heredoc { name: String, body: String, expand: bool },
}

#[derive(Debug, Clone)]
pub struct Copy {
    pub add: bool,
    pub srcs: Vec<Src>,
    pub dest: String,
    pub from: Option<(String, Loc)>,
    pub chown: Option<String>,
    pub chmod: Option<(String, Loc)>,
    pub link: bool,
}

/// A RUN step, kept whole for the executor.
#[derive(Debug, Clone)]
pub struct Run {
    pub cmd: CmdLine,
    /// `--mount`, `--network`, `--security`, `--device`, as written (name, value).
    pub flags: Vec<(String, String)>,
    /// Heredocs (`RUN <<EOF`), in order of appearance.
    pub heredocs: Vec<Heredoc>,
}

/// One heredoc of a RUN line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter (`EOF` for `<<EOF`, `<<-EOF` and `<<"EOF"`).
    pub name: String,
    /// The body, with its final newline.
    pub body: String,
    /// `false` when the delimiter is quoted.
    pub expand: bool,
}

/// HEALTHCHECK CMD …; durations in nanoseconds (0 = not set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub test: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    pub retries: u64,
}

#[derive(Debug, Clone)]
pub enum Op {
    Arg(Vec<(String, Option<String>)>),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Copy(Copy),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Cmd(CmdLine),
    Entrypoint(CmdLine),
    Shell(Vec<String>),
    StopSignal(String),
    /// `None` is `HEALTHCHECK NONE`.
    Healthcheck(Option<Health>),
    Onbuild(String),
    Maintainer(String),
    Run(Run),
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Arg(_) => "ARG",
            Op::Env(_) => "ENV",
            Op::Label(_) => "LABEL",
            Op::Copy(c) if c.add => "ADD",
            Op::Copy(_) => "COPY",
            Op::Workdir(_) => "WORKDIR",
            Op::User(_) => "USER",
            Op::Expose(_) => "EXPOSE",
            Op::Volume(_) => "VOLUME",
            Op::Cmd(_) => "CMD",
            Op::Entrypoint(_) => "ENTRYPOINT",
            Op::Shell(_) => "SHELL",
            Op::StopSignal(_) => "STOPSIGNAL",
            Op::Healthcheck(_) => "HEALTHCHECK",
            Op::Onbuild(_) => "ONBUILD",
            Op::Maintainer(_) => "MAINTAINER",
            Op::Run(_) => "RUN",
        }
    }
}
