//! The sandbox's own processes, run as `spxpack __sandbox-exec PLAN` (re-executed, so the
//! process that calls `unshare` is single-threaded) and `spxpack __sandbox-init PLAN` (PID 1 of
//! the step's PID namespace, [`super::init`]).
//!
//! Namespace rungs: `__sandbox-exec` unshares the mount, PID, UTS and IPC namespaces (plus a
//! user namespace and, for `--network none`, a network namespace), writes the id maps, starts
//! `__sandbox-init` and records its exit code.
//!
//! proot rung: `__sandbox-exec` becomes a child subreaper, runs proot ([`super::proot`]), and
//! kills whatever is left of the process tree afterwards.
//!
//! Both report to the status file `AUX/status` (never visible to the step; see
//! [`super::plan`]).

use std::process::{Command, Stdio};

use rustix::thread::UnshareFlags;

use super::plan::{PlanKind, SETUP_FAILED, Status, UserMap, errno_text, exit_code, load_plan};

/// Entry point for `spxpack __sandbox-exec PLAN` / `__sandbox-init PLAN`; call before anything
/// starts a thread (argument parsing is fine, the signal handler is not).
pub fn main(args: &[String]) -> ! {
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("__sandbox-exec"), Some(plan)) => exec_main(plan),
        (Some("__sandbox-init"), Some(plan)) => super::init::init_main(plan),
        _ => {
            eprintln!("spxpack: internal sandbox command used wrongly");
            std::process::exit(SETUP_FAILED)
        }
    }
}

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().unwrap_or(0))))
        .unwrap_or(0)
}

fn exec_main(plan_path: &str) -> ! {
    // first of all: nothing the caller left open may reach the step (see sys.rs)
    if let Err(e) = super::sys::close_inherited_fds() {
        eprintln!("spxpack sandbox: cannot close inherited file descriptors: {}", errno_text(e));
        std::process::exit(SETUP_FAILED)
    }
    let plan = load_plan(plan_path);
    let mut st = Status::open(&plan.aux);
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    match &plan.kind {
        PlanKind::Namespaces { userns, .. } => {
            unshare_namespaces(&mut st, userns.as_ref(), plan.network_none);
            run_init(st, plan_path)
        }
        PlanKind::Proot { proot, qemu } => {
            let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
            let code = super::proot::run(&plan, proot, qemu.as_deref(), &mut st);
            super::proot::kill_descendants();
            std::process::exit(code)
        }
    }
}

/// Unshares the step's namespaces and writes the user namespace's id maps.
fn unshare_namespaces(st: &mut Status, userns: Option<&UserMap>, network_none: bool) {
    if threads() != 1 {
        st.fail("sandbox helper: unshare needs a single-threaded process");
    }
    // the parent's id ranges, for an identity map
    let parent_uids = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let parent_gids = std::fs::read_to_string("/proc/self/gid_map").unwrap_or_default();
    let flags = unshare_flags(userns.is_some(), network_none);
    // SAFETY-free: the helper is a freshly executed process with one thread (checked).
    #[allow(deprecated)]
    if let Err(e) = rustix::thread::unshare(flags) {
        st.fail(&format!("unshare({}): {}", flag_names(flags), errno_text(e)));
    }
    let Some(map) = userns else { return };
    let (uid_map, gid_map, deny) = match map {
        UserMap::Single { uid, gid } => (format!("0 {uid} 1\n"), format!("0 {gid} 1\n"), true),
        UserMap::Identity => (identity(&parent_uids), identity(&parent_gids), false),
    };
    if deny && let Err(e) = std::fs::write("/proc/self/setgroups", "deny") {
        st.fail(&format!("write /proc/self/setgroups: {}", errno_text(e)));
    }
    if let Err(e) = std::fs::write("/proc/self/uid_map", &uid_map) {
        st.fail(&format!("write /proc/self/uid_map ({}): {}", uid_map.trim(), errno_text(e)));
    }
    if let Err(e) = std::fs::write("/proc/self/gid_map", &gid_map) {
        st.fail(&format!("write /proc/self/gid_map ({}): {}", gid_map.trim(), errno_text(e)));
    }
}

fn unshare_flags(userns: bool, network_none: bool) -> UnshareFlags {
    let mut flags = UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC;
    if userns {
        flags |= UnshareFlags::NEWUSER;
    }
    if network_none {
        flags |= UnshareFlags::NEWNET;
    }
    flags
}

/// Starts `__sandbox-init` (PID 1 of the new PID namespace) and records its exit code.
fn run_init(mut st: Status, plan_path: &str) -> ! {
    let child =
        Command::new("/proc/self/exe").arg("__sandbox-init").arg(plan_path).env_clear().stdin(Stdio::null()).spawn();
    match child {
        // the init closed the status file before the step could see it; the exit code
        // is recorded here, outside the step's PID namespace
        Ok(mut c) => match c.wait() {
            Ok(s) => {
                let code = exit_code(s);
                st.line(&format!("exit {code}"));
                std::process::exit(code)
            }
            Err(e) => st.fail(&format!("wait: {}", errno_text(e))),
        },
        Err(e) => st.fail(&format!("cannot start the sandbox init: {}", errno_text(e))),
    }
}

fn identity(map: &str) -> String {
    let mut out = String::new();
    for l in map.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 3 {
            out.push_str(&format!("{} {} {}\n", f[0], f[0], f[2]));
        }
    }
    out
}

fn flag_names(f: UnshareFlags) -> String {
    let mut v = Vec::new();
    for (flag, n) in [
        (UnshareFlags::NEWUSER, "CLONE_NEWUSER"),
        (UnshareFlags::NEWNS, "CLONE_NEWNS"),
        (UnshareFlags::NEWPID, "CLONE_NEWPID"),
        (UnshareFlags::NEWUTS, "CLONE_NEWUTS"),
        (UnshareFlags::NEWIPC, "CLONE_NEWIPC"),
        (UnshareFlags::NEWNET, "CLONE_NEWNET"),
    ] {
        if f.contains(flag) {
            v.push(n);
        }
    }
    v.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_maps_every_parent_range_to_itself() {
        assert_eq!(identity("         0          0 4294967295\n"), "0 0 4294967295\n");
        assert_eq!(identity("0 1000 1\n1 100000 65536\nbogus\n"), "0 0 1\n1 1 65536\n");
    }

    #[test]
    fn unshares_user_and_network_only_when_asked() {
        assert_eq!(flag_names(unshare_flags(false, false)), "CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWUTS|CLONE_NEWIPC");
        assert_eq!(
            flag_names(unshare_flags(true, true)),
            "CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET"
        );
    }
}
