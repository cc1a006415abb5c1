//! `spxpack __sandbox-init PLAN`: PID 1 of a namespace step. It makes every mount private,
//! pivots into the rootfs, mounts a fresh `/proc` (or a recursive bind of the host's), a tmpfs
//! `/dev` with bind-mounted `null zero full random urandom tty`, `devpts`, `shm` and the
//! auxiliary files at `/dev/.spxpack`, binds `/sys` and the resolv.conf/hosts copies, registers
//! qemu in a private binfmt_misc when asked, attaches the step's `--mount`s, gives the step
//! Docker's default posture (capabilities, seccomp deny list, non-dumpable init), installs the
//! fake-root seccomp filter when asked, and runs the step. All mounts exist only in the step's
//! mount namespace: when its last process exits they are gone, so nothing can leak to the host,
//! whatever happens to spxpack.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::mount::{MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags};

use super::GuestMount;
use super::plan::{GUEST_AUX, Plan, PlanKind, SETUP_FAILED, SetupError, Status, errno_text, exit_code, load_plan};

/// `spxpack __sandbox-init PLAN`: PID 1 of the step's namespaces. The order of the steps
/// matters: everything from the host's view is opened before pivoting, the step's mounts come
/// after the sandbox's own, and the posture (capabilities, seccomp, non-dumpable) is the last
/// thing before the step starts.
pub(super) fn init_main(plan_path: &str) -> ! {
    let plan = load_plan(plan_path);
    let mut st = Status::open(&plan.aux);
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let PlanKind::Namespaces { userns, binfmt, fake_root } = &plan.kind else {
        st.fail("sandbox init started for a proot plan");
    };
    if let Err(e) = rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC) {
        st.fail(&format!("make mounts private: {}", errno_text(e)));
    }
    let host = HostView::open(&mut st, &plan, userns.is_some(), binfmt.as_ref());
    enter_rootfs(&mut st, &plan.rootfs);
    mount_proc(&mut st, host.fresh_proc, host.host_proc);
    setup_dev(&mut st, host.devs, &host.guest);
    mount_sys(&mut st, &host.sys);
    if let (Some(q), Some((_, machine))) = (&host.qemu, binfmt) {
        register_binfmt(&mut st, q, *machine);
    }
    protect_kernel_tunables(&mut st);
    bind_network_files(&mut st);
    attach_step_mounts(&mut st, &plan.mounts, host.extra);
    if let Err(e) = std::env::set_current_dir(&plan.workdir) {
        st.fail(&format!("working directory {} in the rootfs: {}", plan.workdir, errno_text(e)));
    }
    // nothing of the plumbing stays open: the status file is closed once the step runs
    drop(host.guest);
    drop(host.qemu);
    drop(host.sys);
    if let Err(e) = docker_posture() {
        st.fail(&e.0);
    }
    if *fake_root && let Err(e) = super::seccomp::install_fake_root() {
        st.fail(&e.0);
    }
    run_step(st, &plan)
}

