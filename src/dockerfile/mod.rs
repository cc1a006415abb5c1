//! The daemonless Dockerfile builder: every instruction but RUN (which plugs in through
//! [`executor::StepExecutor`]), multi-stage builds, `--target`, build args, named build
//! contexts and a content-addressed build cache.
//!
//! [`build`] reads the Dockerfile and `.dockerignore`, resolves the stages the target needs,
//! runs them in order ([`stage`]), and returns an [`Image`] whose base layers are the base
//! image's blobs untouched and whose new layers are in the blob cache. Writing it out
//! (`docker_archive::write_file`, `oci_layout::write_dir`) is the caller's business.

pub mod bind_plan;
pub mod config;
pub mod copy;
mod ctx;
pub mod dockerignore;
pub mod executor;
pub mod fetch;
pub mod fsview;
mod graph;
mod instr;
pub mod instructions;
pub mod layer;
pub mod layer_reader;
pub mod lex;
pub mod parse;
pub mod run;
pub mod run_flags;
mod stage;
pub mod tree;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::image::{Image, media};
use crate::platform::Platform;
use crate::progress::Reporter;
use crate::source::{Resolver, Source};

/// The old name of [`layer_reader`], still imported by `layer.rs` (owned by another change;
/// drop this alias once it imports `layer_reader`).
use config::Config;
use ctx::{Ctx, Stats, assemble, root_layers};
use executor::{RootLayer, StepExecutor};
use fsview::FsView;
use graph::{Base, check_run, ignore_file, parse_named, plan_stages, platform_args, reachable};
use instructions::Dockerfile;
use layer::LayerOptions;
use layer_reader::Staging;
use lex::Lex;
use stage::State;
use tree::DirTree;

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
    /// How far a compressed local archive that `ADD` unpacks may expand.
    pub limits: crate::compress::Limits,
}

impl BuildOptions {
    /// Defaults: linux/arm64, epoch 0 (the caller passes `SOURCE_DATE_EPOCH`), all cores, gzip level 6.
    pub fn new(dockerfile: impl Into<PathBuf>, context: impl Into<PathBuf>) -> Self {
        BuildOptions {
            dockerfile: dockerfile.into(),
            context: context.into(),
            platform: Platform::linux_arm64(),
            build_args: Vec::new(),
            target: None,
            build_contexts: Vec::new(),
            no_cache: false,
            epoch: 0,
            threads: crate::compress::default_threads(),
            compression_level: 6,
            jobs: 4,
            executor: None,
            limits: crate::compress::Limits::default(),
        }
    }
}

