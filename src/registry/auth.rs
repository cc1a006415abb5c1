//! Registry credentials, looked up in this order (the source is logged at `-v`):
//! 1. `--creds [REGISTRY=]USER:PASS` / `SPXPACK_CREDS`;
//! 2. `NGC_API_KEY` for `nvcr.io` (user `$oauthtoken`);
//! 3. `--authfile` / `$REGISTRY_AUTH_FILE`;
//! 4. `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (`credHelpers`, `auths`, `credsStore`);
//! 5. podman's `$XDG_RUNTIME_DIR/containers/auth.json` and `~/.config/containers/auth.json`;
//! 6. anonymous.
//!
//! Within a file, namespace keys (`registry/ns/repo`, podman style) win over the registry key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::host_env::HostEnv;
use crate::reference::DOCKER_HUB;

/// A credential for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`).
    IdentityToken(String),
    /// A bearer token sent as is.
    RegistryToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(***)"),
            Credential::RegistryToken(_) => write!(f, "RegistryToken(***)"),
        }
    }
}

impl Credential {
    pub fn username(&self) -> Option<&str> {
        match self {
            Credential::Basic { username, .. } => Some(username),
            _ => None,
        }
    }
}

/// A credential and where it came from.
#[derive(Debug, Clone)]
pub struct Found {
    pub credential: Credential,
    pub source: String,
}

/// Explicit credentials from flags or the environment.
#[derive(Debug, Clone, Default)]
pub struct CredentialOptions {
    /// `(registry or None for all, user, password)`.
    pub explicit: Vec<(Option<String>, String, String)>,
    pub authfile: Option<PathBuf>,
    /// Never send credentials.
    pub anonymous: bool,
}

impl CredentialOptions {
    /// Parses one `--creds` value: `USER:PASS` or `REGISTRY=USER:PASS`.
    pub fn add_creds(&mut self, spec: &str) -> Result<()> {
        let (reg, up) = match spec.split_once('=') {
            Some((r, rest)) if !r.contains(':') || r.contains('.') || r.starts_with("localhost") => {
                (Some(r.to_string()), rest)
            }
            _ => (None, spec),
        };
        let Some((u, p)) = up.split_once(':') else {
            return Err(Error::input("--creds must be USER:PASS or REGISTRY=USER:PASS")
                .with_hint("e.g. --creds testuser:secret"));
        };
        if u.is_empty() {
            return Err(Error::input("--creds has an empty user name"));
        }
        self.explicit.push((reg.map(|r| normalize_registry(&r)), u.to_string(), p.to_string()));
        Ok(())
    }
}

