//! The daemonless Dockerfile builder: every instruction but RUN (which plugs in through
//! [`executor::StepExecutor`]), multi-stage builds, `--target`, build args, named build
//! contexts and a content-addressed build cache.
//!
//! [`build`] reads the Dockerfile and `.dockerignore`, resolves the stages the target needs,
//! runs them in order ([`stage`]), and returns an [`Image`] whose base layers are the base
//! image's blobs untouched and whose new layers are in the blob cache. Writing it out
//! (`docker_archive::write_file`, `oci_layout::write_dir`) is the caller's business.

pub mod config;
pub mod copy;
pub mod dockerfile;
pub mod dockerignore;
pub mod executor;
pub mod fetch;
pub mod fsview;
pub mod layer;
pub mod layers;
pub mod lex;
mod stage;
pub mod tree;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::blob_cache::{BlobCache, CacheSource};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{BlobReader, BlobSource, ConfigView, Descriptor, Image, Manifest, media, parse_json};
use crate::platform::Platform;
use crate::progress::Reporter;
use crate::source::{Resolver, Source};

use config::Config;
use dockerfile::{Dockerfile, Loc};
use dockerignore::Matcher;
use executor::{RootLayer, StepExecutor};
use fsview::FsView;
use layer::LayerOptions;
use layers::Staging;
use lex::Lex;
use stage::State;
use tree::{DirTree, Tree, ViewTree};

/// What to build.
#[derive(Clone)]
pub struct BuildOptions {
    /// The Dockerfile (`-f`); messages name it as given.
    pub dockerfile: PathBuf,
    /// The build context directory.
    pub context: PathBuf,
    /// Target platform (`linux/arm64` for CORE I/O).
    pub platform: Platform,
    /// `--build-arg KEY=VALUE`, in order.
    pub build_args: Vec<(String, String)>,
    /// `--target STAGE`; the last stage when `None`.
    pub target: Option<String>,
    /// `--build-context NAME=SOURCE`: an image source (`docker-image://REF`, `oci-layout://DIR`,
    /// `oci:DIR[:TAG]`, `docker-archive:FILE`, …) replacing `FROM NAME` / `COPY --from=NAME`,
    /// or a local directory for `COPY --from=NAME`.
    pub build_contexts: Vec<(String, String)>,
    /// Ignore the build cache (layers are still stored for later builds).
    pub no_cache: bool,
    /// Build epoch: history times and the clamp for file mtimes (`SOURCE_DATE_EPOCH`, else 0).
    pub epoch: u64,
    /// Threads for gzip; the bytes do not depend on it.
    pub threads: usize,
    /// Gzip level of new layers (1-9).
    pub compression_level: u32,
    /// Parallel base-layer downloads.
    pub jobs: usize,
    /// Executes RUN; `None` makes RUN an error.
    pub executor: Option<Arc<dyn StepExecutor>>,
}

impl BuildOptions {
    /// Defaults: linux/arm64, epoch from `SOURCE_DATE_EPOCH` (else 0), all cores, gzip level 6.
    pub fn new(dockerfile: impl Into<PathBuf>, context: impl Into<PathBuf>) -> Self {
        BuildOptions {
            dockerfile: dockerfile.into(),
            context: context.into(),
            platform: Platform::linux_arm64(),
            build_args: Vec::new(),
            target: None,
            build_contexts: Vec::new(),
            no_cache: false,
            epoch: crate::docker_archive::write::source_date_epoch(),
            threads: crate::compress::default_threads(),
            compression_level: 6,
            jobs: 4,
            executor: None,
        }
    }
}

/// The result of a build.
pub struct BuildOutput {
    pub image: Image,
    /// The stage that was built (`--target` or the last one).
    pub target: String,
    pub layers_built: usize,
    pub layers_cached: usize,
}

/// Builds the image; see [`build`].
pub fn build_image(opts: &BuildOptions, resolver: &Resolver, reporter: &dyn Reporter) -> Result<Image> {
    build(opts, resolver, reporter).map(|o| o.image)
}

