//! The sandbox's own processes, run as `spxpack __sandbox-exec PLAN` (re-executed, so the
//! process that calls `unshare` is single-threaded) and `spxpack __sandbox-init PLAN` (PID 1 of
//! the step's PID namespace).
//!
//! Namespace rungs: `__sandbox-exec` unshares the mount, PID, UTS and IPC namespaces (plus a
//! user namespace and, for `--network none`, a network namespace), writes the id maps and
//! starts `__sandbox-init`, which makes every mount private, pivots into the rootfs, mounts a
//! fresh `/proc` (or a recursive bind of the host's), a tmpfs `/dev` with bind-mounted
//! `null zero full random urandom tty`, `devpts`, `shm` and the auxiliary files at
//! `/dev/.spxpack`, binds `/sys` and the resolv.conf/hosts copies, registers qemu in a private
//! binfmt_misc when asked, installs the fake-root seccomp filter when asked, and runs the step.
//! All mounts exist only in the step's mount namespace: when its last process exits they are
//! gone, so nothing can leak to the host, whatever happens to spxpack.
//!
//! proot rung: `__sandbox-exec` becomes a child subreaper, runs proot ([`super::proot`]), and
//! kills whatever is left of the process tree afterwards.
//!
//! Both report to the status file `AUX/status` (never visible to the step): `note …`,
//! `error …`, `started`, `exit N`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::mount::{MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags};
use rustix::thread::UnshareFlags;
use serde::{Deserialize, Serialize};

/// Exit code of the helper when the sandbox itself failed (the status file says why).
pub const SETUP_FAILED: i32 = 125;

/// How the user namespace maps ids.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserMap {
    /// One id: namespace root is the calling user (`0 uid 1`).
    Single { uid: u32, gid: u32 },
    /// Every id the parent namespace has, mapped to itself (root only; used to own a private
    /// binfmt_misc instance without losing ownership fidelity).
    Identity,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanKind {
    Namespaces {
        userns: Option<UserMap>,
        /// Register this static qemu for `e_machine` in a private binfmt_misc.
        binfmt: Option<(PathBuf, u16)>,
        fake_root: bool,
    },
    Proot {
        proot: PathBuf,
        qemu: Option<PathBuf>,
    },
}

/// Everything the helper needs, written as JSON to `AUX/plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub kind: PlanKind,
    pub rootfs: PathBuf,
    /// Host directory with `plan.json`, `status` and `guest/` (mounted at `/dev/.spxpack`).
    pub aux: PathBuf,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    /// Identity inside the sandbox; `None` = root (or emulated, see `Runner`).
    pub user: Option<(u32, u32)>,
    pub network_none: bool,
    /// `RUN --mount`s, attached after everything else (their targets exist in the rootfs).
    #[serde(default)]
    pub mounts: Vec<super::GuestMount>,
}

/// Where the guest sees the auxiliary files.
pub const GUEST_AUX: &str = "/dev/.spxpack";

pub(super) struct Status(File);

impl Status {
    fn open(aux: &Path) -> Status {
        let f = OpenOptions::new().create(true).append(true).open(aux.join("status")).unwrap_or_else(|e| {
            eprintln!("spxpack sandbox: cannot open {}: {e}", aux.join("status").display());
            std::process::exit(SETUP_FAILED)
        });
        Status(f)
    }
    pub(super) fn line(&mut self, s: &str) {
        let _ = self.0.write_all(format!("{}\n", s.replace('\n', " ")).as_bytes());
    }
    pub(super) fn fail(&mut self, s: &str) -> ! {
        self.line(&format!("error {s}"));
        std::process::exit(SETUP_FAILED)
    }
}

pub(super) fn errno_text(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_lowercase()
}

fn load_plan(path: &str) -> Plan {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("spxpack sandbox: cannot read the plan {path}: {e}");
        std::process::exit(SETUP_FAILED)
    });
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        eprintln!("spxpack sandbox: invalid plan {path}: {e}");
        std::process::exit(SETUP_FAILED)
    })
}

/// Entry point for `spxpack __sandbox-exec PLAN` / `__sandbox-init PLAN`; call before anything
/// starts a thread (argument parsing is fine, the signal handler is not).
pub fn main(args: &[String]) -> ! {
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("__sandbox-exec"), Some(plan)) => exec_main(plan),
        (Some("__sandbox-init"), Some(plan)) => init_main(plan),
        _ => {
            eprintln!("spxpack: internal sandbox command used wrongly");
            std::process::exit(SETUP_FAILED)
        }
    }
}

