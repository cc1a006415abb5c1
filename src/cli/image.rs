//! `spxpack image build`: flags → `dockerfile::BuildOptions`, the build, and the output (a
//! docker-save archive or an OCI layout directory).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output::Term;
use super::{LimitArgs, RegistryArgs, RunArgs};
use spxpack::docker_archive::{self, ArchiveImage, WriteOptions};
use spxpack::dockerfile::run::SandboxExecutor;
use spxpack::dockerfile::{self, BuildOptions};
use spxpack::error::{Error, Result};
use spxpack::platform::Platform;
use spxpack::progress::{Reporter, human_size};
use spxpack::source::Resolver;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image from a Dockerfile and write it as a docker-save archive (.tar, .tar.gz)
    /// or into an OCI layout (-o oci:DIR).
    ///
    /// FROM accepts registry references, `scratch`, earlier stages, and the local sources
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG] and docker-archive:FILE[:TAG]. RUN steps run in a
    /// sandbox (root, a user namespace or proot; qemu for a foreign architecture) without a
    /// daemon. Layers are cached in the blob cache: a rebuild with nothing changed writes no
    /// layer and runs no step.
    Build(Box<ImageBuildArgs>),
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// The build context directory.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
    /// The Dockerfile [default: CONTEXT/Dockerfile].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Name and tag of the image (NAME:TAG). Repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG")]
    pub tags: Vec<String>,
    /// Output: FILE.tar, FILE.tar.gz / .tgz (docker-save archive) or oci:DIR[:TAG] (OCI layout).
    #[arg(short, long, value_name = "FILE|oci:DIR", required_unless_present = "push")]
    pub output: Option<String>,
    /// Push the image to this registry reference (REGISTRY/REPOSITORY:TAG), byte for byte;
    /// with or without -o. Repeatable.
    #[arg(long, value_name = "REF", help_heading = "Push")]
    pub push: Vec<String>,
    #[command(flatten)]
    pub upload: super::push::UploadArgs,
    /// Target platform: linux/arm64 (CORE I/O) or linux/amd64 (Orbit).
    #[arg(long, default_value = "linux/arm64", env = "SPXPACK_PLATFORM")]
    pub platform: String,
    /// Build-time variable KEY=VALUE (KEY alone takes the value from the environment). Repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage instead of the last one.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Named context NAME=SOURCE for FROM NAME / COPY --from=NAME: a directory,
    /// docker-image://REF, oci-layout://DIR[:TAG], oci:DIR[:TAG] or docker-archive:FILE. Repeatable.
    #[arg(long = "build-context", value_name = "NAME=SOURCE")]
    pub build_contexts: Vec<String>,
    /// Do not use layers from the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Threads for compressing new layers (the output bytes do not depend on it).
    #[arg(long, env = "SPXPACK_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Parallel base-layer downloads.
    #[arg(short, long, default_value_t = 4)]
    pub jobs: usize,
    /// Gzip level of new layers (1-9).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub compression_level: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Warnings about image content (ELF executables for another architecture) are errors.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

fn split_kv(s: &str, flag: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(Error::input(format!("{flag} {s:?}: expected NAME=VALUE"))),
    }
}

