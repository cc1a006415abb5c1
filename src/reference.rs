//! Image references (`[registry/]repo[:tag][@digest]`) with Docker's normalisation rules:
//! a first component without `.`/`:` that is not `localhost` means Docker Hub, and single-name
//! Hub repositories live under `library/`.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const DOCKER_HUB: &str = "docker.io";

#[cfg(test)]
mod unit_tests;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `nvcr.io`, `localhost:5000`, `127.0.0.1:5000`.
    pub registry: String,
    /// `library/python`, `nvidia/l4t-base`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::input(format!("invalid image reference {input:?}: {why}"))
                .with_hint("use [registry/]name[:tag][@sha256:digest], e.g. docker.io/library/python:3.10-slim")
        };
        let s = input.strip_prefix("docker://").unwrap_or(input);
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > 4096 {
            return Err(bad("too long"));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| bad(e.message()))?)),
            None => (s, None),
        };
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if !name_tag[i + 1..].contains('/') => (&name_tag[..i], Some(&name_tag[i + 1..])),
            _ => (name_tag, None),
        };
        if let Some(t) = tag {
            let valid = !t.is_empty()
                && t.len() <= 128
                && t.as_bytes()[0] != b'.'
                && t.as_bytes()[0] != b'-'
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
            if !valid {
                return Err(bad(&format!("invalid tag {t:?}")));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if !valid_host(&registry) {
            return Err(bad(&format!("invalid registry host {registry:?}")));
        }
        let path = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        if path.is_empty() || path.len() > 255 {
            return Err(bad("invalid repository name"));
        }
        for comp in path.split('/') {
            if !valid_component(comp) {
                if comp.chars().any(|c| c.is_ascii_uppercase()) {
                    return Err(bad("repository names must be lowercase"));
                }
                return Err(bad(&format!("invalid repository name component {comp:?}")));
            }
        }
        Ok(Reference { registry, repository: path, tag: tag.map(str::to_string), digest })
    }

    /// The tag to use when neither tag nor digest was given.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// The tag, or `latest` when neither tag nor digest was given.
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn api_reference(&self) -> String {
        match &self.digest {
            Some(d) => d.to_string(),
            None => self.tag_or_latest().to_string(),
        }
    }

    /// `registry/repository` in full.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as `docker images` shows it: `python`, `user/app`, `nvcr.io/nvidia/l4t-base`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.full_name()
        }
    }

    /// `name:tag` in familiar form, if the reference has (or implies) a tag.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.effective_tag().map(|t| format!("{}:{t}", self.familiar_name()))
    }

    /// `registry/repository:tag` fully qualified, if the reference has (or implies) a tag.
    pub fn qualified_tagged(&self) -> Option<String> {
        self.effective_tag().map(|t| format!("{}:{t}", self.full_name()))
    }

    /// The host to talk HTTP to.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB { "registry-1.docker.io" } else { &self.registry }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.full_name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || h.starts_with('[') => (host, Some(port)),
        _ => (h, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5)
    {
        return false;
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'[' || b == b']' || b == b':')
}

/// Whether `host` (with optional port) is a loopback address, where plain HTTP is allowed.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host
        .rsplit_once(':')
        .map(|(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
        .unwrap_or(host);
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h == "::1" || h.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_docker_hub() {
        let r = Reference::parse("python:3.10-slim").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/python", Some("3.10-slim"))
        );
        assert_eq!(r.familiar_tagged().unwrap(), "python:3.10-slim");
        assert_eq!(r.qualified_tagged().unwrap(), "docker.io/library/python:3.10-slim");
        let r = Reference::parse("docker.io/library/python:3.10-slim").unwrap();
        assert_eq!(r.familiar_tagged().unwrap(), "python:3.10-slim");
        let r = Reference::parse("user/app").unwrap();
        assert_eq!(r.repository, "user/app");
        assert_eq!(r.familiar_tagged().unwrap(), "user/app:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
    }

    #[test]
    fn registries_ports_and_digests() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("localhost:5000", "x"));
        assert!(r.tag.is_none() && r.digest.is_some());
        assert_eq!(r.api_reference(), d);
        assert!(r.familiar_tagged().is_none());
        let r = Reference::parse("nvcr.io/nvidia/l4t-base:35.4.1").unwrap();
        assert_eq!(r.familiar_tagged().unwrap(), "nvcr.io/nvidia/l4t-base:35.4.1");
        let r = Reference::parse(&format!("127.0.0.1:15000/a/b:t@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert!(
            is_loopback_host("127.0.0.1:15000") && is_loopback_host("localhost:5000") && is_loopback_host("[::1]:80")
        );
        assert!(!is_loopback_host("nvcr.io"));
    }

    #[test]
    fn rejects_bad_references() {
        for bad in ["", "upper/Case", "a//b", "a:", "a:-x", "a@sha256:abc", "-a", "a/b_", "ex ample"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
