//! Writing the hybrid `docker save` layout, deterministically: sorted entries, uid/gid 0, no
//! user/group names, one fixed mtime, stable JSON. Layers are copied byte for byte under their
//! own digest (compressed layers stay compressed); configs are copied exactly. With a `.tar.gz`
//! output the outer gzip stores already-compressed layers instead of compressing them again.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::atomic::AtomicFile;
use crate::compress::GzipWriter;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::oci::{CONTAINERD_NAME, REF_NAME, oci_manifest_bytes};
use crate::image::{Descriptor, Image, media};
use crate::reference::Reference;
use crate::tar::{Content, CopyError, Header, Plain, Sink, TarWriter, expect_end};

/// An image and the `RepoTags` it is saved under.
pub struct ArchiveImage<'a> {
    pub image: &'a Image,
    /// `name:tag` strings, written as given (validated as tagged references).
    pub tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// mtime of every entry: the caller's `SOURCE_DATE_EPOCH`, else 0.
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
    /// Gzip when the name ends in `.gz` or `.tgz`; entry times `mtime`.
    pub fn for_path(path: &Path, mtime: u64) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        WriteOptions { gzip: name.ends_with(".gz") || name.ends_with(".tgz"), mtime, ..Default::default() }
    }
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

/// Streams the archive into `sink`: plans every entry, then writes the blobs (sorted by digest,
/// each once) and the metadata files.
pub fn write_to<S: Sink>(
    mut sink: S,
    images: &[ArchiveImage],
    opts: &WriteOptions,
    progress: &dyn Fn(u64),
) -> Result<(WriteSummary, S)> {
    if images.is_empty() {
        return Err(Error::input("no images to write"));
    }
    let plan = ArchivePlan::of(images)?;
    let mut tw = TarWriter::new(&mut sink);
    let layers_written = write_blobs(&mut tw, &plan.blobs, opts.mtime, progress)?;
    write_metadata(&mut tw, &plan, opts.mtime).map_err(|e| Error::from_io("cannot write", "the archive", e))?;
    let summary = WriteSummary {
        tar_bytes: tw.written(),
        blobs: plan.blobs.len(),
        layers_written,
        layers_deduplicated: plan.layers_deduplicated,
    };
    Ok((summary, sink))
}

/// Everything the archive holds, decided before a byte is written.
#[derive(Default)]
struct ArchivePlan<'a> {
    /// Configs, OCI manifests and layers, each once.
    blobs: BTreeMap<Digest, Blob<'a>>,
    /// `manifest.json`.
    items: Vec<ManifestItem<'a>>,
    /// The entries of `index.json`.
    index: Vec<Descriptor>,
    /// `repositories`: name → tag → top layer id.
    repositories: BTreeMap<String, BTreeMap<String, String>>,
    seen_tags: BTreeSet<Option<String>>,
    layers_deduplicated: usize,
}

impl<'a> ArchivePlan<'a> {
    fn of(images: &'a [ArchiveImage]) -> Result<Self> {
        let mut plan = ArchivePlan::default();
        for ai in images {
            check_image(ai.image)?;
            let manifest = plan.add_blobs(ai.image);
            plan.add_names(ai, &manifest)?;
            plan.items.push(ManifestItem {
                config: ai.image.manifest.config.digest.blob_path(),
                repo_tags: &ai.tags,
                layers: ai.image.manifest.layers.iter().map(|l| l.digest.blob_path()).collect(),
            });
        }
        Ok(plan)
    }

    /// Adds the image's config, OCI manifest and layers; returns the manifest's descriptor.
    fn add_blobs(&mut self, img: &'a Image) -> Descriptor {
        self.blobs.insert(img.manifest.config.digest.clone(), Blob::Bytes(img.config_raw.clone()));
        let oci = oci_manifest_bytes(img);
        let mut desc = Descriptor::new(media::OCI_MANIFEST, Digest::of(&oci), oci.len() as u64);
        desc.platform = Some(img.platform());
        self.blobs.insert(desc.digest.clone(), Blob::Bytes(oci));
        for l in &img.manifest.layers {
            if self.blobs.contains_key(&l.digest) {
                self.layers_deduplicated += 1;
            } else {
                self.blobs.insert(l.digest.clone(), Blob::Layer { image: img, desc: l });
            }
        }
        desc
    }

