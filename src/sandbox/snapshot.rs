//! Metadata snapshots of a rootfs (no file content is read) and the ctime fence.
//!
//! A path changed during a step if any recorded field differs or its ctime is later than the
//! fence: the ctime of a marker file created (next to the rootfs, on the same filesystem) after
//! the snapshot, once the kernel's coarse clock has ticked past it. Every inode that existed
//! before the step has a ctime at or before the fence, every write during the step sets a later
//! one, and user space cannot set ctime, so `touch -r` or a same-size rewrite within the same
//! second cannot hide a change (git's "racy clean" problem).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::fsutil::{dir_names, rel_join};
use super::rootfs::{MOUNT_DIRS, Rootfs};
use crate::error::{Error, Result};

/// What is recorded per path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub dev: u64,
    pub ino: u64,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Meta {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }
    fn from_stat(st: &rustix::fs::Stat) -> Meta {
        Meta {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            nlink: st.st_nlink,
            rdev: st.st_rdev,
            mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
            ctime_ns: st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128,
        }
    }
}

/// The state of a rootfs before a step.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub entries: BTreeMap<String, Meta>,
    /// ctime (ns) of the fence marker; see the module docs.
    pub fence_ns: i128,
}

impl Snapshot {
    /// Walks `rootfs` and sets the fence. Call right before [`super::Runner::run`].
    pub fn take(rootfs: &Rootfs) -> Result<Snapshot> {
        let t = std::time::Instant::now();
        let entries = walk(rootfs.path())?;
        let fence_ns = fence(rootfs.work_dir())?;
        tracing::debug!("snapshot of {} entries in {:.3}s", entries.len(), t.elapsed().as_secs_f64());
        Ok(Snapshot { entries, fence_ns })
    }
}

/// Creates the fence marker in `dir` and waits until a newer file gets a later ctime.
fn fence(dir: &Path) -> Result<i128> {
    let a = dir.join(".fence-a");
    let b = dir.join(".fence-b");
    std::fs::write(&a, b"").map_err(|e| Error::io("cannot write", &a, e))?;
    let ctime = |p: &Path| -> Result<i128> {
        let st = rustix::fs::stat(p).map_err(|e| Error::io("cannot stat", p, e.into()))?;
        Ok(st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128)
    };
    let t = ctime(&a)?;
    for _ in 0..2000 {
        std::fs::write(&b, b"").map_err(|e| Error::io("cannot write", &b, e))?;
        // a rewrite of b updates its ctime to "now"
        rustix::fs::chmod(&b, Mode::from_raw_mode(0o644)).map_err(|e| Error::io("cannot chmod", &b, e.into()))?;
        if ctime(&b)? > t {
            return Ok(t);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(Error::internal(format!("the clock of the filesystem of {} does not advance", dir.display())))
}

/// Walks the tree below `root` without following symlinks. `/proc`, `/sys` and `/dev` are left
/// out (the sandbox mounts over them).
pub fn walk(root: &Path) -> Result<BTreeMap<String, Meta>> {
    let fd = super::fsutil::open_root(root).map_err(|e| Error::io("cannot open", root, e))?;
    let mut out = BTreeMap::new();
    walk_dir(&fd, "", &mut out).map_err(|e| Error::io("cannot walk", root, e))?;
    Ok(out)
}

fn walk_dir(dir: &OwnedFd, rel: &str, out: &mut BTreeMap<String, Meta>) -> io::Result<()> {
    for name in dir_names(dir)? {
        let Ok(n) = std::str::from_utf8(&name) else {
            return Err(io::Error::other(format!(
                "{}: file names that are not UTF-8 are not supported",
                rel_join(rel, &String::from_utf8_lossy(&name))
            )));
        };
        let path = rel_join(rel, n);
        if rel.is_empty() && MOUNT_DIRS.contains(&n) {
            continue;
        }
        let st = rustix::fs::statat(dir, OsStr::from_bytes(&name), AtFlags::SYMLINK_NOFOLLOW)?;
        let m = Meta::from_stat(&st);
        out.insert(path.clone(), m);
        if m.is_dir() {
            let sub = open_subdir(dir, n, m.mode)?;
            walk_dir(&sub.0, &path, out)?;
            sub.restore(dir, n);
        }
    }
    Ok(())
}

/// An open subdirectory; a directory its owner could not read was made readable and gets its
/// mode back afterwards.
struct Sub(OwnedFd, Option<u32>);

impl Sub {
    fn restore(self, parent: &OwnedFd, name: &str) {
        if let Some(mode) = self.1 {
            let _ = rustix::fs::chmodat(parent, name, Mode::from_raw_mode(mode & 0o7777), AtFlags::empty());
        }
    }
}

fn open_subdir(parent: &impl AsFd, name: &str, mode: u32) -> io::Result<Sub> {
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Sub(fd, None)),
        Err(rustix::io::Errno::ACCESS) => {
            rustix::fs::chmodat(parent, name, Mode::from_raw_mode((mode & 0o7777) | 0o500), AtFlags::empty())?;
            let fd = rustix::fs::openat(parent, name, flags, Mode::empty())?;
            Ok(Sub(fd, Some(mode)))
        }
        Err(e) => Err(e.into()),
    }
}
