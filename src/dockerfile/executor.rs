//! The seam where RUN plugs in. The builder hands a [`RunRequest`] (the stage's layers so far,
//! the command, environment, user, working directory, parsed flags and platform) to a
//! [`StepExecutor`]; the executor returns the layer it produced (already in the blob cache,
//! possibly from the build cache) and the builder commits it like any other layer. Without an
//! executor a RUN step is an error that names its `file:line:col`, reported before any work
//! starts. The sandbox executor is `run::SandboxExecutor`; this seam knows nothing of it.

use std::sync::Arc;

use super::copy::Plan;
use super::instructions::{Heredoc, Loc};
use super::layer::{Layer, LayerOptions};
use super::layer_reader::{BlobLookup, Staging};
use super::run_flags::RunFlags;
use crate::blob_cache::BlobCache;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{BlobSource, Descriptor};
use crate::platform::Platform;
use crate::progress::Reporter;

/// A planned bind mount.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The index of the mount in the step's `--mount`s.
    pub mount: usize,
    /// What the mount shows: [`super::bind_plan::ROOT`] (the source file or directory) and what is below it.
    pub plan: Plan,
    /// The hash of `plan`.
    pub key: Digest,
}

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
    /// `argv` is the shell form: its last element is the command line.
    pub shell_form: bool,
    /// `RUN <<EOF` documents (bodies not expanded: the shell does that, as in BuildKit).
    pub heredocs: &'a [Heredoc],
    /// `--network`, `--mount` (parsed; `--security`/`--device` were checked).
    pub flags: RunFlags,
    /// What each `--mount=type=bind` shows (planned; its hash is part of the cache key).
    pub binds: Vec<Bound>,
    /// Where files of other layers are extracted to, and where those layers are.
    pub staging: &'a Staging,
    pub source_of: BlobLookup<'a>,
    /// `KEY=value` environment: image ENV plus the stage's build args.
    pub env: Vec<String>,
    /// `USER` as written (name, uid, name:group, uid:gid); empty for root.
    pub user: String,
    pub workdir: String,
    pub platform: &'a Platform,
    pub layers: &'a [RootLayer],
    /// How many of `layers` are the FROM image's own (the rest came from this build).
    pub base_layers: usize,
    /// How layers are written (epoch for mtimes, gzip level, threads).
    pub layer_options: &'a LayerOptions,
    /// The blob cache new layers go to (and [`super::layer::remember`] records in).
    pub cache: &'a Arc<BlobCache>,
    /// `--no-cache`: run the step even if the build cache has its layer.
    pub no_cache: bool,
    pub reporter: &'a dyn Reporter,
}

impl RunRequest<'_> {
    /// The argv to run: heredocs turned into a shell script as BuildKit does: a lone `RUN <<EOF`
    /// runs its body with the shell (or as a file when it starts with `#!`); `RUN <<EOF cmd` hands
    /// the reassembled heredoc to the shell (the parser keeps only heredocs right after RUN, with
    /// the marker removed from the command and `<<-` tabs already stripped from the body).
    pub fn effective_argv(&self) -> Result<Vec<String>> {
        let req = self;
        if req.heredocs.is_empty() {
            return Ok(req.argv.clone());
        }
        if !req.shell_form || req.argv.is_empty() {
            return Err(req.loc.error("RUN heredocs need the shell form (RUN <<EOF …)"));
        }
        let (cmd, shell) = req.argv.split_last().expect("non-empty");
        if req.lone_heredoc() {
            let body = &req.heredocs[0].body;
            if body.starts_with("#!") {
                return Ok(vec![format!("/dev/pipes/{}", req.heredocs[0].name)]);
            }
            let mut v = shell.to_vec();
            v.push(body.clone());
            return Ok(v);
        }
        let mut full = String::new();
        for d in req.heredocs {
            let q = if d.expand { "" } else { "'" };
            full.push_str(&format!("<<{q}{}{q} ", d.name));
        }
        full.push_str(cmd.trim());
        for d in req.heredocs {
            full.push('\n');
            full.push_str(&d.body);
            full.push_str(&d.name);
        }
        let mut v = shell.to_vec();
        v.push(full);
        Ok(v)
    }

    /// `RUN <<EOF` with nothing else on the line.
    pub fn lone_heredoc(&self) -> bool {
        self.heredocs.len() == 1 && self.argv.last().is_some_and(|c| c.trim().is_empty())
    }
}

