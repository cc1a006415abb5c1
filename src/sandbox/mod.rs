//! RUN steps without a Docker daemon and without root: the execution core the Dockerfile
//! builder calls for each `RUN`.
//!
//! ```text
//! let runner = sandbox::detect(&platform, &Options::default())?;     // tries every rung for real
//! let cache  = RootfsCache::in_blob_cache(&blob_cache)?;
//! let rootfs = Rootfs::extract(&base_image, &runner, &cache)?;   // cached per base
//! let snap   = Snapshot::take(&rootfs)?;                                   // metadata + ctime fence
//! runner.run(&rootfs, &RunSpec::shell("apt-get update"), &mut |out| ...)?.check()?;
//! let layer  = diff::layer(&snap, &rootfs, &runner.layer_options(&spec, epoch, out_dir))?;
//! ```
//!
//! Sandbox ladder ([`Isolation`]): **root** (mount + PID namespaces, `pivot_root`) → **userns**
//! (an unprivileged user namespace mapping the caller to root, with a seccomp filter that fakes
//! `chown`/`set*id`/device `mknod` and `APT::Sandbox::User=root` so `apt-get` works) →
//! **proot** (ptrace, where namespaces are blocked). Emulation ladder ([`Emulation`]) for a
//! foreign architecture: native → the kernel's qemu binfmt handler with the F flag → a private
//! binfmt_misc instance in the sandbox's user namespace (Linux ≥ 6.7) → `proot -q`. Each
//! combination is detected by running a tiny static probe for the target architecture through
//! the real code path; when none works, [`Report`] says what was tried and how to fix it.
//!
//! Nothing of the sandbox's plumbing reaches a layer: mounts live only in the step's private
//! mount namespace, auxiliary files (CA bundle, resolv.conf/hosts copies, apt config) are on a
//! tmpfs at `/dev/.spxpack`, and `/proc`, `/sys`, `/dev` are never diffed.

pub mod detect;
pub mod diff;
pub mod emulation;
pub mod extract;
pub mod fsutil;
pub mod helper;
mod proot;
pub mod rootfs;
mod seccomp;
pub mod snapshot;
mod sys;
mod user;

use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use detect::{Attempt, Options, Report, detect};
pub use emulation::Emulation;
pub use extract::{Ownership, SideTable, Skipped};
pub use rootfs::{MountStubs, Rootfs, RootfsCache};
pub use snapshot::Snapshot;
pub use user::{home_of, resolve_user};

use crate::error::{Error, Kind, Result};
use crate::platform::Platform;
use helper::{GUEST_AUX, Plan, PlanKind, StatusReport, UserMap};

/// Which sandbox to use (`--isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Try root, then userns, then proot.
    #[default]
    Auto,
    Root,
    Userns,
    Proot,
}

impl Isolation {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Isolation::Auto),
            "root" => Ok(Isolation::Root),
            "userns" => Ok(Isolation::Userns),
            "proot" => Ok(Isolation::Proot),
            _ => Err(Error::input(format!("invalid isolation {s:?}")).with_hint("use auto, root, userns or proot")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Auto => "auto",
            Isolation::Root => "root",
            Isolation::Userns => "userns",
            Isolation::Proot => "proot",
        }
    }
}

/// A step's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network namespace (Docker's `RUN` default for `docker build --network host`).
    #[default]
    Host,
    /// A new network namespace with only a loopback interface (left down).
    None,
}

/// One RUN step.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// The command (`["/bin/sh", "-c", "…"]` for the shell form).
    pub argv: Vec<String>,
    /// The complete environment (image `Env` + build args); `PATH` and `HOME` get Docker's
    /// defaults when missing.
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the rootfs (must exist).
    pub workdir: String,
    /// Numeric user and group (`USER`), resolved by the caller (see [`resolve_user`]).
    pub user: (u32, u32),
    pub network: Network,
    /// Extra CA certificates (PEM) trusted during the step only: appended to the image's bundle
    /// in a file at `/dev/.spxpack/ca-certificates.crt` that `SSL_CERT_FILE`,
    /// `REQUESTS_CA_BUNDLE`, `PIP_CERT`, `CURL_CA_BUNDLE`, `NODE_EXTRA_CA_CERTS`,
    /// `GIT_SSL_CAINFO` and apt's `Acquire::https::CaInfo` point to. Never part of a layer.
    pub ca_bundle: Option<PathBuf>,
    /// Extra mounts (`RUN --mount`); their mount points must exist (see [`Rootfs::mount_stubs`]).
    pub mounts: Vec<GuestMount>,
}

