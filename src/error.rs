//! The library's one error type: every failure carries a lowercase message that names the
//! file, reference, digest or field involved, the context frames callers added on its way up
//! ([`Error::context`]: "while building service `app`", "image python:3.11"), an optional
//! `hint:` saying what to do, and a class that decides the process exit code (1 = bad input,
//! 2 = unexpected failure). [`Error::render`] prints the chain as the CLI shows it:
//!
//! ```text
//! error: service app (docker-compose.yml)
//! caused by: image python:3.11
//! caused by: blob sha256:… does not match its digest
//! hint: …
//! ```

use std::fmt;
use std::io;
use std::path::Path;

/// What kind of failure this is; decides the exit code and lets tests match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Malformed or inconsistent input given by the user (files, flags, references).
    Input,
    /// Something named does not exist (image, tag, platform, blob, file).
    NotFound,
    /// Credentials missing or rejected.
    Auth,
    /// Content does not match its digest or size.
    Integrity,
    /// The network or a remote server failed after retries.
    Network,
    /// Local I/O failure (disk full, permissions, …).
    Io,
    /// `--offline` and the content is not cached.
    Offline,
    /// A feature that is not implemented.
    Unsupported,
    /// A bug or an unexpected state.
    Internal,
}

/// The library error.
#[derive(Debug)]
#[non_exhaustive]
pub struct Error {
    kind: Kind,
    msg: String,
    /// Context frames, outermost first.
    frames: Vec<String>,
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// The message and hint are lines made by [`Error::lines`], each escaped already.
    lines: bool,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Error { kind, msg: msg.into(), frames: Vec::new(), hint: None, source: None, lines: false }
    }
    /// An input error of several problems: `error:` lines (and `hint:` lines), each made one
    /// line with [`one_line`].
    pub fn lines<'a>(messages: impl IntoIterator<Item = &'a str>, hints: impl IntoIterator<Item = &'a str>) -> Self {
        let join = |v: Vec<std::borrow::Cow<str>>, sep: &str| v.join(sep);
        let msg = join(messages.into_iter().map(one_line).collect(), "\nerror: ");
        let hints: Vec<_> = hints.into_iter().map(one_line).collect();
        let mut e = Self::new(Kind::Input, msg);
        if !hints.is_empty() {
            e.hint = Some(join(hints, "\nhint: "));
        }
        e.lines = true;
        e
    }
    pub fn input(msg: impl Into<String>) -> Self {
        Self::new(Kind::Input, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, msg)
    }
    pub fn auth(msg: impl Into<String>) -> Self {
        Self::new(Kind::Auth, msg)
    }
    pub fn integrity(msg: impl Into<String>) -> Self {
        Self::new(Kind::Integrity, msg)
    }
    pub fn network(msg: impl Into<String>) -> Self {
        Self::new(Kind::Network, msg)
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Self::new(Kind::Unsupported, msg)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(Kind::Internal, msg)
    }
    /// An I/O error on `path`, with the operation named (`"cannot read"`, `"cannot create"`, …).
    pub fn io(op: &str, path: &Path, err: io::Error) -> Self {
        // A verifying reader reports digest problems as io::Error; keep their class and text.
        if let Some(inner) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
            return inner.clone_shallow();
        }
        let mut e = Self::new(Kind::Io, format!("{op} {}: {}", path.display(), io_text(&err)));
        if err.raw_os_error() == Some(28) {
            e.hint = Some("the disk is full; free space or point --cache-dir/-o at a larger filesystem".into());
        } else if err.kind() == io::ErrorKind::PermissionDenied {
            e.hint = Some("check the permissions of that path".into());
        }
        e.source = Some(Box::new(err));
        e
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// Adds an outer context frame, e.g. the image or service the failure happened in. The
    /// message, kind and hint stay those of the cause.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        let ctx = ctx.to_string();
        // the same frame twice in a row (a source and its caller both naming the image) says
        // nothing new
        if self.frames.first() != Some(&ctx) {
            self.frames.insert(0, ctx);
        }
        self
    }
    /// Prefixes the outermost line with a location (`Dockerfile:3:1`): where the failure is,
    /// not a further cause.
    pub fn at(mut self, loc: impl fmt::Display) -> Self {
        match self.frames.first_mut() {
            Some(f) => *f = format!("{loc}: {f}"),
            None => self.msg = format!("{loc}: {}", self.msg),
        }
        self
    }
    /// The chain from the outermost context frame to the cause.
    pub fn chain(&self) -> impl Iterator<Item = &str> {
        self.frames.iter().map(String::as_str).chain(std::iter::once(self.msg.as_str()))
    }
    /// The lines the CLI prints: `error: OUTERMOST`, a `caused by: …` line per inner frame down
    /// to the cause, then `hint: …` when there is one.
    pub fn render(&self) -> String {
        // user text (names, paths, references) cannot break a line: every line is one line
        let lines = self.lines;
        fn text(t: &str, own: bool, lines: bool) -> std::borrow::Cow<'_, str> {
            if own && lines { t.into() } else { one_line(t) }
        }
        let mut out = String::new();
        let n = self.frames.len();
        for (i, frame) in self.chain().enumerate() {
            out.push_str(if i == 0 { "error: " } else { "caused by: " });
            out.push_str(&text(frame, i == n, lines));
            out.push('\n');
        }
        if let Some(h) = &self.hint {
            // hints may span lines on purpose (a failed step's last output lines, the table of
            // sandbox rungs); other control characters are still shown escaped
            out.push_str("hint: ");
            out.push_str(&hint_text(h));
            out.push('\n');
        }
        out
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The cause's message, without context frames.
    pub fn message(&self) -> &str {
        &self.msg
    }
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
    /// 1 for problems with the input (the user can fix them), 2 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Input | Kind::NotFound | Kind::Auth | Kind::Integrity | Kind::Offline | Kind::Unsupported => 1,
            Kind::Network | Kind::Io | Kind::Internal => 2,
        }
    }
    fn clone_shallow(&self) -> Self {
        Error {
            kind: self.kind,
            msg: self.msg.clone(),
            frames: self.frames.clone(),
            hint: self.hint.clone(),
            source: None,
            lines: self.lines,
        }
    }
    /// Wraps this error into an `io::Error` so it can travel through `Read` implementations.
    pub fn into_io(self) -> io::Error {
        let kind = match self.kind {
            Kind::Integrity => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }
    /// Recovers an `Error` carried inside an `io::Error`, or classifies the `io::Error`.
    pub fn from_io(op: &str, what: &str, err: io::Error) -> Self {
        if let Some(inner) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
            return inner.clone_shallow();
        }
        let mut e = Self::new(Kind::Io, format!("{op} {what}: {}", io_text(&err)));
        if err.raw_os_error() == Some(28) {
            e.hint = Some("the disk is full; free space or choose another output directory".into());
        }
        e
    }
}

