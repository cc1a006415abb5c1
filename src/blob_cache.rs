//! The content-addressed blob cache shared by every source: `blobs/sha256/<hex>` holds
//! verified content only (it is written to `tmp/` first and renamed into place after the
//! digest checked out, so two concurrent runs can insert the same blob safely), and
//! `refs/<registry>/<repository>/<tag>` remembers which manifest a tag resolved to, so
//! `--offline` can resolve tags without the network; `homes/<registry>/<hex>` remembers
//! repositories of a registry that hold a blob (pulled from or pushed to), so a push to another
//! repository of that registry can mount it instead of uploading it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Kind, Result};
use crate::host_env::HostEnv;
use crate::image::{BlobReader, BlobSource, Descriptor, Image};
use crate::progress::{Reporter, human_size};

/// Where the cache records the diff_id of each layer blob (`diffids/sha256/<blob hex>`).
const DIFF_IDS: &str = "diffids/sha256";

#[cfg(test)]
mod unit_tests;

/// The blob cache.
#[derive(Debug)]
pub struct BlobCache {
    root: PathBuf,
    offline: bool,
    /// Blobs verified by this process (inserted or fully read); reads of these skip re-hashing.
    verified: Mutex<HashSet<Digest>>,
}

impl BlobCache {
    /// Opens (creating if needed) the cache at `root`, or at [`default_dir`] of an empty
    /// environment (the CLI passes the user's, see [`default_dir`]).
    pub fn open(root: Option<PathBuf>, offline: bool) -> Result<Arc<Self>> {
        let root = root.unwrap_or_else(|| default_dir(&HostEnv::default()));
        for sub in ["blobs/sha256", "tmp", "refs", DIFF_IDS] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(|e| {
                Error::io("cannot create the cache directory", &d, e)
                    .with_hint("pass --cache-dir with a writable directory")
            })?;
        }
        sweep_stale_temps(&root.join("tmp"));
        Ok(Arc::new(BlobCache { root, offline, verified: Mutex::new(HashSet::new()) }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn offline(&self) -> bool {
        self.offline
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether a blob of this digest and size is present.
    pub fn contains(&self, desc: &Descriptor) -> bool {
        fs::metadata(self.blob_path(&desc.digest)).is_ok_and(|m| m.is_file() && m.len() == desc.size)
    }

    /// Reads a small cached blob fully (verified), if present.
    pub fn read_small(&self, d: &Digest, limit: u64) -> Result<Option<Vec<u8>>> {
        let p = self.blob_path(d);
        let data = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("cannot read cached blob", &p, e)),
        };
        if data.len() as u64 > limit {
            return Err(Error::input(format!("cached blob {d} is larger than {limit} bytes")));
        }
        if Digest::of(&data) != *d {
            let _ = fs::remove_file(&p);
            return Ok(None);
        }
        Ok(Some(data))
    }

    /// Opens a cached blob; the reader verifies size and digest unless this process already did.
    pub fn open_blob(&self, desc: &Descriptor, what: &str) -> Result<Option<BlobReader>> {
        let p = self.blob_path(&desc.digest);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("cannot open cached blob", &p, e)),
        };
        let len = f.metadata().map_err(|e| Error::io("cannot stat", &p, e))?.len();
        if len != desc.size {
            return Ok(None);
        }
        if self.verified.lock().expect("poisoned").contains(&desc.digest) {
            return Ok(Some(Box::new(io::BufReader::with_capacity(1 << 20, f))));
        }
        let r = VerifyingReader::new(
            io::BufReader::with_capacity(1 << 20, f),
            desc.digest.clone(),
            desc.size,
            what.to_string(),
        );
        Ok(Some(Box::new(CacheCheck { inner: r, path: p })))
    }

    /// A fresh temporary file inside the cache, for downloads in progress.
    /// It is removed on drop, and by the signal handler if the process is interrupted.
    pub fn new_temp(&self) -> Result<tempfile::NamedTempFile> {
        let t = tempfile::Builder::new()
            .prefix("ingest-")
            .tempfile_in(self.root.join("tmp"))
            .map_err(|e| Error::io("cannot create a temporary file in", &self.root.join("tmp"), e))?;
        crate::atomic::register(t.path());
        Ok(t)
    }

    /// Moves a fully written and already verified temporary file into place.
    pub fn commit(&self, tmp: tempfile::NamedTempFile, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        crate::atomic::unregister(tmp.path());
        tmp.persist(&dest).map_err(|e| Error::io("cannot store blob in the cache at", &dest, e.error))?;
        self.mark_verified(digest);
        Ok(())
    }

    /// Moves a file this process wrote and hashed (same file system) into the cache as `digest`.
    pub fn adopt(&self, path: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        fs::rename(path, &dest).map_err(|e| Error::io("cannot store blob in the cache at", &dest, e))?;
        self.mark_verified(digest);
        Ok(())
    }

    /// The diff_id recorded for the layer blob `blob` when it entered the cache.
    pub fn recorded_diff_id(&self, blob: &Digest) -> Option<Digest> {
        let text = fs::read_to_string(self.root.join(DIFF_IDS).join(blob.hex())).ok()?;
        Digest::parse(text.trim()).ok()
    }

    /// Records `diff_id` as the sha256 of the uncompressed content of the cached blob `blob`
    /// (a small sidecar file, written atomically; a failure only costs a later recomputation).
    pub fn record_diff_id(&self, blob: &Digest, diff_id: &Digest) {
        let dir = self.root.join(DIFF_IDS);
        if let Ok(mut t) = tempfile::Builder::new().prefix(".diffid-").tempfile_in(&dir)
            && t.write_all(diff_id.to_string().as_bytes()).is_ok()
        {
            let _ = t.persist(dir.join(blob.hex()));
        }
    }

    /// The diff_id of the cached layer blob `desc`: the recorded one, else computed once from the
    /// cached bytes (gzip, bzip2, xz or plain) and recorded. `None` when it is not cached or is
    /// zstd.
    pub fn layer_diff_id(&self, desc: &Descriptor, what: &str) -> Result<Option<Digest>> {
        if let Some(d) = self.recorded_diff_id(&desc.digest) {
            return Ok(Some(d));
        }
        let Some(r) = self.open_blob(desc, what)? else { return Ok(None) };
        let mut br = io::BufReader::with_capacity(1 << 20, r);
        let kind =
            crate::compress::sniff(io::BufRead::fill_buf(&mut br).map_err(|e| Error::from_io("cannot read", what, e))?);
        let Some(mut dec) = crate::compress::limited_decoder(kind, br, crate::compress::Limits::NONE) else {
            return Ok(None);
        };
        let mut h = crate::digest::Hasher::new();
        io::copy(&mut dec, &mut h).map_err(|e| {
            Error::integrity(format!("{what}: cannot decompress ({e})"))
                .with_hint("the layer is corrupt in the registry; re-push the image")
        })?;
        let d = h.finish();
        self.record_diff_id(&desc.digest, &d);
        Ok(Some(d))
    }

    pub fn mark_verified(&self, digest: &Digest) {
        self.verified.lock().expect("poisoned").insert(digest.clone());
    }

    /// Copies `r` into the cache, verifying it against `desc`.
    pub fn insert_from(&self, desc: &Descriptor, r: &mut dyn Read, what: &str) -> Result<()> {
        if self.contains(desc) && self.verified.lock().expect("poisoned").contains(&desc.digest) {
            return Ok(());
        }
        let mut tmp = self.new_temp()?;
        let mut vr = VerifyingReader::new(r, desc.digest.clone(), desc.size, what.to_string());
        {
            let mut w = io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            io::copy(&mut vr, &mut w).map_err(|e| Error::from_io("cannot cache", what, e))?;
            w.flush().map_err(|e| Error::from_io("cannot cache", what, e))?;
        }
        self.commit(tmp, &desc.digest)
    }

    /// Stores small bytes (manifests, configs) under their digest.
    pub fn insert_bytes(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        let dest = self.blob_path(&d);
        if fs::metadata(&dest).is_ok_and(|m| m.len() == data.len() as u64) {
            return Ok(d);
        }
        let mut tmp = self.new_temp()?;
        tmp.write_all(data).map_err(|e| Error::io("cannot write", tmp.path(), e))?;
        self.commit(tmp, &d)?;
        Ok(d)
    }

    fn ref_path(&self, registry: &str, repository: &str, tag: &str) -> PathBuf {
        let reg = registry.replace(':', "_");
        self.root.join("refs").join(reg).join(repository).join(tag)
    }

    /// Records that `registry/repository:tag` resolved to `digest`.
    pub fn set_ref(&self, registry: &str, repository: &str, tag: &str, digest: &Digest) -> Result<()> {
        let p = self.ref_path(registry, repository, tag);
        let dir = p.parent().expect("has parent");
        fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
        let mut tmp = self.new_temp()?;
        tmp.write_all(digest.to_string().as_bytes()).map_err(|e| Error::io("cannot write", tmp.path(), e))?;
        tmp.persist(&p).map_err(|e| Error::io("cannot write", &p, e.error))?;
        Ok(())
    }

    /// What `registry/repository:tag` last resolved to.
    pub fn get_ref(&self, registry: &str, repository: &str, tag: &str) -> Option<Digest> {
        let s = fs::read_to_string(self.ref_path(registry, repository, tag)).ok()?;
        Digest::parse(s.trim()).ok()
    }

    fn homes_path(&self, registry: &str, d: &Digest) -> PathBuf {
        self.root.join("homes").join(registry.replace(':', "_")).join(d.hex())
    }

    /// Records that `repository` of `registry` holds blob `d` (the last few repositories are
    /// kept, newest last). Best effort: a failure only costs a mount later.
    pub fn note_blob_home(&self, registry: &str, repository: &str, d: &Digest) {
        let p = self.homes_path(registry, d);
        let mut homes = self.blob_homes(registry, d);
        if homes.last().map(String::as_str) == Some(repository) {
            return;
        }
        homes.retain(|h| h != repository);
        homes.push(repository.to_string());
        let keep = homes.len().saturating_sub(4);
        let text = homes[keep..].join("\n");
        let write = || -> io::Result<()> {
            fs::create_dir_all(p.parent().expect("has parent"))?;
            let mut tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
            tmp.write_all(text.as_bytes())?;
            tmp.persist(&p).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!("cannot record where {d} lives: {e}");
        }
    }

    /// Repositories of `registry` known to hold blob `d`, newest last.
    pub fn blob_homes(&self, registry: &str, d: &Digest) -> Vec<String> {
        let text = crate::input::read(&self.homes_path(registry, d), 64 << 10).unwrap_or_default();
        String::from_utf8_lossy(&text).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    /// The error for a blob that is needed but not cached in offline mode.
    pub fn offline_error(&self, what: &str, digest: &Digest) -> Error {
        Error::new(
            Kind::Offline,
            format!("--offline: {what} ({digest}) is not in the cache at {}", self.root.display()),
        )
        .with_hint("run the same command once without --offline to fill the cache")
    }
}

