//! The HTTP side of the distribution API: scheme choice (HTTPS, or HTTP only for loopback and
//! `--insecure-registry` hosts), the `/v2/` ping and its `WWW-Authenticate` challenge, Basic
//! and Bearer token auth (with refresh tokens), and bounded retries with backoff on 429, 5xx
//! and connection errors. Registry error bodies (`{"errors":[…]}`) are surfaced in messages;
//! credentials are never logged. Redirects are followed here, not by ureq, under spxpack's one
//! redirect policy ([`crate::http`]): `Authorization` only to its own origin, no https → http
//! step, no link-local targets, a hop cap.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use ureq::Agent;
use ureq::http::Response;

mod tls;
pub(crate) mod token;
mod write;

use super::auth::{self, CredentialOptions, Found};
use crate::error::{Error, Result};
use crate::host_env::HostEnv;
use crate::http;
use crate::reference::{Reference, is_loopback_host};
use token::{Challenge, parse_challenge};
pub use write::{Payload, WriteRequest};

/// Settings for talking to registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts (`host[:port]`) where plain HTTP and unverified TLS are allowed.
    pub insecure_registries: Vec<String>,
    /// Extra PEM CA certificates to trust.
    pub ca_certs: Vec<PathBuf>,
    /// Directories of `*.crt` CA files (skopeo's `--cert-dir`), searched flat and one level down
    /// (`<dir>/<host:port>/ca.crt`, the `certs.d` layout). `/etc/docker/certs.d`,
    /// `/etc/containers/certs.d` and `~/.config/containers/certs.d` are always searched.
    pub cert_dirs: Vec<PathBuf>,
    pub creds: CredentialOptions,
    /// Attempts per request beyond the first, on 429/5xx/connection errors.
    pub retries: u32,
    /// Base delay between retries.
    pub retry_delay: Duration,
    /// The longest delay between retries (`--retry-max-delay`), before jitter.
    pub retry_max_delay: Duration,
    /// Connect and read timeouts of every request (a stalled blob download resumes).
    pub timeouts: http::Timeouts,
    /// Pull images of these registries from mirrors (the first that applies).
    pub mirrors: Vec<super::Mirror>,
    /// The environment credentials and per-user CA directories are looked up in.
    pub env: HostEnv,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            ca_certs: Vec::new(),
            cert_dirs: Vec::new(),
            creds: CredentialOptions::default(),
            retries: 4,
            retry_delay: Duration::from_millis(300),
            retry_max_delay: Duration::from_secs(8),
            timeouts: http::Timeouts::default(),
            mirrors: Vec::new(),
            env: HostEnv::default(),
        }
    }
}

