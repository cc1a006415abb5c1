//! What goes in and comes out of a build: an arm64 image that Docker 20.10 loads and runs
//! under qemu, `.tar.gz` and `oci:DIR` outputs, FROM a local OCI layout, `--build-context`
//! (image and directory), stages the target does not need (not built), and BuildKit's
//! `--chown=user` (the user's primary group).

use std::path::Path;

use crate::support::{Scratch, docker, env, skopeo, unique};

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (n, c) in files {
        let p = dir.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
}

#[test]
fn build_sources_arm64_image_runs_under_qemu_from_tar_gz_and_oci_layout() {
    let s = Scratch::new();
    let ctx = s.path("ctx");
    let base = format!("{}/busybox:multi", env().plain);
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {base}\nCOPY --chmod=755 hello.sh /usr/local/bin/hello\nENV WHO=robot\nWORKDIR /data\n\
                     ENTRYPOINT [\"/usr/local/bin/hello\"]\nCMD [\"from-cmd\"]\n"
                ),
            ),
            ("hello.sh", "#!/bin/sh\necho \"hello $WHO $1 $(uname -m) $(pwd)\"\n"),
        ],
    );
    let tag = format!("{}:t", unique("spxpack-run"));
    let out = s.path("img.tar.gz");
    s.spx(&["image", "build", "-t", &tag, "-o", out.to_str().unwrap(), ctx.to_str().unwrap()]).ok();
    let gz = std::fs::read(&out).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "a .tar.gz output is gzipped");
    let load = docker(&["load", "-i", out.to_str().unwrap()]).ok();
    assert!(load.stdout.contains(&format!("Loaded image: {tag}")), "{}", load.stdout);
    let run = crate::support::docker_run_arm64(&tag, &[]);
    assert_eq!(run.stdout.trim(), "hello robot from-cmd aarch64 /data");
    let run = crate::support::docker_run_arm64(&tag, &["arg"]);
    assert_eq!(run.stdout.trim(), "hello robot arg aarch64 /data");

    // the same build into an OCI layout, converted by skopeo (its docker-daemon: transport
    // cannot talk to this daemon, so through docker-archive:) and loaded
    let layout = s.path("layout");
    s.spx(&["image", "build", "-o", &format!("oci:{}:v1", layout.display()), ctx.to_str().unwrap()]).ok();
    let tag2 = format!("{}:oci", unique("spxpack-run"));
    let via = s.path("via-skopeo.tar");
    skopeo(&[
        "copy",
        "-q",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker-archive:{}:{tag2}", via.display()),
    ])
    .ok();
    docker(&["load", "-q", "-i", via.to_str().unwrap()]).ok();
    let run = crate::support::docker_run_arm64(&tag2, &[]);
    assert_eq!(run.stdout.trim(), "hello robot from-cmd aarch64 /data");
    let _ = docker(&["rmi", "-f", &tag, &tag2]);
}

