//! OCI image layouts, as a directory (`oci:DIR[:tag]`) or a tar of one (`oci-archive:FILE[:tag]`):
//! reads `index.json`, selects a manifest by `org.opencontainers.image.ref.name` (or the only
//! one), resolves nested indexes to the wanted platform, and serves blobs from
//! `blobs/sha256/<hex>` with digest verification.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::image::oci::{CONTAINERD_NAME, REF_NAME, oci_manifest_bytes};
use crate::image::resolve::{self, select_platform};
use crate::image::{BlobReader, BlobSource, Descriptor, Image, Index, media};
use crate::platform::Platform;
use crate::tar::index::TarArchive;
use crate::tar::{CopyError, copy_exact, expect_end};

const MAX_DOC: u64 = 16 << 20;

#[cfg(test)]
mod roundtrip_tests;

/// Where the layout's files live.
#[derive(Clone)]
pub enum LayoutFs {
    Dir(PathBuf),
    Tar(Arc<TarArchive>),
}

impl LayoutFs {
    fn display(&self) -> String {
        match self {
            LayoutFs::Dir(p) => p.display().to_string(),
            LayoutFs::Tar(t) => t.display().to_string(),
        }
    }

    /// Reads a small file of the layout (`index.json`, a manifest or config blob).
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        match self {
            LayoutFs::Dir(root) => {
                let p = root.join(path);
                crate::input::read(&p, MAX_DOC).map_err(|e| Error::io("cannot read", &p, e))
            }
            LayoutFs::Tar(t) => t.read(path, MAX_DOC),
        }
    }

    fn exists(&self, path: &str) -> bool {
        match self {
            LayoutFs::Dir(root) => root.join(path).exists(),
            LayoutFs::Tar(t) => t.contains(path),
        }
    }

    fn open(&self, path: &str) -> Result<(Box<dyn std::io::Read + Send>, u64)> {
        match self {
            LayoutFs::Dir(root) => {
                let p = root.join(path);
                let f = crate::input::open(&p).map_err(|e| Error::io("cannot open", &p, e))?;
                let len = f.metadata().map_err(|e| Error::io("cannot stat", &p, e))?.len();
                Ok((Box::new(BufReader::with_capacity(1 << 20, f)), len))
            }
            LayoutFs::Tar(t) => {
                let (r, len) = t.open_entry(path)?;
                Ok((Box::new(BufReader::with_capacity(1 << 20, r)), len))
            }
        }
    }
}

/// An opened OCI layout.
pub struct Layout {
    pub fs: LayoutFs,
    pub index: Index,
    pub kind: &'static str,
}