/// Deletes a cached blob whose content turns out to be wrong, so the next run fetches it again.
struct CacheCheck<R> {
    inner: VerifyingReader<R>,
    path: PathBuf,
}

impl<R: Read> Read for CacheCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                let _ = fs::remove_file(&self.path);
            }
        })
    }
}

/// A `BlobSource` that serves from the cache only.
pub struct CacheSource {
    pub cache: Arc<BlobCache>,
    pub origin: String,
}

impl BlobSource for CacheSource {
    fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        let what = format!("blob {} of {}", desc.digest, self.origin);
        self.cache.open_blob(desc, &what)?.ok_or_else(|| self.cache.offline_error(&what, &desc.digest))
    }
    fn describe(&self) -> String {
        format!("cache {}", self.cache.root.display())
    }
}

/// `$SPXPACK_CACHE_DIR`, `$XDG_CACHE_HOME/spxpack`, `~/.cache/spxpack`, or a per-user
/// directory under the temp dir.
pub fn default_dir(env: &HostEnv) -> PathBuf {
    if let Some(x) = env.path("SPXPACK_CACHE_DIR") {
        return x;
    }
    if let Some(x) = env.path("XDG_CACHE_HOME") {
        return x.join("spxpack");
    }
    if let Some(h) = env.path("HOME") {
        return h.join(".cache").join("spxpack");
    }
    // SAFETY-free uid lookup: /proc/self is ours.
    let uid = fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(0);
    std::env::temp_dir().join(format!("spxpack-cache-{uid}"))
}

