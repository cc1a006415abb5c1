//! `spxpack pull`: resolve every source for the target platform, check the images against
//! what Docker 20.10 loads (all problems at once, before any layer is downloaded), fetch the
//! layers into the cache in parallel, then write one archive atomically.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::blob_cache::BlobCache;
pub use crate::blob_cache::prefetch;
use crate::docker_archive::{self, ArchiveImage, WriteOptions, WriteSummary};
use crate::error::{Error, Result};
use crate::image::{Image, validate};
use crate::platform::Platform;
use crate::progress::{Reporter, human_size};
use crate::registry::ClientOptions;
use crate::source::{Resolver, Source};

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    pub output: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub offline: bool,
    pub client: ClientOptions,
    /// Parallel layer downloads.
    pub jobs: usize,
    /// How the archive is written; `None`: gzip when the output's name ends in `.gz` or `.tgz`,
    /// level 6, entry times 0.
    pub write: Option<WriteOptions>,
    /// How far a compressed input archive may expand (`--max-decompressed`, `--max-ratio`).
    pub limits: crate::compress::Limits,
    /// Content warnings (wrong-architecture executables) are errors.
    pub strict: bool,
}

#[derive(Debug, Clone)]
pub struct PulledImage {
    pub origin: String,
    pub tags: Vec<String>,
    pub id: String,
    pub layers: usize,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct PullSummary {
    pub images: Vec<PulledImage>,
    pub archive: WriteSummary,
    pub output: PathBuf,
    pub fetched_blobs: usize,
}

/// Runs a pull; see the module docs.
pub fn pull(sources: &[Source], opts: &PullOptions, reporter: &dyn Reporter) -> Result<PullSummary> {
    if sources.is_empty() {
        return Err(Error::input("no images given").with_hint("e.g. spxpack pull python:3.10-slim -o images.tar.gz"));
    }
    // before any download: the output must be writable and must not be one of the sources
    let inputs: Vec<_> =
        sources.iter().filter_map(|s| crate::atomic::Input::of_source(s, "the image source")).collect();
    crate::atomic::check_output(&opts.output, "output", &inputs)?;
    let cache = BlobCache::open(opts.cache_dir.clone(), opts.offline)?;
    let resolver = Resolver::new(cache, opts.client.clone()).with_limits(opts.limits);
    let images = resolve_all(&resolver, sources, &opts.platform, reporter)?;
    let tagged = assign_tags(&images, reporter)?;
    // the archive stores every blob as it is: its size is known before any download
    let need: u64 =
        images.iter().map(|i| i.layers_size() + i.config_raw.len() as u64 + i.manifest_raw.len() as u64).sum();
    crate::atomic::require_space(&opts.output, need)?;
    let t = std::time::Instant::now();
    let fetched = prefetch(&images, opts.jobs, reporter)?;
    tracing::info!("prefetch: {:.2}s", t.elapsed().as_secs_f64());
    crate::image::arch_lint::lint(&images, opts.strict, reporter)?;
    let write = opts.write.clone().unwrap_or_else(|| WriteOptions::for_path(&opts.output, 0));
    let list: Vec<ArchiveImage> =
        images.iter().zip(&tagged).map(|(i, t)| ArchiveImage { image: i, tags: t.clone() }).collect();
    let t = std::time::Instant::now();
    let summary = docker_archive::write_file(&opts.output, &list, &write, &|n| reporter.bytes(n))?;
    tracing::info!("archive written: {:.2}s", t.elapsed().as_secs_f64());
    Ok(PullSummary {
        images: images
            .iter()
            .zip(tagged)
            .map(|(i, tags)| PulledImage {
                origin: i.origin.clone(),
                tags,
                id: i.id().to_string(),
                layers: i.manifest.layers.len(),
                size: i.layers_size(),
            })
            .collect(),
        archive: summary,
        output: opts.output.clone(),
        fetched_blobs: fetched,
    })
}

/// Resolves and validates every source, reporting all problems together.
pub fn resolve_all(
    resolver: &Resolver,
    sources: &[Source],
    platform: &Platform,
    reporter: &dyn Reporter,
) -> Result<Vec<Image>> {
    let mut images = Vec::new();
    for s in sources {
        let img = resolver.resolve(s, platform)?;
        reporter.message(&format!(
            "resolved {} → {} ({}, {} layer{}, {})",
            s,
            img.id().short(),
            img.platform(),
            img.manifest.layers.len(),
            if img.manifest.layers.len() == 1 { "" } else { "s" },
            human_size(img.layers_size())
        ));
        images.push(img);
    }
    check_images(&images, platform)?;
    Ok(images)
}

/// Checks images against what Docker 20.10 loads and the target platform, reporting every
/// problem together.
pub fn check_images(images: &[Image], platform: &Platform) -> Result<()> {
    let mut problems = Vec::new();
    for img in images {
        problems.extend(validate::check(img, Some(platform)));
    }
    match problems.len() {
        0 => Ok(()),
        1 => {
            let p = problems.remove(0);
            let mut e = Error::input(p.message);
            if let Some(h) = p.hint {
                e = e.with_hint(h);
            }
            Err(e)
        }
        n => {
            let list: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
            let mut e = Error::input(format!("{n} problems: {}", list.join("; ")));
            if let Some(h) = problems.iter().find_map(|p| p.hint.clone()) {
                e = e.with_hint(h);
            }
            Err(e)
        }
    }
}

/// The `RepoTags` of each image: what the source suggests; an error if two images claim the same.
fn assign_tags(images: &[Image], reporter: &dyn Reporter) -> Result<Vec<Vec<String>>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for img in images {
        let mut tags = Vec::new();
        for t in &img.suggested_tags {
            let r = docker_archive::write::check_tag(t)?;
            let key = r.qualified_tagged();
            if !seen.insert(key) {
                return Err(
                    Error::input(format!("two images would be saved as {t}")).with_hint("pull each tag only once")
                );
            }
            tags.push(t.clone());
        }
        if tags.is_empty() {
            reporter.warn(&format!(
                "warning: {} has no tag; it will load as an untagged image (give NAME:TAG@DIGEST to keep a tag)",
                img.origin
            ));
        }
        out.push(tags);
    }
    Ok(out)
}
