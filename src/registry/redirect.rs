//! Redirect rules for registry requests. ureq's own redirect handling is off; the client
//! follows `Location` itself so that it can refuse what a registry should never ask for: more
//! than [`MAX_HOPS`] hops, a step down from `https` to `http`, and a jump to a link-local or
//! metadata address (or to a private one when the registry itself is public). `Authorization`
//! goes only to the exact origin (scheme, host and port) it was meant for.

use std::net::IpAddr;

use crate::error::{Error, Result};

/// Redirects followed per request.
pub const MAX_HOPS: usize = 5;

/// Whether `status` is a redirect that carries a `Location`.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// `scheme://authority` of an absolute URL.
pub fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..].find(['/', '?', '#']).map_or(url.len(), |i| after + i);
    &url[..end]
}

/// `url` without its query string, which may hold a pre-signed token: for messages and logs.
pub fn redact(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// The authority (`host[:port]`) of an absolute URL.
pub fn authority(url: &str) -> &str {
    let o = origin(url);
    o.find("://").map_or(o, |i| &o[i + 3..])
}

/// Resolves a `Location` header against the URL it answered.
pub fn resolve(base: &str, location: &str) -> Option<String> {
    let loc = location.trim();
    if loc.is_empty() || loc.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    let lower = loc.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Some(loc.to_string());
    }
    if loc.contains("://") {
        return None; // another scheme (file:, ftp:, …)
    }
    let o = origin(base);
    if let Some(rest) = loc.strip_prefix("//") {
        let scheme = &o[..o.find("://")?];
        return Some(format!("{scheme}://{rest}"));
    }
    if loc.starts_with('/') {
        return Some(format!("{o}{loc}"));
    }
    let path = &base[o.len()..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    Some(format!("{o}{dir}/{loc}"))
}

/// What kind of address an authority names (only literal IPs and `localhost` are classified;
/// DNS names count as public).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostClass {
    Public,
    /// Loopback or a private range (RFC 1918, unique-local IPv6).
    Private,
    /// Link-local (cloud metadata services live there) or unspecified.
    LinkLocal,
}

pub fn classify(authority: &str) -> HostClass {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return HostClass::Private;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast() => HostClass::LinkLocal,
        // 100.100.100.200: Alibaba Cloud's metadata service
        Ok(IpAddr::V4(ip)) if ip.octets() == [100, 100, 100, 200] => HostClass::LinkLocal,
        Ok(IpAddr::V4(ip)) if ip.is_loopback() || ip.is_private() => HostClass::Private,
        Ok(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => classify(&v4.to_string()),
            None if ip.is_unspecified() || (ip.segments()[0] & 0xffc0) == 0xfe80 => HostClass::LinkLocal,
            None if ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00 => HostClass::Private,
            None => HostClass::Public,
        },
        _ => HostClass::Public,
    }
}

/// Checks one redirect hop of a request to `registry` (its `host[:port]`); `insecure` says
/// whether a host is an `--insecure-registry`.
pub fn check(registry: &str, from: &str, to: &str, insecure: impl Fn(&str) -> bool) -> Result<()> {
    let target = authority(to);
    let refuse = |why: &str| {
        Error::network(format!(
            "registry {registry} redirected {} to {}, {why}; refusing to follow",
            redact(from),
            redact(to)
        ))
    };
    if from.starts_with("https://") && to.starts_with("http://") && !insecure(target) {
        return Err(refuse("a downgrade from https to plain http")
            .with_hint(format!("add --insecure-registry {target} if this is intended")));
    }
    match classify(target) {
        HostClass::LinkLocal => Err(refuse("a link-local or metadata address")
            .with_hint("a registry never needs that; check the registry or the proxy in front of it")),
        HostClass::Private if classify(registry) == HostClass::Public && !insecure(target) => {
            Err(refuse("a private or loopback address")
                .with_hint(format!("add --insecure-registry {target} if the registry really stores blobs there")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_locations() {
        let base = "https://r.example:5000/v2/a/blobs/sha256:ab?x=1";
        assert_eq!(resolve(base, "https://cdn.example/b?sig=1").unwrap(), "https://cdn.example/b?sig=1");
        assert_eq!(resolve(base, "//cdn.example/b").unwrap(), "https://cdn.example/b");
        assert_eq!(resolve(base, "/v2/b").unwrap(), "https://r.example:5000/v2/b");
        assert_eq!(resolve(base, "c").unwrap(), "https://r.example:5000/v2/a/blobs/c");
        assert!(resolve(base, "file:///etc/passwd").is_none());
        assert!(resolve(base, "").is_none());
        assert_eq!(origin(base), "https://r.example:5000");
        assert_eq!(authority("http://[::1]:80/x"), "[::1]:80");
    }

    #[test]
    fn classifies_hosts() {
        use HostClass::*;
        for (h, c) in [
            ("169.254.169.254", LinkLocal),
            ("169.254.169.254:80", LinkLocal),
            ("[fe80::1]:5000", LinkLocal),
            ("0.0.0.0", LinkLocal),
            ("100.100.100.200", LinkLocal),
            ("[::ffff:169.254.169.254]", LinkLocal),
            ("127.0.0.1:5000", Private),
            ("localhost:5000", Private),
            ("10.1.2.3", Private),
            ("192.168.0.1:443", Private),
            ("[fd00::1]", Private),
            ("[::1]:5000", Private),
            ("registry-1.docker.io", Public),
            ("8.8.8.8", Public),
        ] {
            assert_eq!(classify(h), c, "{h}");
        }
    }

    #[test]
    fn refuses_downgrades_and_internal_targets() {
        let none = |_: &str| false;
        let from = "https://r.example/v2/a/blobs/sha256:ab";
        assert!(check("r.example", from, "https://cdn.example/x", none).is_ok());
        let e = check("r.example", from, "http://cdn.example/x", none).unwrap_err();
        assert!(e.to_string().contains("downgrade"), "{e}");
        assert!(check("r.example", from, "http://cdn.example/x", |h| h == "cdn.example").is_ok());
        let e = check("r.example", from, "https://169.254.169.254/latest", none).unwrap_err();
        assert!(e.to_string().contains("metadata"), "{e}");
        let e = check("r.example", from, "https://10.0.0.5/x", none).unwrap_err();
        assert!(e.to_string().contains("private"), "{e}");
        // a registry on loopback may redirect to another loopback port
        assert!(check("127.0.0.1:5000", "http://127.0.0.1:5000/v2/", "http://127.0.0.2:6000/x", none).is_ok());
        let e = check("127.0.0.1:5000", "http://127.0.0.1:5000/v2/", "http://169.254.169.254/", none).unwrap_err();
        assert!(e.hint().is_some());
    }
}