/// A mount for one step: a host directory or file bound at `target`, or a fresh tmpfs. Under
/// proot, `readonly` is not enforced (bind a copy of anything the step must not change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestMount {
    /// The host path; `None` for a tmpfs.
    pub source: Option<PathBuf>,
    /// Absolute path inside the rootfs.
    pub target: String,
    pub readonly: bool,
}

impl RunSpec {
    /// `/bin/sh -c CMD` as root in `/`, with the host network.
    pub fn shell(cmd: &str) -> Self {
        RunSpec { argv: vec!["/bin/sh".into(), "-c".into(), cmd.into()], workdir: "/".into(), ..Default::default() }
    }
    fn display(&self) -> String {
        match self.argv.as_slice() {
            [sh, c, cmd] if sh.ends_with("sh") && c == "-c" => cmd.clone(),
            a => a.join(" "),
        }
    }
}

/// The sandbox rung a [`Runner`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sandbox {
    Root,
    Userns,
    Proot,
}

impl Sandbox {
    pub fn name(self) -> &'static str {
        match self {
            Sandbox::Root => "root",
            Sandbox::Userns => "userns",
            Sandbox::Proot => "proot",
        }
    }
}

/// How a finished step went.
#[derive(Debug, Clone)]
#[must_use = "check the exit code with Outcome::check"]
pub struct Outcome {
    pub code: i32,
    /// The last lines of the combined stdout/stderr (at most [`TAIL_LINES`]).
    pub tail: Vec<String>,
    pub elapsed: Duration,
    /// Messages from the sandbox (fallbacks taken, binds that were skipped).
    pub notes: Vec<String>,
    /// `USER` could not be switched to (single-uid user namespace): the step ran as root and
    /// new files are attributed to the user in the layer.
    pub user_emulated: bool,
    command: String,
}

pub const TAIL_LINES: usize = 15;

impl Outcome {
    /// `Ok` for exit code 0, else an error with the code and the last output lines.
    pub fn check(&self) -> Result<()> {
        if self.code == 0 {
            return Ok(());
        }
        let mut hint = String::from("the last lines of its output:");
        if self.tail.is_empty() {
            hint.push_str(" (none)");
        }
        for l in &self.tail {
            hint.push_str("\n  | ");
            hint.push_str(l);
        }
        Err(Error::input(format!("RUN {} failed with exit code {}", self.command, self.code)).with_hint(hint))
    }
}

/// A working sandbox + emulation combination for one platform, found by [`detect`].
#[derive(Debug, Clone)]
pub struct Runner {
    pub sandbox: Sandbox,
    pub emulation: Emulation,
    pub platform: Platform,
    qemu: Option<PathBuf>,
    proot: Option<PathBuf>,
    helper: PathBuf,
    /// What detection tried before this combination worked.
    pub report: Report,
    /// Warnings about this combination (e.g. an old proot).
    pub warnings: Vec<String>,
}

impl Runner {
    /// How base layers must be extracted for this sandbox.
    pub fn ownership(&self) -> Ownership {
        match self.sandbox {
            Sandbox::Root => Ownership::Apply,
            Sandbox::Userns | Sandbox::Proot => Ownership::Record,
        }
    }

