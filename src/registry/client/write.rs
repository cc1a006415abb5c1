//! The write side of the distribution API (push): `POST`, `PUT` and `PATCH` with a body, and the
//! `GET` of an upload session, with the same host setup, credentials and token machinery as
//! reads. Differences from [`Client::request`]: the token scope is the caller's
//! (`repository:x:pull,push`, plus `repository:src:pull` for a cross-repository mount); the URL
//! may be an upload `Location` the registry handed out (checked by the redirect policy, and
//! `Authorization` only goes to the registry's own origin); statuses other than 401/403 come back
//! as responses for the caller to interpret; a streamed body is sent once (the caller resumes
//! the upload from the server's `Range` instead of replaying it), bodies in memory are retried
//! on 429/5xx and connection errors like reads.

use std::io::Read;
use std::sync::Mutex;

use ureq::http::Response;

use super::{Challenge, Client, Host};
use crate::error::{Error, Result};
use crate::http;
use crate::reference::Reference;

/// The body of a write request.
pub enum Payload<'a> {
    Empty,
    /// Bytes in memory: the request is retried on 429/5xx and connection errors.
    Bytes(&'a [u8]),
    /// `len` bytes from `reader`, sent once with `Content-Length: len`.
    Stream {
        reader: &'a mut (dyn Read + Send),
        len: u64,
    },
}

impl Payload<'_> {
    fn replayable(&self) -> bool {
        !matches!(self, Payload::Stream { .. })
    }
}

/// One write request: `method` (`HEAD`, `GET`, `POST`, `PUT` or `PATCH`) to the absolute `url`, with
/// `headers`, authorised for `scope`; `what` names it in errors.
pub struct WriteRequest<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(&'a str, String)],
    pub scope: &'a str,
    pub what: &'a str,
}

impl Client {
    /// `scheme://host/v2/<repository>/<path>` on `r`'s registry (pinging it the first time).
    pub fn endpoint(&self, r: &Reference, path: &str) -> Result<String> {
        let h = self.host(&r.registry, r.api_host(), &r.repository)?;
        Ok(format!("{}/v2/{}/{path}", h.base, r.repository))
    }

    /// The upload URL in the `Location` of `resp` (the answer to `url`), resolved and checked
    /// like a redirect: no step down to plain HTTP, no link-local or metadata target.
    pub fn upload_location(&self, r: &Reference, url: &str, resp: &Response<ureq::Body>) -> Result<String> {
        let loc = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("");
        let next = http::resolve(url, loc).ok_or_else(|| {
            Error::network(format!(
                "registry {} answered {} without a usable upload Location",
                r.registry,
                http::redact(url)
            ))
        })?;
        let insecure = |h: &str| self.is_insecure(h);
        http::Requester::Registry { registry: &r.registry, insecure: &insecure }.check(url, url, &next)?;
        Ok(next)
    }

    /// Sends a write request to `r`'s registry. Returns the response whatever its status, except
    /// 401/403 (an authentication error naming the user and where the credentials came from).
    pub fn write(&self, r: &Reference, req: &WriteRequest, body: Payload) -> Result<Response<ureq::Body>> {
        let h = self.host(&r.registry, r.api_host(), &r.repository)?;
        let same_origin = http::origin(req.url) == http::origin(&h.base);
        let replayable = body.replayable();
        let body = Mutex::new(body);
        let mut refreshed = false;
        loop {
            let authz = if same_origin { self.authorization(&h, req.scope, refreshed)? } else { None };
            let agent = if same_origin { self.agent(&h) } else { self.agent_for(req.url) };
            let send = || {
                let mut b = body.lock().expect("poisoned");
                send_one(agent, req, authz.as_deref(), &mut b)
            };
            let resp = self.send_with_retries(send, http::redact(req.url), replayable)?;
            let status = resp.status().as_u16();
            if status == 401
                && replayable
                && !refreshed
                && same_origin
                && matches!(h.challenge, Challenge::Bearer { .. })
            {
                // an expired token: fetch a fresh one once
                h.tokens.lock().expect("poisoned").remove(req.scope);
                refreshed = true;
                continue;
            }
            if status == 401 || status == 403 {
                let mut resp = resp;
                let detail = if req.method == "HEAD" { String::new() } else { super::error_detail(&mut resp) };
                return Err(push_denied(&h, r, req.what, status, &detail));
            }
            return Ok(resp);
        }
    }

    fn agent_for(&self, url: &str) -> &ureq::Agent {
        if self.is_insecure(http::authority(url)) { &self.unverified } else { &self.verified }
    }
}

/// One attempt of `req` with `body`.
fn send_one(
    agent: &ureq::Agent,
    req: &WriteRequest,
    authz: Option<&str>,
    body: &mut Payload,
) -> std::result::Result<Response<ureq::Body>, ureq::Error> {
    fn with<B>(
        mut b: ureq::RequestBuilder<B>,
        headers: &[(&str, String)],
        authz: Option<&str>,
    ) -> ureq::RequestBuilder<B> {
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        if let Some(a) = authz {
            b = b.header("Authorization", a);
        }
        b
    }
    let b = match req.method {
        "GET" => return with(agent.get(req.url), req.headers, authz).call(),
        "HEAD" => return with(agent.head(req.url), req.headers, authz).call(),
        "POST" => agent.post(req.url),
        "PUT" => agent.put(req.url),
        "PATCH" => agent.patch(req.url),
        other => unreachable!("write method {other}"),
    };
    let b = with(b, req.headers, authz);
    match body {
        Payload::Empty => b.send(&[][..]),
        Payload::Bytes(bytes) => b.send(*bytes),
        Payload::Stream { reader, len } => {
            let r: &mut dyn Read = &mut **reader;
            b.header("Content-Length", len.to_string()).send(ureq::SendBody::from_reader(r))
        }
    }
}

/// The error for a registry that refused a push with 401/403.
fn push_denied(h: &Host, r: &Reference, what: &str, status: u16, detail: &str) -> Error {
    let d = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
    match &h.cred {
        Some(c) => Error::auth(format!(
            "{what}: registry {} denied push access to {} for user {} from {} (HTTP {status}){d}",
            r.registry,
            r.repository,
            c.credential.username().unwrap_or("<token>"),
            c.source
        ))
        .with_hint("check the credentials and that this user may push to the repository"),
        None => Error::auth(format!(
            "{what}: registry {} requires authentication to push to {} (HTTP {status}){d}",
            r.registry, r.repository
        ))
        .with_hint(format!("pass --creds USER:PASS or run docker login {}", r.registry)),
    }
}
