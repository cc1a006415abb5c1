//! The one resolution every image source shares: a manifest or index document → (an index:
//! pick the platform, follow the child; at most [`MAX_DEPTH`] levels) → an image manifest → its
//! config → the parts of an [`Image`]. Sources differ only in how they fetch a document by
//! descriptor ([`Documents`]): the registry by digest over HTTP (through the cache), an OCI
//! layout from its `blobs/` directory.

use super::media;
use super::model::sniff_manifest_kind;
use super::{BlobSource, ConfigView, Descriptor, Image, Index, Manifest, parse_json};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::{self, Platform};

/// How deep indexes may nest.
pub const MAX_DEPTH: usize = 4;

/// A manifest or index as fetched: its exact bytes, their digest and the media type the
/// transport or the referring descriptor gave (if any).
#[derive(Debug, Clone)]
pub struct Document {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: Option<String>,
}

/// Fetches what an index or a manifest points to (verified against the descriptor).
pub trait Documents {
    /// The manifest or index an index entry points to.
    fn child(&self, desc: &Descriptor) -> Result<Document>;
    /// The config blob of a manifest.
    fn config(&self, desc: &Descriptor) -> Result<Vec<u8>>;
}

/// An image's documents, resolved for one platform.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub manifest_raw: Vec<u8>,
    pub manifest: Manifest,
    pub config_raw: Vec<u8>,
    pub config: ConfigView,
    /// The digest of the first index on the way, when there was one.
    pub index_digest: Option<Digest>,
}

/// Resolves `first` (what a tag or layout entry names) to the image for `platform`. `what`
/// names the image in messages.
pub fn resolve(first: Document, platform: &Platform, what: &str, docs: &dyn Documents) -> Result<Resolved> {
    let mut doc = first;
    let mut index_digest = None;
    for _ in 0..MAX_DEPTH {
        let kind = sniff_manifest_kind(&doc.bytes, doc.media_type.as_deref())
            .ok_or_else(|| Error::input(format!("{what}: {} is neither an image manifest nor an index", doc.digest)))?;
        if kind == media::DOCKER_MANIFEST_V1 || kind == media::DOCKER_MANIFEST_V1_SIGNED {
            return Err(Error::unsupported(format!(
                "{what} is a Docker schema 1 manifest, which spxpack does not read"
            ))
            .with_hint("re-push the image with a current docker or skopeo to convert it to schema 2"));
        }
        if media::is_index(&kind) {
            let idx = Index::parse(&doc.bytes, &format!("index {} of {what}", doc.digest))?;
            let child = select_platform(&idx.manifests, platform, what)?;
            index_digest.get_or_insert(doc.digest.clone());
            doc = docs.child(child)?;
            continue;
        }
        if !media::is_manifest(&kind) {
            return Err(Error::unsupported(format!("{what}: {} has unsupported media type {kind:?}", doc.digest)));
        }
        let manifest = Manifest::parse(&doc.bytes, &format!("manifest of {what}"))?;
        let config_raw = docs.config(&manifest.config)?;
        let config: ConfigView = parse_json(&config_raw, &format!("config of {what}"))?;
        return Ok(Resolved { manifest_raw: doc.bytes, manifest, config_raw, config, index_digest });
    }
    Err(Error::input(format!("{what}: indexes nested more than {MAX_DEPTH} levels deep")))
}

/// Picks the entry for `want` from an index's manifests; the error lists what the index has.
pub fn select_platform<'a>(entries: &'a [Descriptor], want: &Platform, what: &str) -> Result<&'a Descriptor> {
    platform::select(entries, |d| d.platform.as_ref(), want, what)
}

impl Image {
    /// An image from resolved documents. Checks the invariant every sink relies on: the
    /// config bytes are the ones the manifest names (their sha256 is the image ID).
    pub fn new(
        r: Resolved,
        source: std::sync::Arc<dyn BlobSource>,
        origin: impl Into<String>,
        suggested_tags: Vec<String>,
    ) -> Result<Image> {
        let origin = origin.into();
        let got = Digest::of(&r.config_raw);
        if got != r.manifest.config.digest {
            return Err(Error::integrity(format!(
                "{origin}: the config has digest {got}, but the manifest names {}",
                r.manifest.config.digest
            )));
        }
        Ok(Image {
            manifest_raw: r.manifest_raw,
            manifest: r.manifest,
            config_raw: r.config_raw,
            config: r.config,
            source,
            origin,
            suggested_tags,
            index_digest: r.index_digest,
        })
    }
}
