//! A tiny in-process fake registry for unit tests: one thread on 127.0.0.1 (loopback only)
//! answering the distribution API's read side — `GET /v2/`, `GET`/`HEAD
//! /v2/<repo>/manifests/<tag|digest>` and `GET /v2/<repo>/blobs/<digest>` — from maps the test
//! fills, one request per connection (`Connection: close`). A TLS hello (the client tries HTTPS
//! first on loopback) is closed at once, so the client falls back to HTTP. Every request is
//! logged as `METHOD PATH`. The thread stops when the [`FakeRegistry`] is dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{MemBlobs, SynthIndex};
use crate::digest::Digest;
use crate::image::media;

/// What the fake serves. Tests may change it while the server runs.
#[derive(Default)]
pub(crate) struct Content {
    /// `tag or digest` → (bytes, media type).
    pub manifests: HashMap<String, (Vec<u8>, String)>,
    /// `sha256:…` → bytes, served whatever their digest is (to test verification).
    pub blobs: HashMap<String, Vec<u8>>,
    /// `tag or digest` → a `Docker-Content-Digest` to send instead of the true one.
    pub digest_header: HashMap<String, String>,
    /// Bearer auth: every `/v2/` request needs `Authorization: Bearer <token>`; `GET /token*`
    /// is the token service.
    pub auth: Option<BearerSim>,
}

/// A token service the test can move: `/v2/` and every refused request name `realm_path`;
/// `GET <realm_path>?…` hands out `token`; only `token` is accepted.
#[derive(Clone)]
pub(crate) struct BearerSim {
    pub realm_path: String,
    pub token: String,
}

impl Content {
    /// Serves every blob of `blobs` (manifests by digest as well, with their media type).
    pub fn add_blobs(&mut self, blobs: &MemBlobs) {
        for (d, b) in blobs.all() {
            let mt = crate::image::model::sniff_manifest_kind(&b, None);
            if let Some(mt) = mt.filter(|m| media::is_index(m) || media::is_manifest(m)) {
                self.manifests.insert(d.to_string(), (b.clone(), mt));
            }
            self.blobs.insert(d.to_string(), b);
        }
    }
    /// Serves `idx` under `tag`, with all its manifests and blobs.
    pub fn add_index(&mut self, tag: &str, idx: &SynthIndex) {
        self.add_blobs(&idx.blobs);
        self.manifests.insert(tag.to_string(), (idx.raw.clone(), idx.descriptor().media_type));
    }
}

pub(crate) struct FakeRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    pub repo: String,
    pub content: Arc<Mutex<Content>>,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRegistry {
    /// Serves `content` as repository `repo`.
    pub fn serve(repo: &str, content: Content) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind loopback");
        let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let content = Arc::new(Mutex::new(content));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, l, s, r, me) = (content.clone(), log.clone(), stop.clone(), repo.to_string(), host.clone());
        let thread = std::thread::spawn(move || {
            // bounded: a test never needs more than a few hundred requests
            for stream in listener.incoming().take(500) {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = handle(stream, &r, &c, &l, &me);
                }
            }
        });
        FakeRegistry { host, repo: repo.to_string(), content, log, stop, thread: Some(thread) }
    }

    /// `127.0.0.1:PORT/REPO:TAG`.
    pub fn reference(&self, tag: &str) -> crate::reference::Reference {
        crate::reference::Reference::parse(&format!("{}/{}:{tag}", self.host, self.repo)).expect("reference")
    }

    /// `METHOD PATH` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().expect("poisoned").clone()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host); // wakes the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(
    mut s: TcpStream,
    repo: &str,
    content: &Mutex<Content>,
    log: &Mutex<Vec<String>>,
    me: &str,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut first = [0u8; 1];
    if s.peek(&mut first)? == 0 || first[0] == 0x16 {
        return Ok(()); // closed, or a TLS ClientHello: drop it so the client falls back to HTTP
    }
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut authz = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authz = Some(v.trim().to_string());
        }
    }
    log.lock().expect("poisoned").push(format!("{method} {path}"));
    let c = content.lock().expect("poisoned");
    if let Some(a) = &c.auth {
        let reply = |s: &mut TcpStream, status: &str, extra: String, body: String| {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                body.len()
            );
            s.write_all(head.as_bytes())?;
            s.write_all(body.as_bytes())?;
            s.flush()?;
            s.shutdown(std::net::Shutdown::Write)
        };
        if path.starts_with(&a.realm_path) {
            return reply(&mut s, "200 OK", String::new(), format!(r#"{{"token":"{}"}}"#, a.token));
        }
        if !path.starts_with("/v2/") || authz.as_deref() != Some(&format!("Bearer {}", a.token)) {
            let challenge =
                format!("WWW-Authenticate: Bearer realm=\"http://{me}{}\",service=\"fake\"\r\n", a.realm_path);
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            return reply(&mut s, "401 Unauthorized", challenge, body.to_string());
        }
    }
    let not_found = |code: &str| {
        (
            404,
            "application/json".to_string(),
            format!(r#"{{"errors":[{{"code":"{code}","message":"unknown"}}]}}"#).into_bytes(),
            None,
        )
    };
    let prefix = format!("/v2/{repo}/");
    let (status, ctype, body, digest): (u16, String, Vec<u8>, Option<String>) = if path == "/v2/" {
        (200, "application/json".into(), b"{}".to_vec(), None)
    } else if let Some(rest) = path.strip_prefix(&prefix).and_then(|p| p.strip_prefix("manifests/")) {
        match c.manifests.get(rest) {
            Some((b, mt)) => {
                let d = c.digest_header.get(rest).cloned().unwrap_or_else(|| Digest::of(b).to_string());
                (200, mt.clone(), b.clone(), Some(d))
            }
            None => not_found("MANIFEST_UNKNOWN"),
        }
    } else if let Some(d) = path.strip_prefix(&prefix).and_then(|p| p.strip_prefix("blobs/")) {
        match c.blobs.get(d) {
            Some(b) => (200, "application/octet-stream".into(), b.clone(), Some(d.to_string())),
            None => not_found("BLOB_UNKNOWN"),
        }
    } else {
        not_found("NAME_UNKNOWN")
    };
    drop(c);
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(d) = digest {
        head.push_str(&format!("Docker-Content-Digest: {d}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    if method != "HEAD" {
        s.write_all(&body)?;
    }
    s.flush()?;
    s.shutdown(std::net::Shutdown::Write)
}