/// Finds credentials for `registry` (normalised, e.g. `docker.io`) and `repository`; `env` is
/// the environment the files and `NGC_API_KEY` are looked up in.
pub fn lookup(opts: &CredentialOptions, env: &HostEnv, registry: &str, repository: &str) -> Result<Option<Found>> {
    if opts.anonymous {
        return Ok(None);
    }
    let registry = normalize_registry(registry);
    // 1. flags / env, registry-specific first
    for want_specific in [true, false] {
        for (r, u, p) in &opts.explicit {
            let hit = match r {
                Some(r) => want_specific && *r == registry,
                None => !want_specific,
            };
            if hit {
                return Ok(Some(Found {
                    credential: Credential::Basic { username: u.clone(), password: p.clone() },
                    source: "--creds".into(),
                }));
            }
        }
    }
    // 2. NGC
    if registry == "nvcr.io"
        && let Some(key) = env.get("NGC_API_KEY")
    {
        return Ok(Some(Found {
            credential: Credential::Basic { username: "$oauthtoken".into(), password: key.to_string() },
            source: "$NGC_API_KEY".into(),
        }));
    }
    // 3-5. files
    for path in candidate_files(opts, env) {
        let text = match crate::input::read(&path, crate::input::MAX_TEXT) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("cannot read credentials file", &path, e)),
        };
        let cfg: ConfigFile = serde_json::from_slice(&text).map_err(|e| {
            Error::input(format!("invalid credentials file {}: {e}", path.display()))
                .with_hint("fix the JSON or point --authfile elsewhere")
        })?;
        if let Some(found) = cfg.lookup(&registry, repository, &path)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn candidate_files(opts: &CredentialOptions, host: &HostEnv) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let env = |k: &str| host.path(k);
    if let Some(p) = &opts.authfile {
        v.push(p.clone());
    } else if let Some(p) = env("REGISTRY_AUTH_FILE") {
        v.push(p);
    }
    let home = env("HOME");
    match env("DOCKER_CONFIG") {
        Some(d) => v.push(d.join("config.json")),
        None => {
            if let Some(h) = &home {
                v.push(h.join(".docker/config.json"));
            }
        }
    }
    if let Some(r) = env("XDG_RUNTIME_DIR") {
        v.push(r.join("containers/auth.json"));
    }
    match env("XDG_CONFIG_HOME") {
        Some(c) => v.push(c.join("containers/auth.json")),
        None => {
            if let Some(h) = &home {
                v.push(h.join(".config/containers/auth.json"));
            }
        }
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl ConfigFile {
    fn lookup(&self, registry: &str, repository: &str, path: &Path) -> Result<Option<Found>> {
        let src = path.display().to_string();
        if let Some(helper) = self.cred_helpers.iter().find(|(k, _)| normalize_registry(k) == registry).map(|(_, v)| v)
            && let Some(c) = run_helper(helper, registry)?
        {
            return Ok(Some(Found {
                credential: c,
                source: format!("docker-credential-{helper} (credHelpers in {src})"),
            }));
        }
        // most specific namespace key first: registry/a/b/c, registry/a/b, registry/a, registry
        let mut keys: Vec<String> = Vec::new();
        let comps: Vec<&str> = repository.split('/').collect();
        for n in (1..=comps.len()).rev() {
            keys.push(format!("{registry}/{}", comps[..n].join("/")));
        }
        keys.push(registry.to_string());
        for key in &keys {
            let entry = self.auths.iter().find(|(k, _)| {
                let nk = normalize_key(k);
                nk == *key
            });
            if let Some((k, e)) = entry
                && let Some(c) = e.credential(&src, k)?
            {
                return Ok(Some(Found { credential: c, source: format!("{src} (auths.{k})") }));
            }
        }
        if let Some(store) = &self.creds_store
            && !store.is_empty()
            && let Some(c) = run_helper(store, registry)?
        {
            return Ok(Some(Found {
                credential: c,
                source: format!("docker-credential-{store} (credsStore in {src})"),
            }));
        }
        Ok(None)
    }
}

impl AuthEntry {
    fn credential(&self, src: &str, key: &str) -> Result<Option<Credential>> {
        if let Some(t) = self.registrytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::RegistryToken(t.clone())));
        }
        if let Some(t) = self.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(t.clone())));
        }
        if let Some(a) = self.auth.as_ref().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|_| Error::input(format!("{src}: auths.{key}.auth is not valid base64")))?;
            let s =
                String::from_utf8(raw).map_err(|_| Error::input(format!("{src}: auths.{key}.auth is not UTF-8")))?;
            let Some((u, p)) = s.split_once(':') else {
                return Err(Error::input(format!("{src}: auths.{key}.auth must encode USER:PASS")));
            };
            return Ok(Some(Credential::Basic { username: u.to_string(), password: p.to_string() }));
        }
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            return Ok(Some(Credential::Basic { username: u.clone(), password: p.clone() }));
        }
        Ok(None)
    }
}