pub(super) fn exit_code(st: std::process::ExitStatus) -> i32 {
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
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
            if threads() != 1 {
                st.fail("sandbox helper: unshare needs a single-threaded process");
            }
            // the parent's id ranges, for an identity map
            let parent_uids = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
            let parent_gids = std::fs::read_to_string("/proc/self/gid_map").unwrap_or_default();
            let mut flags = UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC;
            if userns.is_some() {
                flags |= UnshareFlags::NEWUSER;
            }
            if plan.network_none {
                flags |= UnshareFlags::NEWNET;
            }
            // SAFETY-free: the helper is a freshly executed process with one thread (checked).
            #[allow(deprecated)]
            if let Err(e) = rustix::thread::unshare(flags) {
                st.fail(&format!("unshare({}): {}", flag_names(flags), errno_text(e)));
            }
            if let Some(map) = userns {
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
            let child = Command::new("/proc/self/exe")
                .arg("__sandbox-init")
                .arg(plan_path)
                .env_clear()
                .stdin(Stdio::null())
                .spawn();
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
        PlanKind::Proot { proot, qemu } => {
            let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
            let code = super::proot::run(&plan, proot, qemu.as_deref(), &mut st);
            super::proot::kill_descendants();
            std::process::exit(code)
        }
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

/// A mount cloned from the host view before pivoting (`open_tree(OPEN_TREE_CLONE)`).
fn clone_tree(path: &Path, recursive: bool) -> std::io::Result<OwnedFd> {
    let mut f = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        f |= OpenTreeFlags::AT_RECURSIVE;
    }
    Ok(rustix::mount::open_tree(rustix::fs::CWD, path, f)?)
}

fn attach(fd: &OwnedFd, target: &str) -> std::io::Result<()> {
    Ok(rustix::mount::move_mount(fd.as_fd(), "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?)
}

/// A detached procfs for the current PID namespace (`fsopen`/`fsmount`).
fn new_proc() -> Result<OwnedFd, String> {
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
    let fs = rustix::mount::fsopen("proc", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| format!("fsopen proc: {}", errno_text(e)))?;
    rustix::mount::fsconfig_create(&fs).map_err(|e| format!("mount proc: {}", errno_text(e)))?;
    rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(|e| format!("mount proc: {}", errno_text(e)))
}

/// Makes the mount at `p` read-only, keeping its other flags.
fn remount_ro(p: &str) -> std::io::Result<()> {
    remount(p, MountFlags::RDONLY)
}

/// Adds `add` to the flags of the mount at `p`, keeping the others (in a user namespace the
/// kernel refuses a remount that would clear the locked nosuid/nodev/noexec flags).
fn remount(p: &str, add: MountFlags) -> std::io::Result<()> {
    use rustix::fs::StatVfsMountFlags as V;
    let f = rustix::fs::statvfs(p)?.f_flag;
    let mut flags = MountFlags::BIND | add;
    for (v, m) in [
        (V::NOSUID, MountFlags::NOSUID),
        (V::NODEV, MountFlags::NODEV),
        (V::NOEXEC, MountFlags::NOEXEC),
        (V::RDONLY, MountFlags::RDONLY),
        (V::NOATIME, MountFlags::NOATIME),
        (V::NODIRATIME, MountFlags::NODIRATIME),
        (V::RELATIME, MountFlags::RELATIME),
    ] {
        if f.contains(v) {
            flags |= m;
        }
    }
    Ok(rustix::mount::mount_remount(p, flags, "")?)
}

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

fn init_main(plan_path: &str) -> ! {
    let plan = load_plan(plan_path);
    let mut st = Status::open(&plan.aux);
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let PlanKind::Namespaces { userns, binfmt, fake_root } = &plan.kind else {
        st.fail("sandbox init started for a proot plan");
    };
    if let Err(e) = rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC) {
        st.fail(&format!("make mounts private: {}", errno_text(e)));
    }
    // everything from the host view, before pivoting
    let qemu_fd = match binfmt {
        Some((q, _)) => {
            if userns.is_none() {
                st.fail("a private binfmt_misc needs a user namespace");
            }
            match File::open(q) {
                Ok(f) => Some(f),
                Err(e) => st.fail(&format!("open {}: {}", q.display(), errno_text(e))),
            }
        }
        None => None,
    };
    let fresh_proc = new_proc();
    // sysfs alone, without the host's cgroup mounts below it (a user namespace may not
    // separate a mount from its locked submounts: then all of it); read-only once attached
    let sys = clone_tree(Path::new("/sys"), false).or_else(|_| clone_tree(Path::new("/sys"), true));
    let host_proc = clone_tree(Path::new("/proc"), true);
    let mut devs = Vec::new();
    for d in DEVICES {
        match clone_tree(&Path::new("/dev").join(d), false) {
            Ok(fd) => devs.push((d, fd)),
            Err(e) => st.line(&format!("note /dev/{d} not available: {}", errno_text(e))),
        }
    }
    let guest = match clone_tree(&plan.aux.join("guest"), false) {
        Ok(fd) => fd,
        Err(e) => st.fail(&format!("bind {}: {}", plan.aux.join("guest").display(), errno_text(e))),
    };
    let mut extra = Vec::new();
    for m in &plan.mounts {
        extra.push(match &m.source {
            Some(src) => match clone_tree(src, true) {
                Ok(fd) => (Some(fd), src.is_file()),
                Err(e) => st.fail(&format!("bind {} for {}: {}", src.display(), m.target, errno_text(e))),
            },
            None => (None, false),
        });
    }
    if let Err(e) = rustix::mount::mount_bind_recursive(&plan.rootfs, &plan.rootfs) {
        st.fail(&format!("bind {} onto itself: {}", plan.rootfs.display(), errno_text(e)));
    }
    // device nodes a step makes (root keeps CAP_MKNOD, as in Docker) cannot be opened: the
    // host's disks stay out of reach; /dev's own nodes are separate mounts
    if let Err(e) = remount(&plan.rootfs.to_string_lossy(), MountFlags::NODEV) {
        st.fail(&format!("make {} nodev: {}", plan.rootfs.display(), errno_text(e)));
    }
    if let Err(e) = std::env::set_current_dir(&plan.rootfs) {
        st.fail(&format!("chdir {}: {}", plan.rootfs.display(), errno_text(e)));
    }
    match rustix::process::pivot_root(".", ".") {
        Ok(()) => {
            if let Err(e) = rustix::mount::unmount(".", UnmountFlags::DETACH) {
                st.fail(&format!("detach the old root: {}", errno_text(e)));
            }
        }
        Err(e) => {
            st.line(&format!("note pivot_root: {}; using chroot", errno_text(e)));
            if let Err(e) = std::os::unix::fs::chroot(".") {
                st.fail(&format!("chroot {}: {}", plan.rootfs.display(), errno_text(e)));
            }
        }
    }
    let _ = std::env::set_current_dir("/");
    // /proc: fresh in our PID namespace (created before pivoting: in a user namespace the
    // kernel only allows a new procfs while a fully visible one is mounted), else the host's
    let attached = match fresh_proc {
        Ok(fd) => attach(&fd, "/proc").map_err(|e| format!("attach proc: {}", errno_text(e))),
        Err(e) => Err(e),
    };
    if let Err(e) = attached {
        match &host_proc {
            Ok(fd) => {
                st.line(&format!("note {e}; bound the host's /proc"));
                if let Err(e) = attach(fd, "/proc") {
                    st.fail(&format!("bind /proc: {}", errno_text(e)));
                }
            }
            Err(e2) => st.fail(&format!("{e}; clone /proc: {}", errno_text(e2))),
        }
    }
    drop(host_proc);
    setup_dev(&mut st, devs, &guest);
    match &sys {
        Ok(fd) => {
            if let Err(e) = attach(fd, "/sys") {
                st.line(&format!("note bind /sys: {}", errno_text(e)));
            } else {
                // /sys and whatever came with it (cgroups writable by a caller that is real root)
                let mut points = vec!["/sys".to_string()];
                let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
                points.extend(
                    mi.lines()
                        .filter_map(|l| l.split(' ').nth(4))
                        .filter(|p| p.starts_with("/sys/"))
                        .map(str::to_string),
                );
                for p in points {
                    if let Err(e) = remount_ro(&p) {
                        st.line(&format!("note read-only {p}: {}", errno_text(e)));
                    }
                }
            }
        }
        Err(e) => st.line(&format!("note clone /sys: {}", errno_text(e))),
    }
    if let (Some(q), Some((_, machine))) = (&qemu_fd, binfmt) {
        register_binfmt(&mut st, q, *machine);
    }
    // as in Docker: kernel tunables are read-only for the step (root could change the host's)
    for p in ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"] {
        if Path::new(p).exists()
            && let Err(e) =
                rustix::mount::mount_bind_recursive(p, p).map_err(std::io::Error::from).and_then(|()| remount_ro(p))
        {
            st.line(&format!("note read-only {p}: {}", errno_text(e)));
        }
    }
    for f in ["resolv.conf", "hosts"] {
        let src = format!("{GUEST_AUX}/{f}");
        let dst = format!("/etc/{f}");
        if let Err(e) = rustix::mount::mount_bind(src.as_str(), dst.as_str()) {
            st.line(&format!("note bind {dst}: {}", errno_text(e)));
        }
    }
    for (m, (fd, file)) in plan.mounts.iter().zip(extra) {
        // the executor made the mount points in the rootfs; on the /dev tmpfs they are made here
        let t = Path::new(&m.target);
        if m.target.starts_with("/dev/") && std::fs::symlink_metadata(t).is_err() {
            let made = t
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| if file { File::create(t).map(drop) } else { std::fs::create_dir(t) });
            if let Err(e) = made {
                st.fail(&format!("create the mount point {}: {}", m.target, errno_text(e)));
            }
        }
        let done = match fd {
            Some(fd) => attach(&fd, &m.target),
            None => rustix::mount::mount(
                "tmpfs",
                m.target.as_str(),
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                Some(c"mode=755"),
            )
            .map_err(std::io::Error::from),
        };
        if let Err(e) = done.and_then(|()| if m.readonly { remount_ro(&m.target) } else { Ok(()) }) {
            st.fail(&format!("mount {}: {}", m.target, errno_text(e)));
        }
    }
    if let Err(e) = std::env::set_current_dir(&plan.workdir) {
        st.fail(&format!("working directory {} in the rootfs: {}", plan.workdir, errno_text(e)));
    }
    // nothing of the plumbing stays open: the status file is closed once the step runs
    drop(guest);
    drop(qemu_fd);
    drop(sys);
    if let Err(e) = docker_posture() {
        st.fail(&e);
    }
    if *fake_root && let Err(e) = super::seccomp::install_fake_root() {
        st.fail(&e);
    }
    let Some((prog, args)) = plan.argv.split_first() else { st.fail("empty command") };
    let mut c = Command::new(prog);
    c.args(args).env_clear().envs(plan.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
    if let Some((u, g)) = plan.user {
        c.uid(u).gid(g);
    }
    match c.spawn() {
        Ok(mut child) => {
            st.line("started");
            drop(st);
            match child.wait() {
                Ok(s) => std::process::exit(exit_code(s)),
                Err(_) => std::process::exit(SETUP_FAILED),
            }
        }
        Err(e) => {
            let why = if e.raw_os_error() == Some(libc::ENOEXEC) {
                format!("cannot execute {prog}: exec format error (no emulator for this architecture)")
            } else {
                format!("cannot execute {prog}: {}", errno_text(e))
            };
            st.fail(&why)
        }
    }
}

/// Capabilities a step keeps: Docker's default set (`CapEff` 0xa80425fb).
fn docker_caps() -> rustix::thread::CapabilitySet {
    use rustix::thread::CapabilitySet as C;
    C::CHOWN
        | C::DAC_OVERRIDE
        | C::FOWNER
        | C::FSETID
        | C::KILL
        | C::SETGID
        | C::SETUID
        | C::SETPCAP
        | C::NET_BIND_SERVICE
        | C::NET_RAW
        | C::SYS_CHROOT
        | C::MKNOD
        | C::AUDIT_WRITE
        | C::SETFCAP
}

/// Gives the step Docker's default posture, inherited through `execve`: the capability
/// bounding set reduced to Docker's default capabilities (a root step gets exactly those; a
/// setuid program run by another `USER` cannot gain more), empty inheritable and ambient sets,
/// Docker's seccomp deny list, and this init made non-dumpable so the step (which has no
/// `CAP_SYS_PTRACE`) cannot open `/proc/1/{environ,fd,mem,exe}`. no_new_privs stays off, as in
/// Docker, so setuid programs keep working for non-root users (the userns rung's fake-root
/// filter sets it; there every id change is emulated anyway).
fn docker_posture() -> Result<(), String> {
    use rustix::thread::CapabilitySet;
    let last: u32 =
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    let keep = docker_caps().bits();
    for cap in (0..=last.min(63)).filter(|c| keep & (1 << c) == 0) {
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap)) {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(format!("drop capability {cap} from the bounding set: {}", errno_text(e))),
        }
    }
    let mut caps = rustix::thread::capabilities(None).map_err(|e| format!("capget: {}", errno_text(e)))?;
    caps.inheritable = CapabilitySet::empty();
    rustix::thread::set_capabilities(None, caps).map_err(|e| format!("capset: {}", errno_text(e)))?;
    for prog in super::seccomp::docker_default_programs()? {
        super::sys::install_filter(&prog)
            .map_err(|e| format!("cannot install the seccomp filter: {}", errno_text(e)))?;
    }
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("prctl(PR_SET_DUMPABLE): {}", errno_text(e)))
}

