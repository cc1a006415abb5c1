//! What the sandbox's runner and its helper processes share: the [`Plan`] the runner writes
//! to `AUX/plan.json`, the status file the helpers report to (`AUX/status`: `note …`,
//! `error …`, `started`, `exit N`) and how the runner reads it back ([`StatusReport`]), and the
//! helpers' error texts ([`SetupError`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(super) use super::fsutil::errno_text;

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

/// The status file, opened for appending; [`Status::fail`] records an error and exits with
/// [`SETUP_FAILED`].
pub(super) struct Status(File);

impl Status {
    pub(super) fn open(aux: &Path) -> Status {
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

/// Why a helper could not set the step up. It lives inside the helper process only: its text
/// goes to the status file as `error …`, and the runner turns that into an [`crate::error::Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SetupError(pub(super) String);

impl SetupError {
    /// `what: errno text` (e.g. `capset: operation not permitted`).
    pub(super) fn os(what: impl std::fmt::Display, e: impl std::fmt::Display) -> SetupError {
        SetupError(format!("{what}: {}", errno_text(e)))
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads the plan a helper was started with (exits with [`SETUP_FAILED`] when it cannot).
pub(super) fn load_plan(path: &str) -> Plan {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("spxpack sandbox: cannot read the plan {path}: {e}");
        std::process::exit(SETUP_FAILED)
    });
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        eprintln!("spxpack sandbox: invalid plan {path}: {e}");
        std::process::exit(SETUP_FAILED)
    })
}

/// The exit code a shell would report for `st` (128 + signal when killed).
pub(super) fn exit_code(st: std::process::ExitStatus) -> i32 {
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
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
