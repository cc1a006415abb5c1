//! Layers from RUN steps: additions, modifications, deletions (whiteouts), a directory replaced
//! by a file, hard links and symlinks end up exactly as expected in the tar, the image with the
//! same steps built from a Dockerfile load into Docker 20.10 and an arm64 container sees the expected tree, and
//! the layer bytes are the same across runs and sandboxes.

use std::io::Read;

use spxpack::sandbox::{self, Isolation, Rootfs, RootfsCache, RunSpec, Snapshot, diff};

use crate::sandbox_rungs::{busybox_arm64, runner, sh};
use crate::support::{Scratch, docker, unique};

const EPOCH: u64 = 1_700_000_000;

/// (type, name, link target, uid, mode, mtime) of every entry of a gzip layer.
fn listing(layer: &std::path::Path) -> Vec<(char, String, String, u64, u32, u64)> {
    let f = std::fs::File::open(layer).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                h.entry_type().as_byte() as char,
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()).unwrap_or_default(),
                h.uid().unwrap(),
                h.mode().unwrap(),
                h.mtime().unwrap(),
            )
        })
        .collect()
}

const STEP1: &str =
    "mkdir -p /data/sub /data/keep && echo x > /data/sub/x && echo y > /data/y && echo k > /data/keep/k";
const STEP2: &str = "rm -rf /data/sub && echo file > /data/sub && rm /data/y && echo appended >> /etc/passwd \
    && rm /bin/ls && ln -s /data/sub /data/link && ln /data/sub /data/hard && chmod 4755 /data/sub \
    && mkdir /empty && touch -d '2001-01-01 00:00:00' /data/keep/k && rm -rf /tmp && mkfifo /data/fifo";

/// Runs STEP1 and STEP2 in a fresh rootfs with `iso`; returns the two layers.
fn two_steps(s: &Scratch, iso: Isolation) -> (sandbox::Runner, Vec<diff::NewLayer>) {
    let r = runner(iso);
    let cache = RootfsCache::new(s.path("rootfs-cache")).unwrap();
    let rootfs = Rootfs::extract(&busybox_arm64(), &r, &cache).unwrap();
    let mut layers = Vec::new();
    for step in [STEP1, STEP2] {
        let snap = Snapshot::take(&rootfs).unwrap();
        let (code, out) = sh(&r, &rootfs, step);
        assert_eq!(code, 0, "{iso:?}: {step}: {out}");
        let spec = RunSpec::shell(step);
        layers.push(diff::layer(&snap, &rootfs, &r.layer_options(&spec, Some(EPOCH), &s.path("layers"))).unwrap());
    }
    (r, layers)
}

