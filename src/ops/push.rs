//! `spxpack push SOURCE DEST` (and `image build --push`, `build --push-images`): check the
//! destination → plan (one image for the platform, or with `--all` a registry index with every
//! child manifest and blob) → choose mount sources (the source repository when it is on the
//! destination's registry, else where the blob cache saw the blob last) → push the blobs, then
//! the manifests ([`crate::registry::push`]) → remember where the blobs now live.

use std::path::PathBuf;
use std::sync::Arc;

use crate::blob_cache::BlobCache;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::platform::Platform;
use crate::progress::{Reporter, human_size};
use crate::reference::Reference;
use crate::registry::ClientOptions;
use crate::registry::push::{BlobOutcome, PushPlan, PushStats, Pusher};
use crate::source::{Resolver, Source};

pub use crate::registry::push::{PushOptions as UploadOptions, UploadSizes};

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The image of an index to push (without `all`).
    pub platform: Platform,
    /// Copy a registry index whole: every platform, same index digest.
    pub all: bool,
    pub cache_dir: Option<PathBuf>,
    pub client: ClientOptions,
    pub upload: UploadOptions,
}

#[derive(Debug, Clone)]
pub struct PushSummary {
    pub source: String,
    /// `registry/repository:tag` pushed to.
    pub dest: String,
    /// The digest of what the tag now names (the manifest, or the index with `--all`).
    pub digest: Digest,
    pub stats: PushStats,
}

/// Runs `spxpack push`; see the module docs.
pub fn push(source: &Source, dest: &str, opts: &PushOptions, reporter: &dyn Reporter) -> Result<PushSummary> {
    let dest = destination(dest)?;
    let cache = BlobCache::open(opts.cache_dir.clone(), false)?;
    let resolver = Resolver::new(cache, opts.client.clone());
    let (plan, from) = plan(&resolver, source, opts)?;
    push_plan(&resolver, plan, from.as_ref(), &dest, &opts.upload, reporter)
}

/// Pushes an image already in hand (a build's result) to `dest`.
pub fn push_image(
    resolver: &Resolver,
    image: &Image,
    dest: &Reference,
    upload: &UploadOptions,
    reporter: &dyn Reporter,
) -> Result<PushSummary> {
    push_plan(resolver, PushPlan::for_image(image), None, dest, upload, reporter)
}

/// Parses a push destination: a registry reference (`docker://` optional), not a file or
/// layout.
pub fn destination(s: &str) -> Result<Reference> {
    match Source::parse(s) {
        Ok(Source::Registry(r)) => Ok(r),
        Ok(_) => Err(Error::input(format!("push destination {s:?} is not a registry reference"))
            .with_hint("push to REGISTRY/REPOSITORY:TAG; use `spxpack pull SOURCE -o FILE` to write files")),
        Err(e) => Err(e.context(format!("push destination {s:?}"))),
    }
}

/// What to push, and the registry repository it comes from (for mounts).
fn plan(resolver: &Resolver, source: &Source, opts: &PushOptions) -> Result<(PushPlan, Option<Reference>)> {
    match source {
        Source::Registry(r) if opts.all => {
            Ok((PushPlan::for_registry_tree(&resolver.registry()?, r)?, Some(r.clone())))
        }
        _ if opts.all => Err(Error::input(format!("--all copies a registry index, and {source} is not in a registry"))
            .with_hint("push one image (drop --all), or copy from a registry reference")),
        Source::Registry(r) => {
            let image = resolver.resolve(source, &opts.platform)?;
            let mirrored = crate::registry::mirror::rewrite(&resolver.client_options().mirrors, r).is_some();
            Ok((PushPlan::for_image(&image), (!mirrored).then(|| r.clone())))
        }
        _ => Ok((PushPlan::for_image(&resolver.resolve(source, &opts.platform)?), None)),
    }
}

/// Picks mount sources, pushes, and records where the blobs now live.
fn push_plan(
    resolver: &Resolver,
    mut plan: PushPlan,
    from: Option<&Reference>,
    dest: &Reference,
    upload: &UploadOptions,
    reporter: &dyn Reporter,
) -> Result<PushSummary> {
    let cache: &Arc<BlobCache> = &resolver.cache;
    for b in &mut plan.blobs {
        b.mount_from = match from {
            Some(f) if f.registry == dest.registry && f.repository != dest.repository => Some(f.repository.clone()),
            _ => cache.blob_homes(&dest.registry, &b.desc.digest).into_iter().rev().find(|h| *h != dest.repository),
        };
    }
    let client = resolver.client()?;
    let on_blob = |d: &crate::image::Descriptor, o: &BlobOutcome| {
        let how = match o {
            BlobOutcome::Existing => "exists",
            BlobOutcome::Mounted => "mounted",
            BlobOutcome::Uploaded => "uploaded",
        };
        reporter.message(&format!("{how}: {} ({})", d.digest.short(), human_size(d.size)));
    };
    let progress = |n: u64| reporter.bytes(n);
    let pusher = Pusher { client: &client, dest, opts: upload, progress: &progress, on_blob: &on_blob };
    let (digest, stats) = pusher.push(&plan).map_err(|e| e.context(format!("push of {} to {dest}", plan.what)))?;
    for b in &plan.blobs {
        cache.note_blob_home(&dest.registry, &dest.repository, &b.desc.digest);
    }
    Ok(PushSummary { source: plan.what.clone(), dest: dest.to_string(), digest, stats })
}
