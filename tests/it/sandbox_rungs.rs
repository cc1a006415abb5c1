//! The RUN sandbox ladder on this machine: every rung runs arm64 busybox (`uname -m` →
//! `aarch64`) — as root, as an unprivileged user created for the test, with the kernel's qemu
//! binfmt handler hidden by a private, empty binfmt_misc instance — and when nothing can work,
//! the error lists what was tried and how to fix it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spxpack::oci_layout::Layout;
use spxpack::platform::Platform;
use spxpack::sandbox::{self, Emulation, Isolation, Options, Rootfs, RootfsCache, RunSpec, Runner, Sandbox};

use crate::support::{Scratch, env, run_as, sandbox_bin, test_user, user_scratch};

pub fn busybox_arm64() -> spxpack::image::Image {
    Layout::open_dir(&env().busybox_oci).unwrap().image(Some("arm64"), &Platform::linux_arm64()).unwrap()
}

/// The test process's environment (PATH finds qemu and proot), as the CLI passes it.
fn host_env() -> spxpack::host_env::HostEnv {
    spxpack::host_env::HostEnv::from_vars(std::env::vars_os())
}

pub fn runner(iso: Isolation) -> Runner {
    let opts =
        Options { isolation: iso, helper: Some(sandbox_bin().to_path_buf()), env: host_env(), ..Default::default() };
    sandbox::detect(&Platform::linux_arm64(), &opts).unwrap_or_else(|r| panic!("no sandbox for {iso:?}:\n{r}"))
}

/// Runs a shell step and returns (exit code, combined output).
pub fn sh(runner: &Runner, rootfs: &Rootfs, cmd: &str) -> (i32, String) {
    let mut out = Vec::new();
    let o = runner.run(rootfs, &RunSpec::shell(cmd), &mut |b| out.extend_from_slice(b)).unwrap();
    (o.code, String::from_utf8_lossy(&out).into_owned())
}

fn uname_in(iso: Isolation) -> (Runner, String, Duration) {
    let s = Scratch::new();
    let r = runner(iso);
    let cache = RootfsCache::new(s.path("rootfs-cache")).unwrap();
    let rootfs = Rootfs::extract(&busybox_arm64(), &r, &cache).unwrap();
    let t = Instant::now();
    let (code, out) = sh(&r, &rootfs, "uname -m; id -u");
    let took = t.elapsed();
    assert_eq!(code, 0, "{out}");
    (r, out, took)
}

#[test]
fn sandbox_root_runs_arm64_busybox_with_the_kernel_binfmt_handler() {
    assert!(env().busybox_oci.exists());
    let (r, out, took) = uname_in(Isolation::Root);
    assert_eq!((r.sandbox, r.emulation), (Sandbox::Root, Emulation::KernelBinfmt));
    assert_eq!(out, "aarch64\n0\n");
    eprintln!("root + binfmt: uname -m in {took:?}");
}

#[test]
fn sandbox_userns_forced_as_root_runs_arm64_busybox() {
    let (r, out, took) = uname_in(Isolation::Userns);
    assert_eq!((r.sandbox, r.emulation), (Sandbox::Userns, Emulation::KernelBinfmt));
    assert_eq!(out, "aarch64\n0\n");
    eprintln!("userns + binfmt: uname -m in {took:?}");
}

#[test]
fn sandbox_proot_forced_runs_arm64_busybox_and_warns_about_old_proot() {
    let (r, out, took) = uname_in(Isolation::Proot);
    assert_eq!((r.sandbox, r.emulation), (Sandbox::Proot, Emulation::ProotQemu));
    assert_eq!(out, "aarch64\n0\n");
    // Debian's proot 5.1.0 does not translate statx; auto mode skips it, forcing warns
    let v = Command::new("proot").arg("--version").output().unwrap();
    if String::from_utf8_lossy(&v.stdout).contains("5.1.0") {
        assert!(r.warnings.iter().any(|w| w.contains("statx")), "{:?}", r.warnings);
        let auto = sandbox::detect(
            &Platform::linux_arm64(),
            &Options { helper: Some(sandbox_bin().into()), env: host_env(), ..Default::default() },
        )
        .unwrap();
        assert_ne!(auto.sandbox, Sandbox::Proot);
    }
    eprintln!("proot -q: uname -m in {took:?}");
}

/// `spxpack sandbox-run --json` as `user` with `prefix` (e.g. unshare) in front.
fn sandbox_run_as(user: &str, prefix: &[&str], iso: &str, cache: &Path, cmd: &str) -> (i32, serde_json::Value, String) {
    let bin = sandbox_bin().to_str().unwrap();
    let src = format!("oci:{}:arm64", env().busybox_oci.display());
    let cache_s = cache.to_str().unwrap();
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.extend([bin, "sandbox-run", "--json", "--isolation", iso, "--cache-dir", cache_s, &src, "--run", cmd]);
    let r = run_as(user, &argv, &[("SOURCE_DATE_EPOCH", "1700000000")]);
    let v = serde_json::from_str(r.stdout.trim()).unwrap_or(serde_json::Value::Null);
    (r.code, v, r.stderr)
}