struct Host {
    name: String,
    base: String,
    unverified: bool,
    challenge: Challenge,
    cred: Option<Found>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

/// A registry client shared by every pull of a run.
pub struct Client {
    opts: ClientOptions,
    verified: Agent,
    unverified: Agent,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Self> {
        let certs = tls::trusted_certificates(&opts)?;
        let roots =
            if certs.is_empty() { ureq::tls::RootCerts::WebPki } else { ureq::tls::RootCerts::new_with_certs(&certs) };
        let build = |verify: bool| -> Agent {
            let tls = ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .root_certs(roots.clone())
                .disable_verification(!verify)
                .build();
            http::agent_with(opts.timeouts, |c| c.tls_config(tls).accept_encoding("identity"))
        };
        Ok(Client { verified: build(true), unverified: build(false), opts, hosts: Mutex::new(HashMap::new()) })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    fn is_insecure(&self, host: &str) -> bool {
        self.opts.insecure_registries.iter().any(|h| h == host)
    }

    fn agent(&self, h: &Host) -> &Agent {
        if h.unverified { &self.unverified } else { &self.verified }
    }

    /// Pings `host`, choosing the scheme and learning its auth challenge (once per run).
    fn host(&self, registry: &str, api_host: &str, repo: &str) -> Result<Arc<Host>> {
        if let Some(h) = self.hosts.lock().expect("poisoned").get(api_host) {
            return Ok(h.clone());
        }
        let insecure = self.is_insecure(registry) || self.is_insecure(api_host);
        let allow_http = insecure || is_loopback_host(api_host);
        let mut first_err: Option<Error> = None;
        let schemes: &[&str] = if allow_http { &["https", "http"] } else { &["https"] };
        for scheme in schemes {
            let base = format!("{scheme}://{api_host}");
            let agent = if insecure && *scheme == "https" { &self.unverified } else { &self.verified };
            let url = format!("{base}/v2/");
            let resp = self
                .send_with_retries(|| agent.get(&url).call(), &url, *scheme == schemes[schemes.len() - 1])
                .and_then(|r| self.follow(r, &url, api_host, false, &[], None, agent));
            match resp {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let challenge = match status {
                        200..=299 | 404 => Challenge::None,
                        401 => parse_challenge(
                            resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or(""),
                        ),
                        _ => {
                            first_err.get_or_insert(Error::network(format!(
                                "{url} answered HTTP {status}; it does not look like a registry"
                            )));
                            continue;
                        }
                    };
                    let cred = auth::lookup(&self.opts.creds, &self.opts.env, registry, repo)?;
                    if let Some(c) = &cred {
                        tracing::info!("using credentials for {registry} from {}", c.source);
                    }
                    let h = Arc::new(Host {
                        name: api_host.to_string(),
                        base,
                        unverified: insecure && *scheme == "https",
                        challenge,
                        cred,
                        tokens: Mutex::new(HashMap::new()),
                    });
                    self.hosts.lock().expect("poisoned").insert(api_host.to_string(), h.clone());
                    return Ok(h);
                }
                Err(e) => {
                    tracing::debug!("{url}: {e}");
                    // a server that takes the connection and then says nothing is the news
                    if first_err.is_none() || e.message().contains(TIMED_OUT) {
                        first_err = Some(e);
                    }
                }
            }
        }
        let e = first_err.unwrap_or_else(|| Error::network(format!("cannot reach registry {api_host}")));
        Err(e)
    }

    fn send_with_retries(
        &self,
        send: impl Fn() -> std::result::Result<Response<ureq::Body>, ureq::Error>,
        url: &str,
        retry: bool,
    ) -> Result<Response<ureq::Body>> {
        let mut attempt = 0;
        loop {
            match send() {
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    if retry && (s == 429 || s == 408 || (500..=599).contains(&s)) && attempt < self.opts.retries {
                        let wait = retry_after(&resp).unwrap_or(self.backoff(attempt));
                        tracing::warn!("{url}: HTTP {s}, retrying in {:.1}s", wait.as_secs_f32());
                        std::thread::sleep(wait);
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e) => {
                    if retry && is_transient(&e) && attempt < self.opts.retries {
                        let wait = self.backoff(attempt);
                        tracing::warn!("{url}: {e}, retrying in {:.1}s", wait.as_secs_f32());
                        std::thread::sleep(wait);
                        attempt += 1;
                        continue;
                    }
                    return Err(transport_error(url, &e));
                }
            }
        }
    }

    /// The wait before retry `attempt + 1`: exponential from `retry_delay`, capped at
    /// `retry_max_delay`, then "equal jitter" (a random point in its upper half), so that
    /// parallel downloads and CI jobs that failed together do not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        jitter(self.opts.retry_delay.saturating_mul(2u32.saturating_pow(attempt)).min(self.opts.retry_max_delay))
    }

