//! What `spxpack build` is asked to do: [`PackOptions`], filled by the CLI from its flags and
//! the environment.

use std::path::PathBuf;

use crate::host_env::HostEnv;
use crate::platform::Platform;
use crate::registry::ClientOptions;

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
    /// `--push-images`: after the SPX is written, push every bundled image whose compose name
    /// is a registry reference (names a registry host) under that name.
    pub push_images: Option<crate::ops::push::UploadOptions>,
    /// How far a compressed input archive (or an `ADD`ed local archive) may expand.
    pub limits: crate::compress::Limits,
    /// Content warnings (wrong-architecture executables) are errors.
    pub strict: bool,
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
            push_images: None,
            limits: crate::compress::Limits::default(),
            strict: false,
        }
    }
}
