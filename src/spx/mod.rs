//! Spot Extensions (`.spx`): the extension `manifest.json` rules ([`manifest`]), static
//! `docker-compose.yml` checks ([`compose`]), the files an SPX carries besides images
//! ([`assets`]), the deterministic SPX writer ([`writer`]), `docker load`'s checks replayed on
//! an archive inside an SPX ([`image_check`]) and the one-pass tar reading both checkers share
//! ([`tar_stream`]). The commands that use them (`build`, `verify`, `inspect`, `init`) live in
//! [`crate::ops`].
//!
//! Validation never stops at the first problem: every check appends a
//! [`Problem`](crate::problem::Problem) (error or warning, with the file and JSON/YAML path in
//! its message) to [`Problems`](crate::problem::Problems), which turns into one
//! [`Error`](crate::error::Error) with one `error:` line per problem.

pub mod assets;
pub mod compose;
pub mod image_check;
pub mod json;
pub mod manifest;
pub mod tar_stream;
pub mod writer;

use serde::Serialize;

/// The manifest's name inside an SPX and in an extension directory.
pub const MANIFEST: &str = "manifest.json";
/// The compose file's name inside an SPX (the robot reads no other name).
pub const COMPOSE: &str = "docker-compose.yml";
/// Compose file names accepted in an extension directory, in lookup order.
pub const COMPOSE_NAMES: [&str; 4] = ["docker-compose.yml", "docker-compose.yaml", "compose.yaml", "compose.yml"];

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