    /// Sends `GET` (or `HEAD`) `/v2/<repo>/<path>` with auth and retries; returns any 2xx
    /// response, and turns 401/403/404/other statuses into errors naming `what`.
    pub fn request(
        &self,
        r: &Reference,
        path: &str,
        headers: &[(&str, String)],
        head: bool,
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        let (registry, repo) = (r.registry.as_str(), r.repository.as_str());
        let mut h = self.host(registry, r.api_host(), repo)?;
        let url = format!("{}/v2/{repo}/{path}", h.base);
        let scope = pull_scope(repo);
        let mut refreshed = false;
        loop {
            let authz = self.authorization(&h, &scope, refreshed)?;
            let agent = self.agent(&h);
            let send = || {
                let mut req = if head { agent.head(&url) } else { agent.get(&url) };
                for (k, v) in headers {
                    req = req.header(*k, v.as_str());
                }
                if let Some(a) = &authz {
                    req = req.header("Authorization", a.as_str());
                }
                req.call()
            };
            let resp = self.send_with_retries(send, &url, true)?;
            let mut resp = self.follow(resp, &url, &h.name, head, headers, authz.as_deref(), agent)?;
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(resp);
            }
            let detail = if head { String::new() } else { error_detail(&mut resp) };
            match status {
                401 if !refreshed && matches!(h.challenge, Challenge::Bearer { .. } | Challenge::None) => {
                    // token expired or scope changed; the registry may also only now ask for auth
                    h.tokens.lock().expect("poisoned").remove(&scope);
                    refreshed = true;
                    if let Some(realm) = moved_realm(&h.challenge, &resp) {
                        // NGC switches realms when a token expires: learn the new challenge
                        // from a fresh /v2/ ping instead of asking the old token service again
                        tracing::info!("registry {}: the token realm is now {realm}; pinging /v2/ again", h.name);
                        self.hosts.lock().expect("poisoned").remove(&h.name);
                        h = self.host(registry, r.api_host(), repo)?;
                        continue;
                    }
                    if matches!(h.challenge, Challenge::None) {
                        return Err(self.denied(&h, registry, repo, what, status, &detail));
                    }
                    continue;
                }
                401 | 403 => return Err(self.denied(&h, registry, repo, what, status, &detail)),
                404 => {
                    let msg = if detail.is_empty() { "not found".to_string() } else { detail };
                    return Err(Error::not_found(format!("{what}: {msg}")));
                }
                _ => {
                    let d = if detail.is_empty() { String::new() } else { format!(": {detail}") };
                    return Err(Error::network(format!("{what}: registry {} answered HTTP {status}{d}", h.name)));
                }
            }
        }
    }

    fn denied(&self, h: &Host, registry: &str, repo: &str, what: &str, status: u16, detail: &str) -> Error {
        let d = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
        match &h.cred {
            Some(c) => Error::auth(format!(
                "{what}: registry {registry} denied access to {repo} for user {} from {} (HTTP {status}){d}",
                c.credential.username().unwrap_or("<token>"),
                c.source
            ))
            .with_hint("check the credentials and that this user may pull the repository"),
            None => Error::auth(format!("{what}: registry {registry} requires authentication to pull {repo} (HTTP {status}){d}")).with_hint(
                format!("pass --creds USER:PASS, run docker login {registry}, or check the repository name (registries also answer 401 for names that do not exist)"),
            ),
        }
    }

    /// Follows the redirects of `resp`, the answer to `url` (a request to `registry`), under
    /// spxpack's redirect policy ([`http::Requester::follow`]). `authz` goes only to `url`'s own
    /// origin; the other headers (`Accept`, `Range`) to every hop.
    #[allow(clippy::too_many_arguments)]
    fn follow(
        &self,
        resp: Response<ureq::Body>,
        url: &str,
        registry: &str,
        head: bool,
        headers: &[(&str, String)],
        authz: Option<&str>,
        agent: &Agent,
    ) -> Result<Response<ureq::Body>> {
        let insecure = |h: &str| self.is_insecure(h);
        let requester = http::Requester::Registry { registry, insecure: &insecure };
        requester.follow(resp, url, |next, same| {
            let a = if same {
                agent
            } else if self.is_insecure(http::authority(next)) {
                &self.unverified
            } else {
                &self.verified
            };
            let send = || {
                let mut req = if head { a.head(next) } else { a.get(next) };
                for (k, v) in headers {
                    req = req.header(*k, v.as_str());
                }
                if same && let Some(z) = authz {
                    req = req.header("Authorization", z);
                }
                req.call()
            };
            self.send_with_retries(send, http::redact(next), true)
        })
    }
}

