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

mod apply;
pub mod detect;
pub mod diff;
pub mod emulation;
pub mod extract;
pub mod fsutil;
pub mod helper;
mod init;
pub mod plan;
mod proot;
pub mod rootfs;
mod seccomp;
pub mod snapshot;
mod step;
mod sys;
mod user;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use detect::{Attempt, Options, Report, detect};
pub use emulation::Emulation;
pub use extract::{Ownership, SideTable, Skipped};
pub use rootfs::{MountStubs, Rootfs, RootfsCache};
pub use snapshot::Snapshot;
pub use user::{home_of, resolve_user};

use crate::error::{Error, Result};
use crate::platform::Platform;

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
}

/// Entry point of spxpack's internal `__sandbox-*` commands (see [`helper`]). Called by `main`
/// before anything else.
pub fn internal_main(args: &[String]) -> ! {
    match args.first().map(String::as_str) {
        Some("__sandbox-statx") => detect::statx_main(args),
        _ => helper::main(args),
    }
}
