//! The data that flows between the steps of a build: the compose file as read ([`ComposeIn`]),
//! which images are bundled ([`ImageReq`], from a source or a Dockerfile build), the `images[]`
//! archives they go into ([`ArchivePlan`]), the validated [`Plan`] the writer takes, and what
//! was written ([`PackSummary`]).

use std::path::{Path, PathBuf};

use crate::platform::Platform;
use crate::source::Source;
use crate::spx::compose::{Compose, Service};
use crate::spx::image_check::ArchiveInfo;
use crate::spx::writer::Entry;
use crate::spx::{COMPOSE, Target};

/// The compose file found in the extension directory, and what it says when it could be read.
#[derive(Debug, Default)]
pub struct ComposeIn {
    pub path: Option<PathBuf>,
    pub compose: Option<Compose>,
}

impl ComposeIn {
    /// The compose file's path for messages.
    pub fn label(&self) -> String {
        self.path.as_ref().map_or_else(|| COMPOSE.to_string(), |p| p.display().to_string())
    }
    /// Its services (none when it could not be read).
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.compose.iter().flat_map(|c| &c.services)
    }
}

/// `dir` joined with `name`, for messages.
pub fn shown(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// One image to bundle.
#[derive(Debug, Clone)]
pub struct ImageReq {
    /// The `RepoTags` entry (the compose `image:` string, with `:latest` when it has no tag).
    pub tag: String,
    pub from: ImageFrom,
    /// For messages: what the user wrote and where it is pulled from.
    pub shown: String,
    /// Index into [`Plan::archives`].
    pub archive: usize,
}

/// Where a bundled image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFrom {
    /// Pulled or read: a registry reference, an OCI layout, an archive.
    Source(Source),
    /// Built from a Dockerfile by spxpack's builder.
    Build(DockerBuild),
}

/// A Dockerfile build: compose `build:` or the SDK script's `-f/-t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerBuild {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub args: Vec<(String, String)>,
    pub target: Option<String>,
}

/// An `images[]` archive.
#[derive(Debug, Clone)]
pub enum ArchiveKind {
    /// Written by spxpack from these [`Plan::images`].
    Generated { reqs: Vec<usize> },
    /// Taken byte for byte from the extension directory.
    Prebuilt { path: PathBuf, size: u64, info: ArchiveInfo },
}

#[derive(Debug, Clone)]
pub struct ArchivePlan {
    pub name: String,
    pub kind: ArchiveKind,
}

/// A validated build.
#[derive(Debug, Clone)]
pub struct Plan {
    pub output: PathBuf,
    pub extension_name: String,
    pub version: Option<String>,
    pub target: Target,
    pub platform: Platform,
    pub manifest_added: Vec<String>,
    pub images: Vec<ImageReq>,
    pub archives: Vec<ArchivePlan>,
    /// Final entries; generated archives have `size: 0` until emit plans them.
    pub entries: Vec<Entry>,
    /// SDK `--image-archive`: also write archive `.0` to path `.1`.
    pub tee: Option<(usize, PathBuf)>,
}

/// One image archive of the result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchiveSummary {
    pub name: String,
    pub size: u64,
    pub tags: Vec<String>,
    /// Taken as is from the extension directory.
    pub prebuilt: bool,
}

/// What `build` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackSummary {
    pub output: PathBuf,
    pub extension_name: String,
    pub target: Target,
    pub platform: String,
    pub entries: Vec<String>,
    pub archives: Vec<ArchiveSummary>,
    /// Manifest keys spxpack added (`installation_target`, `date`, …).
    pub manifest_added: Vec<String>,
    /// SDK `--image-archive` copy.
    pub image_archive: Option<PathBuf>,
    pub size: u64,
    /// `--push-images`: what was pushed where.
    pub pushed: Vec<PushedImage>,
}

/// One image `--push-images` pushed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushedImage {
    /// The compose name it was pushed under.
    pub image: String,
    pub digest: String,
    pub uploaded: usize,
    pub mounted: usize,
    pub existing: usize,
    pub bytes_uploaded: u64,
}