/// What a RUN step produced.
pub struct RunOutcome {
    /// `None` when the command changed nothing (an empty layer).
    pub layer: Option<Layer>,
    /// The layer came from the build cache (the command did not run).
    pub cached: bool,
    /// For the progress line: `CACHED`, `layer 1a2b3c (3.2 MB) in 4.1s`.
    pub how: String,
}

/// Executes RUN steps; implemented by the sandbox in `dockerfile/run/`.
pub trait StepExecutor: Send + Sync {
    fn run(&self, req: &RunRequest) -> Result<RunOutcome>;
    /// Called once the build is over (also after an error): release working directories.
    fn finish(&self) {}
}

/// The error for a RUN step when no executor is configured.
pub fn run_unsupported(loc: &Loc) -> Error {
    Error::unsupported(format!("{loc}: RUN needs a sandbox, and none was configured for this build"))
        .with_hint("build with `spxpack image build` or `spxpack build`, which run RUN steps in a sandbox")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::dockerfile::copy::{Plan, PlanEntry};
    use crate::dockerfile::fsview::{Content, ContentSrc, Kind, Node, PathKey};
    use crate::dockerfile::{BuildOptions, build, layer};
    use crate::source::Resolver;

    /// Pretends to run the command: the layer gets `/ran` holding the argv, env and workdir.
    struct Fake;

    impl StepExecutor for Fake {
        fn run(&self, req: &RunRequest) -> Result<RunOutcome> {
            let body = format!("{:?} {:?} {} {:?}\n", req.argv, req.env, req.workdir, req.flags.network).into_bytes();
            let node = Node {
                kind: Kind::File(Content {
                    id: crate::digest::Digest::of(&body).to_string(),
                    src: ContentSrc::Inline(Arc::new(body.clone())),
                }),
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                size: body.len() as u64,
            };
            let mut entries = BTreeMap::new();
            entries.insert(PathKey("ran".into()), PlanEntry { node, hardlink: None, implied: false });
            let plan = Plan { entries };
            let staging = crate::dockerfile::layer_reader::Staging::new(req.cache)?;
            let l = layer::write(&plan, req.layer_options, req.cache, &staging)?;
            Ok(RunOutcome { layer: Some(l), cached: false, how: "faked".into() })
        }
    }

    #[test]
    fn run_steps_plug_in_through_the_executor() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch AS a\nARG V=1\nWORKDIR /w\nRUN --network=none make $V\nFROM scratch\nCOPY --from=a /ran /copied\n").unwrap();
        let cache = crate::blob_cache::BlobCache::open(Some(dir.path().join("cache")), true).unwrap();
        let resolver = Resolver::new(cache, Default::default());
        let mut opts = BuildOptions::new(ctx.join("Dockerfile"), &ctx);
        assert!(
            build(&opts, &resolver, &crate::progress::Silent)
                .is_err_and(|e| e.to_string().contains("Dockerfile:4:1: RUN needs a sandbox"))
        );
        opts.executor = Some(Arc::new(Fake));
        let last = build(&opts, &resolver, &crate::progress::Silent).unwrap();
        assert_eq!(last.image.manifest.layers.len(), 1, "the RUN output was copied from stage a");
        opts.target = Some("a".into());
        let a = build(&opts, &resolver, &crate::progress::Silent).unwrap();
        assert_eq!(a.image.manifest.layers.len(), 2, "WORKDIR and RUN");
        let cfg: serde_json::Value = serde_json::from_slice(&a.image.config_raw).unwrap();
        let hist: Vec<&str> =
            cfg["history"].as_array().unwrap().iter().map(|h| h["created_by"].as_str().unwrap()).collect();
        assert_eq!(hist, vec!["ARG V=1", "WORKDIR /w", "RUN |1 V=1 /bin/sh -c make $V"]);
        // the layer's entries reach the stage's view: COPY --from found /ran above
    }
}
