//! Reading existing layers (base images, `COPY --from` images, cached build layers): one pass
//! over a layer blob lists its entries (headers only; kept in the cache under
//! `build/layers/<digest>.json` so the next build reads no layer at all), and a second pass
//! extracts just the files a build needs (`/etc/passwd`, `COPY --from` sources) into a staging
//! directory. Base layers are read, never rewritten.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::fsview::{Content, ContentSrc, Kind, LayerEntry, Node, normalize};
use crate::blob_cache::BlobCache;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{BlobSource, Descriptor, media};

/// A layer blob and where to read it.
pub type Located = (Arc<dyn BlobSource>, Descriptor);

/// Finds the source of a layer blob by digest.
pub type BlobLookup<'a> = &'a dyn Fn(&Digest) -> Option<Located>;

/// Bumped when the index format changes.
const INDEX_VERSION: u32 = 1;

/// One tar header, compactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row(String, u8, u32, u64, u64, u64, u64, String, u32, u32);

#[derive(Serialize, Deserialize)]
struct IndexFile {
    v: u32,
    rows: Vec<Row>,
}

fn is_gzip(desc: &Descriptor) -> Result<bool> {
    match media::layer_compression(&desc.media_type) {
        Some(media::LayerCompression::Gzip) => Ok(true),
        Some(media::LayerCompression::None) => Ok(false),
        _ => Err(Error::unsupported(format!(
            "layer {} has media type {:?}; spxpack reads gzip or uncompressed layers",
            desc.digest, desc.media_type
        ))),
    }
}

fn open_tar(source: &dyn BlobSource, desc: &Descriptor) -> Result<tar::Archive<Box<dyn Read>>> {
    let r = source.open(desc)?;
    let r: Box<dyn Read> = if is_gzip(desc)? {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, r)))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, r))
    };
    Ok(tar::Archive::new(r))
}

fn read_err(desc: &Descriptor, e: io::Error) -> Error {
    Error::from_io("cannot read", &format!("layer {}", desc.digest), e)
}

/// Lists a layer's entries, from the index cache or by reading the blob once.
pub fn entries(cache: &BlobCache, source: &dyn BlobSource, desc: &Descriptor) -> Result<Vec<LayerEntry>> {
    let gzip = is_gzip(desc)?;
    let dir = cache.root().join("build/layers");
    let file = dir.join(format!("{}.json", desc.digest.hex()));
    let rows = match std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<IndexFile>(&b).ok()) {
        Some(f) if f.v == INDEX_VERSION => f.rows,
        _ => {
            let rows = scan(source, desc)?;
            let data = serde_json::to_vec(&IndexFile { v: INDEX_VERSION, rows: rows.clone() }).expect("json");
            write_atomic(&dir, &file, &data)?;
            rows
        }
    };
    Ok(rows.into_iter().map(|r| to_entry(r, &desc.digest, gzip)).collect())
}

fn scan(source: &dyn BlobSource, desc: &Descriptor) -> Result<Vec<Row>> {
    let mut ar = open_tar(source, desc)?;
    let mut rows = Vec::new();
    for e in ar.entries().map_err(|e| read_err(desc, e))? {
        let e = e.map_err(|e| read_err(desc, e))?;
        let h = e.header();
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()).unwrap_or_default();
        rows.push(Row(
            path,
            h.entry_type().as_byte(),
            h.mode().unwrap_or(0o644) & 0o7777,
            h.uid().unwrap_or(0),
            h.gid().unwrap_or(0),
            h.mtime().unwrap_or(0),
            e.size(),
            link,
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        ));
    }
    Ok(rows)
}

fn to_entry(r: Row, blob: &Digest, gzip: bool) -> LayerEntry {
    let Row(path, t, mode, uid, gid, mtime, size, link, maj, min) = r;
    let mut e = LayerEntry { path: path.clone(), node: None, hardlink: None };
    let kind = match t {
        b'0' | b'\0' | b'7' => Kind::File(Content {
            id: format!("{blob}:{}", normalize(&path)),
            src: ContentSrc::Layer { blob: blob.clone(), gzip, path: normalize(&path) },
        }),
        b'5' => Kind::Dir,
        b'2' => Kind::Symlink(link),
        b'1' => {
            e.hardlink = Some(link);
            return e;
        }
        b'3' | b'4' | b'6' => Kind::Other(t, maj, min),
        _ => return e, // PAX/GNU metadata headers are consumed by the reader; ignore the rest
    };
    e.node = Some(Node { kind, mode, uid, gid, mtime, size: if t == b'5' { 0 } else { size } });
    e
}

