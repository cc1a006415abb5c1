//! A RUN step keeps nothing of its caller: not spxpack's environment (CI credentials), not a
//! file descriptor the caller left open, not the sandbox helper's own plumbing; and a step in
//! the root sandbox has Docker's default posture (capabilities, seccomp, no usable device
//! nodes), not the host's privileges. Each rung that runs as a namespace is checked: root and
//! userns as root, userns as an unprivileged user.

use std::path::Path;

use crate::support::{Run, Scratch, env, run, run_as, sandbox_bin, test_user, user_scratch};

const SECRET: &str = "s3cr3t-token-4f1d2c";

/// What the step prints (one fact per line, `key=value`).
const PROBE: &str = r#"
echo "environ1=$(cat /proc/1/environ 2>/dev/null | tr '\0' ' ')"
echo "env=$(env | tr '\n' ' ')"
fds=""; for f in /proc/$$/fd/*; do [ -e "$f" ] && fds="$fds ${f##*/}"; done; echo "fds=$fds"
fds1=""; for f in /proc/1/fd/*; do [ -e "$f" ] && fds1="$fds1 ${f##*/}"; done; echo "fds1=$fds1"
if (echo leaked >&7) 2>/dev/null; then echo "fd7=written"; else echo "fd7=closed"; fi
if ls /proc/self/fd/8/ >/dev/null 2>&1; then echo "fd8=open"; else echo "fd8=closed"; fi
echo "exe1=$(head -c 4 /proc/1/exe 2>/dev/null | od -An -c | tr -d ' ')"
grep -E '^(CapEff|CapBnd|CapInh|CapAmb|Seccomp|NoNewPrivs):' /proc/self/status | tr -d '\t' | sed 's/:/=/'
if mknod /tmp/blk b 8 0 2>/dev/null; then
  if head -c 1 /tmp/blk >/dev/null 2>&1; then echo "blockdev=readable"; else echo "blockdev=unreadable"; fi
else echo "blockdev=nomknod"; fi
if mount -t tmpfs none /mnt 2>/dev/null; then echo "mount=ok"; else echo "mount=denied"; fi
true
"#;

/// Runs PROBE through `spxpack sandbox-run --json` with a secret in spxpack's environment and
/// fds 7 (a host file, writable) and 8 (a host directory) open; returns the facts and the
/// host file's content afterwards.
fn probe(user: Option<&str>, iso: &str, scratch: &Path) -> (std::collections::BTreeMap<String, String>, String) {
    std::fs::create_dir_all(scratch).unwrap();
    let host_file = scratch.join("host-file");
    std::fs::write(&host_file, "").unwrap();
    let host_dir = scratch.join("host-dir");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("private-key"), "KEY").unwrap();
    if let Some(u) = user {
        run("chown", &["-R", u, scratch.to_str().unwrap()], &[]).ok();
    }
    let script = format!("exec 7>>'{}' 8<'{}'; exec \"$@\"", host_file.display(), host_dir.display());
    let bin = sandbox_bin().to_str().unwrap();
    let src = format!("oci:{}:arm64", env().busybox_oci.display());
    let cache = scratch.join("cache");
    let argv = [
        "bash",
        "-c",
        &script,
        "bash",
        bin,
        "sandbox-run",
        "--json",
        "--isolation",
        iso,
        "--cache-dir",
        cache.to_str().unwrap(),
        &src,
        "--run",
        PROBE,
    ];
    let envs = [("SPXPACK_CREDS", SECRET), ("GITHUB_TOKEN", SECRET), ("SOURCE_DATE_EPOCH", "1700000000")];
    let r: Run = match user {
        Some(u) => run_as(u, &argv, &envs),
        None => run(argv[0], &argv[1..], &envs),
    };
    assert_eq!(r.code, 0, "sandbox-run ({iso}) failed: {}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert!(!r.stdout.contains(SECRET), "the secret reached the step's output:\n{}", r.stdout);
    let facts = v["steps"][0]["output"]
        .as_array()
        .unwrap_or_else(|| panic!("no output lines: {v}"))
        .iter()
        .filter_map(|l| l.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect();
    (facts, std::fs::read_to_string(&host_file).unwrap())
}

fn assert_no_leak(facts: &std::collections::BTreeMap<String, String>, host_file: &str, what: &str) {
    assert_eq!(facts["environ1"], "", "{what}: PID 1's environment is readable: {facts:?}");
    assert!(!facts["env"].contains("SPXPACK") && !facts["env"].contains("GITHUB"), "{what}: {facts:?}");
    let fds: Vec<&str> = facts["fds"].split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2"], "{what}: the step has descriptors beyond 0-2: {facts:?}");
    assert_eq!(facts["fds1"], "", "{what}: PID 1's descriptors are reachable: {facts:?}");
    assert_eq!(facts["fd7"], "closed", "{what}: {facts:?}");
    assert_eq!(facts["fd8"], "closed", "{what}: {facts:?}");
    assert_eq!(facts["exe1"], "", "{what}: /proc/1/exe (the spxpack binary) is readable: {facts:?}");
    assert_eq!(host_file, "", "{what}: the step wrote the caller's file through an inherited fd");
}

/// Docker's default capability set (`CapEff` of a `docker run` root process).
const DOCKER_CAPS: &str = "00000000a80425fb";

#[test]
fn run_step_cannot_read_the_callers_environment_or_fds_root_sandbox() {
    let s = Scratch::new();
    let (facts, host) = probe(None, "root", &s.path("root"));
    assert_no_leak(&facts, &host, "root");
    // Docker's default posture
    assert_eq!(facts["CapEff"], DOCKER_CAPS, "{facts:?}");
    assert_eq!(facts["CapBnd"], DOCKER_CAPS, "{facts:?}");
    assert_eq!(facts["CapInh"], "0000000000000000", "{facts:?}");
    assert_eq!(facts["CapAmb"], "0000000000000000", "{facts:?}");
    assert_eq!(facts["Seccomp"], "2", "{facts:?}");
    assert_eq!(facts["NoNewPrivs"], "0", "setuid programs must keep working for USER steps: {facts:?}");
    assert_ne!(facts["blockdev"], "readable", "a step opened a block device it made: {facts:?}");
    assert_eq!(facts["mount"], "denied", "{facts:?}");
}

#[test]
fn run_step_cannot_read_the_callers_environment_or_fds_userns_sandbox() {
    let s = Scratch::new();
    let (facts, host) = probe(None, "userns", &s.path("userns"));
    assert_no_leak(&facts, &host, "userns as root");
    assert_eq!(facts["Seccomp"], "2", "{facts:?}");
    assert_eq!(facts["CapBnd"], DOCKER_CAPS, "{facts:?}");
    assert_eq!(facts["mount"], "denied", "{facts:?}");
    assert_ne!(facts["blockdev"], "readable", "{facts:?}");
}

#[test]
fn run_step_cannot_read_the_callers_environment_or_fds_unprivileged_user() {
    let user = test_user();
    let d = user_scratch(user);
    let (facts, host) = probe(Some(user), "auto", d.path());
    assert_no_leak(&facts, &host, "userns as an unprivileged user");
    assert_eq!(facts["CapBnd"], DOCKER_CAPS, "{facts:?}");
    assert_eq!(facts["mount"], "denied", "{facts:?}");
}
