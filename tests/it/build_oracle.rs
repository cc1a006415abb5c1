//! The Dockerfile corpus built twice — by Docker 20.10's classic builder and by spxpack — with
//! the exported filesystems (paths, types, modes, owners, sizes, content hashes, link targets)
//! and the image configs compared. BuildKit-only forms (heredocs, --chmod, --link) are compared
//! against a classic-builder equivalent (`Dockerfile.docker`).

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;

use crate::build_util::{Compared, Known, chmod, compare, compare_known, fixture};
use crate::support::{Scratch, docker, push_plain, skopeo, unique};

#[test]
fn build_oracle_basics() {
    let s = Scratch::new();
    let ctx = fixture(&s, "basics", &[]);
    let args = ["--build-arg", "FROM_CLI=from-cli", "--build-arg", "VERSION=2.5"];
    compare(&s, &ctx, "basics", "Dockerfile", &args, &args);
}

#[test]
fn build_oracle_entrypoint_and_escape() {
    let s = Scratch::new();
    let ctx = fixture(&s, "entrypoint", &[]);
    compare(&s, &ctx, "entrypoint", "Dockerfile", &[], &[]);
    for t in ["reset", "shellform"] {
        compare(&s, &ctx, &format!("entrypoint-{t}"), "Dockerfile", &["--target", t], &["--target", t]);
    }
    let ctx = fixture(&s, "escape", &[]);
    compare(&s, &ctx, "escape", "Dockerfile", &[], &[]);
}

#[test]
fn build_oracle_copy_forms() {
    let s = Scratch::new();
    let ctx = fixture(&s, "copy", &[]);
    chmod(&ctx.join("modes/private"), 0o600);
    chmod(&ctx.join("modes/exec.sh"), 0o4755);
    chmod(&ctx.join("modes/dir700"), 0o700);
    std::fs::create_dir_all(ctx.join("empty")).unwrap();
    std::fs::create_dir_all(ctx.join("hardlinks")).unwrap();
    std::fs::write(ctx.join("hardlinks/h1"), "linked\n").unwrap();
    std::fs::hard_link(ctx.join("hardlinks/h1"), ctx.join("hardlinks/h2")).unwrap();
    // the classic builder chowns after extracting, and the kernel then clears setuid;
    // BuildKit (and spxpack) keep it
    let known = [
        Known { path: "modes/exec.sh", docker: 0o755, spx: 0o4755 },
        Known { path: "ctx/modes/exec.sh", docker: 0o755, spx: 0o4755 },
    ];
    compare_known(&s, &ctx, "copy", "Dockerfile", &[], &[], &known);
}

#[test]
fn build_oracle_chown_names_and_numbers() {
    let s = Scratch::new();
    let ctx = fixture(&s, "chown", &[]);
    compare(&s, &ctx, "chown", "Dockerfile", &[], &[]);
}

#[test]
fn build_oracle_multistage_and_target() {
    let s = Scratch::new();
    let ctx = fixture(&s, "multistage", &[]);
    compare(&s, &ctx, "multistage", "Dockerfile", &[], &[]);
    compare(&s, &ctx, "multistage-middle", "Dockerfile", &["--target", "middle"], &["--target", "middle"]);
}

#[test]
fn build_oracle_dockerignore_and_scratch() {
    let s = Scratch::new();
    let ctx = fixture(&s, "dockerignore", &[]);
    compare(&s, &ctx, "dockerignore", "Dockerfile", &[], &[]);
    let ctx = fixture(&s, "scratch", &[]);
    compare(&s, &ctx, "scratch", "Dockerfile", &[], &[]);
}

#[test]
fn build_oracle_platform_args() {
    let s = Scratch::new();
    let ctx = fixture(&s, "platform-args", &[]);
    let docker_args = [
        "--build-arg",
        "TARGETPLATFORM=linux/arm64",
        "--build-arg",
        "TARGETOS=linux",
        "--build-arg",
        "TARGETARCH=arm64",
        "--build-arg",
        "TARGETVARIANT=",
    ];
    compare(&s, &ctx, "platform-args", "Dockerfile", &docker_args, &[]);
}

#[test]
fn build_oracle_buildkit_forms_match_their_classic_equivalent() {
    let s = Scratch::new();
    let ctx = fixture(&s, "buildkit-forms", &[]);
    chmod(&ctx.join("script-755/script.sh"), 0o755);
    chmod(&ctx.join("data-600.txt"), 0o600);
    compare(&s, &ctx, "buildkit-forms", "Dockerfile.docker", &[], &[]);
}