fn sweep_stale_temps(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let cutoff = SystemTime::now() - Duration::from_secs(24 * 3600);
    for e in rd.flatten() {
        if let Ok(m) = e.metadata()
            && m.modified().is_ok_and(|t| t < cutoff)
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Fetches every remote layer of `images` not yet cached (into each source's cache), `jobs`
/// at a time, biggest first. Returns how many were downloaded. Used by `pull`, `build` and the
/// Dockerfile builder for its base images.
pub fn prefetch(images: &[Image], jobs: usize, reporter: &dyn Reporter) -> Result<usize> {
    let mut seen = HashSet::new();
    let mut work: Vec<(&Image, &Descriptor)> = Vec::new();
    for img in images {
        if img.source.is_local() {
            continue;
        }
        for l in &img.manifest.layers {
            if seen.insert(l.digest.clone()) {
                work.push((img, l));
            }
        }
    }
    if work.is_empty() {
        return Ok(0);
    }
    // biggest first so the long downloads start early
    work.sort_by(|a, b| b.1.size.cmp(&a.1.size).then(a.1.digest.cmp(&b.1.digest)));
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let fetched = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, 16).min(work.len()) {
            s.spawn(|| {
                loop {
                    if first_error.lock().expect("poisoned").is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((img, desc)) = work.get(i) else { return };
                    // the diff_id is recorded as the blob enters the cache; one cached earlier
                    // is decompressed once here, in parallel like the downloads
                    match img.source.prefetch(desc).and_then(|f| img.source.diff_id(desc).map(|_| f)) {
                        Ok(false) => {}
                        Ok(true) => {
                            fetched.fetch_add(1, Ordering::SeqCst);
                            reporter.message(&format!(
                                "fetched layer {} ({})",
                                desc.digest.short(),
                                human_size(desc.size)
                            ));
                        }
                        Err(e) => {
                            first_error.lock().expect("poisoned").get_or_insert(e.context(&img.origin));
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("poisoned") {
        return Err(e);
    }
    check_diff_ids(images)?;
    Ok(fetched.into_inner())
}

/// Every layer of the remote `images` against its config's `rootfs.diff_ids`, with the
/// diff_ids recorded when the blobs entered the cache: an image whose config does not describe
/// its layers is refused before anything is written (`docker load` would refuse it).
pub fn check_diff_ids(images: &[Image]) -> Result<()> {
    for img in images.iter().filter(|i| !i.source.is_local()) {
        for (i, (desc, want)) in img.manifest.layers.iter().zip(&img.config.rootfs.diff_ids).enumerate() {
            let Some(got) = img.source.diff_id(desc)? else { continue };
            if &got != want {
                return Err(Error::integrity(format!(
                    "{}: layer {i} ({}): its content has diff_id {got}, but the image config lists {want}",
                    img.origin, desc.digest
                ))
                .with_hint(
                    "the image's config does not describe its layers (docker load refuses it); rebuild and re-push the image",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_verify_and_refs() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlobCache::open(Some(dir.path().to_path_buf()), false).unwrap();
        let data = b"some layer bytes".to_vec();
        let desc = Descriptor::new("x", Digest::of(&data), data.len() as u64);
        assert!(!c.contains(&desc));
        c.insert_from(&desc, &mut &data[..], "blob").unwrap();
        assert!(c.contains(&desc));
        let mut out = Vec::new();
        c.open_blob(&desc, "blob").unwrap().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, data);

        let bad = Descriptor::new("x", Digest::of(b"other"), data.len() as u64);
        let e = c.insert_from(&bad, &mut &data[..], "blob y").unwrap_err();
        assert_eq!(e.kind(), Kind::Integrity, "{e}");
        assert!(!c.contains(&bad));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "failed ingest leaves no temp file");

        c.set_ref("127.0.0.1:5000", "a/b", "t", &desc.digest).unwrap();
        assert_eq!(c.get_ref("127.0.0.1:5000", "a/b", "t"), Some(desc.digest.clone()));

        // a corrupted cached blob is detected on read (fresh process view) and removed
        fs::write(c.blob_path(&desc.digest), b"some layer bytez").unwrap();
        let c2 = BlobCache::open(Some(dir.path().to_path_buf()), false).unwrap();
        let e = c2.open_blob(&desc, "blob").unwrap().unwrap().read_to_end(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("digest mismatch"));
        assert!(!c2.contains(&desc));
    }
}
