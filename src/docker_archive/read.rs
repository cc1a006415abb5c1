//! Reading `docker save` archives of every generation. Paths in `manifest.json` are resolved
//! only against entries inside the archive (never the filesystem); layers are described by
//! their own digest (uncompressed layers by their diff_id) and verified when read.

use std::io::Read;
use std::sync::Arc;

use serde::Deserialize;

use crate::compress::{self, Compression};
use crate::digest::{Digest, Hasher, VerifyingReader};
use crate::error::{Error, Result};
use crate::image::oci::{CONTAINERD_NAME, REF_NAME};
use crate::image::{BlobReader, BlobSource, ConfigView, Descriptor, Image, Index, Manifest, media, parse_json};
use crate::reference::Reference;
use crate::tar::index::TarArchive;

const MAX_DOC: u64 = 16 << 20;

/// One `manifest.json` item.
#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
    #[serde(rename = "Parent", default)]
    pub parent: Option<String>,
    #[serde(rename = "LayerSources", default)]
    pub layer_sources: Option<serde_json::Value>,
}

/// Which image of a multi-image archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The only image (an error if there are several).
    Only,
    Tag(String),
    Index(usize),
}

impl Selector {
    /// Parses the part after `docker-archive:FILE:` (`tag` or `@N`).
    pub fn parse(s: Option<&str>) -> Result<Self> {
        match s {
            None | Some("") => Ok(Selector::Only),
            Some(x) if x.starts_with('@') => x[1..].parse().map(Selector::Index).map_err(|_| {
                Error::input(format!("invalid image index {x:?}"))
                    .with_hint("use docker-archive:FILE@N with N starting at 0")
            }),
            Some(x) => Ok(Selector::Tag(x.to_string())),
        }
    }
}

/// An opened docker archive.
pub struct DockerArchive {
    pub tar: Arc<TarArchive>,
    pub items: Vec<Item>,
}

impl DockerArchive {
    pub fn open(path: &std::path::Path) -> Result<Self> {
        Self::open_limited(path, crate::compress::Limits::default())
    }

    /// Opens `path`; a compressed archive may expand only within `limits`.
    pub fn open_limited(path: &std::path::Path, limits: crate::compress::Limits) -> Result<Self> {
        let tar = TarArchive::open_limited(path, "docker archive", limits)?;
        Self::from_tar(Arc::new(tar))
    }

    pub fn from_tar(tar: Arc<TarArchive>) -> Result<Self> {
        let shown = tar.display().to_string();
        if !tar.contains("manifest.json") {
            let hint = if tar.contains("index.json") {
                "it is an OCI archive: use oci-archive:FILE"
            } else if tar.contains("repositories") {
                "it is a pre-1.10 docker save archive; load and save it again with a current Docker"
            } else {
                "a docker save archive has a manifest.json at its root"
            };
            return Err(
                Error::input(format!("{shown} is not a docker archive: it has no manifest.json")).with_hint(hint)
            );
        }
        let raw = tar.read("manifest.json", MAX_DOC)?;
        let items: Option<Vec<Item>> = parse_json(&raw, &format!("manifest.json of {shown}"))?;
        let items = items.ok_or_else(|| Error::input(format!("{shown}: manifest.json is null")))?;
        if items.is_empty() {
            return Err(Error::input(format!("{shown}: manifest.json lists no images")));
        }
        Ok(DockerArchive { tar, items })
    }

