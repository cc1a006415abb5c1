//! RUN steps in the builder: [`SandboxExecutor`] runs each step in the sandbox of
//! [`crate::sandbox`] and commits what it changed as a layer.
//!
//! A step is looked up in the build cache first (key: the parent layers' diff_ids, argv, env,
//! user, working directory, flags, what bind mounts show, platform, epoch and gzip level —
//! [`step_key`]); a hit neither detects a sandbox nor touches a root filesystem. On a miss the
//! sandbox is detected once per build (every rung tried for real; the error lists what was
//! tried and the fix), and the step runs in the build's *live* root filesystem: the FROM
//! image's layers extracted once into the rootfs cache and copied from there, plus the build's
//! own layers applied on top. The live tree follows the stage from step to step, so
//! consecutive RUNs cost no extraction at all; a COPY in between is applied to it. The layer is
//! the snapshot diff of the step (whiteouts, ownership as seen in the container, deterministic
//! order), moved into the blob cache and recorded under the step's key.

pub mod bind;
mod mounts;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::executor::{RootLayer, RunOutcome, RunRequest, StepExecutor};
use super::layer::{self, Layer};
use crate::digest::{Digest, Hasher};
use crate::error::Result;
use crate::host_env::HostEnv;
use crate::image::Descriptor;
use crate::sandbox::extract::LayerBlob;
use crate::sandbox::{self, Isolation, Rootfs, RootfsCache, RunSpec, Runner, Snapshot, diff};
pub use mounts::{Secret, SecretSource};

/// How RUN steps are executed (the `--isolation`, `--qemu`, `--proot`, `--ca-bundle` and
/// `--secret` flags).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub isolation: Isolation,
    /// qemu-user for a foreign target architecture (default: found on PATH).
    pub qemu: Option<PathBuf>,
    /// proot (default: found on PATH).
    pub proot: Option<PathBuf>,
    /// The spxpack executable that implements the sandbox's helper commands (default: the
    /// running executable; library users must set it).
    pub helper: Option<PathBuf>,
    /// Extra CA certificates trusted by the steps (not written into any layer).
    pub ca_bundle: Option<PathBuf>,
    /// `--secret id=…` for `RUN --mount=type=secret`.
    pub secrets: Vec<Secret>,
    /// The environment: `PATH` to find qemu and proot, the variables of `--secret …,env=VAR`.
    pub env: HostEnv,
}

/// What one RUN step did (for `--json` and tests).
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// `Dockerfile:5:1`.
    pub loc: String,
    pub argv: Vec<String>,
    pub cached: bool,
    /// Exit code (`None` when cached).
    pub code: Option<i32>,
    pub elapsed_s: f64,
    /// The last lines of the output.
    pub output: Vec<String>,
    pub notes: Vec<String>,
    pub user_emulated: bool,
    pub layer: Option<LayerRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerRecord {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    /// Entries and whiteouts (known for layers built by this run).
    pub entries: Option<usize>,
    pub whiteouts: Option<usize>,
}

/// The build's working root filesystem and the layers (diff_ids) it holds.
struct Live {
    rootfs: Rootfs,
    chain: Vec<String>,
}

/// Executes RUN steps in spxpack's sandbox; see the module docs.
pub struct SandboxExecutor {
    opts: RunOptions,
    runner: Mutex<Option<Runner>>,
    live: Mutex<Option<Live>>,
    log: Mutex<Vec<StepRecord>>,
    /// Base entries that could not be extracted, warned about once per base.
    warned: Mutex<Vec<String>>,
}

impl SandboxExecutor {
    pub fn new(opts: RunOptions) -> Self {
        SandboxExecutor {
            opts,
            runner: Mutex::new(None),
            live: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            warned: Mutex::new(Vec::new()),
        }
    }

    /// The steps run so far (cached ones included).
    pub fn steps(&self) -> Vec<StepRecord> {
        self.log.lock().expect("poisoned").clone()
    }

    /// The sandbox in use (`None` until a step missed the cache).
    pub fn runner(&self) -> Option<Runner> {
        self.runner.lock().expect("poisoned").clone()
    }

    /// A JSON summary: sandbox, emulation and the steps.
    pub fn summary(&self) -> serde_json::Value {
        let r = self.runner();
        serde_json::json!({
            "sandbox": r.as_ref().map(|r| r.sandbox),
            "emulation": r.as_ref().map(|r| r.emulation),
            "steps": self.steps(),
        })
    }

