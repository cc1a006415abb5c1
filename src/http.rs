//! The one redirect policy for every HTTP request spxpack makes: registry requests
//! ([`crate::registry::client`]) and Dockerfile `ADD <url>` downloads ([`crate::dockerfile::fetch`]).
//! ureq's own redirect handling is off in every agent (they all start from [`agent_config`]);
//! callers follow `Location` through [`Requester::follow`] so that it can refuse what a server
//! should never ask for: more than [`MAX_HOPS`] hops, a step down from `https` to `http`, and a
//! jump to a link-local or metadata address (or to a private one when the first host is
//! public). The caller decides which headers go to which hop; `Authorization` goes only to the
//! exact origin (scheme, host and port) it was meant for. Query strings (pre-signed tokens) are
//! never printed: messages use [`redact`].
//!
//! The redirect rules classify only literal IP addresses and `localhost` (a DNS name counts as
//! public); the resolver of every agent ([`agent`]) then refuses link-local and metadata
//! addresses whatever name led there.

use std::net::IpAddr;

use ureq::http::Response;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::error::{Error, Result};

mod timeouts;
pub use timeouts::{MIN_PROGRESS, StallGuard, Timeouts};

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("spxpack/", env!("CARGO_PKG_VERSION"));

/// A ureq agent with the default [`Timeouts`]; see [`agent_with`].
pub fn agent(customize: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> ureq::Agent {
    agent_with(Timeouts::default(), customize)
}

/// A ureq agent: every HTTP client in spxpack is made here. `timeouts` bound connecting and
/// every wait for the server (bodies are read through [`Timeouts::guard`] against a trickle);
/// `customize` adds TLS roots; then redirects are switched off in ureq (callers follow them
/// through [`Requester::follow`]), `Authorization` is never sent on a redirect, and statuses
/// come back as responses. Name resolution refuses link-local and metadata addresses before
/// connecting ([`refuse_link_local`]): a DNS name or a legacy numeric form
/// (`http://2852039166/`) cannot reach them either. Through an HTTP proxy only the proxy's own
/// address is resolved here.
pub fn agent_with(timeouts: Timeouts, customize: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> ureq::Agent {
    let base = timeouts.apply(ureq::Agent::config_builder().user_agent(USER_AGENT));
    let config = customize(base)
        .max_redirects(0)
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
        .http_status_as_error(false)
        .build();
    ureq::Agent::with_parts(config, DefaultConnector::new(), NoLinkLocal::default())
}

/// ureq's agent configuration builder.
pub type ConfigBuilder = ureq::config::ConfigBuilder<ureq::typestate::AgentScope>;

/// The system resolver, refusing link-local and metadata addresses.
#[derive(Debug, Default)]
struct NoLinkLocal(DefaultResolver);

impl Resolver for NoLinkLocal {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> std::result::Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.0.resolve(uri, config, timeout)?;
        let host = uri.host().unwrap_or("");
        refuse_link_local(host, addrs.iter().map(|a| a.ip())).map_err(|e| ureq::Error::Other(Box::new(e)))?;
        Ok(addrs)
    }
}

/// Refuses `host` when any of the addresses it resolved to is link-local or a metadata address.
pub fn refuse_link_local(host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Result<()> {
    for ip in addrs {
        let lit = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        if classify(&lit) == HostClass::LinkLocal {
            return Err(Error::network(format!(
                "{host} resolves to {ip}, a link-local or metadata address; refusing to connect"
            ))
            .with_hint("spxpack never connects to link-local or metadata addresses (cloud credentials live there); check the URL, the registry and DNS"));
        }
    }
    Ok(())
}

/// The spxpack error inside a ureq error, when the policy refused the connection.
pub fn policy_error(e: &ureq::Error) -> Option<Error> {
    let ureq::Error::Other(b) = e else { return None };
    let inner = b.downcast_ref::<Error>()?;
    let out = Error::new(inner.kind(), inner.message());
    Some(match inner.hint() {
        Some(h) => out.with_hint(h),
        None => out,
    })
}

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

/// Whether `url` starts with `scheme` (`https://`), in any case.
fn has_scheme(url: &str, scheme: &str) -> bool {
    url.get(..scheme.len()).is_some_and(|s| s.eq_ignore_ascii_case(scheme))
}

/// Resolves a `Location` header against the URL it answered.
pub fn resolve(base: &str, location: &str) -> Option<String> {
    let loc = location.trim();
    if loc.is_empty() || loc.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    // schemes are case-insensitive (`HTTP://` is plain HTTP to ureq); write them in lower case
    // so that the redirect policy's downgrade check sees them
    for scheme in ["https://", "http://"] {
        if has_scheme(loc, scheme) {
            return Some(format!("{scheme}{}", &loc[scheme.len()..]));
        }
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
        // an IPv6 zone (`fe80::1%25eth0`) does not change the class
        Some(v6) => v6.split([']', '%']).next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return HostClass::Private;
    }
    let ip = host.parse::<IpAddr>().ok().or_else(|| legacy_ipv4(host).map(IpAddr::V4));
    match ip {
        Some(IpAddr::V4(ip)) if ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast() => HostClass::LinkLocal,
        // 100.100.100.200: Alibaba Cloud's metadata service
        Some(IpAddr::V4(ip)) if ip.octets() == [100, 100, 100, 200] => HostClass::LinkLocal,
        Some(IpAddr::V4(ip)) if ip.is_loopback() || ip.is_private() => HostClass::Private,
        Some(IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => classify(&v4.to_string()),
            None if ip.is_unspecified() || (ip.segments()[0] & 0xffc0) == 0xfe80 => HostClass::LinkLocal,
            None if ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00 => HostClass::Private,
            None => HostClass::Public,
        },
        _ => HostClass::Public,
    }
}

/// The IPv4 address of a legacy numeric host (`2852039166`, `0xa9fea9fe`, `0251.0376.43518`):
/// `inet_aton`'s forms, which the system resolver accepts and [`IpAddr`]'s parser does not.
fn legacy_ipv4(host: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<u64> = host
        .split('.')
        .map(|p| {
            let (digits, radix) = match p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
                Some(h) => (h, 16),
                None if p.len() > 1 && p.starts_with('0') => (&p[1..], 8),
                None => (p, 10),
            };
            if digits.is_empty() {
                return None;
            }
            u64::from_str_radix(digits, radix).ok()
        })
        .collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|&p| p > 255) || *last >= 1u64 << (8 * (4 - head.len())) {
        return None;
    }
    let mut v = *last;
    for (i, p) in head.iter().enumerate() {
        v |= p << (8 * (3 - i));
    }
    Some(std::net::Ipv4Addr::from(u32::try_from(v).ok()?))
}