    /// The layer options that match this sandbox for a step run with `spec`.
    pub fn layer_options(&self, spec: &RunSpec, epoch: Option<u64>, out_dir: &Path) -> diff::LayerOptions {
        let owner = match self.sandbox {
            Sandbox::Root => diff::OwnerPolicy::Real,
            _ => diff::OwnerPolicy::Flatten {
                host_uid: rustix::process::geteuid().as_raw(),
                host_gid: rustix::process::getegid().as_raw(),
                new_files: (spec.user != (0, 0)).then_some(spec.user),
            },
        };
        diff::LayerOptions { epoch, owner, out_dir: out_dir.to_path_buf(), ..Default::default() }
    }

    /// A one-line description, e.g. `userns + binfmt (kernel)`.
    pub fn describe(&self) -> String {
        format!("{} + {}", self.sandbox.name(), self.emulation.name())
    }

    /// Runs one step in `rootfs`, streaming its combined output to `output`. `Err` means the
    /// sandbox failed; the step's own exit code is in the [`Outcome`] (see [`Outcome::check`]).
    pub fn run(&self, rootfs: &Rootfs, spec: &RunSpec, output: &mut dyn FnMut(&[u8])) -> Result<Outcome> {
        if rootfs.ownership() != self.ownership() {
            return Err(Error::internal(format!(
                "the rootfs was extracted for {:?} ownership but the {} sandbox needs {:?}",
                rootfs.ownership(),
                self.sandbox.name(),
                self.ownership()
            )));
        }
        if spec.argv.is_empty() || spec.argv[0].is_empty() {
            return Err(Error::input("RUN has an empty command"));
        }
        if spec.argv[0].starts_with('-') {
            return Err(Error::input(format!("RUN command {:?} starts with '-'", spec.argv[0])));
        }
        if !spec.workdir.starts_with('/') {
            return Err(Error::input(format!("working directory {:?} is not absolute", spec.workdir)));
        }
        if let Some(m) = spec.mounts.iter().find(|m| !m.target.starts_with('/') || m.target.contains('\0')) {
            return Err(Error::input(format!("mount target {:?} is not an absolute path", m.target)));
        }
        if spec.network == Network::None && self.sandbox == Sandbox::Proot {
            return Err(Error::unsupported(
                "--network none needs the root or userns sandbox; proot shares the host network",
            )
            .with_hint("run with --isolation root or userns, or use the host network"));
        }
        let started = Instant::now();
        let aux = rootfs::WorkDir::new_in(rootfs.work_dir(), "step-")?;
        let guest = aux.path().join("guest");
        let io_err = |p: &Path, e| Error::io("cannot write", p, e);
        std::fs::create_dir(&guest).map_err(|e| io_err(&guest, e))?;
        set_mode(aux.path(), 0o755)?;
        let (resolv, hosts) = match spec.network {
            Network::Host => (
                std::fs::read("/etc/resolv.conf").unwrap_or_default(),
                std::fs::read("/etc/hosts").unwrap_or_else(|_| DEFAULT_HOSTS.as_bytes().to_vec()),
            ),
            Network::None => (Vec::new(), DEFAULT_HOSTS.as_bytes().to_vec()),
        };
        write_file(&guest.join("resolv.conf"), &resolv)?;
        write_file(&guest.join("hosts"), &hosts)?;

        let mut env: Vec<(String, String)> = spec.env.clone();
        let has = |env: &[(String, String)], k: &str| env.iter().any(|(n, _)| n == k);
        if !has(&env, "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        if !has(&env, "HOME") {
            env.push(("HOME".into(), if spec.user.0 == 0 { "/root".into() } else { "/".into() }));
        }
        let mut apt = String::new();
        let mut notes = Vec::new();
        if let Some(ca) = &spec.ca_bundle {
            let extra =
                crate::input::read(ca, crate::input::MAX_TEXT).map_err(|e| match crate::input::refusal(&e) {
                    Some(refused) => refused,
                    None => Error::io("cannot read the CA bundle", ca, e).with_hint("pass a PEM file with --ca-bundle"),
                })?;
            if !extra.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(Error::input(format!("{} contains no PEM certificate", ca.display())));
            }
            let mut bundle = fsutil::read_in_root(rootfs.path(), "etc/ssl/certs/ca-certificates.crt", 64 << 20)
                .ok()
                .flatten()
                .unwrap_or_default();
            if !bundle.is_empty() && !bundle.ends_with(b"\n") {
                bundle.push(b'\n');
            }
            bundle.extend_from_slice(&extra);
            write_file(&guest.join("ca-certificates.crt"), &bundle)?;
            let p = format!("{GUEST_AUX}/ca-certificates.crt");
            for k in [
                "SSL_CERT_FILE",
                "REQUESTS_CA_BUNDLE",
                "PIP_CERT",
                "CURL_CA_BUNDLE",
                "NODE_EXTRA_CA_CERTS",
                "GIT_SSL_CAINFO",
            ] {
                if !has(&env, k) {
                    env.push((k.into(), p.clone()));
                }
            }
            apt.push_str(&format!("Acquire::https::CaInfo \"{p}\";\n"));
        }
        let fake_root = self.sandbox == Sandbox::Userns;
        if fake_root {
            apt.push_str("APT::Sandbox::User \"root\";\n");
        }
        if !apt.is_empty() {
            if has(&env, "APT_CONFIG") {
                notes.push("APT_CONFIG is set by the build; not adding spxpack's apt settings".into());
            } else {
                write_file(&guest.join("apt.conf"), apt.as_bytes())?;
                env.push(("APT_CONFIG".into(), format!("{GUEST_AUX}/apt.conf")));
            }
        }