fn setup_dev(st: &mut Status, devs: Vec<(&str, OwnedFd)>, guest: &OwnedFd) {
    if let Err(e) = rustix::mount::mount(
        "tmpfs",
        "/dev",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::STRICTATIME,
        Some(c"mode=755,size=65536k"),
    ) {
        st.fail(&format!("mount tmpfs on /dev: {}", errno_text(e)));
    }
    for (d, fd) in devs {
        let p = format!("/dev/{d}");
        if let Err(e) = File::create(&p).and_then(|_| attach(&fd, &p)) {
            st.line(&format!("note bind {p}: {}", errno_text(e)));
        }
    }
    for (l, t) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        let _ = std::os::unix::fs::symlink(t, l);
    }
    for d in ["/dev/pts", "/dev/shm", GUEST_AUX] {
        let _ = std::fs::create_dir(d);
    }
    if let Err(e) = rustix::mount::mount(
        "devpts",
        "/dev/pts",
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620"),
    ) {
        st.line(&format!("note mount devpts: {}", errno_text(e)));
    }
    if let Err(e) = rustix::mount::mount(
        "shm",
        "/dev/shm",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        Some(c"mode=1777,size=65536k"),
    ) {
        st.line(&format!("note mount /dev/shm: {}", errno_text(e)));
    }
    if let Err(e) = attach(guest, GUEST_AUX) {
        st.fail(&format!("bind the auxiliary files at {GUEST_AUX}: {}", errno_text(e)));
    }
}

