//! Spot Extensions (`.spx`): the extension `manifest.json` rules ([`manifest`]), static
//! `docker-compose.yml` checks ([`compose`]), the files an SPX carries besides images
//! ([`assets`]), the deterministic SPX writer ([`writer`]), offline verification of existing SPX
//! files and of `docker save` archives inside them ([`verify`], [`image_check`]), `inspect`
//! rendering ([`inspect`]) and `spxpack init` scaffolding ([`init`]).
//!
//! Validation never stops at the first problem: every check appends a [`Finding`] (error or
//! warning, with the file and JSON/YAML path in its message) to [`Findings`], which turns into
//! one [`Error`] with one `error:` line per problem.

pub mod assets;
pub mod compose;
pub mod image_check;
pub mod json;
pub mod manifest;
pub mod tar_stream;
pub mod writer;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::Reporter;

/// The manifest's name inside an SPX and in an extension directory.
pub const MANIFEST: &str = "manifest.json";
/// The compose file's name inside an SPX (the robot reads no other name).
pub const COMPOSE: &str = "docker-compose.yml";
/// Compose file names accepted in an extension directory, in lookup order.
pub const COMPOSE_NAMES: [&str; 4] = ["docker-compose.yml", "docker-compose.yaml", "compose.yaml", "compose.yml"];

/// How bad a finding is.
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
pub struct Finding {
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Every problem found by a validation pass.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
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
        let f = Finding { severity, message, hint: hint.map(str::to_string) };
        if !self.0.contains(&f) {
            self.0.push(f);
        }
    }
    /// Adds an [`Error`] as an error finding.
    pub fn error_from(&mut self, e: &Error) {
        self.error(e.message(), e.hint());
    }
    pub fn extend(&mut self, other: Findings) {
        for f in other.0 {
            if !self.0.contains(&f) {
                self.0.push(f);
            }
        }
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|f| f.severity == Severity::Error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.0.iter().filter(|f| f.severity == Severity::Error)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.0.iter().filter(|f| f.severity == Severity::Warning)
    }
    /// Every error turned into warnings (`--skip-docker-compose-validation`).
    pub fn downgraded(self) -> Findings {
        Findings(self.0.into_iter().map(|f| Finding { severity: Severity::Warning, ..f }).collect())
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
        let errors: Vec<Finding> = self.0.into_iter().filter(|f| f.severity == Severity::Error).collect();
        if errors.is_empty() {
            return None;
        }
        let msg = errors.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("\nerror: ");
        let mut hints: Vec<&str> = Vec::new();
        for h in errors.iter().filter_map(|f| f.hint.as_deref()) {
            if !hints.contains(&h) {
                hints.push(h);
            }
        }
        let mut e = Error::input(msg);
        if !hints.is_empty() {
            e = e.with_hint(hints.join("\nhint: "));
        }
        Some(e)
    }
}

/// `warning: …` with the hint in parentheses, as printed by the CLI.
pub fn warning_line(w: &Finding) -> String {
    match &w.hint {
        Some(h) => format!("warning: {} ({h})", w.message),
        None => format!("warning: {}", w.message),
    }
}

/// The platform a target runs: CORE I/O (`spot`) is arm64, Orbit is amd64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Spot,
    Orbit,
}

impl Target {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "spot" => Some(Target::Spot),
            "orbit" => Some(Target::Orbit),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Spot => "spot",
            Target::Orbit => "orbit",
        }
    }
    pub fn platform(self) -> crate::platform::Platform {
        match self {
            Target::Spot => crate::platform::Platform::linux_arm64(),
            Target::Orbit => crate::platform::Platform::linux_amd64(),
        }
    }
    /// What runs the extension, for messages.
    pub fn machine(self) -> &'static str {
        match self {
            Target::Spot => "CORE I/O (linux/arm64)",
            Target::Orbit => "Orbit (linux/amd64)",
        }
    }
}

/// Whether `name` looks like an image archive file name (`.tar`, `.tar.gz`, `.tgz`).
pub fn is_archive_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with(".tar") || n.ends_with(".tar.gz") || n.ends_with(".tgz")
}

/// `name` without `.tar.gz`/`.tgz`/`.tar`/`.gz`.
pub fn archive_stem(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    for suffix in [".tar.gz", ".tgz", ".tar", ".gz"] {
        if lower.ends_with(suffix) {
            return &name[..name.len() - suffix.len()];
        }
    }
    name
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `known` to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_become_one_line_per_error() {
        let mut f = Findings::new();
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
    fn suggestions_and_names() {
        assert_eq!(
            suggest("instalation_target", &["installation_target", "extension_name"]),
            Some("installation_target")
        );
        assert_eq!(suggest("zzz", &["installation_target"]), None);
        assert_eq!(archive_stem("a.tar.gz"), "a");
        assert_eq!(archive_stem("b.TGZ"), "b");
        assert!(is_archive_name("x.tgz") && !is_archive_name("x.zip"));
    }
}