/// The local files and directories a build reads, for the output checks of
/// [`crate::atomic::refuse_inputs`]: the Dockerfile, the context (less its `.dockerignore`),
/// the `--build-context` directories and image sources, and the local `FROM` sources
/// (`oci:`, `oci-archive:`, `docker-archive:`; those spelled with variables are not expanded).
/// Read before the build, so problems here are left to the build to report.
pub fn inputs(opts: &BuildOptions) -> Vec<crate::atomic::Input> {
    use crate::atomic::{Excludes, Input, InputKind};
    let mut v = vec![Input::file("the Dockerfile", &opts.dockerfile)];
    let ignore = ignore_file(&opts.dockerfile, &opts.context).unwrap_or_default();
    v.push(Input {
        label: "the build context".into(),
        path: opts.context.clone(),
        kind: InputKind::Context(Excludes::new(move |rel| ignore.excludes(rel))),
    });
    for (k, val) in &opts.build_contexts {
        let label = format!("--build-context {k}");
        let src = val.strip_prefix("oci-layout://").map(|r| format!("oci:{r}"));
        let src = src.as_deref().unwrap_or(val);
        if ["oci:", "oci-archive:", "docker-archive:"].iter().any(|t| src.starts_with(t)) {
            v.extend(Source::parse(src).ok().and_then(|s| Input::of_source(&s, &label)));
        } else if !val.contains("://") {
            v.push(Input::tree(label, val));
        }
    }
    // a FIFO, a device or an oversized file is refused here without reading it; the build
    // itself then reports it
    if let Ok(bytes) = crate::input::read(&opts.dockerfile, crate::input::MAX_TEXT)
        && let Ok(text) = String::from_utf8(bytes)
        && let Ok(df) = parse::parse(&text, &opts.dockerfile.display().to_string())
    {
        for s in &df.stages {
            let image = &s.from.image;
            if !image.contains('$') && ["oci:", "oci-archive:", "docker-archive:"].iter().any(|t| image.starts_with(t))
            {
                v.extend(Source::parse(image).ok().and_then(|src| Input::of_source(&src, "the FROM image source")));
            }
        }
    }
    v
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

/// Reads, plans and runs the build; see the module docs.
pub fn build(opts: &BuildOptions, resolver: &Resolver, reporter: &dyn Reporter) -> Result<BuildOutput> {
    let r = build_inner(opts, resolver, reporter);
    if let Some(e) = &opts.executor {
        e.finish();
    }
    r
}

fn build_inner(opts: &BuildOptions, resolver: &Resolver, reporter: &dyn Reporter) -> Result<BuildOutput> {
    let shown = opts.dockerfile.display().to_string();
    let text =
        crate::input::read(&opts.dockerfile, crate::input::MAX_TEXT).map_err(|e| match crate::input::refusal(&e) {
            Some(refused) => refused,
            None => Error::io("cannot read the Dockerfile", &opts.dockerfile, e)
                .with_hint("pass the Dockerfile with -f PATH"),
        })?;
    let text = String::from_utf8(text).map_err(|_| Error::input(format!("{shown} is not UTF-8 text")))?;
    let df = parse::parse(&text, &shown)?;
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
    let mut global_bytes = 0usize;
    for a in &df.meta_args {
        let instructions::Op::Arg(list) = &a.op else { continue };
        for (k, default) in list {
            declared.insert(k.clone());
            let v = match (ctx.build_arg(k), default) {
                (Some(v), _) => Some(v),
                (None, Some(d)) => Some(
                    Lex::new(df.escape)
                        .word(d, &|n| ctx.global_arg(n))
                        .map_err(|e| stage::var_error(&a.loc, "ARG", k, e))?,
                ),
                (None, None) => None,
            };
            if let Some(v) = v {
                global_bytes = global_bytes.saturating_add(k.len() + v.len());
                if global_bytes > stage::MAX_STAGE_VARS {
                    return Err(a
                        .loc
                        .error(format!(
                            "ARG {k}: the ARGs before the first FROM add up to more than {} MiB",
                            stage::MAX_STAGE_VARS >> 20
                        ))
                        .with_hint(stage::TOO_LONG_HINT));
                }
                ctx.global_args.push((k.clone(), v));
            }
        }
    }
    let (bases, platforms) = plan_stages(&df, &ctx)?;
    let needed = reachable(&df, &bases, target_index);
    check_run(&df, &needed, opts)?;
    for s in &needed {
        for i in &df.stages[*s].instrs {
            if let instructions::Op::Arg(l) = &i.op {
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
        .filter(|k| !declared.contains(*k) && *k != "SOURCE_DATE_EPOCH" && !config::PROXY_ARGS.contains(k))
        .collect();
    if !unused.is_empty() {
        reporter.warn(&format!("warning: build args were not consumed by {shown}: {}", unused.join(", ")));
    }
    let stats = std::mem::take(&mut *ctx.stats.lock().expect("poisoned"));
    Ok(BuildOutput { image, target: target_name, layers_built: stats.built, layers_cached: stats.cached })
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
            var_bytes: 0,
            arg_index: HashMap::new(),
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
                var_bytes: 0,
                arg_index: HashMap::new(),
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
                var_bytes: 0,
                arg_index: HashMap::new(),
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
                let ins = parse::parse_trigger(t, loc, df.escape)?;
                if matches!(ins.op, instructions::Op::Run(..)) && ctx.opts.executor.is_none() {
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