/// `s` on one line: line breaks and other control characters (a tab excepted) are shown
/// escaped (`\n`, `\u{1b}`), so text from the user or a server cannot start a line of its own.
fn hint_text(s: &str) -> String {
    s.split('\n').map(one_line).collect::<Vec<_>>().join("\n")
}

pub fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\t') {
        return s.into();
    }
    s.chars()
        .map(|c| if c.is_control() && c != '\t' { c.escape_debug().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}

/// An `io::Error` as message text: `No such file or directory (os error 2)` → `no such file or
/// directory` (first letter lowercased, the OS error number dropped).
pub fn io_text(err: &io::Error) -> String {
    os_error_text(err)
}

/// Any OS error's text (an `io::Error`, a rustix `Errno`) the way [`io_text`] shows it.
pub fn os_error_text(err: &impl fmt::Display) -> String {
    let s = err.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

/// One line: the chain joined by `": "` (for logs and `--json`).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, frame) in self.chain().enumerate() {
            if i > 0 {
                f.write_str(": ")?;
            }
            f.write_str(frame)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        e.into_io()
    }
}

/// Shorthand for building an error with `format!` arguments.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)+) => {
        return Err($crate::error::Error::$kind(format!($($arg)+)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_chains_and_renders_error_caused_by_hint() {
        let e = Error::integrity("blob sha256:ab does not match its digest")
            .with_hint("pull again")
            .context("image python:3.11")
            .context("image python:3.11")
            .context("service app (docker-compose.yml)");
        assert_eq!(e.kind(), Kind::Integrity);
        assert_eq!(e.message(), "blob sha256:ab does not match its digest");
        assert_eq!(
            e.to_string(),
            "service app (docker-compose.yml): image python:3.11: blob sha256:ab does not match its digest"
        );
        assert_eq!(
            e.render(),
            "error: service app (docker-compose.yml)\ncaused by: image python:3.11\n\
             caused by: blob sha256:ab does not match its digest\nhint: pull again\n"
        );
    }

    #[test]
    fn user_text_cannot_break_an_error_line() {
        let e =
            Error::input("no such tag \"a\nerror: forged\"").context("image x\r\ny").with_hint("use\u{1b}[31m a tag");
        assert_eq!(
            e.render(),
            "error: image x\\r\\ny\ncaused by: no such tag \"a\\nerror: forged\"\nhint: use\\u{1b}[31m a tag\n"
        );
        let many = Error::lines(["a\nb", "c"], ["h\n1", "h2"]);
        assert_eq!(many.render(), "error: a\\nb\nerror: c\nhint: h\\n1\nhint: h2\n");
        assert_eq!(one_line("tab\tstays"), "tab\tstays");
    }

    #[test]
    fn a_location_prefixes_the_outermost_line() {
        let e = Error::input("RUN x failed").at("Dockerfile:3:1");
        assert_eq!(e.render(), "error: Dockerfile:3:1: RUN x failed\n");
        let e = Error::input("no such tag").context("FROM a:b").at("Dockerfile:1:1");
        assert_eq!(e.render(), "error: Dockerfile:1:1: FROM a:b\ncaused by: no such tag\n");
    }

    #[test]
    fn an_error_without_context_is_one_line_and_its_hint() {
        let e = Error::input("bad value").with_hint("fix it");
        assert_eq!(e.render(), "error: bad value\nhint: fix it\n");
        assert_eq!(Error::io("cannot read", Path::new("/x"), io::Error::from_raw_os_error(2)).exit_code(), 2);
    }

    #[test]
    fn errors_survive_a_trip_through_io_error() {
        let e = Error::integrity("size mismatch").context("layer 2");
        let back = Error::from_io("cannot read", "x", e.into_io());
        assert_eq!(back.kind(), Kind::Integrity);
        assert_eq!(back.to_string(), "layer 2: size mismatch");
    }
}
