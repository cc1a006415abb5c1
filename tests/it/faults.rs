//! Fault injection with an in-process fake registry on loopback (the only fake server in the
//! suite: a real registry cannot misbehave on demand). Checks retries on 5xx/429, resuming a
//! broken blob download with `Range`, and giving up cleanly; redirects (hop cap, where
//! credentials go, link-local targets), hostile token realms and token responses, schema 1
//! manifests and foreign layers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::support::{Scratch, tar_member, unique, unique_layout};

#[derive(Clone, PartialEq, Eq, Debug)]
enum Fault {
    Status(u16),
    /// Send the headers and only half of the body, then close.
    HalfBody,
    /// Answer a Range request with a wrong Content-Range.
    WrongRange,
    /// Send half the body, then stall for a minute.
    Stall,
    /// Answer a Range request with `200` and the whole body.
    IgnoreRange,
    /// Read the request, then say nothing for a minute.
    Silent,
    /// Send the headers, then one byte of the body every 100 ms.
    Trickle,
    /// Send this HTTP response verbatim (`{port}` is replaced by the fake's port).
    Raw(String),
}

/// A request the fake saw.
#[derive(Clone, Debug)]
struct Req {
    path: String,
    range: Option<String>,
    authorization: Option<String>,
}

type Log = Arc<Mutex<Vec<Req>>>;
/// Path prefix → the faults its next requests get, in order.
type Plan = Arc<Mutex<Vec<(&'static str, Vec<Fault>)>>>;

struct Fake {
    port: u16,
    log: Log,
}

/// Serves `oci:LAYOUT:t` as `127.0.0.1:PORT/fake:t`; `plan` maps a path prefix to the faults
/// its first requests get (in order).
fn serve(layout: &Path, plan: Vec<(&'static str, Vec<Fault>)>) -> Fake {
    serve_on("127.0.0.1", layout, plan)
}

fn serve_on(addr: &str, layout: &Path, plan: Vec<(&'static str, Vec<Fault>)>) -> Fake {
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = idx["manifests"][0]["digest"].as_str().unwrap().to_string();
    let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        blobs.insert(format!("sha256:{}", e.file_name().to_string_lossy()), std::fs::read(e.path()).unwrap());
    }
    let listener = TcpListener::bind((addr, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let plan: Plan = Arc::new(Mutex::new(plan));
    let l2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(stream) = stream else { continue };
            let _ = handle(stream, port, &blobs, &manifest_digest, &plan, &l2);
        }
    });
    Fake { port, log }
}

fn handle(
    mut s: TcpStream,
    port: u16,
    blobs: &HashMap<String, Vec<u8>>,
    manifest_digest: &str,
    plan: &Plan,
    log: &Log,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            } else if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push(Req { path: path.clone(), range: range.clone(), authorization });
    let fault = {
        let mut p = plan.lock().unwrap();
        p.iter_mut().find(|(prefix, f)| path.starts_with(prefix) && !f.is_empty()).map(|(_, f)| f.remove(0))
    };
    if fault == Some(Fault::IgnoreRange) {
        range = None;
    }
    let (status, ctype, body): (u16, &str, Vec<u8>) = if path == "/v2/" {
        (200, "application/json", b"{}".to_vec())
    } else if let Some(d) = path.strip_prefix("/v2/fake/blobs/") {
        match blobs.get(d) {
            Some(b) => (200, "application/octet-stream", b.clone()),
            None => {
                (404, "application/json", br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#.to_vec())
            }
        }
    } else if let Some(reference) = path.strip_prefix("/v2/fake/manifests/") {
        let d = if reference == "t" { manifest_digest } else { reference };
        match blobs.get(d) {
            Some(b) => (200, "application/vnd.oci.image.manifest.v1+json", b.clone()),
            None => (
                404,
                "application/json",
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec(),
            ),
        }
    } else {
        (404, "text/plain", b"no".to_vec())
    };
    let digest_header = if path.contains("/manifests/") {
        format!("Docker-Content-Digest: {manifest_digest}\r\n")
    } else {
        String::new()
    };
    match fault {
        Some(Fault::Status(code)) => {
            let b = br#"{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}"#;
            write!(
                s,
                "HTTP/1.1 {code} Injected\r\nContent-Length: {}\r\nRetry-After: 0\r\nConnection: close\r\n\r\n",
                b.len()
            )?;
            s.write_all(b)?;
            return Ok(());
        }
        Some(Fault::HalfBody) => {
            write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            s.write_all(&body[..body.len() / 2])?;
            return Ok(());
        }
        // the slow answers go on in their own thread, so the fake serves the next request
        Some(Fault::Stall) => {
            write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            s.write_all(&body[..body.len() / 2])?;
            s.flush()?;
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_secs(60));
                drop(s);
            });
            return Ok(());
        }
        Some(Fault::Silent) => {
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_secs(60));
                drop(s);
            });
            return Ok(());
        }
        Some(Fault::Trickle) => {
            write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            std::thread::spawn(move || {
                for b in &body {
                    if s.write_all(&[*b]).and_then(|()| s.flush()).is_err() {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
            return Ok(());
        }
        Some(Fault::Raw(text)) => {
            s.write_all(text.replace("{port}", &port.to_string()).as_bytes())?;
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = [0u8; 1];
            let _ = s.read(&mut sink);
            return Ok(());
        }
        Some(Fault::WrongRange) => {
            write!(
                s,
                "HTTP/1.1 206 Partial\r\nContent-Range: bytes 1-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len() - 1,
                body.len(),
                body.len() - 1
            )?;
            s.write_all(&body[1..])?;
            return Ok(());
        }
        Some(Fault::IgnoreRange) | None => {}
    }
    if status == 200
        && let Some(start) = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
    {
        let part = &body[start..];
        write!(
            s,
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len() - 1,
            body.len(),
            part.len()
        )?;
        s.write_all(part)?;
        return Ok(());
    }
    let body = if method == "HEAD" { Vec::new() } else { body };
    write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\n{digest_header}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method == "HEAD" {
        return Ok(());
    }
    s.write_all(&body)?;
    let mut sink = [0u8; 1];
    let _ = s.read(&mut sink);
    Ok(())
}

#[test]
fn retries_server_errors_and_resumes_a_broken_download() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("faults").repeat(2000));
    let layer_hex = crate::support::layout_layer_hex(&layout);
    let fake = serve(
        &layout,
        vec![
            ("/v2/fake/manifests/", vec![Fault::Status(503), Fault::Status(500)]),
            ("/v2/fake/blobs/sha256:", vec![]),
            (
                Box::leak(format!("/v2/fake/blobs/sha256:{layer_hex}").into_boxed_str()),
                vec![Fault::Status(429), Fault::HalfBody],
            ),
        ],
    );
    let out = s.path("out.tar");
    let r = s.spx(&["pull", &format!("127.0.0.1:{}/fake:t", fake.port), "-o", out.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("retrying") || r.stderr.is_empty() || r.stderr.contains("resolved"), "{}", r.stderr);
    let stored = tar_member(&out, &format!("blobs/sha256/{layer_hex}"));
    assert_eq!(stored, std::fs::read(layout.join("blobs/sha256").join(&layer_hex)).unwrap());
    let log = fake.log.lock().unwrap().clone();
    let half = stored.len() / 2;
    assert!(
        log.iter().any(|q| q.path.contains(&layer_hex) && q.range.as_deref() == Some(&format!("bytes={half}-"))),
        "the broken download resumed with a Range request: {log:?}"
    );
}

#[test]
fn a_wrong_content_range_restarts_the_download() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("range").repeat(3000));
    let layer_hex = crate::support::layout_layer_hex(&layout);
    let fake = serve(
        &layout,
        vec![(
            Box::leak(format!("/v2/fake/blobs/sha256:{layer_hex}").into_boxed_str()),
            vec![Fault::HalfBody, Fault::WrongRange],
        )],
    );
    let out = s.path("out.tar");
    s.spx(&["pull", &format!("127.0.0.1:{}/fake:t", fake.port), "-o", out.to_str().unwrap()]).ok();
    let stored = tar_member(&out, &format!("blobs/sha256/{layer_hex}"));
    assert_eq!(stored, std::fs::read(layout.join("blobs/sha256").join(&layer_hex)).unwrap());
}

