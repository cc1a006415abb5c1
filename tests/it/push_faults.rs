//! `spxpack push` against an in-process fake registry that misbehaves on demand (a real registry
//! cannot): a connection broken in the middle of a chunk (the upload resumes from the server's
//! `Range`), 5xx answers to `PATCH` and `PUT` (retried), a mount answered with `202` (the blob is
//! uploaded into that session), `MANIFEST_INVALID` and `BLOB_UNKNOWN` (one error naming the
//! image, exit 1), and Ctrl-C in the middle of a push (exit 130).
//!
//! The fake keeps uploads, blobs and manifests per repository, checks `Content-Range` against
//! what a session holds (416 otherwise) and the digest of a finished upload, like distribution.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::support::{Scratch, sha256_hex, unique, unique_layout};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Fault {
    /// Answer normally.
    Pass,
    /// Answer with this status and registry error code, without doing anything.
    Error(u16, &'static str),
    /// Take half of the request body into the session, then drop the connection.
    Break,
    /// Answer a mount with `202` and a new session instead of mounting.
    NoMount,
    /// Hang (for Ctrl-C).
    Stall,
}

#[derive(Default)]
struct State {
    /// (repository, digest) → bytes.
    blobs: HashMap<(String, String), Vec<u8>>,
    /// (repository, tag or digest) → (bytes, content type).
    manifests: HashMap<(String, String), (Vec<u8>, String)>,
    uploads: HashMap<String, (String, Vec<u8>)>,
    next_upload: usize,
    /// `METHOD PATH [Content-Range]` of every request.
    log: Vec<String>,
    /// `METHOD PATH-prefix` → the faults of its next requests, in order.
    plan: Vec<(String, Vec<Fault>)>,
}

struct Fake {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Fake {
    /// A fake registry holding `layout`'s image (tag `t`) in repository `src`.
    fn serve(layout: &Path, plan: &[(&str, Vec<Fault>)]) -> Self {
        let mut st = State::default();
        for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            let d = format!("sha256:{}", e.file_name().to_string_lossy());
            st.blobs.insert(("src".into(), d), std::fs::read(e.path()).unwrap());
        }
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let md = idx["manifests"][0]["digest"].as_str().unwrap().to_string();
        let m = st.blobs[&("src".to_string(), md.clone())].clone();
        let mt = "application/vnd.oci.image.manifest.v1+json".to_string();
        st.manifests.insert(("src".into(), "t".into()), (m.clone(), mt.clone()));
        st.manifests.insert(("src".into(), md), (m, mt));
        st.plan = plan.iter().map(|(p, f)| (p.to_string(), f.clone())).collect();
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(st));
        let s2 = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(500) {
                let Ok(stream) = stream else { continue };
                let s3 = s2.clone();
                // one thread per connection: a stalled request must not block the others
                std::thread::spawn(move || {
                    let _ = handle(stream, &s3);
                });
            }
        });
        Fake { port, state }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    fn manifest(&self, repo: &str, tag: &str) -> Option<Vec<u8>> {
        self.state.lock().unwrap().manifests.get(&(repo.to_string(), tag.to_string())).map(|m| m.0.clone())
    }
}

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Request> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let query = q.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Ok(Request { method, path: path.to_string(), query, headers })
}

/// The response: status, headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