#[derive(Clone)]
pub(crate) struct StageResult {
    pub name: String,
    pub platform: Platform,
    pub config: Config,
    pub changed: bool,
    pub base: Option<Image>,
    pub layers: Vec<RootLayer>,
    pub view: Option<Arc<FsView>>,
    pub docker_style: bool,
}

enum Named {
    Image(Source),
    Dir(Arc<DirTree>),
}

#[derive(Default)]
pub(crate) struct Stats {
    pub built: usize,
    pub cached: usize,
}

pub(crate) struct Ctx<'a> {
    pub opts: &'a BuildOptions,
    pub resolver: &'a Resolver,
    pub reporter: &'a dyn Reporter,
    pub cache: Arc<BlobCache>,
    pub staging: Staging,
    pub context: Arc<DirTree>,
    named: HashMap<String, Named>,
    blobs: Mutex<HashMap<Digest, layers::Located>>,
    image_views: Mutex<HashMap<Digest, Arc<FsView>>>,
    pub layer_opts: LayerOptions,
    pub created: String,
    pub escape: char,
    global_args: Vec<(String, String)>,
    /// `AS` names of all stages, in order.
    stage_names: Vec<Option<String>>,
    used_args: Mutex<BTreeSet<String>>,
    pub stats: Mutex<Stats>,
}

