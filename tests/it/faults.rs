//! Fault injection with an in-process fake registry on loopback (the only fake server in the
//! suite: a real registry cannot misbehave on demand). Checks retries on 5xx/429, resuming a
//! broken blob download with `Range`, and giving up cleanly.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::support::{Scratch, tar_member, unique, unique_layout};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    Status(u16),
    /// Send the headers and only half of the body, then close.
    HalfBody,
    /// Answer a Range request with a wrong Content-Range.
    WrongRange,
    /// Send half the body, then stall for a minute.
    Stall,
}

/// (method, path, Range header) of every request.
type Log = Arc<Mutex<Vec<(String, String, Option<String>)>>>;
/// Path prefix → the faults its next requests get, in order.
type Plan = Arc<Mutex<Vec<(&'static str, Vec<Fault>)>>>;

struct Fake {
    port: u16,
    log: Log,
}

/// Serves `oci:LAYOUT:t` as `127.0.0.1:PORT/fake:t`; `plan` maps a path prefix to the faults
/// its first requests get (in order).
fn serve(layout: &Path, plan: Vec<(&'static str, Vec<Fault>)>) -> Fake {
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = idx["manifests"][0]["digest"].as_str().unwrap().to_string();
    let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        blobs.insert(format!("sha256:{}", e.file_name().to_string_lossy()), std::fs::read(e.path()).unwrap());
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let plan: Plan = Arc::new(Mutex::new(plan));
    let l2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(stream) = stream else { continue };
            let _ = handle(stream, &blobs, &manifest_digest, &plan, &l2);
        }
    });
    Fake { port, log }
}

fn handle(
    mut s: TcpStream,
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
    let mut range = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().unwrap().push((method.clone(), path.clone(), range.clone()));
    let fault = {
        let mut p = plan.lock().unwrap();
        p.iter_mut().find(|(prefix, f)| path.starts_with(prefix) && !f.is_empty()).map(|(_, f)| f.remove(0))
    };
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
        Some(Fault::Stall) => {
            write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
            s.write_all(&body[..body.len() / 2])?;
            s.flush()?;
            std::thread::sleep(std::time::Duration::from_secs(60));
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
        None => {}
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
        log.iter().any(|(_, p, range)| p.contains(&layer_hex) && range.as_deref() == Some(&format!("bytes={half}-"))),
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
    assert_eq!(log.iter().filter(|(_, p, _)| p.contains(&layer_hex)).count(), 3, "one try plus two retries");
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
        let stalled = fake.log.lock().unwrap().iter().any(|(_, p, _)| p.contains(&layer_hex));
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