/// Why a target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `https` → `http`.
    Downgrade,
    /// A link-local or metadata address.
    LinkLocal,
    /// A private or loopback address, reached from a public host.
    Private,
}

impl Refusal {
    fn why(self) -> &'static str {
        match self {
            Refusal::Downgrade => "a downgrade from https to plain http",
            Refusal::LinkLocal => "a link-local or metadata address",
            Refusal::Private => "a private or loopback address",
        }
    }
}

/// The address rule for one redirect hop from `from` to `to` of a request first sent to
/// `first_host` (`host[:port]`); `trusted` says whether a target host may be reached over plain
/// HTTP or at a private address anyway (`--insecure-registry`).
pub fn judge(first_host: &str, from: &str, to: &str, trusted: impl Fn(&str) -> bool) -> Option<Refusal> {
    let target = authority(to);
    if has_scheme(from, "https://") && has_scheme(to, "http://") && !trusted(target) {
        return Some(Refusal::Downgrade);
    }
    match classify(target) {
        HostClass::LinkLocal => Some(Refusal::LinkLocal),
        HostClass::Private if classify(first_host) == HostClass::Public && !trusted(target) => Some(Refusal::Private),
        _ => None,
    }
}

/// Who sends a request: names it in messages and holds its exceptions to the rules.
pub enum Requester<'a> {
    /// A registry (`host[:port]`) and the `--insecure-registry` test.
    Registry { registry: &'a str, insecure: &'a dyn Fn(&str) -> bool },
    /// A download the user asked for, e.g. `Dockerfile:3:1: ADD`; `url` is what was asked for.
    Download { what: &'a str, url: &'a str },
}

