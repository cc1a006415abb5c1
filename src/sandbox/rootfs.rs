//! [`Rootfs`]: a working copy of an image's root filesystem, in which RUN steps execute.
//!
//! Extracted bases are cached per image (keyed by the layer digests and the ownership mode) in
//! a [`RootfsCache`]. A build takes the cached tree by renaming it (no copy, no decompression:
//! it starts instantly) or extracts one itself, and a background thread extracts a fresh copy
//! into the cache for the next build while the steps run. The build's tree lives in
//! `<cache>/work/<id>/rootfs`; `<cache>/work/<id>` is private to the build and holds the
//! sandbox's auxiliary files and the diff's ctime markers (which must be on the rootfs'
//! filesystem but outside the rootfs). Both are removed on drop and on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::extract::{self, ExtractReport, LayerBlob, Ownership, SideTable, Skipped};
use super::fsutil;
use crate::blob_cache::BlobCache;
use crate::error::{Error, Result};
use crate::image::Image;

/// Where extracted bases and working copies live.
#[derive(Debug, Clone)]
pub struct RootfsCache {
    dir: PathBuf,
}

impl RootfsCache {
    /// Opens (creating) a cache at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        for sub in ["bases", "work"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| {
                Error::io("cannot create the rootfs cache directory", &d, e)
                    .with_hint("pass --cache-dir with a writable directory")
            })?;
        }
        Ok(RootfsCache { dir })
    }
    /// The cache next to the blob cache (`<cache>/rootfs`).
    pub fn in_blob_cache(cache: &BlobCache) -> Result<Self> {
        Self::new(cache.root().join("rootfs"))
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    fn base(&self, key: &str) -> PathBuf {
        self.dir.join("bases").join(key)
    }
    /// A fresh private directory under `work/`, removed on drop and on Ctrl-C.
    pub fn work_dir(&self) -> Result<WorkDir> {
        WorkDir::new_in(&self.dir.join("work"), "build-")
    }
}

/// A temporary directory that is removed (also when the tree inside has read-only directories)
/// on drop and when the process is interrupted.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    hook: u64,
    keep: bool,
}

impl WorkDir {
    pub fn new_in(parent: &Path, prefix: &str) -> Result<Self> {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
        let t = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|e| Error::io("cannot create a temporary directory in", parent, e))?;
        let path = t.keep();
        let p = path.clone();
        let hook = crate::atomic::register_hook(move || {
            let _ = fsutil::remove_tree(&p);
        });
        Ok(WorkDir { path, hook, keep: false })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Keeps the directory (debugging).
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        crate::atomic::unregister_hook(self.hook);
        self.path.clone()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // when interrupted, the signal handler removes it (and may be doing so right now)
        if !self.keep && !crate::atomic::interrupted() {
            if let Err(e) = fsutil::remove_tree(&self.path) {
                tracing::warn!("cannot remove {}: {e}", self.path.display());
            }
            crate::atomic::unregister_hook(self.hook);
        }
    }
}

/// A root filesystem to run steps in.
#[derive(Debug)]
pub struct Rootfs {
    work: WorkDir,
    root: PathBuf,
    report: ExtractReport,
    ownership: Ownership,
    from_cache: bool,
    /// How many layers the tree holds.
    layers: usize,
    /// The cache's copy of the base being made again (joined on drop).
    _refill: Option<Refill>,
}

/// Paths the sandbox mounts over; created empty when the image lacks them, so that mounting
/// never has to create anything in the rootfs during a step.
pub const MOUNT_DIRS: [&str; 3] = ["proc", "sys", "dev"];
pub const MOUNT_FILES: [&str; 2] = ["etc/resolv.conf", "etc/hosts"];

impl Rootfs {
    /// A working copy of `image`'s root filesystem, prepared for the steps `runner` will run
    /// (ownership mode, mount points).
    pub fn extract(image: &Image, runner: &super::Runner, cache: &RootfsCache) -> Result<Rootfs> {
        let r = Self::extract_with(image, runner.ownership(), cache)?;
        r.prepare_for(runner)?;
        Ok(r)
    }

    /// A working copy of `image`'s root filesystem, extracted with `ownership`.
    pub fn extract_with(image: &Image, ownership: Ownership, cache: &RootfsCache) -> Result<Rootfs> {
        Self::from_layers(&extract::image_layers(image)?, &image.origin, ownership, cache)
    }

