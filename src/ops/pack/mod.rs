//! `spxpack build`: extension directory (and the SDK script's flags) → validated plan (no
//! network yet: every manifest, compose and file problem is reported before any download) →
//! images resolved for the target platform and fetched into the cache → image archives streamed
//! straight into the SPX (sizes planned first, so there is no temporary archive and no
//! recompression) → the finished SPX re-read and checked → renamed into place.

mod assign;
mod emit;
mod files;
mod images;
mod model;
mod plan;

use std::path::PathBuf;

use crate::error::Result;
use crate::host_env::HostEnv;
use crate::platform::Platform;
use crate::progress::{Reporter, human_size};
use crate::registry::ClientOptions;
use crate::spx::Target;

pub use model::Plan;

/// How much of the finished SPX to re-check before it is moved into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyLevel {
    /// Skip.
    Off,
    /// Structure, manifest, compose ↔ tags, image configs and layer sizes (re-reads the SPX once).
    Quick,
    /// Also every layer's diff_id over its decompressed bytes.
    Full,
}

pub use crate::registry::Mirror;

/// Everything `build` needs, resolved from flags and environment by the CLI.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// The extension (package) directory with `manifest.json` and the compose file.
    pub dir: PathBuf,
    /// Where relative flag paths (`--icon`, `--udev-rule` fallbacks) are resolved.
    pub cwd: PathBuf,
    /// The SPX to write; default `<extension name>.spx` in `cwd`.
    pub output: Option<PathBuf>,
    /// An explicit target platform (`--platform`, `--amd64`); default from `installation_target`.
    pub platform: Option<Platform>,
    /// Images the robot has (or pulls) itself: not bundled.
    pub provided: Vec<String>,
    /// SDK `--image-archive`: the images come from the flags, not the compose file.
    pub image_archive: Option<PathBuf>,
    pub dockerfiles: Vec<PathBuf>,
    pub build_tags: Vec<String>,
    pub extra_images: Vec<String>,
    pub icon: Option<PathBuf>,
    pub udev_rule: Option<PathBuf>,
    pub additional_files: Vec<PathBuf>,
    pub skip_compose_validation: bool,
    pub cache_dir: Option<PathBuf>,
    pub offline: bool,
    pub client: ClientOptions,
    pub jobs: usize,
    /// Gzip level for content that is not compressed already.
    pub level: u32,
    pub verify: VerifyLevel,
    /// mtime of every entry and the default manifest `date` (`SOURCE_DATE_EPOCH` or 0).
    pub epoch: u64,
    /// How RUN steps of `build:` images are executed.
    pub run: crate::dockerfile::run::RunOptions,
    /// The environment: compose `build.args` keys without a value take theirs from it.
    pub env: HostEnv,
}

impl PackOptions {
    /// Building `dir` with the defaults of the CLI (output in `cwd`, the platform from the
    /// manifest, quick verification, gzip level 6, 4 jobs, epoch 0, an empty environment).
    pub fn new(dir: impl Into<PathBuf>, cwd: impl Into<PathBuf>) -> Self {
        PackOptions {
            dir: dir.into(),
            cwd: cwd.into(),
            output: None,
            platform: None,
            provided: Vec::new(),
            image_archive: None,
            dockerfiles: Vec::new(),
            build_tags: Vec::new(),
            extra_images: Vec::new(),
            icon: None,
            udev_rule: None,
            additional_files: Vec::new(),
            skip_compose_validation: false,
            cache_dir: None,
            offline: false,
            client: ClientOptions::default(),
            jobs: 4,
            level: 6,
            verify: VerifyLevel::Quick,
            epoch: 0,
            run: Default::default(),
            env: HostEnv::default(),
        }
    }
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
}

/// Builds the SPX; see the module docs.
pub fn pack(opts: &PackOptions, reporter: &dyn Reporter) -> Result<PackSummary> {
    let plan = plan::plan(opts, reporter)?;
    reporter.message(&format!(
        "packaging {} {} for {} into {}",
        plan.extension_name,
        plan.version.as_deref().unwrap_or("?"),
        plan.platform.normalized(),
        plan.output.display()
    ));
    let summary = emit::emit(opts, plan, reporter)?;
    reporter.message(&format!("SPX size {}", human_size(summary.size)));
    Ok(summary)
}