impl Requester<'_> {
    fn first_host<'u>(&self, url: &'u str) -> &'u str {
        authority(url)
    }

    fn trusted(&self, host: &str) -> bool {
        match self {
            Requester::Registry { insecure, .. } => insecure(host),
            Requester::Download { .. } => false,
        }
    }

    /// The start of a message about the request to `url`.
    fn prefix(&self, url: &str) -> String {
        match self {
            Requester::Registry { registry, .. } => format!("registry {registry}"),
            Requester::Download { what, .. } => format!("{what} {}", redact(url)),
        }
    }

    fn refused(&self, first: &str, from: &str, to: &str, r: Refusal) -> Error {
        let target = authority(to);
        let msg = match self {
            Requester::Registry { registry, .. } => {
                format!(
                    "registry {registry} redirected {} to {}, {}; refusing to follow",
                    redact(from),
                    redact(to),
                    r.why()
                )
            }
            Requester::Download { .. } if from == first => {
                format!(
                    "{}: the server redirected to {}, {}; refusing to follow",
                    self.prefix(first),
                    redact(to),
                    r.why()
                )
            }
            Requester::Download { .. } => format!(
                "{}: {} redirected to {}, {}; refusing to follow",
                self.prefix(first),
                redact(from),
                redact(to),
                r.why()
            ),
        };
        let hint = match (self, r) {
            (Requester::Registry { .. }, Refusal::Downgrade) => {
                format!("add --insecure-registry {target} if this is intended")
            }
            (Requester::Registry { .. }, Refusal::LinkLocal) => {
                "a registry never needs that; check the registry or the proxy in front of it".to_string()
            }
            (Requester::Registry { .. }, Refusal::Private) => {
                format!("add --insecure-registry {target} if the registry really stores blobs there")
            }
            (Requester::Download { .. }, Refusal::Downgrade) => {
                "write the final http:// URL in the Dockerfile if a plain-HTTP download is intended".to_string()
            }
            (Requester::Download { .. }, Refusal::LinkLocal) => {
                "a download never needs that (cloud credentials live there); check the URL and the server".to_string()
            }
            (Requester::Download { .. }, Refusal::Private) => {
                "write the private URL in the Dockerfile itself if the file really lives there".to_string()
            }
        };
        Error::network(msg).with_hint(hint)
    }

    /// Checks one redirect hop of the request first sent to `first`.
    pub fn check(&self, first: &str, from: &str, to: &str) -> Result<()> {
        match judge(self.first_host(first), from, to, |h| self.trusted(h)) {
            Some(r) => Err(self.refused(first, from, to, r)),
            None => Ok(()),
        }
    }

    /// Checks the URL a download starts at, before any connection: link-local and metadata
    /// addresses are refused; loopback and private ones are allowed (the user wrote them).
    pub fn check_first(&self, url: &str) -> Result<()> {
        if classify(authority(url)) == HostClass::LinkLocal {
            return Err(Error::input(format!(
                "{}: {} is a link-local or metadata address; refusing to connect",
                self.prefix(url),
                authority(url)
            ))
            .with_hint("spxpack never downloads from link-local or metadata addresses (cloud credentials live there); fetch the file another way and COPY it"));
        }
        Ok(())
    }

    /// Follows the redirects of `resp`, the answer to `url`: each hop is checked before
    /// `send(next, same_origin)` sends it, where `same_origin` says whether `next` has `url`'s
    /// scheme, host and port (only then may the caller send credentials).
    pub fn follow<B>(
        &self,
        mut resp: Response<B>,
        url: &str,
        mut send: impl FnMut(&str, bool) -> Result<Response<B>>,
    ) -> Result<Response<B>> {
        let first_origin = origin(url).to_string();
        let mut cur = url.to_string();
        let mut hops = 0;
        while is_redirect(resp.status().as_u16()) {
            let location = resp.headers().get("location").and_then(|v| v.to_str().ok());
            let Some(next) = location.and_then(|l| resolve(&cur, l)) else {
                return Err(Error::network(format!(
                    "{} answered {} with HTTP {} and no usable Location",
                    self.prefix(url),
                    redact(&cur),
                    resp.status().as_u16()
                )));
            };
            hops += 1;
            if hops > MAX_HOPS {
                let (msg, hint) = match self {
                    Requester::Registry { .. } => (
                        format!("{}: more than {MAX_HOPS} redirects for {}", self.prefix(url), redact(url)),
                        "the registry or a proxy in front of it redirects in a loop; check its configuration",
                    ),
                    Requester::Download { .. } => (
                        format!("{}: more than {MAX_HOPS} redirects", self.prefix(url)),
                        "the server redirects in a loop; check the URL",
                    ),
                };
                return Err(Error::network(msg).with_hint(hint));
            }
            self.check(url, &cur, &next)?;
            tracing::debug!("{}: redirected to {}", redact(&cur), redact(&next));
            resp = send(&next, origin(&next) == first_origin)?;
            cur = next;
        }
        Ok(resp)
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

    /// Found by fuzzing (`http_headers`): `Location: HTTP://…` was followed as plain HTTP
    /// (schemes are case-insensitive) but passed the downgrade check, which looked for `http://`.
    #[test]
    fn an_upper_case_scheme_is_still_a_downgrade() {
        let from = "https://r.example/v2/a/blobs/sha256:ab";
        for loc in ["HTTP://cdn.example/x", "Http://cdn.example/x", "hTtP://cdn.example/x"] {
            let next = resolve(from, loc).unwrap();
            assert_eq!(next, "http://cdn.example/x");
            assert_eq!(judge("r.example", from, &next, |_| false), Some(Refusal::Downgrade), "{loc}");
            assert_eq!(judge("r.example", from, loc, |_| false), Some(Refusal::Downgrade), "{loc} unresolved");
        }
        assert_eq!(resolve(from, "HTTPS://cdn.example/x").unwrap(), "https://cdn.example/x");
        assert_eq!(
            judge("r.example", "HTTPS://r.example/", "http://cdn.example/x", |_| false),
            Some(Refusal::Downgrade)
        );
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
            ("[fe80::1%25eth0]", LinkLocal),
            ("2852039166", LinkLocal),
            ("0xa9fea9fe:80", LinkLocal),
            ("0251.0376.0251.0376", LinkLocal),
            ("169.254.43518", LinkLocal),
            ("2130706433", Private),
            ("1.2.3.4.5", Public),
            ("0x", Public),
            ("deadbeef", Public),
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
        let reg = |r: &'static str| Requester::Registry { registry: r, insecure: &none };
        let from = "https://r.example/v2/a/blobs/sha256:ab";
        assert!(reg("r.example").check(from, from, "https://cdn.example/x").is_ok());
        let e = reg("r.example").check(from, from, "http://cdn.example/x").unwrap_err();
        assert!(e.to_string().contains("downgrade"), "{e}");
        let trusted = |h: &str| h == "cdn.example";
        let r = Requester::Registry { registry: "r.example", insecure: &trusted };
        assert!(r.check(from, from, "http://cdn.example/x").is_ok());
        let e = reg("r.example").check(from, from, "https://169.254.169.254/latest").unwrap_err();
        assert!(e.to_string().contains("metadata"), "{e}");
        let e = reg("r.example").check(from, from, "https://10.0.0.5/x").unwrap_err();
        assert!(e.to_string().contains("private"), "{e}");
        // a registry on loopback may redirect to another loopback port
        let lo = "http://127.0.0.1:5000/v2/";
        assert!(reg("127.0.0.1:5000").check(lo, lo, "http://127.0.0.2:6000/x").is_ok());
        let e = reg("127.0.0.1:5000").check(lo, lo, "http://169.254.169.254/").unwrap_err();
        assert!(e.hint().is_some());
    }

    #[test]
    fn downloads_obey_the_same_redirect_policy() {
        let url = "https://files.example/a.tgz?sig=s3cr3t";
        let d = Requester::Download { what: "Dockerfile:2:1: ADD", url };
        for (to, why) in [
            ("http://files.example/a.tgz", Refusal::Downgrade),
            ("https://169.254.169.254/latest/meta-data/", Refusal::LinkLocal),
            ("https://[fe80::1]/x", Refusal::LinkLocal),
            ("https://10.0.0.5/x", Refusal::Private),
            ("https://127.0.0.1/x", Refusal::Private),
        ] {
            assert_eq!(judge(authority(url), url, to, |_| false), Some(why), "{to}");
            let e = d.check(url, url, to).unwrap_err();
            assert!(e.to_string().contains(why.why()) && e.hint().is_some(), "{e}");
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
        assert!(d.check(url, url, "https://cdn.example/a.tgz").is_ok());
        // a loopback download may move to another loopback port, never to link-local
        let lo = "http://127.0.0.1:8000/f";
        let d = Requester::Download { what: "Dockerfile:2:1: ADD", url: lo };
        assert!(d.check(lo, lo, "http://127.0.0.1:9000/g").is_ok());
        assert!(d.check(lo, lo, "http://169.254.169.254/latest/meta-data/").is_err());
    }

    #[test]
    fn download_urls_on_link_local_addresses_are_refused_before_connecting() {
        for url in ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1%25eth0]/x", "http://100.100.100.200/"]
        {
            let d = Requester::Download { what: "Dockerfile:2:1: ADD", url };
            let e = d.check_first(url).unwrap_err();
            assert!(e.to_string().contains("link-local") && e.hint().is_some(), "{e}");
        }
        for url in ["http://127.0.0.1:8000/f", "http://10.1.2.3/f", "http://localhost/f", "https://example.com/f"] {
            let d = Requester::Download { what: "Dockerfile:2:1: ADD", url };
            assert!(d.check_first(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn resolved_link_local_addresses_are_refused() {
        use std::net::ToSocketAddrs;
        // legacy numeric forms resolve (locally, no traffic) to the metadata address
        for host in ["2852039166", "0xa9fea9fe", "169.254.43518"] {
            let addrs: Vec<IpAddr> = (host, 80).to_socket_addrs().unwrap().map(|a| a.ip()).collect();
            let e = refuse_link_local(host, addrs).unwrap_err();
            assert!(e.to_string().contains("169.254.169.254") && e.hint().is_some(), "{e}");
        }
        let lo: Vec<IpAddr> = ("localhost", 80).to_socket_addrs().unwrap().map(|a| a.ip()).collect();
        assert!(refuse_link_local("localhost", lo).is_ok());
        assert!(refuse_link_local("x", ["fe80::1".parse().unwrap()]).is_err());
        let wrapped =
            ureq::Error::Other(Box::new(refuse_link_local("x", ["169.254.1.1".parse().unwrap()]).unwrap_err()));
        assert!(policy_error(&wrapped).is_some_and(|e| e.hint().is_some()));
    }

    /// Every ureq agent is made by [`agent`] (redirects off, link-local addresses refused), so
    /// no HTTP request can follow a redirect outside [`Requester::follow`].
    #[test]
    fn every_http_client_follows_redirects_through_the_policy() {
        let mut offenders = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") || p.ends_with("src/http.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                for needle in [
                    "Agent::config_builder",
                    "Agent::new_with",
                    "Agent::with_parts",
                    "ureq::Config::builder",
                    "config::Config::builder",
                    "ureq::get(",
                    "ureq::head(",
                    "ureq::post(",
                    "ureq::put(",
                    "ureq::agent(",
                ] {
                    if text.contains(needle) {
                        offenders.push(format!("{}: {needle}", p.display()));
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "make agents with http::agent(): {offenders:?}");
    }
}