        let mut user_emulated = false;
        let user = if spec.user == (0, 0) {
            None
        } else if self.sandbox == Sandbox::Userns {
            user_emulated = true;
            None
        } else {
            Some(spec.user)
        };
        let kind = match self.sandbox {
            Sandbox::Proot => PlanKind::Proot {
                proot: self.proot.clone().ok_or_else(|| Error::internal("proot runner without proot"))?,
                qemu: if self.emulation == Emulation::ProotQemu { self.qemu.clone() } else { None },
            },
            Sandbox::Root | Sandbox::Userns => {
                let binfmt = if self.emulation == Emulation::PrivateBinfmt {
                    let arch = emulation::Arch::of(&self.platform)
                        .ok_or_else(|| Error::internal("private binfmt without a known architecture"))?;
                    Some((
                        self.qemu.clone().ok_or_else(|| Error::internal("private binfmt without qemu"))?,
                        arch.e_machine,
                    ))
                } else {
                    None
                };
                let userns = match self.sandbox {
                    Sandbox::Userns => Some(UserMap::Single {
                        uid: rustix::process::geteuid().as_raw(),
                        gid: rustix::process::getegid().as_raw(),
                    }),
                    _ if binfmt.is_some() => Some(UserMap::Identity),
                    _ => None,
                };
                PlanKind::Namespaces { userns, binfmt, fake_root }
            }
        };
        let plan = Plan {
            kind,
            rootfs: rootfs.path().to_path_buf(),
            aux: aux.path().to_path_buf(),
            argv: spec.argv.clone(),
            env,
            workdir: spec.workdir.clone(),
            user,
            network_none: spec.network == Network::None,
            mounts: spec.mounts.clone(),
        };
        let plan_path = aux.path().join("plan.json");
        write_file(&plan_path, &serde_json::to_vec(&plan).map_err(|e| Error::internal(e.to_string()))?)?;