    fn find(&self, sel: &Selector) -> Result<usize> {
        let shown = self.tar.display();
        let all_tags = || {
            let t: Vec<String> = self.items.iter().flat_map(|i| i.repo_tags.clone().unwrap_or_default()).collect();
            if t.is_empty() { "no tags".into() } else { t.join(", ") }
        };
        match sel {
            Selector::Only if self.items.len() == 1 => Ok(0),
            Selector::Only => {
                Err(Error::input(format!("{shown} holds {} images; say which one", self.items.len())).with_hint(
                    format!("use docker-archive:{shown}:TAG (one of: {}) or docker-archive:{shown}@N", all_tags()),
                ))
            }
            Selector::Index(i) if *i < self.items.len() => Ok(*i),
            Selector::Index(i) => {
                Err(Error::not_found(format!("{shown} has {} images; there is no image @{i}", self.items.len())))
            }
            Selector::Tag(t) => {
                let want = Reference::parse(t).ok();
                self.items
                    .iter()
                    .position(|it| {
                        it.repo_tags.iter().flatten().any(|have| {
                            have == t
                                || match (&want, Reference::parse(have)) {
                                    (Some(w), Ok(h)) => {
                                        w.full_name() == h.full_name() && w.effective_tag() == h.effective_tag()
                                    }
                                    _ => false,
                                }
                        })
                    })
                    .ok_or_else(|| {
                        Error::not_found(format!("{shown} has no image tagged {t:?}; it has: {}", all_tags()))
                    })
            }
        }
    }

    /// Builds the image for `sel`.
    pub fn image(&self, sel: &Selector) -> Result<Image> {
        let i = self.find(sel)?;
        self.image_at(i, sel)
    }

    /// Every image of the archive, in `manifest.json` order.
    pub fn all_images(&self) -> Result<Vec<Image>> {
        (0..self.items.len()).map(|i| self.image_at(i, &Selector::Index(i))).collect()
    }

    fn image_at(&self, i: usize, sel: &Selector) -> Result<Image> {
        let item = &self.items[i];
        let shown = self.tar.display();
        let origin = match sel {
            Selector::Tag(t) => format!("docker-archive:{shown}:{t}"),
            _ => format!("docker-archive:{shown}@{i}"),
        };
        let config_raw = self.tar.read(&item.config, MAX_DOC).map_err(|e| e.context(format!("{origin}: Config")))?;
        let config_digest = Digest::of(&config_raw);
        let config: ConfigView = parse_json(&config_raw, &format!("config of {origin}"))?;
        if config.rootfs.diff_ids.len() != item.layers.len() {
            return Err(Error::input(format!(
                "{origin}: manifest.json lists {} layers but the config has {} diff_ids",
                item.layers.len(),
                config.rootfs.diff_ids.len()
            ))
            .with_hint("the archive is malformed; export it again"));
        }
        let mut layers = Vec::with_capacity(item.layers.len());
        let mut paths = Vec::with_capacity(item.layers.len());
        for (n, path) in item.layers.iter().enumerate() {
            let (name, _, size) = self.tar.resolve(path).map_err(|e| e.context(format!("{origin}: layer {n}")))?;
            let head = self.tar.head(&name, 8)?;
            let c = compress::sniff(&head);
            let (mt, digest) = match c {
                Compression::None => (media::OCI_LAYER, config.rootfs.diff_ids[n].clone()),
                Compression::Gzip | Compression::Zstd => {
                    let claimed = name.strip_prefix("blobs/sha256/").and_then(|h| Digest::from_hex(h).ok());
                    let d = match claimed {
                        Some(d) => d,
                        None => {
                            let (mut r, _) = self.tar.open_entry(&name)?;
                            let mut h = Hasher::new();
                            std::io::copy(&mut r, &mut h).map_err(|e| Error::from_io("cannot read", &origin, e))?;
                            h.finish()
                        }
                    };
                    (if c == Compression::Gzip { media::OCI_LAYER_GZIP } else { media::OCI_LAYER_ZSTD }, d)
                }
                other => {
                    return Err(Error::unsupported(format!(
                        "{origin}: layer {n} is {}-compressed; OCI layers can only be plain, gzip or zstd",
                        other.name()
                    ))
                    .with_hint("load the archive into Docker and save it again"));
                }
            };
            layers.push(Descriptor::new(mt, digest, size));
            paths.push(name);
        }
        let manifest_raw = self
            .matching_oci_manifest(&config_digest, &layers)
            .unwrap_or_else(|| synthesize_manifest(&config_digest, config_raw.len() as u64, &layers));
        let manifest = Manifest::parse(&manifest_raw, &format!("manifest of {origin}"))?;
        let mut by_digest = std::collections::HashMap::new();
        for (d, p) in layers.iter().zip(&paths) {
            by_digest.insert(d.digest.clone(), p.clone());
        }
        let suggested = match sel {
            Selector::Tag(t) => vec![t.clone()],
            _ => item.repo_tags.clone().unwrap_or_default(),
        };
        Ok(Image {
            manifest_raw,
            manifest,
            config_raw,
            config,
            source: Arc::new(ArchiveBlobs { tar: self.tar.clone(), paths: by_digest, origin: origin.clone() }),
            origin,
            suggested_tags: suggested,
            index_digest: None,
        })
    }

