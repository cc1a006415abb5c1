//! Hostile base layers cannot write outside the rootfs (`..` names, absolute names, symlinked
//! parents, escaping hard links, symlink-then-file replacement; device nodes are skipped and
//! reported without root), a failing step reports its exit code and last output lines, and
//! Ctrl-C in the middle of a step leaves no process, mount or temporary directory behind.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spxpack::oci_layout::Layout;
use spxpack::platform::Platform;
use spxpack::sandbox::{Isolation, Ownership, Rootfs, RootfsCache, RunSpec};

use crate::sandbox_rungs::{busybox_arm64, runner};
use crate::support::{Scratch, env, run_as, sandbox_bin, sha256_hex, test_user, unique, user_scratch};

/// A raw tar entry (names are written byte for byte, bypassing the tar crate's checks).
fn entry(tar: &mut Vec<u8>, name: &str, kind: tar::EntryType, data: &[u8], link: &str, dev: (u32, u32)) {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
    h.set_uid(if name.contains("owned") { 4242 } else { 0 });
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    let u = h.as_ustar_mut().unwrap();
    u.name[..name.len()].copy_from_slice(name.as_bytes());
    u.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_device_major(dev.0).unwrap();
    h.set_device_minor(dev.1).unwrap();
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

struct Hostile {
    layout: PathBuf,
    tag: String,
}

impl Hostile {
    fn host_canaries(&self) -> Vec<PathBuf> {
        let t = &self.tag;
        vec![
            PathBuf::from(format!("/evil-{t}")),
            PathBuf::from(format!("/abs-{t}")),
            PathBuf::from(format!("/escaped-{t}")),
            PathBuf::from(format!("/up-{t}")),
            PathBuf::from(format!("/tmp/outside-{t}")),
            PathBuf::from(format!("/tmp/outside-dir-{t}")),
            PathBuf::from(format!("/tmp/chmod-target-{t}")),
        ]
    }
}

/// An arm64 image whose layers try every known way out of the extraction root.
fn hostile_image(dir: &Path) -> Hostile {
    use tar::EntryType::*;
    let tag = unique("h").replace('-', "");
    let t = &tag;
    let mut l1 = Vec::new();
    entry(&mut l1, "d/", Directory, b"", "", (0, 0));
    entry(&mut l1, "d/lower", Regular, b"lower", "", (0, 0));
    entry(&mut l1, "escape", Symlink, b"", "/", (0, 0));
    entry(&mut l1, "up", Symlink, b"", "../../../../../../..", (0, 0));
    entry(&mut l1, &format!("../evil-{t}"), Regular, b"x", "", (0, 0));
    entry(&mut l1, &format!("d/../../evil-{t}"), Regular, b"x", "", (0, 0));
    entry(&mut l1, &format!("/abs-{t}"), Regular, b"abs", "", (0, 0));
    entry(&mut l1, &format!("escape/escaped-{t}"), Regular, b"esc", "", (0, 0));
    entry(&mut l1, &format!("up/up-{t}"), Regular, b"up", "", (0, 0));
    entry(&mut l1, "hl", Link, b"", "../../../../etc/passwd", (0, 0));
    entry(&mut l1, "hl2", Link, b"", &format!("up/abs-{t}"), (0, 0));
    entry(&mut l1, "evilnull", Char, b"", "", (1, 3));
    entry(&mut l1, "evilsda", Block, b"", "", (8, 0));
    entry(&mut l1, "s", Symlink, b"", &format!("/tmp/outside-{t}"), (0, 0));
    entry(&mut l1, "s", Regular, b"replaced", "", (0, 0));
    entry(&mut l1, "sd", Symlink, b"", &format!("/tmp/outside-dir-{t}"), (0, 0));
    entry(&mut l1, "sd/", Directory, b"", "", (0, 0));
    entry(&mut l1, "sd/f", Regular, b"f", "", (0, 0));
    // RUSTSEC-2026-0067 shape: a symlink, then a directory entry of the same name
    entry(&mut l1, "c", Symlink, b"", &format!("/tmp/chmod-target-{t}"), (0, 0));
    entry(&mut l1, "c/", Directory, b"", "", (0, 0));
    entry(&mut l1, "owned", Regular, b"o", "", (0, 0));
    l1.extend_from_slice(&[0u8; 1024]);
    let mut l2 = Vec::new();
    entry(&mut l2, "d/.wh..wh..opq", Regular, b"", "", (0, 0));
    entry(&mut l2, "d/upper", Regular, b"upper", "", (0, 0));
    entry(&mut l2, ".wh.escape", Regular, b"", "", (0, 0));
    entry(&mut l2, "up/.wh.hl2", Regular, b"", "", (0, 0));
    entry(&mut l2, "x/../../.wh.etc", Regular, b"", "", (0, 0));
    l2.extend_from_slice(&[0u8; 1024]);

    let layout = dir.join("hostile-oci");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = sha256_hex(data);
        std::fs::write(layout.join("blobs/sha256").join(&d), data).unwrap();
        (d, data.len())
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for l in [&l1, &l2] {
        diff_ids.push(format!("\"sha256:{}\"", sha256_hex(l)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(l).unwrap();
        let (d, n) = put(&gz.finish().unwrap());
        layers.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{d}","size":{n}}}"#
        ));
    }
    let config = format!(
        r#"{{"architecture":"arm64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let (cd, cs) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{cd}","size":{cs}}},"layers":[{}]}}"#,
        layers.join(",")
    );
    let (md, ms) = put(manifest.as_bytes());
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{md}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#
        ),
    )
    .unwrap();
    Hostile { layout, tag }
}

