//! Running spxpack on hostile inputs (FIFOs, `/dev/zero`, redirecting servers) in bounded time
//! and memory: the child is killed and the test fails when it runs longer than its time limit
//! or its peak RSS (`VmHWM`, sampled every 10 ms) passes its memory limit.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Run, Scratch};

/// A finished bounded run.
pub struct Bounded {
    pub run: Run,
    /// The largest `VmHWM` seen, in KiB.
    pub peak_rss_kib: u64,
    pub elapsed: Duration,
}

/// `spxpack ARGS` with the scratch's cache and HOME, and no proxy settings from the
/// environment.
pub fn spx_command(s: &Scratch, args: &[&str]) -> Command {
    let home = s.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_spxpack"));
    c.args(args).env("SPXPACK_CACHE_DIR", s.cache()).env("HOME", &home).env("DOCKER_CONFIG", &home);
    for k in ["ALL_PROXY", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"] {
        c.env_remove(k).env_remove(k.to_lowercase());
    }
    c
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `cmd`; kills it and fails the test when it takes longer than `limit` or its peak RSS
/// passes `max_rss_mib`.
#[track_caller]
pub fn run_bounded(mut cmd: Command, limit: Duration, max_rss_mib: u64) -> Bounded {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        let over_time = started.elapsed() > limit;
        let over_mem = peak > max_rss_mib * 1024;
        if over_time || over_mem {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
            if over_time {
                panic!("{shown} still ran after {limit:?} (peak RSS {peak} KiB); killed it. stderr: {stderr}");
            }
            panic!("{shown} passed {max_rss_mib} MiB of RSS ({peak} KiB); killed it. stderr: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out_t.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap()).into_owned(),
    };
    Bounded { run, peak_rss_kib: peak, elapsed }
}

/// The error (its `error:` line with the `caused by:` lines under it, joined with ": ") and
/// its hint, checking that there is exactly one `error:` line and that a `hint:` line follows
/// the error's chain directly.
#[track_caller]
pub fn one_error_with_hint(r: &Run) -> (String, String) {
    let lines: Vec<&str> = r.stderr.lines().collect();
    let errs: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with("error:")).collect();
    assert_eq!(errs.len(), 1, "exactly one error: line expected in {:?}", r.stderr);
    let mut i = errs[0] + 1;
    while lines.get(i).is_some_and(|l| l.starts_with("caused by: ")) {
        i += 1;
    }
    let hint = lines.get(i).copied().unwrap_or("");
    assert!(hint.starts_with("hint:"), "a hint: line directly after the error expected in {:?}", r.stderr);
    (crate::support::error_chains(&r.stderr).remove(0), hint.to_string())
}