fn tar_bytes(entries: &[(&str, &[u8], u32, u64)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o750);
    dir.set_uid(1234);
    dir.set_gid(5678);
    dir.set_size(0);
    dir.set_cksum();
    b.append_data(&mut dir, "top/", &[][..]).unwrap();
    for (name, data, mode, uid) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_uid(*uid);
        h.set_gid(*uid + 1);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    let mut l = tar::Header::new_ustar();
    l.set_entry_type(tar::EntryType::Symlink);
    l.set_size(0);
    l.set_mode(0o777);
    l.set_cksum();
    b.append_link(&mut l, "top/link", "file.txt").unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_link(&mut h, "top/hard", "top/file.txt").unwrap();
    b.into_inner().unwrap()
}

/// Serves fixed files over HTTP on 127.0.0.1 until the process ends.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let mut buf = [0u8; 4096];
            let n = std::io::Read::read(&mut c, &mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let body = files.iter().find(|(p, _)| *p == path).map(|(_, b)| b.clone());
            let _ = match body {
                Some(b) => {
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                        b.len()
                    );
                    c.write_all(&b)
                }
                None => c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    format!("http://{addr}")
}

#[test]
fn build_oracle_add_archives_and_urls() {
    let s = Scratch::new();
    let http = serve(vec![("/remote.txt", b"remote\n".to_vec()), ("/named.bin", vec![0u8, 1, 2, 3, 255])]);
    let ctx = fixture(&s, "add", &[("@HTTP@", &http)]);
    let t = tar_bytes(&[("top/file.txt", b"in tar\n", 0o640, 1234), ("top/sub/exec", b"#!/bin/sh\n", 0o755, 0)]);
    std::fs::write(ctx.join("plain.tar"), &t).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&t).unwrap();
    std::fs::write(ctx.join("gz.tar.gz"), gz.finish().unwrap()).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&t).unwrap();
    std::fs::write(ctx.join("bz.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&t).unwrap();
    std::fs::write(ctx.join("xz.tar.xz"), xz.finish().unwrap()).unwrap();
    let mut fake = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    fake.write_all(b"gzip, but not a tar\n").unwrap();
    std::fs::write(ctx.join("fake.tar.gz"), fake.finish().unwrap()).unwrap();
    compare(&s, &ctx, "add", "Dockerfile", &[], &[]);
}

/// A parent with ONBUILD triggers is built by spxpack and pushed; a child built FROM it by both
/// builders runs the triggers the same way.
#[test]
fn build_oracle_onbuild_triggers() {
    let s = Scratch::new();
    let pctx = fixture(&s, "onbuild/parent", &[]);
    let layout = s.path("parent-layout");
    s.spx(&["image", "build", "-o", &format!("oci:{}:t", layout.display()), pctx.to_str().unwrap()]).ok();
    let parent = push_plain(&layout, &unique("onbuild-parent"));
    // the parent's config keeps the triggers
    let cfg = skopeo(&["inspect", "--raw", "--config", "--tls-verify=false", &format!("docker://{parent}")]).ok();
    let v: serde_json::Value = serde_json::from_str(&cfg.stdout).unwrap();
    assert_eq!(
        v["config"]["OnBuild"],
        serde_json::json!(["COPY trigger.txt /from-trigger/", "ENV TRIGGERED=yes", "LABEL onbuild=ran"])
    );
    let cctx = fixture(&s, "onbuild/child", &[("@PARENT@", &parent)]);
    docker(&["pull", "-q", "--platform", "linux/arm64", &parent]).ok();
    let c: Compared = compare(&s, &cctx, "onbuild", "Dockerfile", &[], &[]);
    let env_line = docker(&["image", "inspect", "--format", "{{json .Config.Env}}", &c.spx_tag]).ok().stdout;
    assert!(env_line.contains("TRIGGERED=yes"), "{env_line}");
    let _ = docker(&["rmi", "-f", &parent]);
}

/// The fixture corpus stays honest: every fixture directory is used by a test above.
#[test]
fn build_oracle_corpus_is_complete() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dockerfiles");
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let src = [include_str!("build_oracle.rs"), include_str!("run_basics.rs"), include_str!("run_python.rs")].concat();
    for n in &names {
        assert!(src.contains(&format!("\"{n}")), "fixture {n} is not built by any oracle test");
    }
}