fn assert_no_escape(h: &Hostile, around: &Path) {
    for c in h.host_canaries() {
        assert!(std::fs::symlink_metadata(&c).is_err(), "{} was written outside the rootfs", c.display());
    }
    let names: Vec<String> =
        std::fs::read_dir(around).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains("evil")), "written next to the rootfs: {names:?}");
}

#[test]
fn sandbox_hostile_layers_stay_inside_the_rootfs_as_root() {
    let s = Scratch::new();
    let h = hostile_image(s.dir.path());
    let image = Layout::open_dir(&h.layout).unwrap().image(Some("t"), &Platform::linux_arm64()).unwrap();
    let root = s.path("outer/root");
    std::fs::create_dir_all(&root).unwrap();
    let report = spxpack::sandbox::extract::extract_image(&image, &root, Ownership::Apply).unwrap();
    assert_no_escape(&h, &s.path("outer"));
    let t = &h.tag;
    // what stayed inside, where the kernel's in-root resolution put it
    assert_eq!(std::fs::read(root.join(format!("abs-{t}"))).unwrap(), b"abs");
    assert_eq!(std::fs::read(root.join(format!("escaped-{t}"))).unwrap(), b"esc");
    assert_eq!(std::fs::read(root.join(format!("up-{t}"))).unwrap(), b"up");
    assert_eq!(std::fs::read(root.join("s")).unwrap(), b"replaced");
    assert!(std::fs::symlink_metadata(root.join("sd")).unwrap().is_dir());
    assert!(std::fs::symlink_metadata(root.join("c")).unwrap().is_dir());
    assert_eq!(std::fs::read(root.join("sd/f")).unwrap(), b"f");
    // layer 2: opaque directory keeps only its own entry; whiteouts removed the symlinks
    assert_eq!(std::fs::read_dir(root.join("d")).unwrap().count(), 1);
    assert!(root.join("d/upper").exists());
    assert!(std::fs::symlink_metadata(root.join("escape")).is_err());
    assert!(std::fs::symlink_metadata(root.join("hl2")).is_err());
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(root.join("evilnull")).unwrap().file_type().is_char_device());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::symlink_metadata(root.join("owned")).unwrap().uid(), 4242);
    let reasons: Vec<String> = report.skipped.iter().map(|s| format!("{}: {}", s.path, s.reason)).collect();
    assert!(reasons.contains(&format!("../evil-{t}: the name points outside the root (`..`)")), "{reasons:#?}");
    assert!(reasons.contains(&format!("d/../../evil-{t}: the name points outside the root (`..`)")), "{reasons:#?}");
    assert!(reasons.contains(&"hl: the hard link target points outside the root".to_string()), "{reasons:#?}");
    assert!(reasons.iter().any(|r| r.starts_with("x/../../.wh.etc: the name points outside")), "{reasons:#?}");
    assert!(Path::new("/etc/passwd").exists(), "the host's /etc must be untouched");
}

