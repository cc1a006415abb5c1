//! One redirect policy for every HTTP request: a Dockerfile `ADD <url>` download follows the
//! same rules as registry requests (`faults::redirect_loops_and_link_local_targets_are_refused`):
//! at most 5 hops, never to a link-local or metadata address, and the URL in the Dockerfile
//! itself may not be one either (loopback is allowed, as `docker build` allows it).
//!
//! Nothing here may send traffic beyond loopback, even when the policy is broken: the fake
//! server on 127.0.0.1 is also the HTTP proxy of the spxpack under test (`ALL_PROXY`), so a
//! request spxpack wrongly sends towards 169.254.169.254 arrives here, is logged and answered
//! 502, and never leaves the machine.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::Scratch;
use crate::support::bounded::{one_error_with_hint, run_bounded, spx_command};

/// The request targets the fake saw, as sent (`CONNECT host:port` for a proxy tunnel, absolute
/// form for a plain proxy request).
type Log = Arc<Mutex<Vec<String>>>;

/// Serves on 127.0.0.1 as origin and as proxy: `/file` is a small file, `/hop` redirects to
/// `/file`, `/loop` to itself, `/metadata` to `http://169.254.169.254/latest/meta-data/` (with
/// a secret in the query string). Anything for another host gets 502.
fn serve() -> (u16, Log) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let Some(mut line) = read_head(&mut r) else { continue };
            // a proxy client tunnels even plain http with CONNECT: only to ourselves
            if let Some(rest) = line.strip_prefix("CONNECT ") {
                let authority = rest.split_whitespace().next().unwrap_or("").to_string();
                log2.lock().unwrap().push(format!("CONNECT {authority}"));
                if authority != format!("127.0.0.1:{port}") {
                    let _ =
                        c.write_all(b"HTTP/1.1 502 Not Forwarded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let _ = c.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n");
                let Some(tunnelled) = read_head(&mut r) else { continue };
                line = tunnelled;
            }
            let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            log2.lock().unwrap().push(target.clone());
            let own = format!("http://127.0.0.1:{port}");
            let path = match target.strip_prefix(&own) {
                Some(p) => p.to_string(),
                None if target.starts_with('/') => target.clone(),
                None => {
                    let _ =
                        c.write_all(b"HTTP/1.1 502 Not Forwarded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
            };
            let reply = match path.as_str() {
                "/file" => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_string(),
                "/hop" => format!("HTTP/1.1 302 Found\r\nLocation: {own}/file\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                "/loop" => "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                "/metadata" => "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/?X-Amz-Signature=s3cr3t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            };
            let _ = c.write_all(reply.as_bytes());
        }
    });
    (port, log)
}

/// Reads a request line and its headers; returns the request line.
fn read_head(r: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
    }
    Some(line)
}

/// `spxpack image build` of `FROM scratch` + `ADD url /got` through the fake as proxy.
fn build_add(s: &Scratch, port: u16, url: &str) -> crate::support::Run {
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM scratch\nADD {url} /got\n")).unwrap();
    let out = s.path("out.tar");
    let df = ctx.join("Dockerfile");
    let mut cmd = spx_command(
        s,
        &["image", "build", "-f", df.to_str().unwrap(), "--platform", "linux/arm64", "-o", out.to_str().unwrap()],
    );
    cmd.arg(&ctx);
    let proxy = format!("http://127.0.0.1:{port}");
    cmd.env("ALL_PROXY", &proxy).env("all_proxy", &proxy);
    run_bounded(cmd, Duration::from_secs(60), 1024).run
}

fn no_output(s: &Scratch) {
    let left: Vec<String> = s.files().into_iter().filter(|f| f != "ctx").collect();
    assert!(left.is_empty(), "no output left behind: {left:?}");
}

fn metadata_requests(log: &Log) -> Vec<String> {
    log.lock().unwrap().iter().filter(|t| t.contains("169.254.")).cloned().collect()
}

#[test]
fn add_url_redirects_obey_the_registry_redirect_policy() {
    let (port, log) = serve();

    // a loopback file server, one hop to another loopback URL: allowed, and sent through the
    // fake as proxy (so a wrong request below could not leave the machine)
    let s = Scratch::new();
    let r = build_add(&s, port, &format!("http://127.0.0.1:{port}/hop"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(s.path("out.tar").is_file());
    assert!(
        log.lock().unwrap().iter().any(|t| t == &format!("CONNECT 127.0.0.1:{port}")),
        "spxpack used the fake as its proxy: {:?}",
        log.lock().unwrap()
    );

    // a redirect to the metadata address: refused before connecting
    let s = Scratch::new();
    let r = build_add(&s, port, &format!("http://127.0.0.1:{port}/metadata"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let (line, _hint) = one_error_with_hint(&r);
    assert!(line.contains("Dockerfile:2") && line.contains("ADD"), "{line}");
    assert!(line.contains("http://169.254.169.254/latest/meta-data/") && line.contains("metadata"), "{line}");
    assert!(!r.stderr.contains("s3cr3t"), "query strings are not printed: {}", r.stderr);
    assert_eq!(metadata_requests(&log), Vec::<String>::new(), "no request towards 169.254.169.254");
    no_output(&s);

    // a redirect loop: the registry's 5-hop cap
    let s = Scratch::new();
    let r = build_add(&s, port, &format!("http://127.0.0.1:{port}/loop"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let (line, _) = one_error_with_hint(&r);
    assert!(line.contains("more than 5 redirects"), "{line}");
    let loops = log.lock().unwrap().iter().filter(|t| t.ends_with("/loop")).count();
    assert_eq!(loops, 6, "one request and 5 hops");
    no_output(&s);
}

#[test]
fn add_url_on_a_link_local_address_is_refused_before_connecting() {
    let (port, log) = serve();
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x",
        // legacy numeric spelling of 169.254.169.254: caught when the name is resolved
        "http://2852039166/latest/meta-data/",
    ] {
        let s = Scratch::new();
        let r = build_add(&s, port, url);
        assert_ne!(r.code, 0, "{url}: {}", r.stderr);
        let (line, _) = one_error_with_hint(&r);
        assert!(line.contains("link-local or metadata address"), "{url}: {line}");
        assert!(line.contains("Dockerfile:2") || line.contains("2852039166"), "{url}: {line}");
        no_output(&s);
    }
    assert_eq!(metadata_requests(&log), Vec::<String>::new(), "no request towards 169.254.169.254");
    assert!(log.lock().unwrap().iter().all(|t| !t.contains("2852039166")), "{:?}", log.lock().unwrap());
}