fn error(status: u16, code: &str) -> Answer {
    (status, vec![], format!(r#"{{"errors":[{{"code":"{code}","message":"injected {code}"}}]}}"#).into_bytes())
}

fn handle(s: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut first = [0u8; 1];
    if s.peek(&mut first)? == 0 || first[0] == 0x16 {
        return Ok(()); // a TLS ClientHello: drop it so the client falls back to HTTP
    }
    let mut r = BufReader::new(s.try_clone()?);
    let req = read_request(&mut r)?;
    let len: usize = req.headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let key = format!("{} {}", req.method, req.path);
    let fault = {
        let mut st = state.lock().unwrap();
        let range = req.headers.get("content-range").map(|r| format!(" [{r}]")).unwrap_or_default();
        let mount = if req.query.contains_key("mount") { " mount" } else { "" };
        st.log.push(format!("{key}{mount}{range}"));
        st.plan.iter_mut().find(|(p, f)| key.starts_with(p.as_str()) && !f.is_empty()).map(|(_, f)| f.remove(0))
    };
    let mut s = s;
    match fault {
        Some(Fault::Stall) => {
            std::thread::sleep(std::time::Duration::from_secs(60));
            return Ok(());
        }
        Some(Fault::Break) => {
            let mut half = vec![0u8; len / 2];
            r.read_exact(&mut half)?;
            let id = req.path.rsplit('/').next().unwrap_or("").to_string();
            if let Some(u) = state.lock().unwrap().uploads.get_mut(&id) {
                u.1.extend_from_slice(&half);
            }
            return s.shutdown(std::net::Shutdown::Both);
        }
        Some(Fault::Error(status, code)) => {
            let mut body = vec![0u8; len];
            r.read_exact(&mut body)?;
            return respond(&mut s, &req, error(status, code));
        }
        _ => {}
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let answer = answer(&req, body, fault == Some(Fault::NoMount), &mut state.lock().unwrap());
    respond(&mut s, &req, answer)
}

fn respond(s: &mut TcpStream, req: &Request, (status, headers, body): Answer) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        s.write_all(&body)?;
    }
    s.flush()
}

/// The registry's answer to a request that gets no fault.
fn answer(req: &Request, body: Vec<u8>, no_mount: bool, st: &mut State) -> Answer {
    if req.path == "/v2/" {
        return (200, vec![], b"{}".to_vec());
    }
    let Some(rest) = req.path.strip_prefix("/v2/") else { return error(404, "NAME_UNKNOWN") };
    let (repo, kind, arg) = match ["/blobs/uploads/", "/blobs/", "/manifests/"]
        .iter()
        .find_map(|k| rest.find(k).map(|i| (rest[..i].to_string(), *k, rest[i + k.len()..].to_string())))
    {
        Some(x) => x,
        None => return error(404, "NAME_UNKNOWN"),
    };
    let session = |id: &str, n: usize| {
        vec![
            ("Location".to_string(), format!("/v2/{repo}/blobs/uploads/{id}")),
            ("Range".to_string(), format!("0-{}", n.saturating_sub(1))),
        ]
    };
    match (req.method.as_str(), kind) {
        ("HEAD" | "GET", "/blobs/") => match st.blobs.get(&(repo.clone(), arg.clone())) {
            Some(b) => (200, vec![("Docker-Content-Digest".into(), arg)], b.clone()),
            None => error(404, "BLOB_UNKNOWN"),
        },
        ("HEAD" | "GET", "/manifests/") => match st.manifests.get(&(repo.clone(), arg.clone())) {
            Some((b, mt)) => (
                200,
                vec![
                    ("Content-Type".into(), mt.clone()),
                    ("Docker-Content-Digest".into(), format!("sha256:{}", sha256_hex(b))),
                ],
                b.clone(),
            ),
            None => error(404, "MANIFEST_UNKNOWN"),
        },
        ("POST", "/blobs/uploads/") => {
            if let (Some(d), Some(from)) = (req.query.get("mount"), req.query.get("from"))
                && !no_mount
                && let Some(b) = st.blobs.get(&(from.clone(), d.clone())).cloned()
            {
                st.blobs.insert((repo.clone(), d.clone()), b);
                return (201, vec![("Docker-Content-Digest".into(), d.clone())], vec![]);
            }
            st.next_upload += 1;
            let id = format!("u{}", st.next_upload);
            st.uploads.insert(id.clone(), (repo.clone(), Vec::new()));
            (202, session(&id, 0), vec![])
        }
        (method, "/blobs/uploads/") => {
            let Some((_, data)) = st.uploads.get_mut(&arg) else { return error(404, "BLOB_UPLOAD_UNKNOWN") };
            if method == "GET" {
                let n = data.len();
                return (204, session(&arg, n), vec![]);
            }
            if let Some(cr) = req.headers.get("content-range") {
                let start: usize = cr.split('-').next().unwrap_or("").parse().unwrap_or(usize::MAX);
                if start != data.len() {
                    return error(416, "BLOB_UPLOAD_INVALID");
                }
            }
            data.extend_from_slice(&body);
            if method == "PATCH" {
                let n = data.len();
                return (202, session(&arg, n), vec![]);
            }
            let want = req.query.get("digest").cloned().unwrap_or_default();
            let got = format!("sha256:{}", sha256_hex(data));
            if want != got {
                return error(400, "DIGEST_INVALID");
            }
            let (_, data) = st.uploads.remove(&arg).unwrap();
            st.blobs.insert((repo, got.clone()), data);
            (201, vec![("Docker-Content-Digest".into(), got)], vec![])
        }
        ("PUT", "/manifests/") => {
            let m: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let mut refs = vec![m["config"]["digest"].as_str().unwrap_or("").to_string()];
            refs.extend(
                m["layers"].as_array().into_iter().flatten().map(|l| l["digest"].as_str().unwrap_or("").to_string()),
            );
            if refs.iter().any(|d| !st.blobs.contains_key(&(repo.clone(), d.clone()))) {
                return error(400, "MANIFEST_BLOB_UNKNOWN");
            }
            let d = format!("sha256:{}", sha256_hex(&body));
            let mt = req.headers.get("content-type").cloned().unwrap_or_default();
            st.manifests.insert((repo.clone(), arg), (body.clone(), mt.clone()));
            st.manifests.insert((repo, d.clone()), (body, mt));
            (201, vec![("Docker-Content-Digest".into(), d)], vec![])
        }
        _ => error(405, "UNSUPPORTED"),
    }
}

/// A layout whose one layer is about 150 kB of incompressible bytes.
fn big_layout(s: &Scratch, name: &str) -> std::path::PathBuf {
    let mut text = String::new();
    let mut x = unique(name);
    while text.len() < 300_000 {
        x = sha256_hex(x.as_bytes());
        text.push_str(&x);
    }
    unique_layout(s.dir.path(), &text)
}

fn manifest_digest(layout: &Path) -> String {
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    idx["manifests"][0]["digest"].as_str().unwrap().to_string()
}

const SMALL_CHUNKS: [&str; 4] = ["--monolithic-max", "1k", "--chunk-size", "40k"];

fn push(s: &Scratch, src: &str, dest: &str, extra: &[&str]) -> crate::support::Run {
    let mut args = vec!["push", "--json", "--retries", "3", src, dest];
    args.extend_from_slice(extra);
    s.spx(&args)
}

#[test]
fn a_connection_broken_mid_chunk_resumes_from_the_servers_range() {
    let s = Scratch::new();
    let layout = big_layout(&s, "break");
    let fake = Fake::serve(&layout, &[("PATCH /v2/dst/blobs/uploads/", vec![Fault::Pass, Fault::Break])]);
    let src = format!("oci:{}:t", layout.display());
    let r = push(&s, &src, &format!("{}/dst:t", fake.host()), &SMALL_CHUNKS).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["digest"], manifest_digest(&layout));
    assert_eq!(fake.manifest("dst", "t").unwrap(), fake.manifest("src", "t").unwrap());
    let log = fake.log();
    // the second chunk (40960..81919) broke after half of it: the client asked where the upload
    // stood and went on from the server's Range, not from a chunk boundary
    let i = log.iter().position(|l| l.starts_with("GET /v2/dst/blobs/uploads/")).expect("a status request");
    assert!(log[i + 1].contains("[61440-"), "resumed from the server's Range: {log:#?}");
}

