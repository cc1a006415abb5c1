//! Writing the hybrid `docker save` layout, deterministically: sorted entries, uid/gid 0, no
//! user/group names, one fixed mtime, stable JSON. Layers are copied byte for byte under their
//! own digest (compressed layers stay compressed); configs are copied exactly. With a `.tar.gz`
//! output the outer gzip stores already-compressed layers instead of compressing them again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::Serialize;

use crate::atomic::AtomicFile;
use crate::compress::GzipWriter;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{Descriptor, Image, Manifest, media};
use crate::oci_layout::{CONTAINERD_NAME, REF_NAME};
use crate::reference::Reference;

/// An image and the `RepoTags` it is saved under.
pub struct ArchiveImage<'a> {
    pub image: &'a Image,
    /// `name:tag` strings, written as given (validated as tagged references).
    pub tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// mtime of every entry (`SOURCE_DATE_EPOCH` or 0).
    pub mtime: u64,
    /// Gzip the whole archive.
    pub gzip: bool,
    /// Level for compressible content (metadata, uncompressed layers) when gzipping.
    pub level: u32,
    pub threads: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { mtime: 0, gzip: false, level: 6, threads: crate::compress::default_threads() }
    }
}

impl WriteOptions {
    /// Gzip when the name ends in `.gz` or `.tgz`.
    pub fn for_path(path: &Path) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        WriteOptions {
            gzip: name.ends_with(".gz") || name.ends_with(".tgz"),
            mtime: source_date_epoch(),
            ..Default::default()
        }
    }
}

/// `SOURCE_DATE_EPOCH` if set and valid, else 0.
pub fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

#[derive(Debug, Clone, Default)]
pub struct WriteSummary {
    /// Bytes of the uncompressed tar stream.
    pub tar_bytes: u64,
    pub blobs: usize,
    pub layers_written: usize,
    pub layers_deduplicated: usize,
}

enum Blob<'a> {
    Bytes(Vec<u8>),
    Layer { image: &'a Image, desc: &'a Descriptor },
}

/// Writes the archive to `dest` atomically.
pub fn write_file(
    dest: &Path,
    images: &[ArchiveImage],
    opts: &WriteOptions,
    progress: &dyn Fn(u64),
) -> Result<WriteSummary> {
    let mut out = AtomicFile::create(dest)?;
    let file = out.take_file();
    let buffered = io::BufWriter::with_capacity(1 << 20, file);
    let (summary, buffered) = if opts.gzip {
        let gz = GzipWriter::new(buffered, opts.level, opts.threads).map_err(|e| Error::io("cannot write", dest, e))?;
        let (s, gz) = write_to(gz, images, opts, progress)?;
        (s, gz.finish().map_err(|e| Error::io("cannot write", dest, e))?)
    } else {
        let (s, w) = write_to(Plain(buffered), images, opts, progress)?;
        (s, w.0)
    };
    let file = buffered.into_inner().map_err(|e| Error::io("cannot write", dest, e.into_error()))?;
    out.commit_file(file)?;
    Ok(summary)
}

/// A byte sink that knows whether content is already compressed.
pub trait Sink {
    fn meta(&mut self, data: &[u8]) -> io::Result<()>;
    fn compressed(&mut self, data: &[u8]) -> io::Result<()>;
}

/// An uncompressed sink.
pub struct Plain<W: Write>(pub W);