/// The host devices bound into the step's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// What the init takes from the host's view before pivoting into the rootfs.
struct HostView {
    /// The static qemu for a private binfmt_misc.
    qemu: Option<File>,
    /// A new procfs for the step's PID namespace (made before pivoting: in a user namespace the
    /// kernel only allows a new procfs while a fully visible one is mounted).
    fresh_proc: Result<OwnedFd, SetupError>,
    /// The host's `/proc`, the fallback when a fresh one cannot be attached.
    host_proc: std::io::Result<OwnedFd>,
    sys: std::io::Result<OwnedFd>,
    devs: Vec<(&'static str, OwnedFd)>,
    /// `AUX/guest`, attached at [`GUEST_AUX`].
    guest: OwnedFd,
    /// The sources of the step's `--mount`s, in order (`None` for a tmpfs), and whether each is
    /// a file.
    extra: Vec<(Option<OwnedFd>, bool)>,
}

impl HostView {
    fn open(st: &mut Status, plan: &Plan, userns: bool, binfmt: Option<&(PathBuf, u16)>) -> HostView {
        let qemu = match binfmt {
            Some((q, _)) => {
                if !userns {
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
        HostView { qemu, fresh_proc, host_proc, sys, devs, guest, extra }
    }
}

/// Binds the rootfs onto itself (nodev) and pivots into it (chroot when pivot_root fails).
fn enter_rootfs(st: &mut Status, rootfs: &Path) {
    if let Err(e) = rustix::mount::mount_bind_recursive(rootfs, rootfs) {
        st.fail(&format!("bind {} onto itself: {}", rootfs.display(), errno_text(e)));
    }
    // device nodes a step makes (root keeps CAP_MKNOD, as in Docker) cannot be opened: the
    // host's disks stay out of reach; /dev's own nodes are separate mounts
    if let Err(e) = remount(&rootfs.to_string_lossy(), MountFlags::NODEV) {
        st.fail(&format!("make {} nodev: {}", rootfs.display(), errno_text(e)));
    }
    if let Err(e) = std::env::set_current_dir(rootfs) {
        st.fail(&format!("chdir {}: {}", rootfs.display(), errno_text(e)));
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
                st.fail(&format!("chroot {}: {}", rootfs.display(), errno_text(e)));
            }
        }
    }
    let _ = std::env::set_current_dir("/");
}

/// `/proc`: fresh in our PID namespace, else the host's.
fn mount_proc(st: &mut Status, fresh: Result<OwnedFd, SetupError>, host: std::io::Result<OwnedFd>) {
    let attached = match fresh {
        Ok(fd) => attach(&fd, "/proc").map_err(|e| SetupError::os("attach proc", e)),
        Err(e) => Err(e),
    };
    if let Err(e) = attached {
        match &host {
            Ok(fd) => {
                st.line(&format!("note {e}; bound the host's /proc"));
                if let Err(e) = attach(fd, "/proc") {
                    st.fail(&format!("bind /proc: {}", errno_text(e)));
                }
            }
            Err(e2) => st.fail(&format!("{e}; clone /proc: {}", errno_text(e2))),
        }
    }
}

/// `/sys`, read-only with whatever came with it (cgroups writable by a caller that is real root).
fn mount_sys(st: &mut Status, sys: &std::io::Result<OwnedFd>) {
    let fd = match sys {
        Ok(fd) => fd,
        Err(e) => return st.line(&format!("note clone /sys: {}", errno_text(e))),
    };
    if let Err(e) = attach(fd, "/sys") {
        return st.line(&format!("note bind /sys: {}", errno_text(e)));
    }
    let mut points = vec!["/sys".to_string()];
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    points
        .extend(mi.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with("/sys/")).map(str::to_string));
    for p in points {
        if let Err(e) = remount_ro(&p) {
            st.line(&format!("note read-only {p}: {}", errno_text(e)));
        }
    }
}

/// As in Docker: kernel tunables are read-only for the step (root could change the host's).
fn protect_kernel_tunables(st: &mut Status) {
    for p in ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"] {
        if Path::new(p).exists()
            && let Err(e) =
                rustix::mount::mount_bind_recursive(p, p).map_err(std::io::Error::from).and_then(|()| remount_ro(p))
        {
            st.line(&format!("note read-only {p}: {}", errno_text(e)));
        }
    }
}

/// The step's `/etc/resolv.conf` and `/etc/hosts`: the copies in the auxiliary files.
fn bind_network_files(st: &mut Status) {
    for f in ["resolv.conf", "hosts"] {
        let src = format!("{GUEST_AUX}/{f}");
        let dst = format!("/etc/{f}");
        if let Err(e) = rustix::mount::mount_bind(src.as_str(), dst.as_str()) {
            st.line(&format!("note bind {dst}: {}", errno_text(e)));
        }
    }
}

/// The step's `RUN --mount`s, attached after everything else.
fn attach_step_mounts(st: &mut Status, mounts: &[GuestMount], sources: Vec<(Option<OwnedFd>, bool)>) {
    for (m, (fd, file)) in mounts.iter().zip(sources) {
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
}

/// Starts the step with the plan's environment alone and waits for it; the status file is
/// closed before the step can see it.
fn run_step(mut st: Status, plan: &Plan) -> ! {
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
fn new_proc() -> Result<OwnedFd, SetupError> {
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
    let fs =
        rustix::mount::fsopen("proc", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| SetupError::os("fsopen proc", e))?;
    rustix::mount::fsconfig_create(&fs).map_err(|e| SetupError::os("mount proc", e))?;
    rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(|e| SetupError::os("mount proc", e))
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
fn docker_posture() -> Result<(), SetupError> {
    use rustix::thread::CapabilitySet;
    let last: u32 =
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    let keep = docker_caps().bits();
    for cap in (0..=last.min(63)).filter(|c| keep & (1 << c) == 0) {
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap)) {
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(SetupError::os(format!("drop capability {cap} from the bounding set"), e)),
        }
    }
    let mut caps = rustix::thread::capabilities(None).map_err(|e| SetupError::os("capget", e))?;
    caps.inheritable = CapabilitySet::empty();
    rustix::thread::set_capabilities(None, caps).map_err(|e| SetupError::os("capset", e))?;
    for prog in super::seccomp::docker_default_programs()? {
        super::sys::install_filter(&prog).map_err(|e| SetupError::os("cannot install the seccomp filter", e))?;
    }
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| SetupError::os("prctl(PR_SET_DUMPABLE)", e))
}

/// The step's `/dev`: a tmpfs with the host's harmless devices bound in, `devpts`, `shm` and the
/// auxiliary files.
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

/// Registers qemu (flags `FP`) in a binfmt_misc instance private to the user namespace.
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