#[test]
fn server_errors_on_patch_and_put_are_retried() {
    let s = Scratch::new();
    let layout = big_layout(&s, "5xx");
    let fake = Fake::serve(
        &layout,
        &[
            ("PATCH /v2/dst/blobs/uploads/", vec![Fault::Error(500, "UNKNOWN")]),
            ("PUT /v2/dst/blobs/uploads/", vec![Fault::Error(503, "UNAVAILABLE"), Fault::Error(502, "UNKNOWN")]),
            ("PUT /v2/dst/manifests/", vec![Fault::Error(503, "UNAVAILABLE")]),
        ],
    );
    let r = push(&s, &format!("oci:{}:t", layout.display()), &format!("{}/dst:t", fake.host()), &SMALL_CHUNKS).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["digest"], manifest_digest(&layout));
    assert_eq!(v["blobs"]["uploaded"], 2);
    let puts = fake.log().iter().filter(|l| l.starts_with("PUT /v2/dst/manifests/t")).count();
    assert_eq!(puts, 2, "the manifest PUT was retried after its 503");
}

#[test]
fn a_mount_answered_with_202_falls_back_to_an_upload() {
    let s = Scratch::new();
    let layout = big_layout(&s, "mount");
    let fake = Fake::serve(&layout, &[("POST /v2/dst/blobs/uploads/", vec![Fault::NoMount, Fault::NoMount])]);
    // registry → registry in the same registry: the blobs are mounted from src …
    let r = push(&s, &format!("{}/src:t", fake.host()), &format!("{}/other:t", fake.host()), &[]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["blobs"]["mounted"].as_u64(), v["blobs"]["uploaded"].as_u64()), (Some(2), Some(0)), "{v}");
    // … unless the registry answers the mount with 202: then they go up into that session
    let r = push(&s, &format!("{}/src:t", fake.host()), &format!("{}/dst:t", fake.host()), &[]).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((v["blobs"]["mounted"].as_u64(), v["blobs"]["uploaded"].as_u64()), (Some(0), Some(2)), "{v}");
    assert_eq!(v["digest"], manifest_digest(&layout));
    let log = fake.log();
    let mounts = log.iter().filter(|l| l.starts_with("POST /v2/dst/blobs/uploads/ mount")).count();
    let plain_posts = log.iter().filter(|l| *l == "POST /v2/dst/blobs/uploads/").count();
    assert_eq!((mounts, plain_posts), (2, 0), "the 202 sessions were used, no new ones: {log:#?}");
}

