//! `spxpack build`: extension directory (and the SDK script's flags) → validated plan (no
//! network yet: every manifest, compose and file problem is reported before any download) →
//! images resolved for the target platform and fetched into the cache → image archives streamed
//! straight into the SPX (sizes planned first, so there is no temporary archive and no
//! recompression) → the finished SPX re-read and checked → renamed into place.

mod emit;
mod files;
mod images;
mod plan;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::progress::{Reporter, human_size};
use crate::reference::Reference;
use crate::registry::ClientOptions;
use crate::spx::Target;

pub use plan::Plan;

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

/// A registry rewrite: images of `from` (e.g. `docker.io`) are pulled from `to`
/// (`host[:port][/prefix]`). The `RepoTags` and the compose file keep the original names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub from: String,
    pub to_host: String,
    pub to_prefix: String,
}

impl Mirror {
    /// Parses `FROM=TO`, e.g. `docker.io=127.0.0.1:5000` or `nvcr.io=mirror.local/nvcr`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::input(format!("invalid registry mirror {s:?}"))
                .with_hint("use REGISTRY=HOST[:PORT][/PREFIX], e.g. docker.io=127.0.0.1:5000")
        };
        let (from, to) = s.split_once('=').ok_or_else(bad)?;
        let from = crate::registry::auth::normalize_registry(from.trim());
        let to = to.trim().trim_end_matches('/');
        let (host, prefix) = match to.split_once('/') {
            Some((h, p)) => (h, p),
            None => (to, ""),
        };
        if from.is_empty() || host.is_empty() || Reference::parse(&format!("{host}/x")).is_err() {
            return Err(bad());
        }
        Ok(Mirror { from, to_host: host.to_string(), to_prefix: prefix.to_string() })
    }

    /// The reference to pull instead of `r`, if this mirror applies.
    pub fn apply(&self, r: &Reference) -> Option<Reference> {
        if r.registry != self.from {
            return None;
        }
        let repository = if self.to_prefix.is_empty() {
            r.repository.clone()
        } else {
            format!("{}/{}", self.to_prefix, r.repository)
        };
        Some(Reference { registry: self.to_host.clone(), repository, tag: r.tag.clone(), digest: r.digest.clone() })
    }
}

/// Everything `build` needs, resolved from flags and environment by the CLI.
#[derive(Debug, Clone)]
pub struct BuildOptions {
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
    pub mirrors: Vec<Mirror>,
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
    pub run: crate::build::run::RunOptions,
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
pub struct BuildSummary {
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
pub fn build(opts: &BuildOptions, reporter: &dyn Reporter) -> Result<BuildSummary> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_rewrite_the_registry_only() {
        let m = Mirror::parse("docker.io=127.0.0.1:15000").unwrap();
        let r = m.apply(&Reference::parse("docking_callback:arm64").unwrap()).unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:15000/library/docking_callback:arm64");
        assert!(m.apply(&Reference::parse("nvcr.io/nvidia/l4t-base:35.4.1").unwrap()).is_none());
        let m = Mirror::parse("index.docker.io=mirror.example:5000/hub/").unwrap();
        let r = m.apply(&Reference::parse("user/app").unwrap()).unwrap();
        assert_eq!(r.to_string(), "mirror.example:5000/hub/user/app");
        assert!(Mirror::parse("docker.io").is_err());
        assert!(Mirror::parse("docker.io=").is_err());
    }
}