impl Ctx<'_> {
    pub fn build_arg(&self, k: &str) -> Option<String> {
        let v = self.opts.build_args.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if v.is_some() {
            self.used_args.lock().expect("poisoned").insert(k.to_string());
        }
        v
    }

    pub fn global_arg(&self, k: &str) -> Option<String> {
        self.global_args.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    pub fn cache_source(&self) -> Arc<dyn BlobSource> {
        Arc::new(CacheSource { cache: self.cache.clone(), origin: "build".into() })
    }

    pub fn register(&self, desc: &Descriptor, source: Arc<dyn BlobSource>) {
        self.blobs.lock().expect("poisoned").entry(desc.digest.clone()).or_insert((source, desc.clone()));
    }

    pub fn source_of(&self, d: &Digest) -> Option<layers::Located> {
        self.blobs.lock().expect("poisoned").get(d).cloned()
    }

    pub fn report_step(&self, stage: &str, loc: &Loc, what: &str, how: &str) {
        self.reporter.message(&format!("[{stage}] {loc} {what}: {how}"));
    }

    /// The merged filesystem of a list of layers (indexes are cached per layer digest).
    pub fn build_view(&self, layers: &[RootLayer]) -> Result<FsView> {
        let mut v = FsView::new();
        for l in layers {
            self.register(&l.desc, l.source.clone());
            let entries = layers::entries(&self.cache, l.source.as_ref(), &l.desc)?;
            v.apply(&entries);
        }
        Ok(v)
    }

    /// A small text file of a view (`/etc/passwd`), following symlinks inside it.
    pub fn read_text(&self, view: &FsView, path: &str) -> Result<Option<String>> {
        let p = view.resolve(path, true).path;
        match view.get(&p).map(|n| &n.kind) {
            Some(fsview::Kind::File(c)) => {
                let b = self.staging.read_small(c, &|d| self.source_of(d))?;
                Ok(Some(String::from_utf8_lossy(&b).into_owned()))
            }
            _ => Ok(None),
        }
    }

    fn resolve_image(&self, src: &Source, platform: &Platform, loc: &Loc, what: &str) -> Result<Image> {
        let img = self.resolver.resolve(src, platform).map_err(|e| e.context(format!("{loc}: {what}")))?;
        if !img.platform().satisfies(platform) {
            self.reporter.warn(&format!(
                "warning: {loc}: {} is {}, not the requested {}",
                img.origin,
                img.platform(),
                platform.normalized()
            ));
        }
        crate::pull::prefetch(std::slice::from_ref(&img), self.opts.jobs, self.reporter)?;
        for l in &img.manifest.layers {
            self.register(l, img.source.clone());
        }
        Ok(img)
    }

    fn image_view(&self, img: &Image) -> Result<Arc<FsView>> {
        let key = img.manifest_digest();
        if let Some(v) = self.image_views.lock().expect("poisoned").get(&key) {
            return Ok(v.clone());
        }
        let v = Arc::new(self.build_view(&root_layers(img))?);
        self.image_views.lock().expect("poisoned").insert(key, v.clone());
        Ok(v)
    }

    /// The tree behind `COPY --from=…`: an earlier stage, a named context, or an image.
    pub fn copy_source(
        &self,
        from: &str,
        loc: &Loc,
        stages: &[Option<StageResult>],
        index: usize,
        platform: &Platform,
    ) -> Result<Arc<dyn Tree>> {
        let lower = from.to_lowercase();
        let by_name = self.stage_names.iter().position(|n| n.as_deref() == Some(lower.as_str()));
        let by_index = from.parse::<usize>().ok();
        let stage_index = by_name.or(by_index);
        if let Some(i) = stage_index {
            if i >= index {
                return Err(loc.error(format!(
                    "cannot copy from stage {from:?}, it needs to be defined before the current stage"
                )));
            }
            let Some(s) = &stages[i] else {
                return Err(Error::internal(format!("{loc}: stage {from} was not built")));
            };
            let view = match &s.view {
                Some(v) => v.clone(),
                None => Arc::new(self.build_view(&s.layers)?),
            };
            return Ok(Arc::new(ViewTree { view, name: format!("stage {}", s.name) }));
        }
        if by_index.is_some() {
            return Err(loc.error(format!("invalid stage index {from}")));
        }
        let names: Vec<&str> = self.stage_names.iter().flatten().map(String::as_str).collect();
        let src = match self.named.get(from) {
            Some(Named::Dir(d)) => return Ok(d.clone()),
            Some(Named::Image(s)) => s.clone(),
            None => {
                // a bare name one typo away from a stage is a mistake, not Docker Hub's image
                let bare = !from.contains(['/', ':', '@', '.']);
                if let Some(near) = names.iter().find(|n| bare && dockerfile::edit_distance(n, &lower) <= 2) {
                    return Err(loc
                        .error(format!("COPY --from={from}: no stage named {from:?} before this one"))
                        .with_hint(format!(
                            "did you mean --from={near}? (the stages are: {}); for an image, write its full reference such as {from}:latest",
                            names.join(", ")
                        )));
                }
                Source::parse(from).map_err(|e| {
                    loc.error(format!(
                        "COPY --from={from}: not a stage, build context or image reference ({})",
                        e.message()
                    ))
                })?
            }
        };
        let what = format!("COPY --from={from} (not a stage, so read as an image)");
        let img = self.resolve_image(&src, platform, loc, &what).map_err(|e| {
            if names.is_empty() { e } else { e.with_hint(format!("the stages are: {}", names.join(", "))) }
        })?;
        Ok(Arc::new(ViewTree { view: self.image_view(&img)?, name: format!("image {from}") }))
    }
}

fn root_layers(img: &Image) -> Vec<RootLayer> {
    img.manifest
        .layers
        .iter()
        .zip(img.config.rootfs.diff_ids.iter())
        .map(|(d, id)| RootLayer { desc: d.clone(), diff_id: id.to_string(), source: img.source.clone() })
        .collect()
}

/// The base of a stage.
enum Base {
    Scratch,
    Stage(usize),
    Image(Source),
}