#[test]
fn rejected_manifests_are_one_error_naming_the_image() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("reject"));
    let fake = Fake::serve(
        &layout,
        &[("PUT /v2/dst/manifests/", vec![Fault::Error(400, "MANIFEST_INVALID"), Fault::Error(400, "BLOB_UNKNOWN")])],
    );
    let src = format!("oci:{}:t", layout.display());
    for code in ["MANIFEST_INVALID", "BLOB_UNKNOWN"] {
        let r = push(&s, &src, &format!("{}/dst:t", fake.host()), &[]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        let line = r.error_line();
        assert!(line.contains(code) && line.contains(&src) && line.contains("/dst:t"), "{line}");
        assert_eq!(crate::support::error_chains(&r.stderr).len(), 1, "{}", r.stderr);
    }
    assert!(fake.manifest("dst", "t").is_none());
}

#[test]
fn ctrl_c_in_the_middle_of_a_push_exits_130() {
    let s = Scratch::new();
    let layout = big_layout(&s, "sigint");
    let fake = Fake::serve(&layout, &[("PATCH /v2/dst/blobs/uploads/", vec![Fault::Stall])]);
    let home = s.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spxpack"))
        .args(["push", &format!("oci:{}:t", layout.display()), &format!("{}/dst:t", fake.host())])
        .args(SMALL_CHUNKS)
        .env("SPXPACK_CACHE_DIR", s.cache())
        .env("HOME", &home)
        .env("DOCKER_CONFIG", &home)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !fake.log().iter().any(|l| l.starts_with("PATCH")) {
        assert!(std::time::Instant::now() < deadline, "no PATCH arrived: {:?}", fake.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    crate::support::run("kill", &["-INT", &child.id().to_string()], &[]).ok();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(fake.manifest("dst", "t").is_none());
}

#[test]
fn a_corrupt_source_layer_fails_before_the_blob_is_completed() {
    let s = Scratch::new();
    let layout = big_layout(&s, "corrupt");
    let layer = layout.join("blobs/sha256").join(crate::support::layout_layer_hex(&layout));
    let mut bytes = std::fs::read(&layer).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let fake = Fake::serve(&layout, &[]);
    for extra in [&SMALL_CHUNKS[..], &[]] {
        let r = push(&s, &format!("oci:{}:t", layout.display()), &format!("{}/dst:t", fake.host()), extra);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.error_line().contains("digest mismatch"), "{}", r.stderr);
    }
    let hex = crate::support::layout_layer_hex(&layout);
    let stored = fake.state.lock().unwrap().blobs.keys().any(|(r, d)| r == "dst" && d.ends_with(&hex));
    assert!(!stored, "the corrupt layer was never completed");
    assert!(fake.manifest("dst", "t").is_none());
}
