//! The proot rung's side of `spxpack __sandbox-exec`: proot with `-0` (or `-i uid:gid` for
//! USER), `-q qemu` for a foreign architecture, binds for `/proc`, `/sys`, `/dev`, the auxiliary
//! files, resolv.conf/hosts copies and the step's `--mount`s; and the cleanup of whatever the
//! step left running (the helper is the process tree's subreaper).

use std::path::Path;
use std::process::{Command, Stdio};

use super::plan::{GUEST_AUX, Plan, Status, errno_text, exit_code};

/// Kills every remaining descendant (we are their subreaper) until none is left.
pub(super) fn kill_descendants() {
    let me = std::process::id();
    for _ in 0..100 {
        let kids = children_of(me);
        if kids.is_empty() {
            return;
        }
        for k in kids {
            if let Some(p) = rustix::process::Pid::from_raw(k as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        // reap
        while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Ok(n) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{n}/stat"))
            && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
        {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() > 2 && f[0] != "Z" && f[1].parse::<u32>().ok() == Some(pid) {
                out.push(n);
            }
        }
    }
    out
}

pub(super) fn run(plan: &Plan, proot: &Path, qemu: Option<&Path>, st: &mut Status) -> i32 {
    let guest = plan.aux.join("guest");
    let tmp = plan.aux.join("proot-tmp");
    let _ = std::fs::create_dir_all(&tmp);
    let mut c = Command::new(proot);
    match plan.user {
        Some((u, g)) => c.arg("-i").arg(format!("{u}:{g}")),
        None => c.arg("-0"),
    };
    c.arg("-r").arg(&plan.rootfs).arg("-w").arg(&plan.workdir);
    if let Some(q) = qemu {
        c.arg("-q").arg(q);
    }
    for b in ["/proc", "/sys", "/dev"] {
        c.arg("-b").arg(b);
    }
    c.arg("-b").arg(format!("{}:{GUEST_AUX}", guest.display()));
    for f in ["resolv.conf", "hosts"] {
        c.arg("-b").arg(format!("{}:/etc/{f}", guest.join(f).display()));
    }
    for (i, m) in plan.mounts.iter().enumerate() {
        let src = match &m.source {
            Some(s) => s.clone(),
            None => {
                // no tmpfs without mounts: an empty directory of the step's own
                let d = plan.aux.join(format!("tmpfs-{i}"));
                if let Err(e) = std::fs::create_dir_all(&d) {
                    st.fail(&format!("create {}: {}", d.display(), errno_text(e)));
                }
                d
            }
        };
        c.arg("-b").arg(format!("{}:{}", src.display(), m.target));
    }
    // proot 5.1 has no `--`; a command never starts with '-' (checked by the runner)
    c.args(&plan.argv);
    c.env_clear().envs(plan.env.iter().map(|(k, v)| (k, v))).env("PROOT_TMP_DIR", &tmp).stdin(Stdio::null());
    st.line("started");
    match c.status() {
        Ok(s) => {
            let code = exit_code(s);
            st.line(&format!("exit {code}"));
            code
        }
        Err(e) => st.fail(&format!("cannot run {}: {}", proot.display(), errno_text(e))),
    }
}