#[test]
fn sandbox_unprivileged_user_gets_userns_and_runs_arm64() {
    let user = test_user();
    let d = user_scratch(user);
    let (code, v, err) = sandbox_run_as(user, &[], "auto", &d.path().join("cache"), "uname -m; id -u; touch /made");
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["sandbox"], "userns", "{v}");
    assert_eq!(v["emulation"], "kernel-binfmt");
    assert_eq!(v["steps"][0]["output"], serde_json::json!(["aarch64", "0"]));
    assert_eq!(v["steps"][0]["layer"]["entries"], 1);
    // root is not available to this user
    let (code, _, err) = sandbox_run_as(user, &[], "root", &d.path().join("cache"), "true");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not running as root (euid"), "{err}");
}

/// Inside `unshare -Urm` with a fresh binfmt_misc mounted over /proc/sys/fs/binfmt_misc, the
/// kernel's global qemu handler is invisible: arm64 binaries do not run. spxpack must still
/// work through its private binfmt_misc (root-in-namespace and userns) and through proot.
#[test]
fn sandbox_without_binfmt_uses_a_private_binfmt_misc_or_proot() {
    let user = test_user();
    let d = user_scratch(user);
    let bb = format!("{}/bin/busybox", std::env::var("SPXPACK_TEST_BUSYBOX_ROOTFS_ARM64").unwrap());
    let script = format!(
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 97; \
         if {bb} true 2>/dev/null; then echo 'arm64 still runs: binfmt not hidden' >&2; exit 98; fi; \
         exec \"$@\""
    );
    let prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", &script, "sh"];
    let cache = d.path().join("cache");
    for (iso, sandbox, emulation) in
        [("auto", "root", "private-binfmt"), ("userns", "userns", "private-binfmt"), ("proot", "proot", "proot-qemu")]
    {
        let (code, v, err) = sandbox_run_as(user, &prefix, iso, &cache, "uname -m; ls /proc/sys/fs/binfmt_misc");
        assert_eq!(code, 0, "{iso}: {err}");
        assert_eq!((v["sandbox"].as_str(), v["emulation"].as_str()), (Some(sandbox), Some(emulation)), "{iso}: {v}");
        let out = &v["steps"][0]["output"];
        assert_eq!(out[0], "aarch64", "{iso}: {v}");
    }
}

/// euid 1001 in a user namespace where nested user namespaces are disabled
/// (`user.max_user_namespaces=0`, per namespace), qemu's handler hidden and proot missing:
/// every rung fails, and `image build` says where, what was tried and what to do.
#[test]
fn sandbox_reports_every_rung_and_the_fix_when_nothing_works() {
    let user = test_user();
    let uid = crate::support::run("id", &["-u", user], &[]).ok().stdout.trim().to_string();
    let gid = crate::support::run("id", &["-g", user], &[]).ok().stdout.trim().to_string();
    let d = user_scratch(user);
    let ready = d.path().join("ready");
    // the shell waits for the id maps, then re-executes so it gets root's capabilities
    let ctx = d.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM oci:{}:arm64\nRUN true\n", env().busybox_oci.display()))
        .unwrap();
    let inner = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces || exit 97; \
         mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 96; \
         exec setpriv --reuid {uid} --regid {gid} --clear-groups {bin} -q image build --proot /nonexistent/proot \
           --cache-dir {cache} -o {out} {ctx}",
        bin = sandbox_bin().display(),
        cache = d.path().join("cache").display(),
        out = d.path().join("out.tar").display(),
        ctx = ctx.display(),
    );
    let script = format!("while [ ! -e {} ]; do sleep 0.02; done; exec sh -c \"$0\"", ready.display());
    let child = Command::new("unshare")
        .args(["--user", "--mount", "--fork", "--kill-child", "sh", "-c", &script, &inner])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mine = std::fs::read_link("/proc/self/ns/user").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{pid}/ns/user")).ok().as_ref() == Some(&mine) {
        assert!(Instant::now() < deadline, "unshare did not create a user namespace");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 0 1\n{uid} {uid} 1\n")).unwrap();
    std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 0 1\n{gid} {gid} 1\n")).unwrap();
    std::fs::write(&ready, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let first = err.lines().next().unwrap_or("");
    assert_eq!(
        first,
        format!("error: {}/Dockerfile:2:1: cannot execute RUN steps for linux/arm64 on this machine", ctx.display()),
        "{err}"
    );
    assert!(!d.path().join("out.tar").exists());
    for want in [
        "hint: tried:",
        &format!("root    -                 no   not running as root (euid {uid})"),
        "userns  binfmt (kernel)   no   no qemu-aarch64 handler in /proc/sys/fs/binfmt_misc",
        "userns  binfmt (private)  no   unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWUTS|CLONE_NEWIPC): no space left on device",
        "proot   -                 no   /nonexistent/proot does not exist",
        "user.max_user_namespaces 0",
        "enable user namespaces:  sudo sysctl -w user.max_user_namespaces=15000",
        "or run the build as root (sudo)",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    eprintln!("{err}");
}