/// Predefined platform args (available in FROM lines, and in stages that declare them).
fn platform_args(target: &Platform, stage: &str) -> Vec<(String, String)> {
    let t = target.normalized();
    let variant = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", Some("v8")) | (_, None) => String::new(),
        (_, Some(v)) => v.to_string(),
    };
    let fmt = |p: &Platform| {
        let v = variant(p);
        if v.is_empty() { format!("{}/{}", p.os, p.architecture) } else { format!("{}/{}/{v}", p.os, p.architecture) }
    };
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    };
    let b = Platform::new("linux", host_arch, None).normalized();
    vec![
        ("TARGETPLATFORM".into(), fmt(&t)),
        ("TARGETOS".into(), t.os.clone()),
        ("TARGETARCH".into(), t.architecture.clone()),
        ("TARGETVARIANT".into(), variant(&t)),
        ("BUILDPLATFORM".into(), fmt(&b)),
        ("BUILDOS".into(), b.os.clone()),
        ("BUILDARCH".into(), b.architecture.clone()),
        ("BUILDVARIANT".into(), variant(&b)),
        ("TARGETSTAGE".into(), stage.to_string()),
    ]
}

/// Reads, plans and runs the build; see the module docs.
pub fn build(opts: &BuildOptions, resolver: &Resolver, reporter: &dyn Reporter) -> Result<BuildOutput> {
    let shown = opts.dockerfile.display().to_string();
    let text = std::fs::read(&opts.dockerfile).map_err(|e| {
        Error::io("cannot read the Dockerfile", &opts.dockerfile, e).with_hint("pass the Dockerfile with -f PATH")
    })?;
    let text = String::from_utf8(text).map_err(|_| Error::input(format!("{shown} is not UTF-8 text")))?;
    let df = dockerfile::parse(&text, &shown)?;
    let cache = resolver.cache.clone();
    let ignore = ignore_file(&opts.dockerfile, &opts.context)?;
    let context = Arc::new(DirTree::open(
        &opts.context,
        &opts.context.display().to_string(),
        ignore,
        Some(&cache.root().join("build/context")),
    )?);
    let mut named = HashMap::new();
    for (k, v) in &opts.build_contexts {
        named.insert(k.clone(), parse_named(k, v, &cache)?);
    }
    let epoch = match opts.build_args.iter().rev().find(|(k, _)| k == "SOURCE_DATE_EPOCH") {
        Some((_, v)) => {
            v.parse().map_err(|_| Error::input(format!("--build-arg SOURCE_DATE_EPOCH={v} is not a number")))?
        }
        None => opts.epoch,
    };
    let staging = Staging::new(&cache)?;
    let stage_names: Vec<Option<String>> = df.stages.iter().map(|s| s.from.name.clone()).collect();
    let target_index = match &opts.target {
        None => df.stages.len() - 1,
        Some(t) => stage_names.iter().position(|n| n.as_deref() == Some(&t.to_lowercase())).ok_or_else(|| {
            let names: Vec<&str> = stage_names.iter().flatten().map(String::as_str).collect();
            Error::input(format!("{shown}: target stage {t:?} could not be found")).with_hint(if names.is_empty() {
                "the Dockerfile has no named stages (FROM … AS name)".to_string()
            } else {
                format!("the stages are: {}", names.join(", "))
            })
        })?,
    };
    let target_name = stage_names[target_index].clone().unwrap_or_else(|| format!("stage-{target_index}"));
    let mut ctx = Ctx {
        opts,
        resolver,
        reporter,
        cache: cache.clone(),
        staging,
        context,
        named,
        blobs: Mutex::new(HashMap::new()),
        image_views: Mutex::new(HashMap::new()),
        layer_opts: LayerOptions { epoch, level: opts.compression_level.clamp(1, 9), threads: opts.threads.max(1) },
        created: config::rfc3339(epoch),
        escape: df.escape,
        global_args: platform_args(&opts.platform, &target_name),
        stage_names: stage_names.clone(),
        used_args: Mutex::new(BTreeSet::new()),
        stats: Mutex::new(Stats::default()),
    };
    // global ARGs (before the first FROM)
    let mut declared: BTreeSet<String> = BTreeSet::new();
    for a in &df.meta_args {
        let dockerfile::Op::Arg(list) = &a.op else { continue };
        for (k, default) in list {
            declared.insert(k.clone());
            let v = match (ctx.build_arg(k), default) {
                (Some(v), _) => Some(v),
                (None, Some(d)) => {
                    Some(Lex::new(df.escape).word(d, &|n| ctx.global_arg(n)).map_err(|e| stage::lex_error(&a.loc, e))?)
                }
                (None, None) => None,
            };
            if let Some(v) = v {
                ctx.global_args.push((k.clone(), v));
            }
        }
    }
    let (bases, platforms) = plan_stages(&df, &ctx)?;
    let needed = reachable(&df, &bases, target_index);
    check_run(&df, &needed, opts)?;
    for s in &needed {
        for i in &df.stages[*s].instrs {
            if let dockerfile::Op::Arg(l) = &i.op {
                declared.extend(l.iter().map(|(k, _)| k.clone()));
            }
        }
    }
    let mut done: Vec<Option<StageResult>> = vec![None; df.stages.len()];
    for i in 0..df.stages.len() {
        if !needed.contains(&i) {
            continue;
        }
        let res = run_stage(&ctx, &df, i, &bases[i], &platforms[i], &done)?;
        done[i] = Some(res);
    }
    let res = done[target_index].take().expect("target built");
    let image = assemble(&ctx, &res, &shown)?;
    ctx.context.save_hashes()?;
    let unused: Vec<&str> = opts
        .build_args
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !declared.contains(*k) && *k != "SOURCE_DATE_EPOCH")
        .collect();
    if !unused.is_empty() {
        reporter.warn(&format!("warning: build args were not consumed by {shown}: {}", unused.join(", ")));
    }
    let stats = std::mem::take(&mut *ctx.stats.lock().expect("poisoned"));
    Ok(BuildOutput { image, target: target_name, layers_built: stats.built, layers_cached: stats.cached })
}

