//! Registry mirrors (`--registry-mirror docker.io=registry.local:5000`): every pull of an image
//! of one registry goes to another host (and optional repository prefix) instead. Names are not
//! rewritten: tags saved into archives, compose files and Dockerfile `FROM` lines keep the
//! original registry, as with Docker's `registry-mirrors` and containers' `registries.conf`.

use crate::error::{Error, Result};
use crate::reference::Reference;

/// A registry rewrite: images of `from` (e.g. `docker.io`) are pulled from `to_host`
/// (`host[:port]`), under `to_prefix` when it is not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub from: String,
    pub to_host: String,
    pub to_prefix: String,
}

impl Mirror {
    /// Parses `FROM=TO`, e.g. `docker.io=127.0.0.1:5000` or `nvcr.io=mirror.local/nvcr`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::input(format!("invalid registry mirror {s:?}"))
                .with_hint("use REGISTRY=HOST[:PORT][/PREFIX], e.g. docker.io=127.0.0.1:5000")
        };
        let (from, to) = s.split_once('=').ok_or_else(bad)?;
        let from = super::auth::normalize_registry(from.trim());
        let to = to.trim().trim_end_matches('/');
        let (host, prefix) = match to.split_once('/') {
            Some((h, p)) => (h, p),
            None => (to, ""),
        };
        if from.is_empty() || host.is_empty() || Reference::parse(&format!("{host}/x")).is_err() {
            return Err(bad());
        }
        Ok(Mirror { from, to_host: host.to_string(), to_prefix: prefix.to_string() })
    }

    /// Parses every non-empty entry of `specs`.
    pub fn parse_all(specs: &[String]) -> Result<Vec<Mirror>> {
        specs.iter().filter(|m| !m.trim().is_empty()).map(|m| Mirror::parse(m)).collect()
    }

    /// The reference to pull instead of `r`, if this mirror applies.
    pub fn apply(&self, r: &Reference) -> Option<Reference> {
        if r.registry != self.from {
            return None;
        }
        let repository = if self.to_prefix.is_empty() {
            r.repository.clone()
        } else {
            format!("{}/{}", self.to_prefix, r.repository)
        };
        Some(Reference { registry: self.to_host.clone(), repository, tag: r.tag.clone(), digest: r.digest.clone() })
    }
}

/// The reference to pull for `r`: the first mirror that applies, else `r` itself.
pub fn rewrite(mirrors: &[Mirror], r: &Reference) -> Option<Reference> {
    mirrors.iter().find_map(|m| m.apply(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_rewrite_the_registry_only() {
        let m = Mirror::parse("docker.io=127.0.0.1:15000").unwrap();
        let r = m.apply(&Reference::parse("docking_callback:arm64").unwrap()).unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:15000/library/docking_callback:arm64");
        assert!(m.apply(&Reference::parse("nvcr.io/nvidia/l4t-base:35.4.1").unwrap()).is_none());
        let m = Mirror::parse("index.docker.io=mirror.example:5000/hub/").unwrap();
        let r = m.apply(&Reference::parse("user/app").unwrap()).unwrap();
        assert_eq!(r.to_string(), "mirror.example:5000/hub/user/app");
        assert!(Mirror::parse("docker.io").is_err());
        assert!(Mirror::parse("docker.io=").is_err());
        let all = Mirror::parse_all(&["".into(), "docker.io=a.example".into(), "quay.io=b.example".into()]).unwrap();
        assert_eq!(all.len(), 2);
        let q = rewrite(&all, &Reference::parse("quay.io/x/y:1").unwrap()).unwrap();
        assert_eq!(q.to_string(), "b.example/x/y:1");
        assert!(rewrite(&all, &Reference::parse("ghcr.io/x/y:1").unwrap()).is_none());
    }
}