    /// Detects the sandbox on first use.
    fn detect(&self, req: &RunRequest) -> Result<Runner> {
        let mut slot = self.runner.lock().expect("poisoned");
        if let Some(r) = slot.as_ref().filter(|r| r.platform.normalized() == req.platform.normalized()) {
            return Ok(r.clone());
        }
        let t = Instant::now();
        let opts = sandbox::Options {
            isolation: self.opts.isolation,
            qemu: self.opts.qemu.clone(),
            proot: self.opts.proot.clone(),
            helper: self.opts.helper.clone(),
            scratch: None,
            env: self.opts.env.clone(),
        };
        let runner = sandbox::detect(req.platform, &opts).map_err(|r| r.to_error().at(req.loc))?;
        req.reporter.message(&format!(
            "RUN sandbox: {} (detected in {:.2}s)",
            runner.describe(),
            t.elapsed().as_secs_f64()
        ));
        tracing::info!("RUN sandbox detection:\n{}", runner.report);
        for w in &runner.warnings {
            req.reporter.warn(&format!("warning: {w}"));
        }
        *slot = Some(runner.clone());
        Ok(runner)
    }

    /// The live rootfs holding exactly `req.layers`, reusing the current one when it is a
    /// prefix of them.
    fn rootfs_for<'l>(&self, live: &'l mut Option<Live>, req: &RunRequest, runner: &Runner) -> Result<&'l mut Live> {
        let chain: Vec<String> = req.layers.iter().map(|l| l.diff_id.clone()).collect();
        let reusable = live.as_ref().is_some_and(|l| {
            l.rootfs.ownership() == runner.ownership()
                && l.chain.len() <= chain.len()
                && l.chain[..] == chain[..l.chain.len()]
        });
        if !reusable {
            *live = None; // removes the old tree first (disk space)
            let t = Instant::now();
            let base = blobs(&req.layers[..req.base_layers])?;
            let cache = RootfsCache::in_blob_cache(req.cache)?;
            let origin = format!("the base image (for {})", req.loc);
            let rootfs = Rootfs::from_layers(&base, &origin, runner.ownership(), &cache)?;
            self.warn_skipped(&rootfs, req);
            req.reporter.message(&format!(
                "{}: root filesystem {} in {:.2}s",
                req.loc,
                if rootfs.from_cache() { "taken from the cache" } else { "extracted" },
                t.elapsed().as_secs_f64()
            ));
            *live = Some(Live { rootfs, chain: chain[..req.base_layers].to_vec() });
        }
        let l = live.as_mut().expect("set");
        let have = l.chain.len();
        if have < chain.len() {
            let more = blobs(&req.layers[have..])?;
            // on failure the caller drops the half-applied tree
            l.rootfs.apply(&more, &format!("the build before {}", req.loc))?;
            l.chain = chain;
        }
        l.rootfs.prepare_for(runner)?;
        Ok(l)
    }

    fn warn_skipped(&self, rootfs: &Rootfs, req: &RunRequest) {
        if rootfs.skipped().is_empty() {
            return;
        }
        let text = sandbox::extract::summarize_skipped(rootfs.skipped());
        let mut warned = self.warned.lock().expect("poisoned");
        if !warned.contains(&text) {
            req.reporter
                .warn(&format!("warning: {} base entries not extracted for RUN steps: {text}", rootfs.skipped().len()));
            warned.push(text);
        }
    }

    fn record(&self, r: StepRecord) {
        self.log.lock().expect("poisoned").push(r);
    }

    /// Runs the step (cache miss) and returns the layer, or `None` if nothing changed.
    fn execute(&self, req: &RunRequest, argv: &[String], key: &Digest, started: Instant) -> Result<Option<Layer>> {
        let runner = self.detect(req)?;
        let mut live_slot = self.live.lock().expect("poisoned");
        let r = self
            .rootfs_for(&mut live_slot, req, &runner)
            .and_then(|live| self.step(live, &runner, req, argv, key, started));
        if r.is_err() {
            // the tree may hold part of a step or of a layer: start from the layers next time
            *live_slot = None;
        }
        r
    }

    fn step(
        &self,
        live: &mut Live,
        runner: &Runner,
        req: &RunRequest,
        argv: &[String],
        key: &Digest,
        started: Instant,
    ) -> Result<Option<Layer>> {
        let user = if req.user.is_empty() {
            (0, 0)
        } else {
            sandbox::resolve_user(live.rootfs.path(), &req.user).map_err(|e| e.at(req.loc))?
        };
        let mut env: Vec<(String, String)> = Vec::new();
        for e in &req.env {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            env.retain(|(n, _)| n != k);
            env.push((k.to_string(), v.to_string()));
        }
        // Docker: HOME from the user's /etc/passwd entry when the image does not set it
        if !env.iter().any(|(k, _)| k == "HOME")
            && let Some(h) = sandbox::home_of(live.rootfs.path(), user.0)
        {
            env.push(("HOME".into(), h));
        }
        let step_dir = sandbox::rootfs::WorkDir::new_in(live.rootfs.work_dir(), "mounts-")?;
        let prepared = mounts::prepare(&req.flags.mounts, &self.opts, req, runner, step_dir.path(), &mut env)?;
        let mut guest_mounts = prepared.mounts;
        let mut argv = argv.to_vec();
        if let Some((name, data)) = heredoc_script(req)? {
            let host = step_dir.path().join(format!("heredoc-{}", guest_mounts.len()));
            mounts::write_file(&host, data.as_bytes(), 0o755)?;
            let target = format!("/dev/pipes/{name}");
            guest_mounts.push(sandbox::GuestMount { source: Some(host), target: target.clone(), readonly: true });
            argv = vec![target];
        }
        let spec = RunSpec {
            argv,
            env,
            workdir: req.workdir.clone(),
            user,
            network: req.flags.network,
            ca_bundle: self.opts.ca_bundle.clone(),
            mounts: guest_mounts,
        };
        let snap = Snapshot::take(&live.rootfs)?;
        let stubs = live.rootfs.mount_stubs(&spec.mounts)?;
        let mut printer = LinePrinter { reporter: req.reporter, buf: Vec::new() };
        let out = runner.run(&live.rootfs, &spec, &mut |b| printer.push(b));
        printer.flush();
        stubs.remove(&live.rootfs);
        drop(prepared.locks);
        let mut rec = StepRecord {
            loc: req.loc.to_string(),
            argv: spec.argv.clone(),
            cached: false,
            code: None,
            elapsed_s: 0.0,
            output: Vec::new(),
            notes: Vec::new(),
            user_emulated: false,
            layer: None,
        };
        let out = out.map_err(|e| e.at(req.loc))?;
        rec.code = Some(out.code);
        rec.output = out.tail.clone();
        rec.notes = out.notes.clone();
        rec.user_emulated = out.user_emulated;
        if let Err(e) = out.check() {
            rec.elapsed_s = started.elapsed().as_secs_f64();
            self.record(rec);
            return Err(e.at(req.loc));
        }
        let mut lopts = runner.layer_options(&spec, Some(req.layer_options.epoch), &step_dir.path().join("layer"));
        lopts.level = req.layer_options.level;
        lopts.threads = req.layer_options.threads;
        let nl = diff::layer(&snap, &live.rootfs, &lopts)?;
        req.cache.adopt(&nl.path, &nl.digest)?;
        let l = Layer { digest: nl.digest.clone(), size: nl.size, diff_id: nl.diff_id.clone() };
        layer::remember(req.cache, key, &l)?;
        let empty = nl.entries == 0 && nl.whiteouts == 0;
        if !empty {
            live.chain.push(l.diff_id.to_string());
            if live.rootfs.ownership() == sandbox::Ownership::Record {
                note_owners(&mut live.rootfs, req, &l)?;
            }
        }
        rec.elapsed_s = started.elapsed().as_secs_f64();
        rec.layer = (!empty).then(|| LayerRecord {
            digest: l.digest.to_string(),
            diff_id: l.diff_id.to_string(),
            size: l.size,
            entries: Some(nl.entries),
            whiteouts: Some(nl.whiteouts),
        });
        self.record(rec);
        Ok((!empty).then_some(l))
    }
}

