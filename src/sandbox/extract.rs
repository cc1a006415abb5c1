//! Safe extraction of image layers into a plain directory.
//!
//! Layers are applied in order with OCI semantics: `.wh.NAME` removes `NAME` from lower layers,
//! `.wh..wh..opq` empties a directory of lower-layer entries (entries of the same layer stay,
//! whatever their order in the tar), hard links, symlinks, FIFOs and devices are recreated.
//! Every path is resolved inside the root (`openat2(RESOLVE_IN_ROOT)`, see [`super::fsutil`]):
//! `../` names, absolute names, symlinked parents and hard-link targets can never reach outside
//! the directory, whatever the layer contains. Entries that cannot be created are skipped and
//! listed in [`ExtractReport::skipped`] — device nodes without root, names that escape the root,
//! unsupported entry types, hard links to missing targets.
//!
//! Rootless ([`Ownership::Record`]): files stay owned by the extracting user; ownership, modes
//! that had to be widened (the owner always gets `r` on files and `rwx` on directories so the
//! tree can be read, diffed and removed) and extended attributes that could not be set
//! (`security.capability` needs `CAP_SETFCAP`) go to the [`SideTable`], which the layer differ
//! consults for paths a RUN step changes.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

pub use super::apply::{apply_layer, clean_name, keep_xattr};
use super::fsutil;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::image::{BlobSource, Descriptor, Image};

/// Whether extraction applies ownership (root) or records it (rootless).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// chown to the layer's uid/gid, create device nodes, set every xattr (needs root).
    Apply,
    /// Keep files owned by the current user and write the real owners to the side table.
    Record,
}

/// What the filesystem does not show for one path (rootless extraction).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideEntry {
    pub uid: u32,
    pub gid: u32,
    /// The mode from the layer when the one on disk had to differ (permission bits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Extended attributes that could not be set, hex-encoded values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
}

/// Path (relative, no leading `/`) → what could not be applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideTable(pub BTreeMap<String, SideEntry>);

impl SideTable {
    pub fn get(&self, rel: &str) -> Option<&SideEntry> {
        self.0.get(rel)
    }
    /// Records what a layer says about `rel` after a step changed it: the owner (unless it is
    /// root, which is what the filesystem shows anyway) and the mode when the disk differs.
    pub fn note(&mut self, rel: &str, uid: u32, gid: u32, mode: Option<u32>) {
        let xattrs = self.0.get(rel).map(|e| e.xattrs.clone()).unwrap_or_default();
        if uid == 0 && gid == 0 && mode.is_none() && xattrs.is_empty() {
            self.0.remove(rel);
        } else {
            self.0.insert(rel.to_string(), SideEntry { uid, gid, mode, xattrs });
        }
    }
    /// Forgets `rel` and everything below it.
    pub fn remove_tree(&mut self, rel: &str) {
        self.0.remove(rel);
        let prefix = format!("{rel}/");
        let below: Vec<String> = self
            .0
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.0.remove(&k);
        }
    }
}

/// An entry that was not extracted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Index of the layer in the image.
    pub layer: usize,
    /// The entry name as written in the layer.
    pub path: String,
    pub reason: String,
}

/// The result of extracting an image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtractReport {
    pub side: SideTable,
    pub skipped: Vec<Skipped>,
    /// Tar entries processed.
    pub entries: u64,
}

/// A layer blob to extract: where to read it and the digest its uncompressed tar must have.
#[derive(Clone)]
pub struct LayerBlob {
    pub desc: Descriptor,
    pub diff_id: Digest,
    pub source: Arc<dyn BlobSource>,
}