    /// In a hybrid archive, the original OCI manifest of this image (keeps its digest).
    fn matching_oci_manifest(&self, config: &Digest, layers: &[Descriptor]) -> Option<Vec<u8>> {
        if !self.tar.contains("index.json") {
            return None;
        }
        let idx = Index::parse(&self.tar.read("index.json", MAX_DOC).ok()?, "index.json").ok()?;
        for d in &idx.manifests {
            if !media::is_manifest(&d.media_type) {
                continue;
            }
            let Ok(raw) = self.tar.read(&d.digest.blob_path(), MAX_DOC) else { continue };
            if Digest::of(&raw) != d.digest {
                continue;
            }
            let Ok(m) = Manifest::parse(&raw, "manifest") else { continue };
            let same = m.config.digest == *config
                && m.layers.len() == layers.len()
                && m.layers.iter().zip(layers).all(|(a, b)| a.digest == b.digest && a.size == b.size);
            if same {
                return Some(raw);
            }
        }
        None
    }

    /// Tags listed for each image (for `inspect`).
    pub fn tags_of(&self, i: usize) -> Vec<String> {
        self.items[i].repo_tags.clone().unwrap_or_default()
    }

    /// Names from `index.json` annotations, for archives without RepoTags.
    pub fn index_names(&self) -> Vec<String> {
        let Ok(raw) = self.tar.read("index.json", MAX_DOC) else { return vec![] };
        let Ok(idx) = Index::parse(&raw, "index.json") else { return vec![] };
        idx.manifests
            .iter()
            .filter_map(|d| d.annotation(CONTAINERD_NAME).or(d.annotation(REF_NAME)).map(str::to_string))
            .collect()
    }
}

/// An OCI manifest for an archive image that has none.
pub fn synthesize_manifest(config: &Digest, config_size: u64, layers: &[Descriptor]) -> Vec<u8> {
    let m = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: Descriptor::new(media::OCI_CONFIG, config.clone(), config_size),
        layers: layers.to_vec(),
        annotations: None,
    };
    serde_json::to_vec(&m).expect("serialisable")
}

struct ArchiveBlobs {
    tar: Arc<TarArchive>,
    paths: std::collections::HashMap<Digest, String>,
    origin: String,
}

impl BlobSource for ArchiveBlobs {
    fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        let path = self.paths.get(&desc.digest).cloned().unwrap_or_else(|| desc.digest.blob_path());
        let (r, size) = self.tar.open_entry(&path)?;
        let what = format!("layer {} ({path}) of {}", desc.digest, self.origin);
        if size != desc.size {
            return Err(Error::integrity(format!("{what} is {size} bytes, expected {}", desc.size)));
        }
        let r: Box<dyn Read + Send> = Box::new(std::io::BufReader::with_capacity(1 << 20, r));
        Ok(Box::new(VerifyingReader::new(r, desc.digest.clone(), desc.size, what)))
    }
    fn describe(&self) -> String {
        self.origin.clone()
    }
}