    /// The filesystem of `layers` (bottom first), extracted with `ownership`: the cache's copy of
    /// it when there is one, taken by renaming it (instant), else extracted right here. Either
    /// way a fresh copy is extracted into the cache in the background, for the next build (it
    /// is finished when this `Rootfs` is dropped, and abandoned cleanly on Ctrl-C).
    pub fn from_layers(
        layers: &[LayerBlob],
        origin: &str,
        ownership: Ownership,
        cache: &RootfsCache,
    ) -> Result<Rootfs> {
        let key = extract::layers_key(layers.iter().map(|l| &l.desc.digest), ownership);
        let base = cache.base(key.hex());
        let t = Instant::now();
        let work = cache.work_dir()?;
        let root = work.path().join("rootfs");
        let (report, from_cache) = match claim(&base, work.path(), &root) {
            Some(r) => (r, true),
            None => {
                if root.exists() {
                    fsutil::remove_tree(&root).map_err(|e| Error::io("cannot remove", &root, e))?;
                }
                std::fs::create_dir(&root).map_err(|e| Error::io("cannot create", &root, e))?;
                let mut report = ExtractReport::default();
                extract::extract_layers(layers, origin, &root, ownership, 0, &mut report)?;
                ensure_mount_points(&root)?;
                tracing::info!("extracted {origin} in {:.2}s", t.elapsed().as_secs_f64());
                (report, false)
            }
        };
        tracing::info!("rootfs for {origin} ready at {} in {:.2}s", root.display(), t.elapsed().as_secs_f64());
        let refill = Refill::start(layers.to_vec(), origin.to_string(), ownership, cache.dir.join("bases"), base);
        Ok(Rootfs { work, root, report, ownership, from_cache, layers: layers.len(), _refill: Some(refill) })
    }

    /// Applies more layers on top (a COPY or a cached RUN step since the rootfs was made).
    pub fn apply(&mut self, layers: &[LayerBlob], origin: &str) -> Result<()> {
        let first = self.layers;
        extract::extract_layers(layers, origin, &self.root, self.ownership, first, &mut self.report)?;
        self.layers += layers.len();
        Ok(())
    }

    /// Makes the rootfs ready for `runner`'s sandbox (proot needs `/etc/ld.so.preload`).
    pub fn prepare_for(&self, runner: &super::Runner) -> Result<()> {
        if runner.sandbox == super::Sandbox::Proot {
            // proot -q binds /dev/null over /etc/ld.so.preload and would otherwise create and
            // delete it, changing /etc in every layer
            ensure_files(&self.root, &["etc/ld.so.preload"])?;
        }
        Ok(())
    }

    /// The side table, for recording what a step's layer says about the paths it changed.
    pub fn side_table_mut(&mut self) -> &mut SideTable {
        &mut self.report.side
    }

    pub(crate) fn from_parts(work: WorkDir, root: PathBuf, ownership: Ownership) -> Rootfs {
        Rootfs { work, root, report: ExtractReport::default(), ownership, from_cache: false, layers: 0, _refill: None }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.root
    }
    /// The private directory that contains the rootfs (aux files, markers).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }
    pub fn side_table(&self) -> &SideTable {
        &self.report.side
    }
    /// Base-layer entries that were not extracted.
    pub fn skipped(&self) -> &[Skipped] {
        &self.report.skipped
    }
    pub fn ownership(&self) -> Ownership {
        self.ownership
    }
    /// Whether the base came from the cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
    /// Keeps the work directory after drop (debugging); returns its path.
    pub fn keep(self) -> PathBuf {
        self.work.keep()
    }