        let (mut reader, writer) = std::io::pipe().map_err(|e| Error::io("cannot create a pipe for", &plan_path, e))?;
        let writer2 = writer.try_clone().map_err(|e| Error::io("cannot create a pipe for", &plan_path, e))?;
        if self.sandbox == Sandbox::Proot {
            // proot shares the host's /proc: at least spxpack's own environment and descriptors
            // (credentials, the output pipe) are then closed to a step of the same user
            let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
        }
        // the helper gets no environment of spxpack's (credentials, tokens): all it needs is
        // in the plan, and the step's environment is the plan's `env` alone
        let mut child = Command::new(&self.helper)
            .arg("__sandbox-exec")
            .arg(&plan_path)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                Error::io("cannot start the sandbox helper", &self.helper, e)
                    .with_hint("the helper is the spxpack executable itself (Options::helper)")
            })?;
        let pgid = child.id();
        let hook = crate::atomic::register_hook(move || kill_group(pgid));
        let mut tail = Tail::default();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    output(&buf[..n]);
                    tail.push(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    kill_group(pgid);
                    crate::atomic::unregister_hook(hook);
                    return Err(Error::from_io("cannot read the output of", "the RUN step", e));
                }
            }
        }
        let status = child.wait();
        // nothing of the step may survive it (the PID namespace already ensures this)
        kill_group(pgid);
        crate::atomic::unregister_hook(hook);
        let status = status.map_err(|e| Error::from_io("cannot wait for", "the RUN step", e))?;
        let report = StatusReport::read(aux.path());
        notes.extend(report.notes.iter().cloned());
        for n in &notes {
            tracing::info!("sandbox: {n}");
        }
        if let Some(err) = report.error {
            return Err(Error::new(Kind::Unsupported, format!("the {} sandbox failed: {err}", self.describe()))
                .with_hint(
                    "run `spxpack` with --isolation to choose another sandbox, or -v to see what was detected",
                ));
        }
        let code = match (report.started, report.exit) {
            (true, Some(c)) => c,
            _ => {
                use std::os::unix::process::ExitStatusExt;
                return Err(Error::internal(format!(
                    "the sandbox helper ended without running the step ({})",
                    match status.code() {
                        Some(c) => format!("exit code {c}"),
                        None => format!("signal {}", status.signal().unwrap_or(0)),
                    }
                )));
            }
        };
        Ok(Outcome {
            code,
            tail: tail.lines(TAIL_LINES),
            elapsed: started.elapsed(),
            notes,
            user_emulated,
            command: truncate(&spec.display(), 120),
        })
    }
}

/// Entry point of spxpack's internal `__sandbox-*` commands (see [`helper`]). Called by `main`
/// before anything else.
pub fn internal_main(args: &[String]) -> ! {
    match args.first().map(String::as_str) {
        Some("__sandbox-statx") => detect::statx_main(args),
        _ => helper::main(args),
    }
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

fn truncate(s: &str, n: usize) -> String {
    let one = s.replace('\n', " ");
    if one.chars().count() <= n { one } else { one.chars().take(n).collect::<String>() + "…" }
}

fn write_file(p: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(p, data).map_err(|e| Error::io("cannot write", p, e))?;
    set_mode(p, 0o644)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io("cannot chmod", p, e))
}

/// Kills a process group and waits (up to 3 s) until none of its processes is running.
pub(crate) fn kill_group(pgid: u32) {
    let Some(pid) = rustix::process::Pid::from_raw(pgid as i32) else { return };
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && group_alive(pgid) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn group_alive(pgid: u32) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else { return false };
    rd.flatten().any(|e| {
        e.file_name().to_string_lossy().parse::<u32>().is_ok()
            && std::fs::read_to_string(e.path().join("stat")).ok().is_some_and(|s| {
                let f: Vec<&str> = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("").split_whitespace().collect();
                f.len() > 3 && f[0] != "Z" && f[0] != "X" && f[3].parse::<u32>().ok() == Some(pgid)
            })
    })
}

/// The last lines of a byte stream (bounded memory).
#[derive(Default)]
struct Tail {
    buf: VecDeque<u8>,
}

impl Tail {
    const MAX: usize = 16 << 10;
    fn push(&mut self, data: &[u8]) {
        self.buf.extend(data);
        while self.buf.len() > Self::MAX {
            self.buf.pop_front();
        }
    }
    fn lines(&self, n: usize) -> Vec<String> {
        let v: Vec<u8> = self.buf.iter().copied().collect();
        let s = String::from_utf8_lossy(&v);
        let all: Vec<&str> = s.lines().collect();
        all[all.len().saturating_sub(n)..].iter().map(|l| truncate(l, 400)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        t.push(b"partial");
        assert_eq!(t.lines(3), vec!["line 98", "line 99", "partial"]);
    }
}