/// The layers of `image`, bottom first (checks that every layer has a diff_id).
pub fn image_layers(image: &Image) -> Result<Vec<LayerBlob>> {
    let diff_ids = &image.config.rootfs.diff_ids;
    if diff_ids.len() != image.manifest.layers.len() {
        return Err(Error::input(format!(
            "{}: {} layers but {} diff_ids in the config",
            image.origin,
            image.manifest.layers.len(),
            diff_ids.len()
        )));
    }
    Ok(image
        .manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(d, id)| LayerBlob { desc: d.clone(), diff_id: id.clone(), source: image.source.clone() })
        .collect())
}

/// Extracts every layer of `image` into `dest` (an existing, empty directory).
pub fn extract_image(image: &Image, dest: &Path, ownership: Ownership) -> Result<ExtractReport> {
    let mut report = ExtractReport::default();
    extract_layers(&image_layers(image)?, &image.origin, dest, ownership, 0, &mut report)?;
    Ok(report)
}

/// Applies `layers` in order onto `dest` (which may hold earlier layers), checking each
/// layer's diff_id; `first` is the index of the first one (for [`Skipped::layer`]).
pub fn extract_layers(
    layers: &[LayerBlob],
    origin: &str,
    dest: &Path,
    ownership: Ownership,
    first: usize,
    report: &mut ExtractReport,
) -> Result<()> {
    extract_layers_until(layers, origin, dest, ownership, first, report, &AtomicBool::new(false))
}

/// [`extract_layers`] that stops with an error as soon as `cancel` is set.
pub fn extract_layers_until(
    layers: &[LayerBlob],
    origin: &str,
    dest: &Path,
    ownership: Ownership,
    first: usize,
    report: &mut ExtractReport,
    cancel: &AtomicBool,
) -> Result<()> {
    let root = fsutil::open_root(dest).map_err(|e| Error::io("cannot open", dest, e))?;
    for (i, l) in layers.iter().enumerate() {
        let what = format!("layer {} of {origin}", l.desc.digest);
        let blob = l.source.open(&l.desc).map_err(|e| e.context(origin))?;
        let (_, plain) = crate::compress::decompress(BufReader::with_capacity(1 << 20, blob))
            .map_err(|e| Error::from_io("cannot decompress", &what, e))?;
        let mut hashed = HashingReader { inner: plain, hasher: Hasher::new(), cancel };
        apply_layer(&root, &mut hashed, ownership, first + i, report)
            .map_err(|e| Error::from_io("cannot extract", &what, e))?;
        // drain so the source verifies the blob digest and the diff_id covers every byte
        io::copy(&mut hashed, &mut io::sink()).map_err(|e| Error::from_io("cannot read", &what, e))?;
        let got = hashed.hasher.finish();
        if got != l.diff_id {
            return Err(Error::integrity(format!(
                "{what}: uncompressed content has digest {got}, but the config's diff_id is {}",
                l.diff_id
            )));
        }
    }
    Ok(())
}

struct HashingReader<'c, R> {
    inner: R,
    hasher: Hasher,
    cancel: &'c AtomicBool,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(io::Error::other("cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A digest over the layer digests that identifies an extracted base (and the ownership mode).
pub fn base_key(image: &Image, ownership: Ownership) -> Digest {
    layers_key(image.manifest.layers.iter().map(|l| &l.digest), ownership)
}

/// [`base_key`] of a list of layer blobs.
pub fn layers_key<'a>(digests: impl Iterator<Item = &'a Digest>, ownership: Ownership) -> Digest {
    let mut h = Hasher::new();
    h.update(b"spxpack-rootfs-v1\n");
    h.update(match ownership {
        Ownership::Apply => b"apply\n",
        Ownership::Record => b"record\n",
    });
    for d in digests {
        h.update(d.to_string().as_bytes());
        h.update(b"\n");
    }
    h.finish()
}

/// Counts of the skipped entries by reason, for a one-line summary.
pub fn summarize_skipped(skipped: &[Skipped]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for s in skipped {
        *by.entry(s.reason.as_str()).or_default() += 1;
    }
    by.into_iter().map(|(r, n)| format!("{n}× {r}")).collect::<Vec<_>>().join("; ")
}