#[test]
fn sandbox_diff_writes_whiteouts_links_and_replacements_and_docker_runs_the_result() {
    let s = Scratch::new();
    let (_, layers) = two_steps(&s, Isolation::Root);
    let l2 = listing(&layers[1].path);
    let names: Vec<(char, &str, &str)> = l2.iter().map(|(t, n, l, ..)| (*t, n.as_str(), l.as_str())).collect();
    assert_eq!(
        names,
        vec![
            ('0', ".wh.tmp", ""),
            ('5', "bin/", ""),
            ('0', "bin/.wh.ls", ""),
            ('5', "data/", ""),
            ('0', "data/.wh.y", ""),
            ('6', "data/fifo", ""),
            ('0', "data/hard", ""),
            ('0', "data/keep/k", ""),
            ('2', "data/link", "/data/sub"),
            ('1', "data/sub", "data/hard"),
            ('5', "empty/", ""),
            ('0', "etc/passwd", ""),
        ],
        "full listing: {l2:#?}"
    );
    // no whiteouts below the replaced directory, no plumbing, no root entry
    assert!(!l2.iter().any(|e| e.1.starts_with("data/sub/") || e.1.starts_with("dev") || e.1.starts_with("proc")));
    // appending to /etc/passwd changes the file, not /etc: no `etc/` entry above
    for (t, n, _, uid, mode, mtime) in &l2 {
        assert_eq!(*uid, 0, "{n}");
        assert!(*mtime <= EPOCH, "{n} mtime {mtime} not clamped");
        if n == "data/hard" {
            assert_eq!(*mode, 0o4755, "setuid kept");
        }
        if n == "data/keep/k" {
            assert_eq!(*mtime, 978_307_200, "older mtimes are kept: {t}");
        }
    }

    // the same steps through the Dockerfile builder, loaded into Docker 20.10, seen from an
    // arm64 container
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM oci:{}:arm64\nRUN {STEP1}\nRUN {STEP2}\n", crate::support::env().busybox_oci.display()),
    )
    .unwrap();
    let tag = format!("{}:t", unique("spxpack-it-sandbox-diff"));
    let out = s.path("built.tar");
    let epoch = EPOCH.to_string();
    let b = s.spx_env(
        &["image", "build", "--isolation", "root", "-t", &tag, "-o", out.to_str().unwrap(), ctx.to_str().unwrap()],
        &[("SOURCE_DATE_EPOCH", &epoch)],
    );
    assert_eq!(b.code, 0, "{}", b.stderr);
    docker(&["load", "-i", out.to_str().unwrap()]).ok();
    let script = "cat /data/sub; ls -A /data | tr '\\n' ' '; echo; test ! -e /bin/ls && echo no-ls; \
        tail -1 /etc/passwd; readlink /data/link; stat -c '%h %a' /data/sub; ls -d /empty; \
        test -p /data/fifo && echo fifo; test -e /tmp || echo no-tmp; test -e /data/y || echo no-y; uname -m";
    let run = crate::support::docker_run_arm64(&tag, &["sh", "-c", script]);
    assert_eq!(
        run.stdout,
        "file\nfifo hard keep link sub \nno-ls\nappended\n/data/sub\n2 4755\n/empty\nfifo\nno-tmp\nno-y\naarch64\n",
        "{}",
        run.stderr
    );
    let hist = docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]).ok();
    assert!(hist.stdout.contains("RUN /bin/sh -c rm -rf /data/sub"), "{}", hist.stdout);
    docker(&["rmi", &tag]).ok();
}

#[test]
fn sandbox_layers_are_byte_identical_across_runs_and_sandboxes() {
    let a = Scratch::new();
    let b = Scratch::new();
    let c = Scratch::new();
    let (_, root1) = two_steps(&a, Isolation::Root);
    let (_, root2) = two_steps(&b, Isolation::Root);
    let (_, userns) = two_steps(&c, Isolation::Userns);
    for i in 0..2 {
        assert_eq!(root1[i].digest, root2[i].digest, "step {i}: two root runs differ");
        assert_eq!(root1[i].diff_id, userns[i].diff_id, "step {i}: root and userns differ");
        let mut x = Vec::new();
        std::fs::File::open(&root1[i].path).unwrap().read_to_end(&mut x).unwrap();
        assert_eq!(spxpack::digest::Digest::of(&x), root1[i].digest);
    }
}

#[test]
fn sandbox_step_without_changes_gives_an_empty_layer_and_the_sandbox_leaves_no_trace() {
    let s = Scratch::new();
    for iso in [Isolation::Root, Isolation::Userns, Isolation::Proot] {
        let r = runner(iso);
        let cache = RootfsCache::new(s.path(&format!("cache-{iso:?}"))).unwrap();
        let rootfs = Rootfs::extract(&busybox_arm64(), &r, &cache).unwrap();
        let snap = Snapshot::take(&rootfs).unwrap();
        // reading everything and writing only to the sandbox's own mounts changes nothing
        let (code, out) = sh(
            &r,
            &rootfs,
            "cat /etc/resolv.conf /etc/hosts > /dev/null; echo x > /dev/null; ls -R /bin /etc /root /tmp > /dev/null; \
             ls /dev/.spxpack; echo $HOME $PATH",
        );
        assert_eq!(code, 0, "{iso:?}: {out}");
        assert!(out.contains("hosts\nresolv.conf\n"), "{iso:?}: {out}");
        assert!(out.contains("/root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), "{iso:?}: {out}");
        let changes = diff::changes(&snap, &rootfs).unwrap();
        assert!(changes.is_empty(), "{iso:?}: {changes:?}");
        let l =
            diff::layer(&snap, &rootfs, &r.layer_options(&RunSpec::shell("true"), Some(EPOCH), &s.path("l"))).unwrap();
        assert_eq!((l.entries, l.whiteouts), (0, 0));
        // nothing was left next to the rootfs either, except the fence markers
        let mut left: Vec<String> = std::fs::read_dir(rootfs.work_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![".fence-a", ".fence-b", "rootfs"], "{iso:?}");
    }
}