impl<W: Write> Sink for Plain<W> {
    fn meta(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
    fn compressed(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
}

impl<W: Write> Sink for GzipWriter<W> {
    fn meta(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_compressible(data)
    }
    fn compressed(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_stored(data)
    }
}

#[derive(Serialize)]
struct ManifestItem<'a> {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: &'a [String],
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OciIndex {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

/// Checks a RepoTag and returns it parsed.
pub fn check_tag(tag: &str) -> Result<Reference> {
    let r = Reference::parse(tag).map_err(|e| Error::input(format!("invalid image tag {tag:?}: {}", e.message())))?;
    if r.digest.is_some() || r.tag.is_none() {
        return Err(Error::input(format!("image tag {tag:?} must be NAME:TAG without a digest"))
            .with_hint("docker load rejects digest references in RepoTags"));
    }
    Ok(r)
}

/// The OCI manifest bytes stored for an image: the original when it is OCI already, else a
/// conversion of the Docker schema 2 manifest (same config and layers, OCI media types).
pub fn oci_manifest_bytes(image: &Image) -> Vec<u8> {
    if image.manifest.media_type.as_deref() == Some(media::OCI_MANIFEST) {
        return image.manifest_raw.clone();
    }
    let m = &image.manifest;
    let layers = m
        .layers
        .iter()
        .map(|l| {
            let c = media::layer_compression(&l.media_type).unwrap_or(media::LayerCompression::Gzip);
            let mut d = Descriptor::new(media::oci_layer_type(c), l.digest.clone(), l.size);
            d.annotations = l.annotations.clone();
            d
        })
        .collect();
    let oci = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: Descriptor::new(media::OCI_CONFIG, m.config.digest.clone(), m.config.size),
        layers,
        annotations: m.annotations.clone(),
    };
    serde_json::to_vec(&oci).expect("serialisable")
}

/// Streams the archive into `sink`.
pub fn write_to<S: Sink>(
    mut sink: S,
    images: &[ArchiveImage],
    opts: &WriteOptions,
    progress: &dyn Fn(u64),
) -> Result<(WriteSummary, S)> {
    if images.is_empty() {
        return Err(Error::input("no images to write"));
    }
    // plan: every blob once, sorted by digest
    let mut blobs: BTreeMap<Digest, Blob> = BTreeMap::new();
    let mut items = Vec::new();
    let mut index_entries = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut seen_tags = BTreeSet::new();
    let mut summary = WriteSummary::default();
    for ai in images {
        let img = ai.image;
        let problems = crate::image::validate::check(img, None);
        if let Some(p) = problems.first() {
            let mut e = Error::input(p.message.clone());
            if let Some(h) = &p.hint {
                e = e.with_hint(h.clone());
            }
            return Err(e);
        }
        blobs.insert(img.manifest.config.digest.clone(), Blob::Bytes(img.config_raw.clone()));
        if Digest::of(&img.config_raw) != img.manifest.config.digest {
            return Err(Error::integrity(format!(
                "{}: config bytes do not match the manifest's config digest",
                img.origin
            )));
        }
        let oci = oci_manifest_bytes(img);
        let oci_digest = Digest::of(&oci);
        let oci_size = oci.len() as u64;
        blobs.insert(oci_digest.clone(), Blob::Bytes(oci));
        for l in &img.manifest.layers {
            if blobs.contains_key(&l.digest) {
                summary.layers_deduplicated += 1;
            } else {
                blobs.insert(l.digest.clone(), Blob::Layer { image: img, desc: l });
            }
        }
        let platform = img.platform();
        let mut tagged = false;
        for t in &ai.tags {
            let r = check_tag(t)?;
            if !seen_tags.insert(r.qualified_tagged()) {
                return Err(
                    Error::input(format!("tag {t:?} is given to two images")).with_hint("give every image its own tag")
                );
            }
            let tag = r.tag.clone().expect("checked");
            let mut d = Descriptor::new(media::OCI_MANIFEST, oci_digest.clone(), oci_size);
            d.annotations = Some(BTreeMap::from([
                (CONTAINERD_NAME.to_string(), r.qualified_tagged().expect("tagged")),
                (REF_NAME.to_string(), tag.clone()),
            ]));
            d.platform = Some(platform.clone());
            index_entries.push(d);
            let name = t.rsplit_once(':').map(|(n, _)| n.to_string()).unwrap_or_default();
            if let Some(top) = img.config.rootfs.diff_ids.last() {
                repositories.entry(name).or_default().insert(tag, top.hex().to_string());
            }
            tagged = true;
        }
        if !tagged {
            let mut d = Descriptor::new(media::OCI_MANIFEST, oci_digest.clone(), oci_size);
            d.platform = Some(platform.clone());
            index_entries.push(d);
        }
        items.push(ManifestItem {
            config: img.manifest.config.digest.blob_path(),
            repo_tags: &ai.tags,
            layers: img.manifest.layers.iter().map(|l| l.digest.blob_path()).collect(),
        });
    }
    summary.blobs = blobs.len();

    let io_err = |e: io::Error| Error::from_io("cannot write", "the archive", e);
    let mut tw = TarWriter { sink: &mut sink, mtime: opts.mtime, written: 0 };
    tw.dir("blobs/").map_err(io_err)?;
    tw.dir("blobs/sha256/").map_err(io_err)?;
    for (digest, blob) in &blobs {
        let path = digest.blob_path();
        match blob {
            Blob::Bytes(b) => tw.file(&path, b).map_err(io_err)?,
            Blob::Layer { image, desc } => {
                let compressed = media::layer_compression(&desc.media_type) != Some(media::LayerCompression::None);
                let mut r = image.source.open(desc).map_err(|e| e.context(&image.origin))?;
                tw.stream(&path, desc.size, &mut *r, compressed, progress)?;
                summary.layers_written += 1;
            }
        }
    }
    let index = OciIndex { schema_version: 2, media_type: media::OCI_INDEX, manifests: index_entries };
    tw.file("index.json", &serde_json::to_vec(&index).expect("serialisable")).map_err(io_err)?;
    let mut mj = serde_json::to_vec(&items).expect("serialisable");
    mj.push(b'\n');
    tw.file("manifest.json", &mj).map_err(io_err)?;
    tw.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err)?;
    if !repositories.is_empty() {
        let mut rj = serde_json::to_vec(&repositories).expect("serialisable");
        rj.push(b'\n');
        tw.file("repositories", &rj).map_err(io_err)?;
    }
    tw.finish().map_err(io_err)?;
    summary.tar_bytes = tw.written;
    Ok((summary, sink))
}

/// A minimal deterministic tar writer over a [`Sink`].
pub struct TarWriter<'a, S: Sink> {
    pub sink: &'a mut S,
    pub mtime: u64,
    pub written: u64,
}

