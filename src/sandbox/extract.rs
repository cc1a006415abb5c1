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

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use serde::{Deserialize, Serialize};

use super::fsutil::{self, open_dir_in, rel_join, remove_all_at, split_parent};
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

/// Normalises a layer entry name: strips leading `/` and `./`, resolves `.` and `..`
/// lexically. `None` if the name climbs out of the root; `Some("")` is the root itself.
pub fn clean_name(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

struct DirAttrs {
    mode: u32,
    mtime: i64,
}

/// Applies one (uncompressed) layer tar onto the directory open as `root`.
pub fn apply_layer(
    root: &OwnedFd,
    r: &mut dyn Read,
    ownership: Ownership,
    layer: usize,
    report: &mut ExtractReport,
) -> io::Result<()> {
    let mut ar = tar::Archive::new(r);
    let mut created: BTreeSet<String> = BTreeSet::new();
    let mut opaque: Vec<String> = Vec::new();
    let mut dirs: BTreeMap<String, DirAttrs> = BTreeMap::new();
    let skip = |report: &mut ExtractReport, path: &str, reason: String| {
        tracing::debug!("layer {layer}: skipped {path}: {reason}");
        report.skipped.push(Skipped { layer, path: path.to_string(), reason });
    };
    for entry in ar.entries()? {
        let mut entry = entry?;
        report.entries += 1;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Ok(name) = std::str::from_utf8(&entry.path_bytes()).map(str::to_string) else {
            skip(report, &raw, "the name is not valid UTF-8".into());
            continue;
        };
        let Some(rel) = clean_name(&name) else {
            skip(report, &raw, "the name points outside the root (`..`)".into());
            continue;
        };
        let (parent, base) = split_parent(&rel);
        // whiteouts
        if let Some(target) = base.strip_prefix(".wh.") {
            if target == ".wh..opq" {
                opaque.push(parent.to_string());
            } else if target.is_empty() || target == "." || target == ".." {
                skip(report, &raw, "invalid whiteout name".into());
            } else {
                let victim = rel_join(parent, target);
                if !created.contains(&victim) {
                    match open_dir_in(root, parent) {
                        Ok(pfd) => remove_all_at(&pfd, target.as_bytes())?,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                    report.side.remove_tree(&victim);
                }
            }
            continue;
        }
        if rel.is_empty() {
            // the root directory itself: only its attributes
            if entry.header().entry_type().is_dir() {
                let h = entry.header();
                dirs.insert(String::new(), DirAttrs { mode: h.mode()? & 0o7777, mtime: h.mtime()? as i64 });
            }
            continue;
        }
        let h = entry.header().clone();
        let kind = h.entry_type();
        let mode = h.mode()? & 0o7777;
        let uid = h.uid()? as u32;
        let gid = h.gid()? as u32;
        let mtime = h.mtime()? as i64;
        let pfd = match fsutil::mkdir_all_in(root, parent, 0o755) {
            Ok(fd) => fd,
            Err(e) => {
                skip(report, &raw, format!("cannot create its parent directory: {}", io_text(&e)));
                continue;
            }
        };
        // replace what is there, except a directory by a directory
        let existing = rustix::fs::statat(&pfd, base, AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_dir = existing.as_ref().is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        if existing.is_some() && !(kind.is_dir() && existing_dir) {
            remove_all_at(&pfd, base.as_bytes())?;
            report.side.remove_tree(&rel);
        }
        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                if let (Ok(k), v) = (ext.key(), ext.value_bytes())
                    && let Some(x) = k.strip_prefix("SCHILY.xattr.")
                    && keep_xattr(x)
                {
                    xattrs.push((x.to_string(), v.to_vec()));
                }
            }
        }
        let mut side = SideEntry { uid, gid, ..Default::default() };
        let mut record = ownership == Ownership::Record && (uid != 0 || gid != 0);
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let on_disk = if ownership == Ownership::Record { mode | 0o400 } else { mode };
                let fd = rustix::fs::openat(
                    &pfd,
                    base,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut f = std::fs::File::from(fd);
                io::copy(&mut entry, &mut f)?;
                finish_fd(&f, ownership, uid, gid, on_disk, &xattrs, &mut side, &mut record)?;
                if on_disk != mode {
                    side.mode = Some(mode);
                    record = true;
                }
                rustix::fs::futimens(&f, &times(mtime))?;
            }
            tar::EntryType::Directory => {
                if !existing_dir {
                    rustix::fs::mkdirat(&pfd, base, Mode::from_raw_mode(0o700))?;
                }
                let dfd = rustix::fs::openat(
                    &pfd,
                    base,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let on_disk = if ownership == Ownership::Record { mode | 0o700 } else { mode };
                finish_fd(&dfd, ownership, uid, gid, 0o700, &xattrs, &mut side, &mut record)?;
                if on_disk != mode {
                    side.mode = Some(mode);
                    record = true;
                }
                dirs.insert(rel.clone(), DirAttrs { mode: on_disk, mtime });
            }
            tar::EntryType::Symlink => {
                let Some(target) = entry.link_name_bytes() else {
                    skip(report, &raw, "symlink without a target".into());
                    continue;
                };
                rustix::fs::symlinkat(target.as_ref(), &pfd, base)?;
                if ownership == Ownership::Apply {
                    rustix::fs::chownat(&pfd, base, Some(uid_of(uid)), Some(gid_of(gid)), AtFlags::SYMLINK_NOFOLLOW)?;
                }
                let _ = rustix::fs::utimensat(&pfd, base, &times(mtime), AtFlags::SYMLINK_NOFOLLOW);
            }
            tar::EntryType::Link => {
                let Some(target) = entry.link_name_bytes() else {
                    skip(report, &raw, "hard link without a target".into());
                    continue;
                };
                let Some(t) = std::str::from_utf8(&target).ok().and_then(clean_name).filter(|t| !t.is_empty()) else {
                    skip(report, &raw, "the hard link target points outside the root".into());
                    continue;
                };
                let (tp, tn) = split_parent(&t);
                let linked = open_dir_in(root, tp).and_then(|tfd| {
                    rustix::fs::linkat(&tfd, tn, &pfd, base, AtFlags::empty()).map_err(io::Error::from)
                });
                if let Err(e) = linked {
                    skip(report, &raw, format!("cannot link to {t}: {}", io_text(&e)));
                    continue;
                }
                // a hard link shares the target's inode and side-table facts
                if let Some(s) = report.side.get(&t).cloned() {
                    report.side.0.insert(rel.clone(), s);
                }
                created.insert(rel);
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (ft, what) = match kind {
                    tar::EntryType::Char => (FileType::CharacterDevice, "character device"),
                    tar::EntryType::Block => (FileType::BlockDevice, "block device"),
                    _ => (FileType::Fifo, "FIFO"),
                };
                let major = h.device_major()?.unwrap_or(0);
                let minor = h.device_minor()?.unwrap_or(0);
                if ft != FileType::Fifo && ownership == Ownership::Record {
                    skip(report, &raw, format!("{what} {major}:{minor} needs root to create"));
                    continue;
                }
                let dev = rustix::fs::makedev(major, minor);
                if let Err(e) = rustix::fs::mknodat(&pfd, base, ft, Mode::from_raw_mode(mode), dev) {
                    skip(report, &raw, format!("cannot create {what} {major}:{minor}: {}", io_text(&e.into())));
                    continue;
                }
                if ownership == Ownership::Apply {
                    rustix::fs::chownat(&pfd, base, Some(uid_of(uid)), Some(gid_of(gid)), AtFlags::SYMLINK_NOFOLLOW)?;
                    rustix::fs::chmodat(&pfd, base, Mode::from_raw_mode(mode), AtFlags::empty())?;
                }
                let _ = rustix::fs::utimensat(&pfd, base, &times(mtime), AtFlags::SYMLINK_NOFOLLOW);
            }
            other => {
                skip(report, &raw, format!("unsupported entry type {:?}", other.as_byte() as char));
                continue;
            }
        }
        if record {
            report.side.0.insert(rel.clone(), side);
        } else {
            report.side.0.remove(&rel);
        }
        created.insert(rel);
    }
    // opaque directories: drop lower-layer entries, keep this layer's
    for dir in opaque {
        let dfd = match open_dir_in(root, &dir) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for name in fsutil::dir_names(&dfd)? {
            let child = rel_join(&dir, &String::from_utf8_lossy(&name));
            if !created.contains(&child) {
                remove_all_at(&dfd, &name)?;
                report.side.remove_tree(&child);
            } else {
                remove_not_created(&dfd, &child, &created, &mut report.side)?;
            }
        }
    }
    // directory modes and times last, deepest first (creating children changes mtimes)
    for (rel, a) in dirs.iter().rev() {
        let Ok(dfd) = open_dir_in(root, rel) else { continue };
        rustix::fs::fchmod(&dfd, Mode::from_raw_mode(a.mode))?;
        rustix::fs::futimens(&dfd, &times(a.mtime))?;
    }
    Ok(())
}

/// Inside an opaque directory, a directory created by this layer may still hold lower entries.
fn remove_not_created(dfd: &OwnedFd, rel: &str, created: &BTreeSet<String>, side: &mut SideTable) -> io::Result<()> {
    let (_, name) = split_parent(rel);
    let Ok(sub) = rustix::fs::openat(
        dfd,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Ok(());
    };
    for n in fsutil::dir_names(&sub)? {
        let child = rel_join(rel, &String::from_utf8_lossy(&n));
        if !created.contains(&child) {
            remove_all_at(&sub, &n)?;
            side.remove_tree(&child);
        } else {
            remove_not_created(&sub, &child, created, side)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn finish_fd(
    fd: &impl AsFd,
    ownership: Ownership,
    uid: u32,
    gid: u32,
    mode: u32,
    xattrs: &[(String, Vec<u8>)],
    side: &mut SideEntry,
    record: &mut bool,
) -> io::Result<()> {
    if ownership == Ownership::Apply {
        rustix::fs::fchown(fd, Some(uid_of(uid)), Some(gid_of(gid)))?;
    }
    // after chown, which clears setuid/setgid
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
    for (k, v) in xattrs {
        if let Err(e) = rustix::fs::fsetxattr(fd, k.as_str(), v, XattrFlags::empty()) {
            if ownership == Ownership::Apply && e != rustix::io::Errno::OPNOTSUPP {
                return Err(e.into());
            }
            side.xattrs.insert(k.clone(), hex::encode(v));
            *record = true;
        }
    }
    Ok(())
}

/// Extended attributes worth keeping in a container root filesystem.
pub fn keep_xattr(name: &str) -> bool {
    name == "security.capability"
        || (name.starts_with("user.")
            && !name.starts_with("user.overlay.")
            && !name.starts_with("user.containers.")
            && name != "user.rootlesscontainers")
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

fn uid_of(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}
fn gid_of(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

fn io_text(e: &io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_lowercase()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_names_like_the_docker_applier() {
        assert_eq!(clean_name("./etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(clean_name("/etc//passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(clean_name("a/../b").as_deref(), Some("b"));
        assert_eq!(clean_name("./").as_deref(), Some(""));
        assert_eq!(clean_name("../etc/passwd"), None);
        assert_eq!(clean_name("a/../../b"), None);
        assert!(keep_xattr("security.capability") && keep_xattr("user.x"));
        assert!(!keep_xattr("user.overlay.opaque") && !keep_xattr("security.selinux") && !keep_xattr("trusted.x"));
    }
}