    /// Creates the mount points of `mounts` that the rootfs lacks (directories, or an empty
    /// file for a file source), resolving the path inside the root. Call after the snapshot and
    /// remove them with [`MountStubs::remove`] before the diff: they never reach a layer.
    pub fn mount_stubs(&self, mounts: &[super::GuestMount]) -> Result<MountStubs> {
        let root = fsutil::open_root(&self.root).map_err(|e| Error::io("cannot open", &self.root, e))?;
        let mut created = Vec::new();
        for m in mounts {
            let Some(rel) = extract::clean_name(&m.target).filter(|r| !r.is_empty()) else {
                return Err(Error::input(format!("cannot mount over {:?}", m.target)));
            };
            let file = m.source.as_ref().is_some_and(|s| s.is_file());
            let comps: Vec<&str> = rel.split('/').collect();
            let mut sofar = String::new();
            for (i, c) in comps.iter().enumerate() {
                let parent = sofar.clone();
                sofar = fsutil::rel_join(&sofar, c);
                let last = i + 1 == comps.len();
                let pfd = fsutil::open_dir_in(&root, &parent)
                    .map_err(|e| Error::io("cannot create the mount point", &self.root.join(&sofar), e))?;
                match rustix::fs::statat(&pfd, *c, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(_) => continue,
                    Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(Error::io("cannot stat", &self.root.join(&sofar), e.into())),
                }
                let made = if last && file {
                    rustix::fs::openat(
                        &pfd,
                        *c,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )
                    .map(drop)
                } else {
                    rustix::fs::mkdirat(&pfd, *c, Mode::from_raw_mode(0o755))
                };
                made.map_err(|e| Error::io("cannot create the mount point", &self.root.join(&sofar), e.into()))?;
                created.push((sofar.clone(), !(last && file)));
            }
        }
        Ok(MountStubs { created })
    }
}

/// Mount points created for one step (see [`Rootfs::mount_stubs`]).
#[derive(Debug, Default)]
#[must_use = "remove the stubs before computing the layer"]
pub struct MountStubs {
    /// (path, is a directory), parents first.
    created: Vec<(String, bool)>,
}

impl MountStubs {
    /// Removes the stubs that are still empty, deepest first (a directory the step filled stays).
    pub fn remove(self, rootfs: &Rootfs) {
        let Ok(root) = fsutil::open_root(rootfs.path()) else { return };
        for (rel, dir) in self.created.iter().rev() {
            let (parent, name) = fsutil::split_parent(rel);
            let Ok(pfd) = fsutil::open_dir_in(&root, parent) else { continue };
            if *dir {
                let _ = rustix::fs::unlinkat(&pfd, name, AtFlags::REMOVEDIR);
            } else if rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|s| s.st_size == 0 && FileType::from_raw_mode(s.st_mode) == FileType::RegularFile)
            {
                let _ = rustix::fs::unlinkat(&pfd, name, AtFlags::empty());
            }
        }
    }
}