#[test]
fn persistent_failures_give_up_with_a_clear_error_and_no_output() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("down"));
    let layer_hex = crate::support::layout_layer_hex(&layout);
    let fake = serve(
        &layout,
        vec![(Box::leak(format!("/v2/fake/blobs/sha256:{layer_hex}").into_boxed_str()), vec![Fault::Status(502); 10])],
    );
    let r = s.spx(&[
        "pull",
        "--retries",
        "2",
        &format!("127.0.0.1:{}/fake:t", fake.port),
        "-o",
        s.path("out.tar").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let line = r.error_line();
    assert!(line.contains("HTTP 502") && line.contains(&layer_hex[..12]), "{line}");
    assert!(s.files().iter().all(|f| f == "layout"), "{:?}", s.files());
    let log = fake.log.lock().unwrap();
    assert_eq!(log.iter().filter(|q| q.path.contains(&layer_hex)).count(), 3, "one try plus two retries");
}

#[test]
fn interrupting_a_pull_leaves_no_partial_files() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("stall").repeat(5000));
    let layer_hex = crate::support::layout_layer_hex(&layout);
    let fake = serve(
        &layout,
        vec![(Box::leak(format!("/v2/fake/blobs/sha256:{layer_hex}").into_boxed_str()), vec![Fault::Stall])],
    );
    let out = s.path("out.tar");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_spxpack"))
        .args(["pull", &format!("127.0.0.1:{}/fake:t", fake.port), "-o", out.to_str().unwrap()])
        .env("SPXPACK_CACHE_DIR", s.cache())
        .env("HOME", s.path("home"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until the layer download is under way (its temp file exists), then Ctrl-C
    let tmp = s.cache().join("tmp");
    let started = std::time::Instant::now();
    loop {
        let stalled = fake.log.lock().unwrap().iter().any(|q| q.path.contains(&layer_hex));
        let has_temp = std::fs::read_dir(&tmp).map(|d| d.count() > 0).unwrap_or(false);
        if stalled && has_temp {
            break;
        }
        assert!(started.elapsed().as_secs() < 20, "the download never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let outp = child.wait_with_output().unwrap();
    assert_eq!(outp.status.code(), Some(130), "{}", String::from_utf8_lossy(&outp.stderr));
    assert!(String::from_utf8_lossy(&outp.stderr).contains("interrupted"));
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "the partial download was removed");
    assert!(s.files().iter().all(|f| f == "layout"), "no output: {:?}", s.files());
}

fn blob_path(hex: &str) -> &'static str {
    Box::leak(format!("/v2/fake/blobs/sha256:{hex}").into_boxed_str())
}

fn config_hex(layout: &Path) -> String {
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = idx["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(m)).unwrap()).unwrap();
    m["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string()
}

fn raw(status: &str, headers: &str, body: &str) -> Fault {
    Fault::Raw(format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

fn redirect_to(location: &str) -> Fault {
    raw("307 Temporary Redirect", &format!("Location: {location}\r\n"), "")
}

fn challenge(value: &str) -> Fault {
    raw("401 Unauthorized", &format!("WWW-Authenticate: {value}\r\n"), "")
}

fn pull_fake(s: &Scratch, fake: &Fake, extra: &[&str]) -> crate::support::Run {
    let image = format!("127.0.0.1:{}/fake:t", fake.port);
    let out = s.path("out.tar");
    let mut args = vec!["pull", image.as_str(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    s.spx(&args)
}

#[test]
fn redirects_carry_credentials_only_to_the_registry_itself() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("redirect"));
    let (layer, config) = (crate::support::layout_layer_hex(&layout), config_hex(&layout));
    // blob stores on the same host (another port) and on another loopback address
    let other_port = serve(&layout, vec![]);
    let other_host = serve_on("127.0.0.2", &layout, vec![]);
    let fake = serve(
        &layout,
        vec![
            ("/v2/", vec![challenge(r#"Basic realm="fake""#)]),
            (
                blob_path(&layer),
                vec![redirect_to(&format!("http://127.0.0.1:{}{}", other_port.port, blob_path(&layer)))],
            ),
            (
                blob_path(&config),
                vec![redirect_to(&format!("http://127.0.0.2:{}{}", other_host.port, blob_path(&config)))],
            ),
        ],
    );
    pull_fake(&s, &fake, &["--creds", "user:secret"]).ok();
    let stored = tar_member(&s.path("out.tar"), &format!("blobs/sha256/{layer}"));
    assert_eq!(stored, std::fs::read(layout.join("blobs/sha256").join(&layer)).unwrap());
    let log = fake.log.lock().unwrap().clone();
    assert!(
        log.iter()
            .filter(|q| q.path.contains("/blobs/"))
            .all(|q| q.authorization.as_deref().is_some_and(|a| a.starts_with("Basic "))),
        "the registry gets the credentials: {log:?}"
    );
    for other in [&other_port, &other_host] {
        let log = other.log.lock().unwrap().clone();
        assert!(log.iter().any(|q| q.path.contains("/blobs/")), "the redirect was followed: {log:?}");
        assert!(log.iter().all(|q| q.authorization.is_none()), "credentials leaked on a redirect: {log:?}");
    }
}

#[test]
fn redirect_loops_and_link_local_targets_are_refused() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("loop"));
    let layer = crate::support::layout_layer_hex(&layout);
    let fake = serve(&layout, vec![(blob_path(&layer), vec![redirect_to(blob_path(&layer)); 20])]);
    let r = pull_fake(&s, &fake, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.error_line().contains("more than 5 redirects"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: "), "{}", r.stderr);
    assert_eq!(fake.log.lock().unwrap().iter().filter(|q| q.path.contains(&layer)).count(), 6, "one request, 5 hops");
    assert!(s.files().iter().all(|f| f == "layout"), "no output: {:?}", s.files());

    let fake = serve(
        &layout,
        vec![(blob_path(&layer), vec![redirect_to("http://169.254.169.254/latest/meta-data/?X-Amz-Signature=s3cr3t")])],
    );
    let started = std::time::Instant::now();
    let r = pull_fake(&s, &fake, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let line = r.error_line();
    assert!(line.contains("http://169.254.169.254/latest/meta-data/") && line.contains("metadata"), "{line}");
    assert!(!r.stderr.contains("s3cr3t"), "query strings are not printed: {}", r.stderr);
    assert!(started.elapsed().as_secs() < 20, "refused without trying to connect");
    assert!(s.files().iter().all(|f| f == "layout"), "no output: {:?}", s.files());
}

#[test]
fn token_realms_on_metadata_addresses_or_plain_http_get_no_credentials() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("realm"));
    for (realm, needle) in
        [("https://169.254.169.254/token", "link-local"), ("http://registry.example/token", "plain HTTP")]
    {
        let fake =
            serve(&layout, vec![("/v2/", vec![challenge(&format!(r#"Bearer realm="{realm}",service="x""#)); 2])]);
        let started = std::time::Instant::now();
        let r = pull_fake(&s, &fake, &["--creds", "user:secret"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        let line = r.error_line();
        assert!(line.contains(realm) && line.contains(needle) && line.contains("refusing"), "{line}");
        assert!(r.stderr.contains("hint: "), "{}", r.stderr);
        assert!(started.elapsed().as_secs() < 20, "refused without trying to connect");
    }
}

#[test]
fn broken_token_responses_fail_cleanly() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("token"));
    let big = format!(r#"{{"token":"{}"}}"#, "a".repeat(2 << 20));
    for (answer, needle) in [
        (raw("200 OK", "Content-Type: text/html\r\n", "<html>login</html>"), "invalid token response"),
        (raw("200 OK", "", r#"{"expires_in":300}"#), "token response has no token"),
        (raw("200 OK", "", r#"{"token":""}"#), "token response has no token"),
        (raw("200 OK", "", &big), "cannot read token response"),
    ] {
        let fake = serve(
            &layout,
            vec![
                ("/v2/", vec![challenge(r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake""#)]),
                // the HEAD of the manifest asks first and its failure is ignored; the GET asks again
                ("/token", vec![answer; 2]),
            ],
        );
        let r = pull_fake(&s, &fake, &[]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        let line = r.error_line();
        assert!(line.contains(needle) && line.contains(&format!("127.0.0.1:{}", fake.port)), "{needle}: {line}");
        assert!(s.files().iter().all(|f| f == "layout"), "no output: {:?}", s.files());
    }
}

#[test]
fn a_full_body_answer_to_a_range_request_restarts_the_blob() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("norange").repeat(3000));
    let layer = crate::support::layout_layer_hex(&layout);
    let fake = serve(&layout, vec![(blob_path(&layer), vec![Fault::HalfBody, Fault::IgnoreRange])]);
    pull_fake(&s, &fake, &[]).ok();
    let stored = tar_member(&s.path("out.tar"), &format!("blobs/sha256/{layer}"));
    assert_eq!(stored, std::fs::read(layout.join("blobs/sha256").join(&layer)).unwrap());
    let log = fake.log.lock().unwrap().clone();
    assert!(log.iter().any(|q| q.path.contains(&layer) && q.range.is_some()), "a Range request was sent: {log:?}");
}

#[test]
fn schema1_manifests_and_foreign_layers_are_refused() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("schema1"));
    let s1 = r#"{"schemaVersion":1,"name":"fake","tag":"t","architecture":"arm64","fsLayers":[],"history":[]}"#;
    let ctype = "Content-Type: application/vnd.docker.distribution.manifest.v1+prettyjws\r\n";
    let fake = serve(&layout, vec![("/v2/fake/manifests/", vec![raw("200 OK", ctype, s1); 2])]);
    let r = pull_fake(&s, &fake, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.error_line().contains("schema 1"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: re-push"), "{}", r.stderr);

    // a foreign layer whose urls point at another server: nothing is fetched from there
    let elsewhere = serve(&layout, vec![]);
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mhex = idx["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(mhex)).unwrap()).unwrap();
    m["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into();
    m["layers"][0]["urls"] = serde_json::json!([format!("http://127.0.0.1:{}/layer", elsewhere.port)]);
    let body = serde_json::to_string(&m).unwrap();
    let ctype = "Content-Type: application/vnd.docker.distribution.manifest.v2+json\r\n";
    let fake = serve(&layout, vec![("/v2/fake/manifests/", vec![raw("200 OK", ctype, &body); 2])]);
    let r = pull_fake(&s, &fake, &["--creds", "user:secret"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("foreign layer"), "{}", r.stderr);
    assert!(elsewhere.log.lock().unwrap().is_empty(), "nothing is fetched from a foreign layer's urls");
    assert!(s.files().iter().all(|f| f == "layout"), "no output: {:?}", s.files());
}

/// `spxpack pull` of the fake's image with 1 s timeouts and one retry.
fn pull_with_short_timeouts(s: &Scratch, fake: &Fake, out: &Path) -> crate::support::bounded::Bounded {
    let args = [
        "pull",
        &format!("127.0.0.1:{}/fake:t", fake.port),
        "-o",
        out.to_str().unwrap(),
        "--connect-timeout",
        "1",
        "--read-timeout",
        "1",
        "--retries",
        "1",
    ];
    crate::support::bounded::run_bounded(
        crate::support::bounded::spx_command(s, &args),
        std::time::Duration::from_secs(30),
        256,
    )
}

#[test]
fn a_registry_that_never_answers_times_out() {
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("silent"));
    // silent to everything, the TLS handshake included
    let fake = serve(&layout, vec![("", vec![Fault::Silent; 8])]);
    let out = s.path("out.tar");
    let b = pull_with_short_timeouts(&s, &fake, &out);
    assert_eq!(b.run.code, 2, "{}", b.run.stderr);
    let (err, _hint) = crate::support::bounded::one_error_with_hint(&b.run);
    assert!(err.contains(&format!("127.0.0.1:{}", fake.port)) && err.to_lowercase().contains("timeout"), "{err}");
    assert!(!out.exists());
    // the manifest HEAD and then its GET each ping /v2/ once plus one retry (HTTPS, which
    // loopback tries first, fails before the fake logs a request)
    assert!(fake.log.lock().unwrap().len() <= 4, "{:?}", fake.log.lock().unwrap());
    assert!(b.elapsed < std::time::Duration::from_secs(20), "bounded by the timeouts: {:?}", b.elapsed);
}

#[test]
fn a_stalled_or_trickling_blob_download_resumes_with_range() {
    for fault in [Fault::Stall, Fault::Trickle] {
        let s = Scratch::new();
        let layout = unique_layout(s.dir.path(), &unique("trickle").repeat(3000));
        let layer_hex = crate::support::layout_layer_hex(&layout);
        let blob = Box::leak(format!("/v2/fake/blobs/sha256:{layer_hex}").into_boxed_str());
        let fake = serve(&layout, vec![(blob, vec![fault.clone()])]);
        let out = s.path("out.tar");
        let b = pull_with_short_timeouts(&s, &fake, &out);
        assert_eq!(b.run.code, 0, "{fault:?}: {}", b.run.stderr);
        assert!(b.run.stderr.contains("resuming"), "{fault:?}: {}", b.run.stderr);
        let stored = tar_member(&out, &format!("blobs/sha256/{layer_hex}"));
        assert_eq!(stored, std::fs::read(layout.join("blobs/sha256").join(&layer_hex)).unwrap());
        let log = fake.log.lock().unwrap().clone();
        assert!(
            log.iter().any(|q| q.path.contains(&layer_hex) && q.range.as_deref().is_some_and(|r| r != "bytes=0-")),
            "{fault:?}: the stalled download resumed with a Range request: {log:?}"
        );
    }
}
