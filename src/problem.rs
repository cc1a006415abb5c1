//! "Report every problem at once": the checks of an extension directory, an SPX, a `docker save`
//! archive or an image ([`crate::image::validate`]) never stop at the first problem. Each appends
//! a [`Problem`] (error or warning, a self-contained one-line message naming the file and the
//! JSON/YAML path, and an optional hint) to [`Problems`], which reports the warnings and turns
//! the errors into one [`Error`] with one `error:` line per problem.

use serde::Serialize;

use crate::error::{Error, Result, one_line};
use crate::progress::Reporter;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The extension will not install or run as intended.
    Error,
    /// Probably a mistake, or something that depends on the robot (network, firmware).
    Warning,
}

/// One problem, with a self-contained one-line message (`manifest.json: $.version: missing`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Problem {
    pub fn error(message: impl Into<String>, hint: Option<&str>) -> Self {
        Problem { severity: Severity::Error, message: message.into(), hint: hint.map(str::to_string) }
    }
    pub fn warning(message: impl Into<String>, hint: Option<&str>) -> Self {
        Problem { severity: Severity::Warning, message: message.into(), hint: hint.map(str::to_string) }
    }
}

/// Every problem found by a validation pass.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn error(&mut self, message: impl Into<String>, hint: Option<&str>) {
        self.push(Severity::Error, message.into(), hint);
    }
    pub fn warn(&mut self, message: impl Into<String>, hint: Option<&str>) {
        self.push(Severity::Warning, message.into(), hint);
    }
    fn push(&mut self, severity: Severity, message: String, hint: Option<&str>) {
        self.add(Problem { severity, message, hint: hint.map(str::to_string) });
    }
    /// Adds `p` unless the same problem is there already.
    pub fn add(&mut self, p: Problem) {
        if !self.0.contains(&p) {
            self.0.push(p);
        }
    }
    /// Adds an [`Error`] as an error problem.
    pub fn error_from(&mut self, e: &Error) {
        self.error(e.message(), e.hint());
    }
    pub fn extend(&mut self, other: impl IntoIterator<Item = Problem>) {
        for p in other {
            self.add(p);
        }
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|f| f.severity == Severity::Error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|f| f.severity == Severity::Error)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|f| f.severity == Severity::Warning)
    }
    /// Every error turned into warnings (`--skip-docker-compose-validation`).
    pub fn downgraded(self) -> Problems {
        Problems(self.0.into_iter().map(|f| Problem { severity: Severity::Warning, ..f }).collect())
    }

    /// Reports the warnings, then fails with every error (one `error:` line each) if there are any.
    pub fn finish(self, reporter: &dyn Reporter) -> Result<()> {
        for w in self.warnings() {
            reporter.warn(&warning_line(w));
        }
        self.into_error().map_or(Ok(()), Err)
    }

    /// The errors as one [`Error`] whose message holds one line per problem, or `None`.
    pub fn into_error(self) -> Option<Error> {
        let errors: Vec<Problem> = self.0.into_iter().filter(|f| f.severity == Severity::Error).collect();
        if errors.is_empty() {
            return None;
        }
        let mut hints: Vec<&str> = Vec::new();
        for h in errors.iter().filter_map(|f| f.hint.as_deref()) {
            if !hints.contains(&h) {
                hints.push(h);
            }
        }
        let e = Error::lines(errors.iter().map(|f| f.message.as_str()), hints);
        Some(e)
    }
}

impl IntoIterator for Problems {
    type Item = Problem;
    type IntoIter = std::vec::IntoIter<Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// `warning: …` with the hint in parentheses, as printed by the CLI.
pub fn warning_line(w: &Problem) -> String {
    match &w.hint {
        Some(h) => format!("warning: {} ({})", one_line(&w.message), one_line(h)),
        None => format!("warning: {}", one_line(&w.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_become_one_line_per_error() {
        let mut f = Problems::new();
        f.warn("w", None);
        assert!(f.clone().into_error().is_none());
        f.error("manifest.json: $.a: bad", Some("fix a"));
        f.error("manifest.json: $.b: bad", Some("fix a"));
        f.error("manifest.json: $.b: bad", Some("fix a"));
        let e = f.into_error().unwrap();
        assert_eq!(e.message(), "manifest.json: $.a: bad\nerror: manifest.json: $.b: bad");
        assert_eq!(e.hint(), Some("fix a"));
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn warnings_are_reported_and_errors_can_be_downgraded() {
        struct Lines(std::sync::Mutex<Vec<String>>);
        impl Reporter for Lines {
            fn message(&self, _: &str) {}
            fn warn(&self, msg: &str) {
                self.0.lock().unwrap().push(msg.to_string());
            }
        }
        let mut p = Problems::new();
        p.error("bad", None);
        p.warn("odd", Some("look"));
        p.extend([Problem::warning("odd", Some("look")), Problem::error("worse", Some("fix"))]);
        assert_eq!(p.0.len(), 3);
        assert_eq!(p.errors().count(), 2);
        let lines = Lines(Default::default());
        let e = p.clone().finish(&lines).unwrap_err();
        assert_eq!(e.message(), "bad\nerror: worse");
        assert_eq!(e.hint(), Some("fix"));
        assert_eq!(*lines.0.lock().unwrap(), ["warning: odd (look)"]);
        let down = p.downgraded();
        assert!(!down.has_errors());
        assert_eq!(warning_line(&down.0[0]), "warning: bad");
        assert!(down.finish(&crate::progress::Silent).is_ok());
    }

    #[test]
    fn serialises_as_the_verify_report_shows_it() {
        let p = Problems(vec![Problem::error("e", None), Problem::warning("w", Some("h"))]);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"[{"severity":"error","message":"e"},{"severity":"warning","message":"w","hint":"h"}]"#
        );
    }
}