impl Layout {
    pub fn open_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::not_found(format!("OCI layout directory {} does not exist", dir.display())));
        }
        Self::open(LayoutFs::Dir(dir.to_path_buf()), "oci")
    }

    pub fn open_archive(file: &Path) -> Result<Self> {
        Self::open_archive_limited(file, crate::compress::Limits::default())
    }

    /// Opens an OCI archive; a compressed one may expand only within `limits`.
    pub fn open_archive_limited(file: &Path, limits: crate::compress::Limits) -> Result<Self> {
        let t = TarArchive::open_limited(file, "OCI archive", limits)?;
        Self::open(LayoutFs::Tar(Arc::new(t)), "oci-archive")
    }

    pub fn open(fs: LayoutFs, kind: &'static str) -> Result<Self> {
        if !fs.exists("index.json") {
            let hint = if fs.exists("manifest.json") {
                "it looks like a docker archive: use docker-archive:PATH"
            } else {
                "an OCI layout has index.json, oci-layout and blobs/"
            };
            return Err(
                Error::input(format!("{} is not an OCI layout: it has no index.json", fs.display())).with_hint(hint)
            );
        }
        let index = Index::parse(&fs.read("index.json")?, &format!("index.json of {}", fs.display()))?;
        Ok(Layout { fs, index, kind })
    }

    /// The tags (`ref.name` annotations) of the top-level index.
    pub fn tags(&self) -> Vec<String> {
        self.index.manifests.iter().filter_map(|d| d.annotation(REF_NAME).map(str::to_string)).collect()
    }

    /// Selects an image by tag (or the only entry) for `platform`.
    pub fn image(&self, tag: Option<&str>, platform: &Platform) -> Result<Image> {
        let shown = self.fs.display();
        let entry = match tag {
            Some(t) => self
                .index
                .manifests
                .iter()
                .find(|d| d.annotation(REF_NAME) == Some(t) || d.annotation(CONTAINERD_NAME) == Some(t))
                .ok_or_else(|| {
                    let tags = self.tags();
                    Error::not_found(format!(
                        "{shown} has no image tagged {t:?}; it has: {}",
                        if tags.is_empty() { "no tags".to_string() } else { tags.join(", ") }
                    ))
                    .with_hint(format!("use {}:{shown}:TAG with one of those", self.kind))
                })?,
            None => match self.index.manifests.as_slice() {
                [one] => one,
                [] => return Err(Error::input(format!("{shown}: index.json lists no images"))),
                many => {
                    // several entries: if they are one platform each, pick by platform
                    if many.iter().all(|d| d.platform.is_some()) {
                        select_platform(many, platform, &shown)?
                    } else {
                        return Err(Error::input(format!("{shown} holds {} images; say which one", many.len()))
                            .with_hint(format!(
                                "use {}:{shown}:TAG with one of: {}",
                                self.kind,
                                self.tags().join(", ")
                            )));
                    }
                }
            },
        };
        let origin = match tag {
            Some(t) => format!("{}:{shown}:{t}", self.kind),
            None => format!("{}:{shown}", self.kind),
        };
        let first = resolve::Document {
            bytes: self.blob_bytes(entry, &origin)?,
            digest: entry.digest.clone(),
            media_type: Some(entry.media_type.clone()),
        };
        let resolved = resolve::resolve(first, platform, &origin, &LayoutDocs { layout: self, origin: &origin })?;
        let mut suggested = Vec::new();
        for key in [CONTAINERD_NAME, REF_NAME] {
            if let Some(n) = entry.annotation(key)
                && crate::reference::Reference::parse(n).is_ok_and(|r| r.tag.is_some())
            {
                suggested.push(n.to_string());
            }
        }
        let source = Arc::new(LayoutBlobs { fs: self.fs.clone(), origin: origin.clone() });
        Image::new(resolved, source, origin, suggested)
    }

    fn blob_bytes(&self, desc: &Descriptor, origin: &str) -> Result<Vec<u8>> {
        let data = self.fs.read(&desc.digest.blob_path()).map_err(|e| e.context(origin))?;
        if data.len() as u64 != desc.size || Digest::of(&data) != desc.digest {
            return Err(Error::integrity(format!("{origin}: blob {} does not match its digest or size", desc.digest))
                .with_hint("the layout is corrupt; export it again"));
        }
        Ok(data)
    }
}

/// The layout's side of [`resolve::resolve`]: every document is a verified blob.
struct LayoutDocs<'a> {
    layout: &'a Layout,
    origin: &'a str,
}

impl resolve::Documents for LayoutDocs<'_> {
    fn child(&self, desc: &Descriptor) -> Result<resolve::Document> {
        let bytes = self.layout.blob_bytes(desc, self.origin)?;
        Ok(resolve::Document { bytes, digest: desc.digest.clone(), media_type: Some(desc.media_type.clone()) })
    }
    fn config(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        self.layout.blob_bytes(desc, self.origin)
    }
}

struct LayoutBlobs {
    fs: LayoutFs,
    origin: String,
}

impl BlobSource for LayoutBlobs {
    fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        let (r, len) = self.fs.open(&desc.digest.blob_path()).map_err(|e| e.context(&self.origin))?;
        let what = format!("blob {} of {}", desc.digest, self.origin);
        if len != desc.size {
            return Err(Error::integrity(format!("{what} is {len} bytes, the descriptor says {}", desc.size)));
        }
        Ok(Box::new(VerifyingReader::new(r, desc.digest.clone(), desc.size, what)))
    }
    fn describe(&self) -> String {
        self.origin.clone()
    }
}

