//! The seam where RUN plugs in. The builder hands a [`RunRequest`] (the stage's layers so far,
//! the command, environment, user, working directory and platform) to a [`StepExecutor`];
//! the executor returns the layer it produced (already in the blob cache) and the entries of
//! that layer, so the builder can keep tracking the stage's filesystem. Without an executor a
//! RUN step is an error that names its `file:line:col`, reported before any work starts.

use std::sync::Arc;

use super::dockerfile::Loc;
use super::fsview::{FsView, LayerEntry};
use super::layer::Layer;
use crate::error::{Error, Result};
use crate::image::{BlobSource, Descriptor};
use crate::platform::Platform;
use crate::progress::Reporter;

/// One layer of the stage's root filesystem, bottom first.
#[derive(Clone)]
pub struct RootLayer {
    pub desc: Descriptor,
    pub diff_id: String,
    pub source: Arc<dyn BlobSource>,
}

/// Everything needed to execute one RUN step.
pub struct RunRequest<'a> {
    pub loc: &'a Loc,
    /// The argv to execute (the shell form already wrapped in SHELL / `/bin/sh -c`).
    pub argv: Vec<String>,
    /// `KEY=value` environment: image ENV plus the stage's build args.
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub platform: &'a Platform,
    pub layers: &'a [RootLayer],
    /// The merged view of those layers (paths, modes, owners; no contents).
    pub view: &'a FsView,
    /// Build epoch for clamping mtimes in the produced layer.
    pub epoch: u64,
    pub reporter: &'a dyn Reporter,
}

/// What a RUN step produced.
pub struct RunOutcome {
    /// `None` when the command changed nothing (an empty layer).
    pub layer: Option<(Layer, Vec<LayerEntry>)>,
}

/// Executes RUN steps; implemented by the sandbox in `build/run/`.
pub trait StepExecutor: Send + Sync {
    fn run(&self, req: &RunRequest) -> Result<RunOutcome>;
}

/// The error for a RUN step when no executor is configured.
pub fn run_unsupported(loc: &Loc) -> Error {
    Error::unsupported(format!("{loc}: RUN is not supported yet; spxpack builds Dockerfiles without RUN steps"))
        .with_hint("move the RUN steps into a base image built elsewhere (FROM it), or build with docker buildx")
}