/// `--registry-mirror` serves `FROM` (and `spxpack pull`) from another registry while every name
/// stays the original: quay.io is unreachable here, so the build only works through the mirror.
#[test]
fn build_sources_registry_mirror_serves_from_and_pull_keeping_names() {
    let s = Scratch::new();
    let ctx = s.path("ctx");
    write(&ctx, &[("Dockerfile", "FROM quay.io/busybox:multi\nCOPY a.txt /a.txt\n"), ("a.txt", "mirrored\n")]);
    let mirror = format!("quay.io={}", env().plain);
    let out = s.path("img.tar");
    let tag = format!("{}:t", unique("spxpack-mirror"));
    s.spx(&[
        "image",
        "build",
        "--registry-mirror",
        &mirror,
        "-t",
        &tag,
        "-o",
        out.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ])
    .ok();
    let cfg: serde_json::Value =
        serde_json::from_slice(&s.spx(&["inspect", "--json", out.to_str().unwrap()]).ok().stdout.into_bytes()).unwrap();
    let layers = cfg["images"][0]["layers"].as_array().map(Vec::len).unwrap_or(0);
    assert!(layers >= 2, "the mirrored base's layers are in the image: {cfg}");
    // the same through the environment variable, for a pull: the saved tag names quay.io
    let pulled = s.path("pulled.tar");
    let r = s.spx_env(
        &["pull", "quay.io/busybox:arm64", "-o", pulled.to_str().unwrap()],
        &[("SPXPACK_REGISTRY_MIRROR", &format!("docker.io=unused.invalid,{mirror}"))],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m: serde_json::Value = serde_json::from_slice(&crate::support::tar_member(&pulled, "manifest.json")).unwrap();
    assert_eq!(m[0]["RepoTags"], serde_json::json!(["quay.io/busybox:arm64"]));
    // a mirror that does not have the image: the error names the image and the mirror
    let r = s.spx(&[
        "image",
        "build",
        "--registry-mirror",
        &format!("quay.io={}/nothing-here", env().plain),
        "-o",
        s.path("x.tar").to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r.error_line();
    assert!(line.contains("quay.io/busybox:multi via --registry-mirror"), "{line}");
    assert!(line.contains("nothing-here/busybox"), "{line}");
    assert!(!s.path("x.tar").exists());
}

#[test]
fn build_sources_local_layouts_named_contexts_and_unused_stages() {
    let s = Scratch::new();
    // a base image in a local OCI layout
    let layout = env().busybox_oci.clone();
    let ctx = s.path("ctx");
    let extra = s.path("extra-dir");
    write(
        &extra,
        &[("tool.txt", "from a named directory\n"), (".dockerignore", "ignored.txt\n"), ("ignored.txt", "x")],
    );
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM oci:{}:multi AS base\nCOPY a.txt /a.txt\n\n\
                     FROM base AS never\nCOPY does-not-exist /x\n\n\
                     FROM mybase\nCOPY --from=base /a.txt /from-base.txt\nCOPY --from=tools /tool.txt /tool.txt\n\
                     COPY --from=tools * /all-tools/\n",
                    layout.display()
                ),
            ),
            ("a.txt", "a\n"),
        ],
    );
    let out = s.path("o");
    let r = s.spx(&[
        "image",
        "build",
        "--json",
        "--build-context",
        &format!("mybase=oci-layout://{}:arm64", layout.display()),
        "--build-context",
        &format!("tools={}", extra.display()),
        "-o",
        &format!("oci:{}", out.display()),
        ctx.to_str().unwrap(),
    ]);
    let r = r.ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["platform"], "linux/arm64/v8");
    // the stage "never" was not needed, so its missing file did not matter
    assert_eq!(v["layers_built"], 4, "{}", r.stdout);
    let inspect = s.spx(&["inspect", "--json", &format!("oci:{}", out.display())]).ok();
    let i: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(i["images"][0]["layers"].as_array().unwrap().len(), 4, "{}", inspect.stdout);
    // unknown build-context sources are rejected up front
    let bad =
        s.spx(&["image", "build", "--build-context", "x=/nonexistent", "-o", "/tmp/never.tar", ctx.to_str().unwrap()]);
    assert_eq!(bad.code, 1);
    assert!(bad.error_line().contains("--build-context x=/nonexistent"), "{}", bad.stderr);
}

/// `--chown=NAME` without a group takes the user's primary group (BuildKit), where the classic
/// builder looks for a group of the same name and fails if there is none.
#[test]
fn build_sources_chown_user_without_group_uses_primary_group() {
    let s = Scratch::new();
    let ctx = s.path("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}/busybox:multi\nCOPY --chown=nobody f /f\nCOPY --chown=nobody:root f /g\n",
                    env().plain
                ),
            ),
            ("f", "f\n"),
        ],
    );
    let layout = s.path("o");
    s.spx(&["image", "build", "-o", &format!("oci:{}", layout.display()), ctx.to_str().unwrap()]).ok();
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = &idx["manifests"][0]["digest"].as_str().unwrap()[7..];
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(m)).unwrap()).unwrap();
    let owners: Vec<(u64, u64)> = [1, 2]
        .iter()
        .map(|i| {
            let l = &m["layers"][*i]["digest"].as_str().unwrap()[7..];
            let f = std::fs::File::open(layout.join("blobs/sha256").join(l)).unwrap();
            let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
            let e = ar.entries().unwrap().next().unwrap().unwrap();
            (e.header().uid().unwrap(), e.header().gid().unwrap())
        })
        .collect();
    assert_eq!(owners, vec![(65534, 65534), (65534, 0)]);
}
