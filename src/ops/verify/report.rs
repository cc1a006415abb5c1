//! What `verify` and `inspect` learn about an SPX ([`SpxReport`]), and how to verify.

use serde::Serialize;
use serde_json::Value;

use crate::compress::Limits;
use crate::digest::Digest;
use crate::platform::Platform;
use crate::problem::Problems;
use crate::spx::Target;
use crate::spx::image_check::ArchiveInfo;

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Recompute every layer's diff_id and blob digest (reads and decompresses everything).
    pub full: bool,
    /// Overrides the platform implied by `installation_target`.
    pub platform: Option<Platform>,
    /// Decompression-bomb guard for the SPX stream, the image archives and their layers.
    pub limits: Limits,
}

/// One SPX member.
#[derive(Debug, Clone, Serialize)]
pub struct EntryInfo {
    pub name: String,
    /// `file`, `dir`, `symlink`, `hardlink`.
    pub kind: &'static str,
    pub size: u64,
    pub mode: u32,
}

/// An image archive inside the SPX.
#[derive(Debug, Clone, Serialize)]
pub struct NamedArchive {
    pub name: String,
    pub size: u64,
    #[serde(flatten)]
    pub info: ArchiveInfo,
}

/// A compose service and where its image comes from.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceInfo {
    pub name: String,
    pub image: Option<String>,
    /// `bundled in X.tar.gz`, `provided on the robot`, `pulled by the robot`.
    pub status: String,
}

/// Everything `verify` and `inspect` learn about an SPX.
#[derive(Debug, Clone, Serialize)]
pub struct SpxReport {
    pub file: String,
    pub compression: &'static str,
    pub entries: Vec<EntryInfo>,
    pub manifest: Option<Value>,
    pub extension_name: Option<String>,
    pub target: Option<Target>,
    pub platform: String,
    pub archives: Vec<NamedArchive>,
    pub services: Vec<ServiceInfo>,
    pub findings: Problems,
}

impl SpxReport {
    pub fn ok(&self) -> bool {
        !self.findings.has_errors()
    }
}

/// A top-level-or-not entry as the cross checks need it.
pub(super) struct Top {
    pub(super) size: u64,
    /// The first 64 bytes of a file.
    pub(super) head: Vec<u8>,
    /// The whole content of the manifest and the compose file (when small enough).
    pub(super) data: Option<Vec<u8>>,
    pub(super) sha: Option<Digest>,
    pub(super) kind: &'static str,
    /// What the image checks learnt, for an image archive.
    pub(super) archive: Option<ArchiveInfo>,
}

impl Top {
    pub(super) fn new(kind: &'static str, size: u64) -> Self {
        Top { size, head: vec![], data: None, sha: None, kind, archive: None }
    }
}

impl SpxReport {
    pub(super) fn empty(file: &str) -> Self {
        SpxReport {
            file: file.to_string(),
            compression: "none",
            entries: Vec::new(),
            manifest: None,
            extension_name: None,
            target: None,
            platform: String::new(),
            archives: Vec::new(),
            services: Vec::new(),
            findings: Problems::new(),
        }
    }
}