/// Writes images into an OCI layout directory (`-o oci:DIR`), creating it if needed. Existing
/// images stay; an entry with the same `ref.name` is replaced. Blobs already present (same
/// size) are not rewritten; new ones are written to a temporary name and renamed, and
/// `index.json` is replaced atomically last, so readers never see a half-written layout.
pub fn write_dir(dir: &Path, images: &[(&Image, Option<String>)], progress: &dyn Fn(u64)) -> Result<()> {
    use std::io::Write as _;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| Error::io("cannot create", &blobs, e))?;
    let put_bytes = |data: &[u8]| -> Result<Digest> {
        let d = Digest::of(data);
        let p = blobs.join(d.hex());
        if !std::fs::metadata(&p).is_ok_and(|m| m.len() == data.len() as u64) {
            let mut t = crate::atomic::AtomicFile::create(&p)?;
            t.write_all(data).map_err(|e| Error::io("cannot write", &p, e))?;
            t.commit()?;
        }
        Ok(d)
    };
    let mut index: Index = if dir.join("index.json").is_file() {
        Index::parse(
            &crate::input::read(&dir.join("index.json"), MAX_DOC).map_err(|e| Error::io("cannot read", dir, e))?,
            "index.json",
        )?
    } else {
        Index { schema_version: 2, media_type: Some(media::OCI_INDEX.into()), manifests: Vec::new(), annotations: None }
    };
    for (img, name) in images {
        for l in &img.manifest.layers {
            let p = blobs.join(l.digest.hex());
            if std::fs::metadata(&p).is_ok_and(|m| m.len() == l.size) {
                continue;
            }
            let mut r = img.source.open(l).map_err(|e| e.context(&img.origin))?;
            let mut t = crate::atomic::AtomicFile::create(&p)?;
            let copied = copy_exact(&mut r, l.size, |b| {
                t.write_all(b)?;
                progress(b.len() as u64);
                Ok(())
            });
            copied.and_then(|()| expect_end(&mut r)).map_err(|e| match e {
                CopyError::Short(_) | CopyError::Long => Error::integrity(format!(
                    "{}: layer {} is not the {} bytes its descriptor says",
                    img.origin, l.digest, l.size
                )),
                CopyError::Read(e) => Error::from_io("cannot read", &img.origin, e),
                CopyError::Write(e) => Error::io("cannot write", &p, e),
            })?;
            t.commit()?;
        }
        put_bytes(&img.config_raw)?;
        let manifest = oci_manifest_bytes(img);
        let md = put_bytes(&manifest)?;
        let mut desc = Descriptor::new(media::OCI_MANIFEST, md, manifest.len() as u64);
        desc.platform = Some(img.platform());
        if let Some(n) = name {
            let (full, tag) = match crate::reference::Reference::parse(n) {
                Ok(r) if r.tag.is_some() => (r.qualified_tagged(), r.tag.clone().unwrap_or_default()),
                _ => (None, n.clone()),
            };
            index.manifests.retain(|m| m.annotation(REF_NAME) != Some(tag.as_str()));
            let mut ann = std::collections::BTreeMap::from([(REF_NAME.to_string(), tag)]);
            if let Some(f) = full {
                ann.insert(CONTAINERD_NAME.to_string(), f);
            }
            desc.annotations = Some(ann);
        }
        index.manifests.push(desc);
    }
    let mut t = crate::atomic::AtomicFile::create(&dir.join("oci-layout"))?;
    t.write_all(br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|e| Error::io("cannot write", dir, e))?;
    t.commit()?;
    let mut t = crate::atomic::AtomicFile::create(&dir.join("index.json"))?;
    t.write_all(&serde_json::to_vec(&index).expect("json")).map_err(|e| Error::io("cannot write", dir, e))?;
    t.commit()
}