fn register_binfmt(st: &mut Status, qemu: &File, machine: u16) {
    let dir = "/proc/sys/fs/binfmt_misc";
    if let Err(e) = rustix::mount::mount(
        "binfmt_misc",
        dir,
        "binfmt_misc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    ) {
        st.fail(&format!("mount a private binfmt_misc: {} (needs Linux 6.7 or later)", errno_text(e)));
    }
    let arch = if machine == super::emulation::AARCH64.e_machine {
        super::emulation::AARCH64
    } else {
        super::emulation::X86_64
    };
    // F opens the interpreter now, through our descriptor: the guest root does not need qemu
    let interp = format!("/proc/self/fd/{}", qemu.as_raw_fd());
    let line = arch.binfmt_register_line(&format!("spxpack-qemu-{}", arch.qemu), &interp, "FP");
    if let Err(e) = std::fs::write(format!("{dir}/register"), line) {
        st.fail(&format!("register qemu in the private binfmt_misc: {}", errno_text(e)));
    }
}

/// Reads the status file written by the helper processes.
#[derive(Debug, Default, Clone)]
pub struct StatusReport {
    pub notes: Vec<String>,
    pub error: Option<String>,
    pub started: bool,
    pub exit: Option<i32>,
}

impl StatusReport {
    pub fn read(aux: &Path) -> StatusReport {
        let mut r = StatusReport::default();
        for l in std::fs::read_to_string(aux.join("status")).unwrap_or_default().lines() {
            if let Some(n) = l.strip_prefix("note ") {
                r.notes.push(n.to_string());
            } else if let Some(e) = l.strip_prefix("error ") {
                r.error.get_or_insert_with(|| e.to_string());
            } else if l == "started" {
                r.started = true;
            } else if let Some(c) = l.strip_prefix("exit ") {
                r.exit = c.parse().ok();
            }
        }
        r
    }
}