    /// One `index.json` entry per tag (one without a name when untagged) and the
    /// `repositories` lines.
    fn add_names(&mut self, ai: &ArchiveImage, manifest: &Descriptor) -> Result<()> {
        if ai.tags.is_empty() {
            self.index.push(manifest.clone());
        }
        for t in &ai.tags {
            let r = check_tag(t)?;
            if !self.seen_tags.insert(r.qualified_tagged()) {
                return Err(
                    Error::input(format!("tag {t:?} is given to two images")).with_hint("give every image its own tag")
                );
            }
            let tag = r.tag.clone().expect("checked");
            let mut d = manifest.clone();
            d.annotations = Some(BTreeMap::from([
                (CONTAINERD_NAME.to_string(), r.qualified_tagged().expect("tagged")),
                (REF_NAME.to_string(), tag.clone()),
            ]));
            self.index.push(d);
            let name = t.rsplit_once(':').map(|(n, _)| n.to_string()).unwrap_or_default();
            if let Some(top) = ai.image.config.rootfs.diff_ids.last() {
                self.repositories.entry(name).or_default().insert(tag, top.hex().to_string());
            }
        }
        Ok(())
    }
}

/// Refuses an image that is not internally consistent.
fn check_image(img: &Image) -> Result<()> {
    if let Some(p) = crate::image::validate::check(img, None).first() {
        let mut e = Error::input(p.message.clone());
        if let Some(h) = &p.hint {
            e = e.with_hint(h.clone());
        }
        return Err(e);
    }
    if Digest::of(&img.config_raw) != img.manifest.config.digest {
        return Err(Error::integrity(format!(
            "{}: config bytes do not match the manifest's config digest",
            img.origin
        )));
    }
    Ok(())
}

/// `blobs/`, `blobs/sha256/` and every blob; returns the number of layers written.
fn write_blobs<S: Sink>(
    tw: &mut TarWriter<S>,
    blobs: &BTreeMap<Digest, Blob>,
    mtime: u64,
    progress: &dyn Fn(u64),
) -> Result<usize> {
    let io_err = |e: io::Error| Error::from_io("cannot write", "the archive", e);
    for dir in ["blobs/", "blobs/sha256/"] {
        let h = Header { mode: 0o755, mtime, ..Header::new(dir, ::tar::EntryType::Directory) };
        tw.empty(&h).map_err(io_err)?;
    }
    let mut layers = 0;
    for (digest, blob) in blobs {
        let path = digest.blob_path();
        match blob {
            Blob::Bytes(b) => tw.bytes(&file(&path, 0, mtime), b).map_err(io_err)?,
            Blob::Layer { image, desc } => {
                let compressed = media::layer_compression(&desc.media_type) != Some(media::LayerCompression::None);
                let mut r = image.source.open(desc).map_err(|e| e.context(&image.origin))?;
                tw.header(&file(&path, desc.size, mtime)).map_err(io_err)?;
                let how = if compressed { Content::Compressed } else { Content::Compressible };
                let copied = tw.copy(&mut r, desc.size, how, progress).and_then(|()| expect_end(&mut r));
                copied.map_err(|e| match e {
                    CopyError::Short(left) => Error::integrity(format!("{path}: source ended {left} bytes early")),
                    CopyError::Long => Error::integrity(format!("{path}: source is longer than {} bytes", desc.size)),
                    CopyError::Read(e) => Error::from_io("cannot read", &path, e),
                    CopyError::Write(e) => Error::from_io("cannot write", &path, e),
                })?;
                layers += 1;
            }
        }
    }
    Ok(layers)
}