pub fn build(a: ImageBuildArgs, term: &Term) -> Result<()> {
    let started = std::time::Instant::now();
    let (opts, executor) = build_options(&a)?;
    let dests = a.push.iter().map(|d| spxpack::ops::push::destination(d)).collect::<Result<Vec<_>>>()?;
    if !dests.is_empty() && a.registry.offline {
        return Err(Error::input("--push needs the network; --offline cannot be used with it"));
    }
    // fail before the build, not after it: the output must be writable and no input of the build
    let output = a.output.as_deref().map(|o| Output::check(o, &opts)).transpose()?;
    let cache = spxpack::blob_cache::BlobCache::open(a.registry.cache_dir(), a.registry.offline)?;
    let resolver = Resolver::new(cache, a.registry.client_options()?).with_limits(opts.limits);
    let out = dockerfile::build(&opts, &resolver, term)?;
    spxpack::image::arch_lint::lint(std::slice::from_ref(&out.image), a.strict, term)?;
    tracing::info!("build: {:.2}s", started.elapsed().as_secs_f64());
    let img = &out.image;
    if let Some(o) = &output {
        o.write(img, &a.tags, &opts, term)?;
    }
    let upload = a.upload.options(a.jobs);
    let mut pushed = Vec::new();
    for d in &dests {
        let s = spxpack::ops::push::push_image(&resolver, img, d, &upload, term)?;
        if !a.json {
            super::push::pushed_line(&s, term);
        }
        pushed.push(super::push::summary_json(&s));
    }
    let shown = a.output.clone().unwrap_or_else(|| a.push.join(", "));
    if a.json {
        let v = serde_json::json!({
            "output": a.output,
            "id": img.id().to_string(),
            "manifest_digest": img.manifest_digest().to_string(),
            "tags": a.tags,
            "target": out.target,
            "platform": img.platform().to_string(),
            "layers": img.manifest.layers.len(),
            "layers_built": out.layers_built,
            "layers_cached": out.layers_cached,
            "run": executor.summary(),
            "pushed": pushed,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        term.done(&format!(
            "built {} ({}, {} layers: {} new, {} cached, {}) → {} in {:.1}s",
            a.tags.first().map(String::as_str).unwrap_or("image"),
            img.id().short(),
            img.manifest.layers.len(),
            out.layers_built,
            out.layers_cached,
            human_size(img.layers_size()),
            shown,
            started.elapsed().as_secs_f32()
        ));
    }
    Ok(())
}

/// The build's options from the flags, and the RUN executor (for its summary).
fn build_options(a: &ImageBuildArgs) -> Result<(BuildOptions, std::sync::Arc<SandboxExecutor>)> {
    let platform = Platform::parse(&a.platform)?;
    for t in &a.tags {
        docker_archive::write::check_tag(t)?;
    }
    let mut opts = BuildOptions::new(a.file.clone().unwrap_or_else(|| a.context.join("Dockerfile")), &a.context);
    opts.platform = platform;
    opts.epoch = super::source_date_epoch();
    opts.limits = a.limits.limits();
    for b in &a.build_args {
        opts.build_args.push(match b.split_once('=') {
            Some(_) => split_kv(b, "--build-arg")?,
            None => match super::host_env().get_os(b).and_then(|v| v.to_str()) {
                Some(v) => (b.clone(), v.to_string()),
                None => continue,
            },
        });
    }
    for c in &a.build_contexts {
        opts.build_contexts.push(split_kv(c, "--build-context")?);
    }
    opts.target = a.target.clone();
    opts.no_cache = a.no_cache;
    if let Some(t) = a.threads {
        opts.threads = t.max(1);
    }
    opts.jobs = a.jobs;
    opts.compression_level = a.compression_level;
    let executor = std::sync::Arc::new(SandboxExecutor::new(a.run.options()?));
    opts.executor = Some(executor.clone());
    Ok((opts, executor))
}

/// Where `-o` writes the image.
enum Output {
    Archive(PathBuf),
    Layout { dir: PathBuf, tag: Option<String> },
}

impl Output {
    /// Parses `-o` and checks it before the build: writable, and no input of the build.
    fn check(output: &str, opts: &BuildOptions) -> Result<Self> {
        let inputs = dockerfile::inputs(opts);
        let out = std::path::Path::new(output);
        let Some(r) = output.strip_prefix("oci:") else {
            spxpack::atomic::check_output(out, "output", &inputs)?;
            return Ok(Output::Archive(PathBuf::from(output)));
        };
        let (dir, tag) = match r.rsplit_once(':') {
            Some((d, t)) if !t.contains('/') && !d.is_empty() => (PathBuf::from(d), Some(t.to_string())),
            _ => (PathBuf::from(r), None),
        };
        // a layout directory is created or updated (new blobs, index.json replaced last): it
        // must not lie in anything read whole, and its index must not be an input; updating
        // the layout a FROM reads is fine
        spxpack::atomic::refuse_inputs(out, &dir, "output", &inputs)?;
        let same = |p: &std::path::Path| {
            std::fs::canonicalize(p).ok().is_some_and(|c| std::fs::canonicalize(&dir).ok() == Some(c))
        };
        let others: Vec<_> = inputs
            .iter()
            .filter(|i| !(matches!(i.kind, spxpack::atomic::InputKind::Layout) && same(&i.path)))
            .cloned()
            .collect();
        spxpack::atomic::refuse_inputs(out, &dir.join("index.json"), "output", &others)?;
        Ok(Output::Layout { dir, tag })
    }

    fn write(&self, img: &spxpack::image::Image, tags: &[String], opts: &BuildOptions, term: &Term) -> Result<()> {
        match self {
            Output::Layout { dir, tag } => {
                let name = tag.clone().or_else(|| tags.first().cloned());
                spxpack::oci_layout::write_dir(dir, &[(img, name)], &|n| term.bytes(n))
            }
            Output::Archive(path) => {
                if tags.is_empty() {
                    term.warn("warning: no -t NAME:TAG given; the image will load untagged");
                }
                let mut w = WriteOptions::for_path(path, opts.epoch);
                w.threads = opts.threads;
                let list = [ArchiveImage { image: img, tags: tags.to_vec() }];
                docker_archive::write_file(path, &list, &w, &|n| term.bytes(n)).map(drop)
            }
        }
    }
}
