//! Registry authentication: `WWW-Authenticate` challenges (`Basic`, `Bearer realm=…`), the
//! `Authorization` value for a request, and bearer tokens from the token server (anonymous,
//! Basic credentials or an identity/refresh token; cached per repository until shortly before
//! they expire). Token realms on link-local addresses, or on plain HTTP for a remote registry,
//! get no credentials.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use super::{Client, Host, error_detail};
use crate::error::{Error, Result};
use crate::http;
use crate::reference::is_loopback_host;
use crate::registry::auth::Credential;

#[derive(Debug, Clone)]
pub(crate) enum Challenge {
    None,
    Basic,
    Bearer { realm: String, service: Option<String> },
}

impl Client {
    /// The `Authorization` header value for a request on `h` that needs `scope`: one or more
    /// token scopes separated by spaces (`repository:a:pull,push repository:b:pull`); bearer
    /// tokens are cached per scope.
    pub(super) fn authorization(&self, h: &Host, scope: &str, force: bool) -> Result<Option<String>> {
        match &h.challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(match h.cred.as_ref().map(|c| &c.credential) {
                Some(Credential::Basic { username, password }) => Some(basic(username, password)),
                Some(Credential::RegistryToken(t)) => Some(format!("Bearer {t}")),
                _ => None,
            }),
            Challenge::Bearer { realm, service } => {
                if let Some(Credential::RegistryToken(t)) = h.cred.as_ref().map(|c| &c.credential) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                if !force
                    && let Some((tok, exp)) = h.tokens.lock().expect("poisoned").get(scope)
                    && *exp > Instant::now()
                {
                    return Ok(Some(format!("Bearer {tok}")));
                }
                let (tok, ttl) = self.fetch_token(h, realm, service.as_deref(), scope)?;
                h.tokens.lock().expect("poisoned").insert(scope.to_string(), (tok.clone(), Instant::now() + ttl));
                Ok(Some(format!("Bearer {tok}")))
            }
        }
    }

    /// A bearer token for `scope`: the realm checked, the token requested, the answer read.
    fn fetch_token(&self, h: &Host, realm: &str, service: Option<&str>, scope: &str) -> Result<(String, Duration)> {
        self.check_realm(h, realm)?;
        let mut resp = self.request_token(h, realm, service, scope)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(token_refused(h, realm, status, &error_detail(&mut resp)));
        }
        read_token(h, resp)
    }

    /// Credentials go only to a token server on a routable address, and over plain HTTP only
    /// on loopback or an `--insecure-registry`.
    fn check_realm(&self, h: &Host, realm: &str) -> Result<()> {
        let realm_host = realm
            .strip_prefix("https://")
            .or_else(|| realm.strip_prefix("http://"))
            .map(|r| r.split(['/', '?']).next().unwrap_or(""))
            .unwrap_or("");
        if realm_host.is_empty() {
            return Err(Error::network(format!("registry {} sent an invalid token realm {realm:?}", h.name)));
        }
        if http::classify(realm_host) == http::HostClass::LinkLocal {
            return Err(Error::auth(format!(
                "registry {} wants tokens from {realm}, a link-local or metadata address; refusing to send credentials there",
                h.name
            ))
            .with_hint("a registry never needs that; check the registry or the proxy in front of it"));
        }
        if realm.starts_with("http://")
            && !is_loopback_host(realm_host)
            && !self.is_insecure(realm_host)
            && !self.is_insecure(&h.name)
        {
            return Err(Error::auth(format!(
                "registry {} wants tokens from {realm} over plain HTTP; refusing to send credentials",
                h.name
            ))
            .with_hint(format!("add --insecure-registry {realm_host} if this is intended")));
        }
        Ok(())
    }

    /// The token request: a refresh-token POST for an identity token, else a GET with Basic
    /// credentials (or none), following redirects under the registry's rules.
    fn request_token(
        &self,
        h: &Host,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        // one `scope` parameter per scope, as Docker sends them
        let mut query: Vec<(&str, &str)> = scope.split(' ').filter(|s| !s.is_empty()).map(|s| ("scope", s)).collect();
        if let Some(s) = service {
            query.push(("service", s));
        }
        let agent = self.agent(h);
        let cred = h.cred.as_ref().map(|c| &c.credential);
        if let Some(Credential::IdentityToken(refresh)) = cred {
            let mut form =
                vec![("grant_type", "refresh_token"), ("client_id", "spxpack"), ("refresh_token", refresh.as_str())];
            form.extend(query.iter().copied());
            return self.send_with_retries(|| agent.post(realm).send_form(form.iter().copied()), realm, true);
        }
        let url = format!("{realm}{}{}", if realm.contains('?') { "&" } else { "?" }, encode_query(&query));
        let authz = match cred {
            Some(Credential::Basic { username, password }) => Some(basic(username, password)),
            _ => None,
        };
        let send = || {
            let mut req = agent.get(&url);
            if let Some(a) = &authz {
                req = req.header("Authorization", a.as_str());
            }
            req.call()
        };
        let resp = self.send_with_retries(send, realm, true)?;
        self.follow(resp, &url, &h.name, false, &[], authz.as_deref(), agent)
    }
}