impl<S: Sink> TarWriter<'_, S> {
    fn header(&mut self, path: &str, size: u64, kind: tar::EntryType, mode: u32) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_path(path)?;
        h.set_size(size);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_cksum();
        self.sink.meta(h.as_bytes())?;
        self.written += 512;
        Ok(())
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.header(path, 0, tar::EntryType::Directory, 0o755)
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.header(path, data.len() as u64, tar::EntryType::Regular, 0o644)?;
        self.sink.meta(data)?;
        self.pad(data.len() as u64)
    }

    /// Copies exactly `size` bytes from `r` as the content of `path`.
    pub fn stream(
        &mut self,
        path: &str,
        size: u64,
        r: &mut dyn Read,
        compressed: bool,
        progress: &dyn Fn(u64),
    ) -> Result<()> {
        let io_err = |e: io::Error| Error::from_io("cannot write", path, e);
        self.header(path, size, tar::EntryType::Regular, 0o644).map_err(io_err)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let want = (buf.len() as u64).min(left) as usize;
            let n = match r.read(&mut buf[..want]) {
                Ok(0) => return Err(Error::integrity(format!("{path}: source ended {left} bytes early"))),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::from_io("cannot read", path, e)),
            };
            if compressed { self.sink.compressed(&buf[..n]) } else { self.sink.meta(&buf[..n]) }.map_err(io_err)?;
            left -= n as u64;
            progress(n as u64);
        }
        // drain to EOF so a verifying reader checks the digest
        let mut extra = [0u8; 1];
        loop {
            match r.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(Error::integrity(format!("{path}: source is longer than {size} bytes"))),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::from_io("cannot read", path, e)),
            }
        }
        self.pad(size).map_err(io_err)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.sink.meta(&[0u8; 512][..512 - rem])?;
        }
        self.written += size.div_ceil(512) * 512;
        Ok(())
    }

    pub fn finish(&mut self) -> io::Result<()> {
        self.sink.meta(&[0u8; 1024])?;
        self.written += 1024;
        Ok(())
    }
}
