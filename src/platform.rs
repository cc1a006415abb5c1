//! Platforms (`os/arch[/variant]`) with the normalisation Docker and containerd apply:
//! `aarch64` ≡ `arm64` ≡ `arm64/v8`, `x86_64` ≡ `amd64`, `arm` ≡ `arm/v7`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[cfg(test)]
mod unit_tests;

/// An OCI platform as it appears in an image index entry or a config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Self {
        Platform {
            architecture: arch.to_string(),
            os: os.to_string(),
            os_version: None,
            os_features: None,
            variant: variant.map(str::to_string),
        }
    }
    /// The CORE I/O platform, and spxpack's default.
    pub fn linux_arm64() -> Self {
        Self::new("linux", "arm64", Some("v8"))
    }
    pub fn linux_amd64() -> Self {
        Self::new("linux", "amd64", None)
    }

    /// Parses `os/arch[/variant]` (also accepts a bare `arch`, meaning linux).
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            Error::input(format!("invalid platform {s:?}"))
                .with_hint("use os/arch[/variant], e.g. linux/arm64 or linux/amd64")
        };
        let (os, arch, variant) = match parts.as_slice() {
            [arch] if !arch.is_empty() => ("linux", *arch, None),
            [os, arch] if !os.is_empty() && !arch.is_empty() => (*os, *arch, None),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => (*os, *arch, Some(*v)),
            _ => return Err(bad()),
        };
        let ok = |x: &str| x.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !ok(os) || !ok(arch) || !variant.is_none_or(ok) {
            return Err(bad());
        }
        Ok(Self::new(&os.to_lowercase(), &arch.to_lowercase(), variant).normalized())
    }

    /// The canonical form used for comparison.
    pub fn normalized(&self) -> Self {
        let (arch, variant): (&str, Option<&str>) = match (self.architecture.as_str(), self.variant.as_deref()) {
            ("aarch64" | "arm64", None | Some("") | Some("v8") | Some("8")) => ("arm64", Some("v8")),
            ("aarch64" | "arm64", Some(v)) => ("arm64", Some(v)),
            ("x86_64" | "x86-64" | "amd64", None | Some("") | Some("v1")) => ("amd64", None),
            ("x86_64" | "x86-64" | "amd64", Some(v)) => ("amd64", Some(v)),
            ("armhf" | "arm", None | Some("") | Some("7") | Some("v7")) => ("arm", Some("v7")),
            ("armel", _) => ("arm", Some("v6")),
            ("arm", Some(v)) if !v.starts_with('v') => ("arm", None).with_variant(v),
            ("i386" | "386" | "i686", _) => ("386", None),
            (a, v) => (a, v.filter(|v| !v.is_empty())),
        };
        let mut p = Self::new(&self.os.to_lowercase(), arch, variant);
        p.os_version = self.os_version.clone();
        p
    }

    /// Whether an image for `self` satisfies a request for `wanted`.
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        let a = self.normalized();
        let b = wanted.normalized();
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }

    /// The `GOARCH`-style architecture name (`arm64`, `amd64`).
    pub fn arch(&self) -> &str {
        &self.architecture
    }
}

trait WithVariant {
    fn with_variant(self, v: &str) -> (&'static str, Option<&'static str>);
}
impl WithVariant for (&'static str, Option<&'static str>) {
    fn with_variant(self, v: &str) -> (&'static str, Option<&'static str>) {
        let v: &'static str = match v {
            "5" => "v5",
            "6" => "v6",
            "7" => "v7",
            "8" => "v8",
            _ => return (self.0, None),
        };
        (self.0, Some(v))
    }
}

/// Picks the first entry whose platform satisfies `want` (an index's manifests, in order, as
/// Docker and containerd do); the error lists the platforms the index has (at most
/// [`LISTED`], then "… and N more").
pub fn select<'a, T>(
    entries: &'a [T],
    platform_of: impl Fn(&T) -> Option<&Platform>,
    want: &Platform,
    what: &str,
) -> Result<&'a T> {
    if let Some(first) = entries.iter().find(|e| platform_of(e).is_some_and(|p| p.satisfies(want))) {
        return Ok(first);
    }
    let have: Vec<String> = entries
        .iter()
        .filter_map(&platform_of)
        .filter(|p| p.os != "unknown")
        .map(|p| p.normalized().to_string())
        .collect();
    let have = if have.is_empty() { "no platforms".to_string() } else { list(&have) };
    Err(Error::not_found(format!("{what} has no image for {}; the index has: {have}", want.normalized()))
        .with_hint("pick one of those with --platform, or use an image built for the robot's platform"))
}

/// How many items an error message lists before "… and N more".
pub const LISTED: usize = 20;

/// `a, b, c` — at most [`LISTED`] items, then `… and N more`.
pub fn list(items: &[String]) -> String {
    let mut s = items.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > LISTED {
        s.push_str(&format!(" … and {} more", items.len() - LISTED));
    }
    s
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_takes_the_first_match_and_lists_what_the_index_has() {
        let ps = [Platform::linux_amd64(), Platform::parse("linux/arm64").unwrap(), Platform::linux_arm64()];
        let got = select(&ps, |p| Some(p), &Platform::parse("linux/arm64/v8").unwrap(), "x").unwrap();
        assert!(std::ptr::eq(got, &ps[1]));
        let e = select(&ps, |p| Some(p), &Platform::parse("linux/riscv64").unwrap(), "img").unwrap_err();
        assert_eq!(e.kind(), crate::Kind::NotFound);
        assert!(
            e.message().contains("img has no image for linux/riscv64; the index has: linux/amd64, linux/arm64"),
            "{e}"
        );
    }

    #[test]
    fn long_lists_in_messages_are_capped() {
        let many: Vec<Platform> = (0..35_000).map(|i| Platform::new("linux", &format!("a{i}"), None)).collect();
        let e = select(&many, |p| Some(p), &Platform::linux_arm64(), "big").unwrap_err();
        assert!(e.message().len() < 600, "{} bytes", e.message().len());
        assert!(e.message().ends_with("… and 34980 more"), "{}", e.message());
    }

    #[test]
    fn arm64_forms_are_equivalent() {
        let want = Platform::parse("linux/arm64").unwrap();
        for have in [
            Platform::new("linux", "arm64", None),
            Platform::new("linux", "arm64", Some("v8")),
            Platform::new("linux", "aarch64", None),
            Platform::new("linux", "arm64", Some("")),
        ] {
            assert!(have.satisfies(&want), "{have:?}");
        }
        assert!(!Platform::new("linux", "amd64", None).satisfies(&want));
        assert!(!Platform::new("linux", "arm", Some("v7")).satisfies(&want));
        assert!(!Platform::new("windows", "arm64", None).satisfies(&want));
        assert!(Platform::new("linux", "x86_64", None).satisfies(&Platform::parse("linux/amd64").unwrap()));
        assert!(Platform::new("linux", "arm", None).satisfies(&Platform::parse("linux/arm/v7").unwrap()));
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(Platform::parse("linux/arm64").unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(Platform::parse("linux/amd64").unwrap().to_string(), "linux/amd64");
        assert_eq!(Platform::parse("arm64").unwrap().to_string(), "linux/arm64/v8");
        for bad in ["", "linux/", "/arm64", "linux/arm64/v8/x", "linux/ar m"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