#[test]
fn sandbox_hostile_layers_without_root_skip_devices_and_record_owners() {
    let user = test_user();
    let d = user_scratch(user);
    let h = hostile_image(d.path());
    Command::new("chmod").args(["-R", "a+rX", d.path().to_str().unwrap()]).status().unwrap();
    let cache = d.path().join("cache");
    let r = run_as(
        user,
        &[
            sandbox_bin().to_str().unwrap(),
            "sandbox-run",
            "--json",
            "--isolation",
            "userns",
            "--cache-dir",
            cache.to_str().unwrap(),
            &format!("oci:{}:t", h.layout.display()),
            "--run",
            "true",
        ],
        &[],
    );
    // the image has no shell, so the step cannot start; the extraction warnings come first
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("cannot execute /bin/sh: no such file or directory"), "{}", r.stderr);
    assert!(r.stderr.contains("warning: ") && r.stderr.contains("base entries not extracted"), "{}", r.stderr);
    assert!(r.stderr.contains("character device 1:3 needs root to create"), "{}", r.stderr);
    assert!(r.stderr.contains("block device 8:0 needs root to create"), "{}", r.stderr);
    assert!(r.stderr.contains("the name points outside the root"), "{}", r.stderr);
    assert_no_escape(&h, d.path());
    // the extracted base in the cache: owners recorded in the side table, devices absent
    let bases: Vec<PathBuf> =
        std::fs::read_dir(cache.join("rootfs/bases")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(bases.len(), 1, "{bases:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bases[0].join("report.json")).unwrap()).unwrap();
    assert_eq!(report["side"]["owned"]["uid"], 4242, "{report}");
    assert!(std::fs::symlink_metadata(bases[0].join("tree/evilnull")).is_err());
    assert_eq!(std::fs::read(bases[0].join("tree/s")).unwrap(), b"replaced");
}

#[test]
fn sandbox_failing_step_reports_exit_code_and_last_output_lines() {
    let s = Scratch::new();
    let r = runner(Isolation::Auto);
    let cache = RootfsCache::new(s.path("c")).unwrap();
    let rootfs = Rootfs::extract(&busybox_arm64(), &r, &cache).unwrap();
    let spec = RunSpec::shell("for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3");
    let out = r.run(&rootfs, &spec, &mut |_| {}).unwrap();
    assert_eq!(out.code, 3);
    assert_eq!(out.tail.len(), spxpack::sandbox::TAIL_LINES);
    assert_eq!(out.tail.last().unwrap(), "oops");
    assert_eq!(out.tail[out.tail.len() - 2], "line 30");
    let e = out.check().unwrap_err();
    assert!(e.message().starts_with("RUN for i in $(seq 1 30)"), "{}", e.message());
    assert!(e.message().ends_with("failed with exit code 3"), "{}", e.message());
    assert!(e.hint().unwrap().ends_with("  | line 30\n  | oops"), "{:?}", e.hint());
    // a command that does not exist: the shell's 127, not a sandbox error
    let out = r.run(&rootfs, &RunSpec::shell("no-such-tool --x"), &mut |_| {}).unwrap();
    assert_eq!(out.code, 127);
    assert!(out.tail.last().unwrap().contains("no-such-tool: not found"), "{:?}", out.tail);
    // the CLI prints one error line and the hint, exit code 1
    let cli = Command::new(sandbox_bin())
        .args(["sandbox-run", "--cache-dir", s.path("cli").to_str().unwrap()])
        .arg(format!("oci:{}:arm64", env().busybox_oci.display()))
        .args(["--run", "echo before; false"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "/Dockerfile:2:1: RUN echo before; false failed with exit code 1\nhint: the last lines of its output:\n  | before\n"
        ),
        "{err}"
    );
}

fn processes_with(marker: &str) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(marker) {
                v.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    v
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ctrl-C (SIGINT to spxpack) while a step runs a foreground and a background process.
fn interrupt(iso: &str) {
    let s = Scratch::new();
    let n = 700_000 + (std::process::id() % 100_000) + iso.len() as u32;
    let marker = format!("sleep {n}");
    let step = format!("echo started; {marker} & {marker}1; echo never");
    let cache = s.path("cache");
    let mut child = Command::new(sandbox_bin())
        .args(["sandbox-run", "--isolation", iso, "--cache-dir", cache.to_str().unwrap()])
        .arg(format!("oci:{}:arm64", env().busybox_oci.display()))
        .args(["--run", &step])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "{iso}: spxpack ended early: {seen}");
        seen.push_str(&line);
        if line.trim() == "started" {
            break;
        }
    }
    wait_until("both sleeps", 20, || processes_with(&marker).len() >= 2);
    let t = Instant::now();
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{iso}: {seen}{rest}");
    assert!(rest.contains("interrupted"), "{iso}: {rest}");
    wait_until("no process of the step", 5, || processes_with(&marker).is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(s.dir.path().to_str().unwrap()), "{iso}: mounts left:\n{mounts}");
    let work: Vec<_> = std::fs::read_dir(cache.join("rootfs/work")).unwrap().collect();
    assert!(work.is_empty(), "{iso}: work directories left: {work:?}");
    let bases: Vec<String> = std::fs::read_dir(cache.join("rootfs/bases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(bases.iter().all(|b| !b.starts_with(".tmp-")), "{iso}: {bases:?}");
    // the builder's staging directory and temporary files
    let tmp: Vec<_> = std::fs::read_dir(cache.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{iso}: left in the cache's tmp: {tmp:?}");
    eprintln!("{iso}: interrupted and cleaned up in {:?}", t.elapsed());
}

#[test]
fn sandbox_ctrl_c_leaves_no_process_mount_or_directory_as_root() {
    interrupt("root");
}

#[test]
fn sandbox_ctrl_c_leaves_no_process_mount_or_directory_in_userns() {
    interrupt("userns");
}

#[test]
fn sandbox_ctrl_c_leaves_no_process_mount_or_directory_with_proot() {
    interrupt("proot");
}

#[test]
fn sandbox_steps_cannot_change_kernel_settings_or_see_host_cgroups() {
    let s = Scratch::new();
    for iso in [Isolation::Root, Isolation::Userns] {
        let r = runner(iso);
        let cache = RootfsCache::new(s.path(&format!("c-{iso:?}"))).unwrap();
        let rootfs = Rootfs::extract(&busybox_arm64(), &r, &cache).unwrap();
        let before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let (code, out) = crate::sandbox_rungs::sh(
            &r,
            &rootfs,
            "echo spxpack-it > /proc/sys/kernel/hostname; echo sys=$?; touch /sys/x 2>/dev/null; echo touch=$?; \
             ls /sys/fs/cgroup 2>/dev/null | wc -l; mkdir /sys/fs/cgroup/pids/spxpack-it 2>/dev/null; echo cg=$?; \
             ps -o pid= | wc -l",
        );
        assert_eq!(code, 0, "{iso:?}: {out}");
        let lines: Vec<&str> = out.lines().filter(|l| !l.contains("Read-only file system")).collect();
        assert_eq!(lines[..2], ["sys=1", "touch=1"], "{iso:?}: {out}");
        // root: sysfs without the host's cgroup mounts; userns: the kernel keeps them attached
        // (locked), but they belong to the real root and cannot be changed
        if iso == Isolation::Root {
            assert_eq!(lines[2], "0", "{out}");
        }
        let leaked = Path::new("/sys/fs/cgroup/pids/spxpack-it");
        if leaked.exists() {
            let _ = std::fs::remove_dir(leaked);
            panic!("{iso:?}: the step created a cgroup on the host: {out}");
        }
        assert_eq!(lines[3], "cg=1", "{iso:?}: {out}");
        // a PID namespace: only the sandbox's own processes (init, sh, ps, wc)
        let procs: u32 = lines[4].trim().parse().unwrap();
        assert!(procs <= 5, "{iso:?}: {procs} processes visible: {out}");
        assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), before);
    }
}