/// `NAME.dockerignore` next to the Dockerfile wins over `.dockerignore` in the context.
fn ignore_file(dockerfile: &Path, context: &Path) -> Result<Matcher> {
    let name = dockerfile.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let specific = dockerfile.with_file_name(format!("{name}.dockerignore"));
    if specific.is_file() {
        return Matcher::from_file(&specific, &specific.display().to_string());
    }
    let f = context.join(".dockerignore");
    Matcher::from_file(&f, ".dockerignore")
}

fn parse_named(name: &str, v: &str, cache: &Arc<BlobCache>) -> Result<Named> {
    let bad = |m: String| Error::input(format!("--build-context {name}={v}: {m}"));
    if let Some(r) = v.strip_prefix("docker-image://") {
        return Ok(Named::Image(Source::parse(r).map_err(|e| bad(e.message().to_string()))?));
    }
    if let Some(r) = v.strip_prefix("oci-layout://") {
        return Ok(Named::Image(Source::parse(&format!("oci:{r}")).map_err(|e| bad(e.message().to_string()))?));
    }
    for t in ["oci:", "oci-archive:", "docker-archive:"] {
        if v.starts_with(t) {
            return Ok(Named::Image(Source::parse(v).map_err(|e| bad(e.message().to_string()))?));
        }
    }
    let p = Path::new(v);
    if p.is_dir() {
        let ign = Matcher::from_file(&p.join(".dockerignore"), &format!("{v}/.dockerignore"))?;
        return Ok(Named::Dir(Arc::new(DirTree::open(p, v, ign, Some(&cache.root().join("build/context")))?)));
    }
    Err(bad("not a directory or an image source".into())
        .with_hint("use DIR, docker-image://REF, oci-layout://DIR[:TAG], oci:DIR[:TAG] or docker-archive:FILE"))
}

