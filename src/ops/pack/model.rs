//! The data a build's planning hands to the image resolution and the writer: which images are
//! bundled ([`ImageReq`], from a source or a Dockerfile build), the `images[]` archives they go
//! into ([`ArchivePlan`]) and the validated [`Plan`].

use std::path::PathBuf;

use crate::platform::Platform;
use crate::source::Source;
use crate::spx::Target;
use crate::spx::image_check::ArchiveInfo;
use crate::spx::writer::Entry;

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