impl StepExecutor for SandboxExecutor {
    fn run(&self, req: &RunRequest) -> Result<RunOutcome> {
        let started = Instant::now();
        let argv = req.effective_argv()?;
        let key = step_key(req, &argv);
        if !req.no_cache
            && let Some(l) = layer::lookup(req.cache, &key)
        {
            let empty = l.diff_id == empty_diff_id();
            self.record(StepRecord {
                loc: req.loc.to_string(),
                argv,
                cached: true,
                code: None,
                elapsed_s: started.elapsed().as_secs_f64(),
                output: Vec::new(),
                notes: Vec::new(),
                user_emulated: false,
                layer: (!empty).then(|| LayerRecord {
                    digest: l.digest.to_string(),
                    diff_id: l.diff_id.to_string(),
                    size: l.size,
                    entries: None,
                    whiteouts: None,
                }),
            });
            return Ok(RunOutcome { layer: (!empty).then_some(l), cached: true, how: "CACHED".into() });
        }
        let layer = self.execute(req, &argv, &key, started)?;
        let how = match &layer {
            Some(l) => format!(
                "layer {} ({}) in {:.2}s",
                l.digest.short(),
                crate::progress::human_size(l.size),
                started.elapsed().as_secs_f64()
            ),
            None => format!("no changes, in {:.2}s", started.elapsed().as_secs_f64()),
        };
        Ok(RunOutcome { layer, cached: false, how })
    }