/// Expands each FROM and decides what it is based on.
fn plan_stages(df: &Dockerfile, ctx: &Ctx) -> Result<(Vec<Base>, Vec<Platform>)> {
    let lex = Lex::new(df.escape);
    let mut bases = Vec::new();
    let mut platforms = Vec::new();
    for (i, s) in df.stages.iter().enumerate() {
        let f = &s.from;
        let image = lex.word(&f.image, &|k| ctx.global_arg(k)).map_err(|e| stage::lex_error(&f.loc, e))?;
        if image.is_empty() {
            return Err(f.loc.error(format!("base name ({}) should not be blank", f.image)).with_hint(
                "the variable is not set where FROM reads it: declare it with ARG (and a default) before the first FROM, or pass --build-arg",
            ));
        }
        let platform = match &f.platform {
            None => ctx.opts.platform.clone(),
            Some(p) => {
                let v = lex.word(p, &|k| ctx.global_arg(k)).map_err(|e| stage::lex_error(&f.loc, e))?;
                Platform::parse(&v).map_err(|e| f.loc.error(format!("FROM --platform={p}: {}", e.message())))?
            }
        };
        let lower = image.to_lowercase();
        let base = if let Some(j) = df.stages[..i].iter().position(|x| x.from.name.as_deref() == Some(lower.as_str())) {
            Base::Stage(j)
        } else if let Some(n) = ctx.named.get(&image) {
            match n {
                Named::Image(src) => Base::Image(src.clone()),
                Named::Dir(_) => {
                    return Err(f
                        .loc
                        .error(format!("FROM {image}: build context {image} is a directory"))
                        .with_hint("a directory context can only be used with COPY --from"));
                }
            }
        } else if lower == "scratch" {
            Base::Scratch
        } else {
            Base::Image(Source::parse(&image).map_err(|e| f.loc.error(e.message()))?)
        };
        bases.push(base);
        platforms.push(platform);
    }
    Ok((bases, platforms))
}

/// The stages the target needs (through FROM and COPY --from), sorted.
fn reachable(df: &Dockerfile, bases: &[Base], target: usize) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !out.insert(i) {
            continue;
        }
        if let Base::Stage(j) = bases[i] {
            todo.push(j);
        }
        for ins in &df.stages[i].instrs {
            if let dockerfile::Op::Copy(c) = &ins.op
                && let Some((from, _)) = &c.from
            {
                let lower = from.to_lowercase();
                let j = df
                    .stages
                    .iter()
                    .position(|s| s.from.name.as_deref() == Some(lower.as_str()))
                    .or_else(|| from.parse().ok());
                if let Some(j) = j.filter(|j| *j < df.stages.len()) {
                    todo.push(j);
                }
            }
        }
    }
    out
}

/// RUN without an executor fails before any work starts.
fn check_run(df: &Dockerfile, needed: &BTreeSet<usize>, opts: &BuildOptions) -> Result<()> {
    if opts.executor.is_some() {
        return Ok(());
    }
    for i in needed {
        for ins in &df.stages[*i].instrs {
            if matches!(ins.op, dockerfile::Op::Run(_)) {
                return Err(executor::run_unsupported(&ins.loc));
            }
        }
    }
    Ok(())
}