/// Takes the cached extraction `base` (`complete`, `report.json`, `tree/`) for this build by
/// renaming it into `work` (one build wins; the others extract) and moves its tree to `root`.
fn claim(base: &Path, work: &Path, root: &Path) -> Option<ExtractReport> {
    if !base.join("complete").exists() {
        return None;
    }
    let mine = work.join("claimed");
    std::fs::rename(base, &mine).ok()?;
    let report = std::fs::read(mine.join("report.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let moved = report.is_some() && std::fs::rename(mine.join("tree"), root).is_ok();
    let _ = fsutil::remove_tree(&mine);
    if moved { report } else { None }
}

/// Extracts a base into the cache on a background thread (see [`Rootfs::from_layers`]).
#[derive(Debug)]
struct Refill {
    handle: Option<std::thread::JoinHandle<()>>,
    hook: u64,
}

impl Refill {
    fn start(layers: Vec<LayerBlob>, origin: String, ownership: Ownership, bases: PathBuf, base: PathBuf) -> Refill {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let cancel = Arc::new(AtomicBool::new(false));
        // the temporary directory and whether the thread has stopped writing into it
        let state: Arc<Mutex<(Option<PathBuf>, bool)>> = Arc::new(Mutex::new((None, false)));
        let (c, st) = (cancel.clone(), state.clone());
        // Ctrl-C: stop the thread, wait until it no longer writes, remove its directory
        let hook = crate::atomic::register_hook(move || {
            c.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            while !st.lock().map(|s| s.1).unwrap_or(true) && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if let Some(p) = st.lock().ok().and_then(|s| s.0.clone()) {
                let _ = fsutil::remove_tree(&p);
            }
        });
        let handle = std::thread::spawn(move || {
            let r = refill(&layers, &origin, ownership, &bases, &base, &cancel, &state);
            if let Ok(mut s) = state.lock() {
                if r.is_err()
                    && let Some(p) = s.0.take()
                {
                    let _ = fsutil::remove_tree(&p);
                }
                s.1 = true;
            }
            match r {
                Ok(()) => {}
                Err(e) if cancel.load(Ordering::SeqCst) => tracing::debug!("rootfs refill cancelled: {e}"),
                Err(e) => tracing::warn!("cannot cache the extracted base of {origin}: {e}"),
            }
        });
        Refill { handle: Some(handle), hook }
    }
}

fn refill(
    layers: &[LayerBlob],
    origin: &str,
    ownership: Ownership,
    bases: &Path,
    base: &Path,
    cancel: &std::sync::atomic::AtomicBool,
    state: &std::sync::Mutex<(Option<PathBuf>, bool)>,
) -> Result<()> {
    if base.join("complete").exists() {
        return Ok(());
    }
    let t = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(bases)
        .map_err(|e| Error::io("cannot create a temporary directory in", bases, e))?
        .keep();
    state.lock().expect("poisoned").0 = Some(tmp.clone());
    let tree = tmp.join("tree");
    std::fs::create_dir(&tree).map_err(|e| Error::io("cannot create", &tree, e))?;
    let mut report = ExtractReport::default();
    extract::extract_layers_until(layers, origin, &tree, ownership, 0, &mut report, cancel)?;
    ensure_mount_points(&tree)?;
    let json = serde_json::to_vec(&report).map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(tmp.join("report.json"), json)
        .map_err(|e| Error::io("cannot write", &tmp.join("report.json"), e))?;
    std::fs::write(tmp.join("complete"), b"").map_err(|e| Error::io("cannot write", &tmp.join("complete"), e))?;
    if std::fs::rename(&tmp, base).is_err() {
        // another build cached it meanwhile
        let _ = fsutil::remove_tree(&tmp);
    }
    state.lock().expect("poisoned").0 = None;
    tracing::info!("cached {origin} in {:.2}s (background)", t.elapsed().as_secs_f64());
    Ok(())
}

impl Drop for Refill {
    fn drop(&mut self) {
        if crate::atomic::interrupted() {
            return; // the hook cleans up
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        crate::atomic::unregister_hook(self.hook);
    }
}

/// Creates missing mount points (empty directories and files) inside `root`.
pub fn ensure_mount_points(root: &Path) -> Result<()> {
    let r = fsutil::open_root(root).map_err(|e| Error::io("cannot open", root, e))?;
    for d in MOUNT_DIRS.iter().chain(["etc"].iter()) {
        match rustix::fs::statat(&r, *d, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::mkdirat(&r, *d, Mode::from_raw_mode(0o755))
                    .map_err(|e| Error::io("cannot create", &root.join(d), e.into()))?;
            }
            Err(e) => return Err(Error::io("cannot stat", &root.join(d), e.into())),
        }
    }
    ensure_files(root, &MOUNT_FILES)
}

/// Creates missing empty files (mode 0644) inside `root`; parents must exist.
fn ensure_files(root: &Path, files: &[&str]) -> Result<()> {
    let r = fsutil::open_root(root).map_err(|e| Error::io("cannot open", root, e))?;
    for f in files {
        let (parent, name) = fsutil::split_parent(f);
        let Ok(pfd) = fsutil::open_dir_in(&r, parent) else { continue };
        match rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::openat(
                    &pfd,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .map_err(|e| Error::io("cannot create", &root.join(f), e.into()))?;
            }
            Err(e) => return Err(Error::io("cannot stat", &root.join(f), e.into())),
        }
    }
    Ok(())
}

/// `cp -a --reflink=auto SRC DST` (DST must not exist).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let out = Command::new("cp").args(["-a", "--reflink=auto", "--"]).arg(src).arg(dst).output().map_err(|e| {
        Error::io("cannot run cp to copy", src, e).with_hint("install GNU coreutils (cp with --reflink)")
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::new(
            crate::error::Kind::Io,
            format!(
                "cannot copy {} to {}: {}",
                src.display(),
                dst.display(),
                err.lines().next().unwrap_or("cp failed").trim()
            ),
        ));
    }
    Ok(())
}