    fn finish(&self) {
        *self.live.lock().expect("poisoned") = None;
    }
}

/// The diff_id of a layer with no entries (1024 zero bytes).
fn empty_diff_id() -> Digest {
    Digest::of(&[0u8; 1024])
}

fn blobs(layers: &[RootLayer]) -> Result<Vec<LayerBlob>> {
    layers
        .iter()
        .map(|l| Ok(LayerBlob { desc: l.desc.clone(), diff_id: Digest::parse(&l.diff_id)?, source: l.source.clone() }))
        .collect()
}

/// The build-cache key of a step: everything its layer depends on.
pub fn step_key(req: &RunRequest, argv: &[String]) -> Digest {
    let mut h = Hasher::new();
    let mut line = |k: &str, v: &str| {
        h.update(k.as_bytes());
        h.update(b"\0");
        h.update(v.as_bytes());
        h.update(b"\n");
    };
    line("format", "spxpack-run-v2");
    line("platform", &req.platform.normalized().to_string());
    for l in req.layers {
        line("parent", &l.diff_id);
    }
    for a in argv {
        line("arg", a);
    }
    if argv.len() == 1 && argv[0].starts_with("/dev/pipes/") {
        for d in req.heredocs {
            line("heredoc", &d.body);
        }
    }
    for e in &req.env {
        line("env", e);
    }
    line("user", &req.user);
    line("workdir", &req.workdir);
    line("flags", &req.flags.key_text());
    for b in &req.binds {
        line("bind", &format!("{} {}", req.flags.mounts[b.mount].target, b.key));
    }
    line("epoch", &req.layer_options.epoch.to_string());
    line("level", &req.layer_options.level.to_string());
    h.finish()
}

/// A `#!` heredoc to run as a file: (name, contents).
fn heredoc_script<'r>(req: &'r RunRequest) -> Result<Option<(&'r str, &'r str)>> {
    if req.lone_heredoc() && req.shell_form && req.heredocs[0].body.starts_with("#!") {
        let d = &req.heredocs[0];
        if d.name.is_empty() || d.name.contains('/') {
            return Err(req.loc.error(format!("invalid heredoc name {:?}", d.name)));
        }
        return Ok(Some((&d.name, &d.body)));
    }
    Ok(None)
}

/// After a step in a user namespace, the side table learns the owners the layer recorded, so
/// the next step's layer attributes those paths the same way.
fn note_owners(rootfs: &mut Rootfs, req: &RunRequest, l: &Layer) -> Result<()> {
    let desc = Descriptor::new(crate::image::media::OCI_LAYER_GZIP, l.digest.clone(), l.size);
    let src = crate::blob_cache::CacheSource { cache: req.cache.clone(), origin: "build".into() };
    let entries = super::layer_reader::entries(req.cache, &src, &desc)?;
    let side = rootfs.side_table_mut();
    for e in entries {
        let rel = super::fsview::normalize(&e.path);
        let (parent, name) = sandbox::fsutil::split_parent(&rel);
        if let Some(victim) = name.strip_prefix(".wh.") {
            side.remove_tree(&sandbox::fsutil::rel_join(parent, victim));
            continue;
        }
        if let Some(n) = &e.node {
            let mode = side.get(&rel).and_then(|s| s.mode).filter(|m| *m == n.mode);
            side.note(&rel, n.uid as u32, n.gid as u32, mode);
        } else if let Some(target) = &e.hardlink {
            let t = side.get(&super::fsview::normalize(target)).cloned();
            match t {
                Some(s) => {
                    side.0.insert(rel, s);
                }
                None => side.remove_tree(&rel),
            }
        }
    }
    Ok(())
}

/// Streams a step's output to the reporter line by line.
struct LinePrinter<'a> {
    reporter: &'a dyn crate::progress::Reporter,
    buf: Vec<u8>,
}

impl LinePrinter<'_> {
    fn push(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
        while let Some(i) = self.buf.iter().position(|c| *c == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            self.reporter.message(String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'));
        }
        if self.buf.len() > 64 << 10 {
            self.flush();
        }
    }
    fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.reporter.message(&String::from_utf8_lossy(&self.buf));
            self.buf.clear();
        }
    }
}

impl Drop for SandboxExecutor {
    fn drop(&mut self) {
        if let Ok(mut l) = self.live.lock() {
            *l = None;
        }
    }
}