pub fn write_atomic(dir: &Path, file: &Path, data: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let mut t = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("cannot create a file in", dir, e))?;
    t.write_all(data).map_err(|e| Error::io("cannot write", t.path(), e))?;
    t.persist(file).map_err(|e| Error::io("cannot write", file, e.error))?;
    Ok(())
}

/// Removes staging directories of builds that were killed more than a day ago.
fn sweep_stale(tmp: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp) else { return };
    let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with("build-")
            && e.metadata().is_ok_and(|m| m.is_dir() && m.modified().is_ok_and(|t| t < cutoff))
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Files extracted from layer blobs for this build, keyed by (blob, path).
pub struct Staging {
    dir: tempfile::TempDir,
    files: Mutex<HashMap<(Digest, String), PathBuf>>,
    counter: Mutex<u64>,
    /// Removes the directory when the build is interrupted (Ctrl-C).
    hook: u64,
}

impl Drop for Staging {
    fn drop(&mut self) {
        crate::atomic::unregister_hook(self.hook);
    }
}

impl Staging {
    pub fn new(cache: &BlobCache) -> Result<Self> {
        let base = cache.root().join("tmp");
        sweep_stale(&base);
        let dir = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&base)
            .map_err(|e| Error::io("cannot create a staging directory in", &base, e))?;
        let p = dir.path().to_path_buf();
        let hook = crate::atomic::register_hook(move || {
            let _ = std::fs::remove_dir_all(&p);
        });
        Ok(Staging { dir, files: Mutex::new(HashMap::new()), counter: Mutex::new(0), hook })
    }

    /// A fresh path inside the staging directory.
    pub fn new_path(&self, hint: &str) -> PathBuf {
        let mut c = self.counter.lock().expect("poisoned");
        *c += 1;
        let safe: String = hint.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.').take(40).collect();
        self.dir.path().join(format!("{c}-{safe}"))
    }

    pub fn get(&self, blob: &Digest, path: &str) -> Option<PathBuf> {
        self.files.lock().expect("poisoned").get(&(blob.clone(), path.to_string())).cloned()
    }

    /// Extracts the wanted paths of one layer blob (one pass over it).
    pub fn extract(&self, source: &dyn BlobSource, desc: &Descriptor, wanted: &BTreeSet<String>) -> Result<()> {
        let wanted: BTreeSet<&String> = wanted.iter().filter(|p| self.get(&desc.digest, p).is_none()).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut ar = open_tar(source, desc)?;
        let mut left = wanted.len();
        for e in ar.entries().map_err(|e| read_err(desc, e))? {
            let mut e = e.map_err(|e| read_err(desc, e))?;
            let p = normalize(&String::from_utf8_lossy(&e.path_bytes()));
            if !wanted.contains(&p) || !e.header().entry_type().is_file() {
                continue;
            }
            let dest = self.new_path(&p);
            let mut f = File::create(&dest).map_err(|x| Error::io("cannot create", &dest, x))?;
            io::copy(&mut e, &mut f).map_err(|x| read_err(desc, x))?;
            self.files.lock().expect("poisoned").insert((desc.digest.clone(), p), dest);
            left -= 1;
            if left == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Reads a small file's bytes from wherever it is (for `/etc/passwd`).
    pub fn read_small(&self, c: &Content, sources: BlobLookup) -> Result<Vec<u8>> {
        match &c.src {
            ContentSrc::Inline(b) => Ok(b.to_vec()),
            ContentSrc::Local(p) => std::fs::read(p.as_ref()).map_err(|e| Error::io("cannot read", p, e)),
            ContentSrc::Layer { blob, path, .. } => {
                if self.get(blob, path).is_none() {
                    let (src, desc) =
                        sources(blob).ok_or_else(|| Error::internal(format!("no source for layer {blob}")))?;
                    self.extract(src.as_ref(), &desc, &BTreeSet::from([path.clone()]))?;
                }
                let p =
                    self.get(blob, path).ok_or_else(|| Error::internal(format!("{path} not found in layer {blob}")))?;
                std::fs::read(&p).map_err(|e| Error::io("cannot read", &p, e))
            }
        }
    }
}