/// Runs `docker-credential-<helper> get` with the server URL on stdin.
fn run_helper(helper: &str, registry: &str) -> Result<Option<Credential>> {
    if helper.is_empty() || !helper.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return Err(Error::input(format!("invalid credential helper name {helper:?}")));
    }
    let server = if registry == DOCKER_HUB { "https://index.docker.io/v1/".to_string() } else { registry.to_string() };
    let prog = format!("docker-credential-{helper}");
    let mut child = match Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::auth(format!(
                "credential helper {prog} is configured for {registry} but is not installed"
            ))
            .with_hint(format!("install {prog}, or remove it from your docker config.json")));
        }
        Err(e) => return Err(Error::auth(format!("cannot run {prog}: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| Error::auth(format!("{prog} failed: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string() + String::from_utf8_lossy(&out.stderr).trim();
        if msg.to_lowercase().contains("not found") {
            return Ok(None);
        }
        return Err(Error::auth(format!(
            "{prog} get failed for {registry}: {}",
            msg.lines().next().unwrap_or("no output")
        ))
        .with_hint("check the helper's own login state"));
    }
    #[derive(Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let h: HelperOut =
        serde_json::from_slice(&out.stdout).map_err(|e| Error::auth(format!("{prog} printed invalid JSON: {e}")))?;
    if h.secret.is_empty() {
        return Ok(None);
    }
    if h.username == "<token>" {
        return Ok(Some(Credential::IdentityToken(h.secret)));
    }
    Ok(Some(Credential::Basic { username: h.username, password: h.secret }))
}

/// `https://index.docker.io/v1/` → `docker.io`; strips schemes, `/v1/`, `/v2/`.
pub fn normalize_registry(k: &str) -> String {
    let k = k.trim();
    let k = k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")).unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "docker.io" => DOCKER_HUB.to_string(),
        h => h.to_string(),
    }
}

/// An `auths` key in normalised form, keeping a podman namespace path.
fn normalize_key(k: &str) -> String {
    let k = k.trim();
    let rest = k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")).unwrap_or(k);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = normalize_registry(host);
    let path = path.trim_end_matches('/');
    if path.is_empty() || path == "v1" || path == "v2" { host } else { format!("{host}/{path}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_and_podman_style_entries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:pw1");
        std::fs::write(
            &p,
            format!(
                r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{b64}"}},
                "quay.io/team":{{"username":"bob","password":"pw2"}},
                "quay.io":{{"username":"carol","password":"pw3"}}
            }}}}"#
            ),
        )
        .unwrap();
        let opts = CredentialOptions { authfile: Some(p.clone()), ..Default::default() };
        let env = HostEnv::default();
        let lookup = |o: &CredentialOptions, r: &str, repo: &str| lookup(o, &env, r, repo);
        let f = lookup(&opts, "docker.io", "library/python").unwrap().unwrap();
        assert_eq!(f.credential, Credential::Basic { username: "alice".into(), password: "pw1".into() });
        let f = lookup(&opts, "quay.io", "team/app").unwrap().unwrap();
        assert_eq!(f.credential.username(), Some("bob"));
        let f = lookup(&opts, "quay.io", "other/app").unwrap().unwrap();
        assert_eq!(f.credential.username(), Some("carol"));
        assert!(lookup(&opts, "ghcr.io", "x/y").unwrap().is_none());
    }

    #[test]
    fn explicit_creds_win_and_can_be_scoped() {
        let env = HostEnv::default();
        let lookup = |o: &CredentialOptions, r: &str, repo: &str| lookup(o, &env, r, repo);
        let mut o = CredentialOptions::default();
        o.add_creds("u:p").unwrap();
        o.add_creds("127.0.0.1:5003=v:q").unwrap();
        assert_eq!(lookup(&o, "127.0.0.1:5003", "r").unwrap().unwrap().credential.username(), Some("v"));
        assert_eq!(lookup(&o, "docker.io", "r").unwrap().unwrap().credential.username(), Some("u"));
        assert!(o.add_creds("nopassword").is_err());
        let f = format!("{:?}", lookup(&o, "docker.io", "r").unwrap().unwrap().credential);
        assert!(!f.contains('p') || !f.contains(":p"), "secrets never in Debug: {f}");
    }
}