/// A random duration in `[d/2, d]`.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let half = d / 2;
    half + Duration::from_nanos(random % (half.as_nanos() as u64 + 1))
}

/// The realm of a `401` answer's Bearer challenge when it differs from the one the host was
/// pinged with (a token service that moved).
fn moved_realm(current: &Challenge, resp: &Response<ureq::Body>) -> Option<String> {
    let header = resp.headers().get("www-authenticate")?.to_str().ok()?;
    match (parse_challenge(header), current) {
        (Challenge::Bearer { realm: new, .. }, Challenge::Bearer { realm: old, .. }) if new != *old => Some(new),
        _ => None,
    }
}

/// The token scope of a pull from `repo`.
pub(crate) fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn retry_after(resp: &Response<ureq::Body>) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    let secs: u64 = v.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(30)))
}

fn is_transient(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_))
}

const TIMED_OUT: &str = "did not answer in time";

fn transport_error(url: &str, e: &ureq::Error) -> Error {
    if let Some(refused) = http::policy_error(e) {
        return refused;
    }
    let text = e.to_string();
    let lower = text.to_lowercase();
    let host = url.split('/').nth(2).unwrap_or(url);
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("invalid peer") {
        return Error::network(format!("TLS certificate of {host} is not trusted: {text}")).with_hint(format!(
            "pass --ca-cert FILE with the registry's CA, or --insecure-registry {host} to skip verification"
        ));
    }
    if matches!(e, ureq::Error::Timeout(_)) {
        return Error::network(format!("{host} {TIMED_OUT}: request to {url} failed: {text}")).with_hint(
            "the registry or the network is stalled; check them, or raise --connect-timeout/--read-timeout for a slow link",
        );
    }
    if matches!(e, ureq::Error::HostNotFound) {
        return Error::network(format!("cannot resolve registry host {host}"))
            .with_hint("check the image reference and your network/DNS");
    }
    if lower.contains("connection refused") {
        return Error::network(format!("cannot connect to {host}: connection refused"))
            .with_hint("is the registry running and the port right?");
    }
    Error::network(format!("request to {url} failed: {text}"))
}

/// Reads a registry error body and turns it into `CODE: message` text.
pub fn error_detail(resp: &mut Response<ureq::Body>) -> String {
    let Ok(body) = resp.body_mut().with_config().limit(64 << 10).read_to_vec() else {
        return String::new();
    };
    #[derive(Deserialize)]
    struct Errs {
        errors: Vec<ErrItem>,
    }
    #[derive(Deserialize)]
    struct ErrItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errs>(&body) {
        return e
            .errors
            .iter()
            .map(|x| if x.message.is_empty() { x.code.clone() } else { format!("{} {}", x.code, x.message) })
            .collect::<Vec<_>>()
            .join("; ");
    }
    #[derive(Deserialize)]
    struct Simple {
        #[serde(default)]
        error: String,
        #[serde(default)]
        details: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(s) = serde_json::from_slice::<Simple>(&body) {
        let parts: Vec<&str> =
            [s.error.as_str(), s.details.as_str(), s.message.as_str()].into_iter().filter(|x| !x.is_empty()).collect();
        if !parts.is_empty() {
            return parts.join(": ");
        }
    }
    let t = String::from_utf8_lossy(&body);
    t.lines().next().unwrap_or("").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_by_retry_max_delay_and_jittered() {
        let opts = ClientOptions { retry_max_delay: Duration::from_secs(2), ..Default::default() };
        let c = Client::new(opts).unwrap();
        for attempt in 0..40 {
            let full = (Duration::from_millis(300) * 2u32.saturating_pow(attempt)).min(Duration::from_secs(2));
            let w = c.backoff(attempt);
            assert!(w >= full / 2 && w <= full, "attempt {attempt}: {w:?} outside [{:?}, {full:?}]", full / 2);
        }
        let waits: std::collections::BTreeSet<Duration> = (0..20).map(|_| c.backoff(6)).collect();
        assert!(waits.len() > 1, "jitter: {waits:?}");
    }
}