/// The error for a token server's refusal (`status` is not 2xx).
fn token_refused(h: &Host, realm: &str, status: u16, detail: &str) -> Error {
    let d = if detail.is_empty() { String::new() } else { format!(": {detail}") };
    match (status, &h.cred) {
        (401 | 403, Some(c)) => Error::auth(format!(
            "registry {}: the token server {realm} rejected the credentials of {} from {} (HTTP {status}){d}",
            h.name,
            c.credential.username().unwrap_or("<token>"),
            c.source
        ))
        .with_hint("check the user name and password"),
        (401 | 403, None) => Error::auth(format!(
            "registry {}: the token server {realm} refused anonymous access (HTTP {status}){d}",
            h.name
        ))
        .with_hint(format!("pass --creds USER:PASS or run docker login {}", h.name)),
        _ => Error::network(format!("registry {}: token server {realm} answered HTTP {status}{d}", h.name)),
    }
}

/// The token and how long to use it, from a token server's JSON answer (at most 1 MiB).
fn read_token(h: &Host, mut resp: ureq::http::Response<ureq::Body>) -> Result<(String, Duration)> {
    #[derive(Deserialize)]
    struct TokenResp {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .map_err(|e| Error::network(format!("registry {}: cannot read token response: {e}", h.name)))?;
    let t: TokenResp = serde_json::from_slice(&body)
        .map_err(|e| Error::network(format!("registry {}: invalid token response: {e}", h.name)))?;
    let tok = t
        .token
        .filter(|t| !t.is_empty())
        .or(t.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| Error::network(format!("registry {}: token response has no token", h.name)))?;
    // refresh a little early; tokens without expiry last 60 s per the spec
    let ttl = Duration::from_secs(t.expires_in.unwrap_or(60).max(10)).saturating_sub(Duration::from_secs(5));
    Ok((tok, ttl))
}

pub(super) fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

fn encode_query(q: &[(&str, &str)]) -> String {
    q.iter().map(|(k, v)| format!("{}={}", pct(k), pct(v))).collect::<Vec<_>>().join("&")
}

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `Bearer realm="…",service="…"` / `Basic realm="…"`.
pub(crate) fn parse_challenge(h: &str) -> Challenge {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => match params.get("realm") {
            Some(r) if !r.is_empty() => Challenge::Bearer { realm: r.clone(), service: params.get("service").cloned() },
            _ => Challenge::Basic,
        },
        "basic" => Challenge::Basic,
        _ => Challenge::None,
    }
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = s[ks..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                val.push(b[i] as char);
                i += 1;
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = s[vs..i].trim().to_string();
        }
        out.insert(key, val);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        match parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull""#,
        ) {
            Challenge::Bearer { realm, service } => {
                assert_eq!(realm, "https://auth.docker.io/token");
                assert_eq!(service.as_deref(), Some("registry.docker.io"));
            }
            c => panic!("{c:?}"),
        }
        match parse_challenge(r#"Bearer realm="https://nvcr.io/proxy_auth""#) {
            Challenge::Bearer { service, .. } => assert!(service.is_none()),
            c => panic!("{c:?}"),
        }
        assert!(matches!(parse_challenge(r#"Basic realm="test-realm""#), Challenge::Basic));
        assert_eq!(pct("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}