fn run_stage(
    ctx: &Ctx,
    df: &Dockerfile,
    i: usize,
    base: &Base,
    platform: &Platform,
    done: &[Option<StageResult>],
) -> Result<StageResult> {
    let s = &df.stages[i];
    let name = s.from.name.clone().unwrap_or_else(|| format!("stage-{i}"));
    let loc = &s.from.loc;
    let mut st = match base {
        Base::Scratch => State {
            ctx,
            name,
            platform: platform.clone(),
            config: Config::scratch(platform),
            changed: true,
            base: None,
            layers: Vec::new(),
            view: Some(Arc::new(FsView::new())),
            args: Vec::new(),
            cmd_set: false,
            docker_style: false,
        },
        Base::Stage(j) => {
            let b = done[*j].clone().ok_or_else(|| Error::internal(format!("{loc}: stage {j} was not built")))?;
            let mut config = b.config.clone();
            config.remove("OnBuild");
            State {
                ctx,
                name,
                platform: b.platform.clone(),
                config,
                changed: b.changed,
                base: b.base.clone(),
                layers: b.layers.clone(),
                view: b.view.clone(),
                args: Vec::new(),
                cmd_set: false,
                docker_style: b.docker_style,
            }
        }
        Base::Image(src) => {
            let img = ctx.resolve_image(src, platform, loc, &format!("FROM {src}"))?;
            ctx.reporter.message(&format!(
                "[{name}] {loc} FROM {src}: {} ({}, {} layers)",
                img.id().short(),
                img.platform(),
                img.manifest.layers.len()
            ));
            State {
                ctx,
                name,
                platform: platform.clone(),
                config: Config::parse(&img.config_raw, &img.origin)?,
                changed: false,
                docker_style: img.manifest.media_type.as_deref() == Some(media::DOCKER_MANIFEST),
                layers: root_layers(&img),
                base: Some(img),
                view: None,
                args: Vec::new(),
                cmd_set: false,
            }
        }
    };
    st.begin();
    if let Base::Image(_) = base {
        let triggers = st.config.strings("OnBuild");
        if !triggers.is_empty() {
            st.config.remove("OnBuild");
            st.changed = true;
            for t in &triggers {
                let ins = dockerfile::parse_trigger(t, loc, df.escape)?;
                if matches!(ins.op, dockerfile::Op::Run(_)) && ctx.opts.executor.is_none() {
                    return Err(
                        executor::run_unsupported(loc).context(format!("ONBUILD trigger {t:?} of the base image"))
                    );
                }
                st.dispatch(&ins, done, i)?;
            }
        }
    }
    for ins in &s.instrs {
        st.dispatch(&ins.clone(), done, i)?;
    }
    Ok(st.finish())
}

/// Layer bytes of a built image: the base images' sources, then the cache.
struct BuiltBlobs {
    by_digest: HashMap<Digest, Arc<dyn BlobSource>>,
    cache: Arc<BlobCache>,
}

impl BlobSource for BuiltBlobs {
    fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        if let Some(r) = self.cache.open_blob(desc, &format!("blob {}", desc.digest))? {
            return Ok(r);
        }
        match self.by_digest.get(&desc.digest) {
            Some(s) => s.open(desc),
            None => Err(Error::internal(format!("blob {} of the built image is missing from the cache", desc.digest))),
        }
    }
    fn describe(&self) -> String {
        "built image".into()
    }
    fn prefetch(&self, desc: &Descriptor) -> Result<()> {
        match self.by_digest.get(&desc.digest) {
            Some(s) => s.prefetch(desc),
            None => Ok(()),
        }
    }
    fn is_local(&self) -> bool {
        self.by_digest.values().all(|s| s.is_local())
    }
}

fn assemble(ctx: &Ctx, res: &StageResult, shown: &str) -> Result<Image> {
    if !res.changed
        && let Some(b) = &res.base
    {
        return Ok(b.clone());
    }
    let config_raw = res.config.to_bytes();
    let config: ConfigView = parse_json(&config_raw, "the built image config")?;
    let (mt, ct) = if res.docker_style {
        (media::DOCKER_MANIFEST, media::DOCKER_CONFIG)
    } else {
        (media::OCI_MANIFEST, media::OCI_CONFIG)
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(mt.into()),
        config: Descriptor::new(ct, Digest::of(&config_raw), config_raw.len() as u64),
        layers: res.layers.iter().map(|l| l.desc.clone()).collect(),
        annotations: None,
    };
    let manifest_raw = serde_json::to_vec(&manifest).expect("serialisable");
    let by_digest = res.layers.iter().map(|l| (l.desc.digest.clone(), l.source.clone())).collect();
    Ok(Image {
        manifest_raw,
        manifest,
        config_raw,
        config,
        source: Arc::new(BuiltBlobs { by_digest, cache: ctx.cache.clone() }),
        origin: format!("{shown} ({})", res.name),
        suggested_tags: Vec::new(),
        index_digest: None,
    })
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("dockerfile", &self.dockerfile)
            .field("context", &self.context)
            .field("platform", &self.platform)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}
