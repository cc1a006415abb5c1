//! The image model shared by every source and sink: an [`Image`] holds the exact manifest and
//! config bytes (the image ID is the sha256 of the config bytes, so they are never
//! re-serialised), parsed views of them, and the [`BlobSource`] that yields layer bytes.

pub mod arch_lint;
pub mod media;
pub mod model;
pub mod oci;
pub mod resolve;
pub mod validate;

#[cfg(test)]
mod kit_tests;

use std::io::Read;
use std::sync::Arc;

pub use model::{ConfigView, Descriptor, Index, Manifest, RootFs, parse_json};

use crate::digest::Digest;
use crate::error::Result;
use crate::platform::Platform;

/// A reader of blob bytes (already verified against the descriptor by the source).
pub type BlobReader = Box<dyn Read + Send>;

/// Where an image's blobs come from: a registry, an OCI layout, an archive, the cache, or
/// layers built on this machine. This is the one place where sources differ.
pub trait BlobSource: Send + Sync {
    /// Opens a blob. The reader fails at EOF if size or digest do not match `desc`.
    fn open(&self, desc: &Descriptor) -> Result<BlobReader>;
    /// A short description for messages ("registry 127.0.0.1:5000", "archive x.tar").
    fn describe(&self) -> String;
    /// Makes a later `open` cheap (e.g. downloads into the cache). Sources that are local
    /// already do nothing.
    /// Returns whether anything was downloaded.
    fn prefetch(&self, _desc: &Descriptor) -> Result<bool> {
        Ok(false)
    }
    /// Whether `open` is cheap and local (no network), used to plan prefetching.
    fn is_local(&self) -> bool {
        true
    }
    /// The sha256 of the layer's uncompressed content, when the source records it (the blob
    /// cache does, when a blob enters it); `None` when it does not know.
    fn diff_id(&self, _desc: &Descriptor) -> Result<Option<crate::digest::Digest>> {
        Ok(None)
    }
}

/// A single-platform image.
#[derive(Clone)]
pub struct Image {
    /// The exact manifest bytes (as served by the source, or synthesised for archive inputs).
    pub manifest_raw: Vec<u8>,
    pub manifest: Manifest,
    /// The exact config bytes.
    pub config_raw: Vec<u8>,
    pub config: ConfigView,
    pub source: Arc<dyn BlobSource>,
    /// Where the image came from, for messages (`127.0.0.1:5000/busybox:multi`).
    pub origin: String,
    /// Tags the source suggests for the image (`busybox:arm64`), in order of preference.
    pub suggested_tags: Vec<String>,
    /// Digest of the index the image was selected from, when there was one.
    pub index_digest: Option<Digest>,
}

impl Image {
    /// The manifest digest.
    pub fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest_raw)
    }
    /// The image ID Docker shows: sha256 of the config bytes.
    pub fn id(&self) -> Digest {
        self.manifest.config.digest.clone()
    }
    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        self.config.platform()
    }
    /// Sum of the layer blob sizes.
    pub fn layers_size(&self) -> u64 {
        self.manifest.layers.iter().map(|l| l.size).sum()
    }
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image").field("origin", &self.origin).field("id", &self.id()).finish()
    }
}
