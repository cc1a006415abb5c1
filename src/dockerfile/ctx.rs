//! The state one build shares across its stages: options, the resolver and cache, the staging
//! area, the build context and named contexts, every layer blob seen so far (so contents can
//! be extracted from it), filesystem views of `COPY --from` images, and the final image
//! assembly (manifest + config + a blob source for base and new layers).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::executor::RootLayer;
use super::fsview::{self, FsView};
use super::instructions::Loc;
use super::layer::LayerOptions;
use super::layer_reader::{self, Staging};
use super::tree::{DirTree, Tree, ViewTree};
use super::{BuildOptions, StageResult};
use crate::blob_cache::{BlobCache, CacheSource};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{BlobReader, BlobSource, ConfigView, Descriptor, Image, Manifest, media, parse_json};
use crate::platform::Platform;
use crate::progress::Reporter;
use crate::source::{Resolver, Source};

pub(crate) enum Named {
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
    pub named: HashMap<String, Named>,
    pub blobs: Mutex<HashMap<Digest, layer_reader::Located>>,
    pub image_views: Mutex<HashMap<Digest, Arc<FsView>>>,
    pub layer_opts: LayerOptions,
    pub created: String,
    pub escape: char,
    pub global_args: Vec<(String, String)>,
    /// `AS` names of all stages, in order.
    pub stage_names: Vec<Option<String>>,
    pub used_args: Mutex<BTreeSet<String>>,
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

    /// The network timeouts of the run (`ADD <url>` uses the registry's).
    pub fn timeouts(&self) -> crate::http::Timeouts {
        self.resolver.client_options().timeouts
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

    pub fn source_of(&self, d: &Digest) -> Option<layer_reader::Located> {
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
            let entries = layer_reader::entries(&self.cache, l.source.as_ref(), &l.desc)?;
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

    pub fn resolve_image(&self, src: &Source, platform: &Platform, loc: &Loc, what: &str) -> Result<Image> {
        let img = self.resolver.resolve(src, platform).map_err(|e| e.context(format!("{loc}: {what}")))?;
        if !img.platform().satisfies(platform) {
            self.reporter.warn(&format!(
                "warning: {loc}: {} is {}, not the requested {}",
                img.origin,
                img.platform(),
                platform.normalized()
            ));
        }
        crate::blob_cache::prefetch(std::slice::from_ref(&img), self.opts.jobs, self.reporter)?;
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

    /// The tree behind `COPY --from=…` and `RUN --mount=…,from=…`: an earlier stage, a named
    /// context, or an image.
    pub fn copy_source(
        &self,
        from: &str,
        by: FromUse,
        loc: &Loc,
        stages: &[Option<StageResult>],
        index: usize,
        platform: &Platform,
    ) -> Result<Arc<dyn Tree>> {
        let (verb, flag, key) = match by {
            FromUse::Copy => ("copy", "COPY --from", "--from"),
            FromUse::Mount => ("mount", "RUN --mount from", "from"),
        };
        let lower = from.to_lowercase();
        let by_name = self.stage_names.iter().position(|n| n.as_deref() == Some(lower.as_str()));
        let by_index = from.parse::<usize>().ok();
        let stage_index = by_name.or(by_index);
        if let Some(i) = stage_index {
            if i >= index {
                return Err(loc.error(format!(
                    "cannot {verb} from stage {from:?}, it needs to be defined before the current stage"
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
                if let Some(near) = names.iter().find(|n| bare && super::parse::edit_distance(n, &lower) <= 2) {
                    return Err(loc
                        .error(format!("{flag}={from}: no stage named {from:?} before this one"))
                        .with_hint(format!(
                            "did you mean {key}={near}? (the stages are: {}); for an image, write its full reference such as {from}:latest",
                            names.join(", ")
                        )));
                }
                Source::parse(from).map_err(|e| {
                    loc.error(format!("{flag}={from}: not a stage, build context or image reference ({})", e.message()))
                })?
            }
        };
        let what = format!("{flag}={from} (not a stage, so read as an image)");
        let img = self.resolve_image(&src, platform, loc, &what).map_err(|e| {
            if names.is_empty() { e } else { e.with_hint(format!("the stages are: {}", names.join(", "))) }
        })?;
        Ok(Arc::new(ViewTree { view: self.image_view(&img)?, name: format!("image {from}") }))
    }
}

/// Who reads a `from=` reference (the words of its messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FromUse {
    Copy,
    Mount,
}

pub(crate) fn root_layers(img: &Image) -> Vec<RootLayer> {
    img.manifest
        .layers
        .iter()
        .zip(img.config.rootfs.diff_ids.iter())
        .map(|(d, id)| RootLayer { desc: d.clone(), diff_id: id.to_string(), source: img.source.clone() })
        .collect()
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
    fn prefetch(&self, desc: &Descriptor) -> Result<bool> {
        match self.by_digest.get(&desc.digest) {
            Some(s) => s.prefetch(desc),
            None => Ok(false),
        }
    }
    fn is_local(&self) -> bool {
        self.by_digest.values().all(|s| s.is_local())
    }
}

pub(crate) fn assemble(ctx: &Ctx, res: &StageResult, shown: &str) -> Result<Image> {
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
