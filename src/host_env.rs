//! The process environment as plain data. Only the CLI reads the real environment
//! (`HostEnv::from_vars(std::env::vars_os())`); library code gets a `HostEnv` (or the one value
//! it needs) through its options, so its behaviour is a function of its arguments and tests can
//! give it any environment without touching the process's.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostEnv {
    vars: BTreeMap<OsString, OsString>,
}

impl HostEnv {
    /// An environment with exactly these variables.
    pub fn from_vars<K: Into<OsString>, V: Into<OsString>>(vars: impl IntoIterator<Item = (K, V)>) -> Self {
        HostEnv { vars: vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }
    /// The raw value of `key`.
    pub fn get_os(&self, key: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(key)).map(OsString::as_os_str)
    }
    /// The value of `key` when it is set, non-empty and valid UTF-8.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_os(key).and_then(OsStr::to_str).filter(|v| !v.is_empty())
    }
    /// The value of `key` as a path when it is set and non-empty.
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.get_os(key).filter(|v| !v.is_empty()).map(PathBuf::from)
    }
    /// Whether `key` is set (even to an empty value).
    pub fn is_set(&self, key: &str) -> bool {
        self.get_os(key).is_some()
    }
    /// The directories of `PATH`, in order.
    pub fn path_dirs(&self) -> Vec<PathBuf> {
        self.get_os("PATH").map(|p| std::env::split_paths(p).collect()).unwrap_or_default()
    }
    /// The first executable file called `name` in `PATH`.
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        self.path_dirs().into_iter().map(|d| d.join(name)).find(|p| p.is_file())
    }
    /// `SOURCE_DATE_EPOCH` as seconds, when set to a number.
    pub fn source_date_epoch(&self) -> Option<u64> {
        self.get("SOURCE_DATE_EPOCH").and_then(|v| v.trim().parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_what_it_was_given() {
        let e = HostEnv::from_vars([("A", "1"), ("EMPTY", ""), ("SOURCE_DATE_EPOCH", " 1700000000 ")]);
        assert_eq!(e.get("A"), Some("1"));
        assert_eq!(e.get("EMPTY"), None);
        assert!(e.is_set("EMPTY"));
        assert_eq!(e.get("B"), None);
        assert_eq!(e.source_date_epoch(), Some(1_700_000_000));
        assert_eq!(HostEnv::default().source_date_epoch(), None);
        assert!(HostEnv::default().path_dirs().is_empty());
    }
}
