//! ADD of an `http(s)://` URL: the file is downloaded into the staging directory (hashed on the
//! way) and added with mode 0600, like Docker does. Remote archives are not unpacked.
//!
//! Redirects follow spxpack's one policy for every HTTP request ([`crate::http`]): at most 5
//! hops, no https → http, never a link-local or metadata address, no private address reached
//! from a public host. The URL written in the Dockerfile obeys the address rule too, with one
//! decision: a link-local or metadata address (`169.254.169.254`, `fe80::/10`, …) is refused
//! before connecting, while loopback and private addresses the user wrote explicitly are
//! allowed, as `docker build` allows them (a file server on the build machine or the LAN).

use std::io::{Read, Write};
use std::sync::Arc;

use super::fsview::{Content, ContentSrc, Kind, Node};
use super::instructions::Loc;
use super::layer_reader::Staging;
use crate::digest::Hasher;
use crate::error::{Error, Result};
use crate::http;

pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The file name Docker gives a download: the last path segment of the URL.
pub fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once('/').map(|(_, p)| p).unwrap_or("");
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// Downloads `url`; returns the file name and the node to add.
/// `timeouts` bound connecting and waiting; a body that stalls fails the step.
pub fn download(url: &str, staging: &Staging, loc: &Loc, timeouts: http::Timeouts) -> Result<(String, Node)> {
    let name = file_name(url);
    let what = format!("{loc}: ADD");
    let requester = http::Requester::Download { what: &what, url };
    requester.check_first(url)?;
    let agent = http::agent_with(timeouts, |c| c);
    let shown = http::redact(url);
    let fail = |m: String| Error::network(format!("{loc}: ADD {shown}: {m}"));
    let call = |u: &str| agent.get(u).call().map_err(|e| http::policy_error(&e).unwrap_or_else(|| fail(e.to_string())));
    let first = call(url)?;
    // nothing but the URL is sent, so every hop may get the same request
    let mut resp = requester.follow(first, url, |next, _same_origin| call(next))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(Error::input(format!("{loc}: ADD {shown}: the server answered HTTP {status}"))
            .with_hint("check the URL; spxpack downloads it like docker build does"));
    }
    let path = staging.new_path(&name);
    let mut f = std::fs::File::create(&path).map_err(|e| Error::io("cannot create", &path, e))?;
    let mut body = timeouts.guard(resp.body_mut().with_config().limit(u64::MAX).reader());
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = body.read(&mut buf).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(|e| Error::io("cannot write", &path, e))?;
        size += n as u64;
    }
    let content = Content { id: h.finish().to_string(), src: ContentSrc::Local(Arc::new(path)) };
    Ok((name, Node { kind: Kind::File(content), mode: 0o600, uid: 0, gid: 0, mtime: 0, size }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::file_name("https://x.org/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(super::file_name("http://x.org/"), "__unnamed__");
        assert_eq!(super::file_name("http://x.org"), "__unnamed__");
    }
}