/// `index.json`, `manifest.json`, `oci-layout`, `repositories` and the end of the archive.
fn write_metadata<S: Sink>(tw: &mut TarWriter<S>, plan: &ArchivePlan, mtime: u64) -> io::Result<()> {
    let index = OciIndex { schema_version: 2, media_type: media::OCI_INDEX, manifests: plan.index.clone() };
    tw.bytes(&file("index.json", 0, mtime), &serde_json::to_vec(&index).expect("serialisable"))?;
    let mut mj = serde_json::to_vec(&plan.items).expect("serialisable");
    mj.push(b'\n');
    tw.bytes(&file("manifest.json", 0, mtime), &mj)?;
    tw.bytes(&file("oci-layout", 0, mtime), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    if !plan.repositories.is_empty() {
        let mut rj = serde_json::to_vec(&plan.repositories).expect("serialisable");
        rj.push(b'\n');
        tw.bytes(&file("repositories", 0, mtime), &rj)?;
    }
    tw.finish()
}

/// A regular file entry of the archive: mode 0644, uid/gid 0.
fn file(name: &str, size: u64, mtime: u64) -> Header<'_> {
    Header { mtime, ..Header::file(name, size, 0o644) }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::image::{BlobReader, BlobSource, ConfigView, Manifest, parse_json};
    use crate::tar::LayerSink;

    struct Blobs(HashMap<Digest, Vec<u8>>);

    impl BlobSource for Blobs {
        fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
            let b = self.0.get(&desc.digest).ok_or_else(|| Error::not_found(desc.digest.to_string()))?;
            Ok(Box::new(io::Cursor::new(b.clone())))
        }
        fn describe(&self) -> String {
            "memory".into()
        }
    }

    /// A one-layer image whose layer holds `file`.
    fn image(file: &str, arch: &str) -> Image {
        let mut sink = LayerSink::new(Vec::new(), 6, 1).unwrap();
        let mut tw = TarWriter::new(&mut sink);
        tw.bytes(&Header::file(file, 0, 0o644), file.as_bytes()).unwrap();
        tw.finish().unwrap();
        let layer = sink.finish().unwrap();
        let config_raw = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            layer.diff_id
        )
        .into_bytes();
        let manifest_raw = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            Digest::of(&config_raw),
            config_raw.len(),
            media::DOCKER_LAYER_GZIP,
            layer.digest,
            layer.size
        )
        .into_bytes();
        Image {
            manifest: Manifest::parse(&manifest_raw, "test manifest").unwrap(),
            manifest_raw,
            config: parse_json::<ConfigView>(&config_raw, "test config").unwrap(),
            config_raw,
            source: Arc::new(Blobs(HashMap::from([(layer.digest, layer.inner)]))),
            origin: format!("test:{file}"),
            suggested_tags: Vec::new(),
            index_digest: None,
        }
    }

    #[test]
    fn archive_bytes_are_golden() {
        let (a, b) = (image("a.txt", "arm64"), image("b.txt", "amd64"));
        let images = [
            ArchiveImage { image: &a, tags: vec!["example.com/a:1".into(), "a:latest".into()] },
            ArchiveImage { image: &b, tags: Vec::new() },
        ];
        let opts = WriteOptions { mtime: 1_600_000_000, ..Default::default() };
        let (summary, plain) = write_to(Plain(Vec::new()), &images, &opts, &|_| {}).unwrap();
        assert_eq!((summary.blobs, summary.layers_written, summary.tar_bytes), (6, 2, plain.0.len() as u64));
        crate::tar::golden::check("docker-archive.tar", &plain.0);
        let (_, gz) = write_to(GzipWriter::new(Vec::new(), 6, 2).unwrap(), &images, &opts, &|_| {}).unwrap();
        crate::tar::golden::check("docker-archive.tar.gz", &gz.finish().unwrap());
        let e = write_to(
            Plain(Vec::new()),
            &[ArchiveImage { image: &a, tags: vec!["a:1".into(), "a:1".into()] }],
            &opts,
            &|_| {},
        );
        assert!(e.unwrap_err().to_string().contains("given to two images"));
    }
}
