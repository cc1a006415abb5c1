//! Applying one uncompressed layer tar onto a directory ([`apply_layer`]), with OCI whiteout
//! semantics and every path resolved inside the root; see [`super::extract`] for the rules.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};

use super::extract::{ExtractReport, Ownership, SideEntry, SideTable, Skipped};
use super::fsutil::{self, errno_text, open_dir_in, rel_join, remove_all_at, split_parent};

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

/// Applies one (uncompressed) layer tar onto the directory open as `root`.
pub fn apply_layer(
    root: &OwnedFd,
    r: &mut dyn Read,
    ownership: Ownership,
    layer: usize,
    report: &mut ExtractReport,
) -> io::Result<()> {
    let mut ap =
        Applier { root, ownership, layer, report, created: BTreeSet::new(), opaque: Vec::new(), dirs: BTreeMap::new() };
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries()? {
        ap.entry(&mut entry?)?;
    }
    ap.clear_opaque_dirs()?;
    ap.finish_dirs()
}

struct DirAttrs {
    mode: u32,
    mtime: i64,
}

/// The header facts of an entry being placed.
struct Meta {
    kind: tar::EntryType,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// What placing an entry did.
enum Placed {
    /// Created; its side-table entry follows from `record`.
    Made,
    /// A hard link: it shares its target's side-table facts.
    Linked,
    /// Not created, for this reason.
    Skipped(String),
}

/// The state of one layer's application.
struct Applier<'a> {
    root: &'a OwnedFd,
    ownership: Ownership,
    layer: usize,
    report: &'a mut ExtractReport,
    /// Paths this layer created (whiteouts and opaque directories spare them).
    created: BTreeSet<String>,
    /// Directories marked opaque by this layer.
    opaque: Vec<String>,
    /// Directory modes and times, set last.
    dirs: BTreeMap<String, DirAttrs>,
}

impl Applier<'_> {
    fn skip(&mut self, path: &str, reason: String) {
        tracing::debug!("layer {}: skipped {path}: {reason}", self.layer);
        self.report.skipped.push(Skipped { layer: self.layer, path: path.to_string(), reason });
    }

    /// One tar entry: a whiteout, the root's attributes, or something to place.
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> io::Result<()> {
        self.report.entries += 1;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Ok(name) = std::str::from_utf8(&entry.path_bytes()).map(str::to_string) else {
            self.skip(&raw, "the name is not valid UTF-8".into());
            return Ok(());
        };
        let Some(rel) = clean_name(&name) else {
            self.skip(&raw, "the name points outside the root (`..`)".into());
            return Ok(());
        };
        let (parent, base) = split_parent(&rel);
        if let Some(target) = base.strip_prefix(".wh.") {
            return self.whiteout(&raw, parent, target);
        }
        if rel.is_empty() {
            // the root directory itself: only its attributes
            if entry.header().entry_type().is_dir() {
                let h = entry.header();
                self.dirs.insert(String::new(), DirAttrs { mode: h.mode()? & 0o7777, mtime: h.mtime()? as i64 });
            }
            return Ok(());
        }
        self.place(entry, &raw, rel)
    }

    /// `.wh.NAME` removes `NAME` of lower layers; `.wh..wh..opq` marks `parent` opaque.
    fn whiteout(&mut self, raw: &str, parent: &str, target: &str) -> io::Result<()> {
        if target == ".wh..opq" {
            self.opaque.push(parent.to_string());
        } else if target.is_empty() || target == "." || target == ".." {
            self.skip(raw, "invalid whiteout name".into());
        } else {
            let victim = rel_join(parent, target);
            if !self.created.contains(&victim) {
                match open_dir_in(self.root, parent) {
                    Ok(pfd) => remove_all_at(&pfd, target.as_bytes())?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                self.report.side.remove_tree(&victim);
            }
        }
        Ok(())
    }

    /// Creates the entry at `rel` (replacing what is there) and notes it in the side table.
    fn place<R: Read>(&mut self, entry: &mut tar::Entry<R>, raw: &str, rel: String) -> io::Result<()> {
        let (parent, base) = split_parent(&rel);
        let h = entry.header();
        let m = Meta {
            kind: h.entry_type(),
            mode: h.mode()? & 0o7777,
            uid: h.uid()? as u32,
            gid: h.gid()? as u32,
            mtime: h.mtime()? as i64,
        };
        let pfd = match fsutil::mkdir_all_in(self.root, parent, 0o755) {
            Ok(fd) => fd,
            Err(e) => {
                self.skip(raw, format!("cannot create its parent directory: {}", errno_text(&e)));
                return Ok(());
            }
        };
        // replace what is there, except a directory by a directory
        let existing = rustix::fs::statat(&pfd, base, AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_dir = existing.as_ref().is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        if existing.is_some() && !(m.kind.is_dir() && existing_dir) {
            remove_all_at(&pfd, base.as_bytes())?;
            self.report.side.remove_tree(&rel);
        }
        let xattrs = kept_xattrs(entry)?;
        let mut side = SideEntry { uid: m.uid, gid: m.gid, ..Default::default() };
        let mut record = self.ownership == Ownership::Record && (m.uid != 0 || m.gid != 0);
        let mut out = Out { xattrs: &xattrs, side: &mut side, record: &mut record };
        let placed = match m.kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => self.file(&pfd, base, entry, &m, &mut out)?,
            tar::EntryType::Directory => self.dir(&pfd, base, &rel, existing_dir, &m, &mut out)?,
            tar::EntryType::Symlink => self.symlink(&pfd, base, entry, &m)?,
            tar::EntryType::Link => self.hard_link(&pfd, base, entry, &rel),
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let h = entry.header();
                let device = (h.device_major()?.unwrap_or(0), h.device_minor()?.unwrap_or(0));
                self.node(&pfd, base, &m, device)?
            }
            other => Placed::Skipped(format!("unsupported entry type {:?}", other.as_byte() as char)),
        };
        match placed {
            Placed::Skipped(reason) => {
                self.skip(raw, reason);
                return Ok(());
            }
            Placed::Linked => {}
            Placed::Made if record => {
                self.report.side.0.insert(rel.clone(), side);
            }
            Placed::Made => {
                self.report.side.0.remove(&rel);
            }
        }
        self.created.insert(rel);
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        pfd: &OwnedFd,
        base: &str,
        entry: &mut tar::Entry<R>,
        m: &Meta,
        out: &mut Out,
    ) -> io::Result<Placed> {
        let on_disk = if self.ownership == Ownership::Record { m.mode | 0o400 } else { m.mode };
        let fd = rustix::fs::openat(
            pfd,
            base,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut f = std::fs::File::from(fd);
        io::copy(entry, &mut f)?;
        finish_fd(&f, self.ownership, m.uid, m.gid, on_disk, out)?;
        out.widened(on_disk, m.mode);
        rustix::fs::futimens(&f, &times(m.mtime))?;
        Ok(Placed::Made)
    }

    fn dir(
        &mut self,
        pfd: &OwnedFd,
        base: &str,
        rel: &str,
        existing_dir: bool,
        m: &Meta,
        out: &mut Out,
    ) -> io::Result<Placed> {
        if !existing_dir {
            rustix::fs::mkdirat(pfd, base, Mode::from_raw_mode(0o700))?;
        }
        let dfd = rustix::fs::openat(
            pfd,
            base,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let on_disk = if self.ownership == Ownership::Record { m.mode | 0o700 } else { m.mode };
        finish_fd(&dfd, self.ownership, m.uid, m.gid, 0o700, out)?;
        out.widened(on_disk, m.mode);
        self.dirs.insert(rel.to_string(), DirAttrs { mode: on_disk, mtime: m.mtime });
        Ok(Placed::Made)
    }

    fn symlink<R: Read>(&mut self, pfd: &OwnedFd, base: &str, entry: &tar::Entry<R>, m: &Meta) -> io::Result<Placed> {
        let Some(target) = entry.link_name_bytes() else {
            return Ok(Placed::Skipped("symlink without a target".into()));
        };
        rustix::fs::symlinkat(target.as_ref(), pfd, base)?;
        if self.ownership == Ownership::Apply {
            rustix::fs::chownat(pfd, base, Some(uid_of(m.uid)), Some(gid_of(m.gid)), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        let _ = rustix::fs::utimensat(pfd, base, &times(m.mtime), AtFlags::SYMLINK_NOFOLLOW);
        Ok(Placed::Made)
    }

    fn hard_link<R: Read>(&mut self, pfd: &OwnedFd, base: &str, entry: &tar::Entry<R>, rel: &str) -> Placed {
        let Some(target) = entry.link_name_bytes() else {
            return Placed::Skipped("hard link without a target".into());
        };
        let Some(t) = std::str::from_utf8(&target).ok().and_then(clean_name).filter(|t| !t.is_empty()) else {
            return Placed::Skipped("the hard link target points outside the root".into());
        };
        let (tp, tn) = split_parent(&t);
        let linked = open_dir_in(self.root, tp)
            .and_then(|tfd| rustix::fs::linkat(&tfd, tn, pfd, base, AtFlags::empty()).map_err(io::Error::from));
        if let Err(e) = linked {
            return Placed::Skipped(format!("cannot link to {t}: {}", errno_text(&e)));
        }
        // a hard link shares the target's inode and side-table facts
        if let Some(s) = self.report.side.get(&t).cloned() {
            self.report.side.0.insert(rel.to_string(), s);
        }
        Placed::Linked
    }

    /// A character or block device (root only) or a FIFO.
    fn node(&mut self, pfd: &OwnedFd, base: &str, m: &Meta, (major, minor): (u32, u32)) -> io::Result<Placed> {
        let (ft, what) = match m.kind {
            tar::EntryType::Char => (FileType::CharacterDevice, "character device"),
            tar::EntryType::Block => (FileType::BlockDevice, "block device"),
            _ => (FileType::Fifo, "FIFO"),
        };
        if ft != FileType::Fifo && self.ownership == Ownership::Record {
            return Ok(Placed::Skipped(format!("{what} {major}:{minor} needs root to create")));
        }
        let dev = rustix::fs::makedev(major, minor);
        if let Err(e) = rustix::fs::mknodat(pfd, base, ft, Mode::from_raw_mode(m.mode), dev) {
            return Ok(Placed::Skipped(format!(
                "cannot create {what} {major}:{minor}: {}",
                errno_text(io::Error::from(e))
            )));
        }
        if self.ownership == Ownership::Apply {
            rustix::fs::chownat(pfd, base, Some(uid_of(m.uid)), Some(gid_of(m.gid)), AtFlags::SYMLINK_NOFOLLOW)?;
            rustix::fs::chmodat(pfd, base, Mode::from_raw_mode(m.mode), AtFlags::empty())?;
        }
        let _ = rustix::fs::utimensat(pfd, base, &times(m.mtime), AtFlags::SYMLINK_NOFOLLOW);
        Ok(Placed::Made)
    }

    /// Opaque directories: drop lower-layer entries, keep this layer's.
    fn clear_opaque_dirs(&mut self) -> io::Result<()> {
        for dir in std::mem::take(&mut self.opaque) {
            let dfd = match open_dir_in(self.root, &dir) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for name in fsutil::dir_names(&dfd)? {
                let child = rel_join(&dir, &String::from_utf8_lossy(&name));
                if !self.created.contains(&child) {
                    remove_all_at(&dfd, &name)?;
                    self.report.side.remove_tree(&child);
                } else {
                    remove_not_created(&dfd, &child, &self.created, &mut self.report.side)?;
                }
            }
        }
        Ok(())
    }

    /// Directory modes and times last, deepest first (creating children changes mtimes).
    fn finish_dirs(&self) -> io::Result<()> {
        for (rel, a) in self.dirs.iter().rev() {
            let Ok(dfd) = open_dir_in(self.root, rel) else { continue };
            rustix::fs::fchmod(&dfd, Mode::from_raw_mode(a.mode))?;
            rustix::fs::futimens(&dfd, &times(a.mtime))?;
        }
        Ok(())
    }
}

/// The entry's extended attributes worth keeping (`SCHILY.xattr.*` PAX records).
fn kept_xattrs<R: Read>(entry: &mut tar::Entry<R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut xattrs = Vec::new();
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
    Ok(xattrs)
}

/// Where a placed file or directory records what the filesystem does not show.
struct Out<'a> {
    xattrs: &'a [(String, Vec<u8>)],
    side: &'a mut SideEntry,
    record: &'a mut bool,
}

impl Out<'_> {
    /// The mode on disk had to be wider than the layer's: remember the layer's.
    fn widened(&mut self, on_disk: u32, mode: u32) {
        if on_disk != mode {
            self.side.mode = Some(mode);
            *self.record = true;
        }
    }
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

/// Owner (root only), mode and extended attributes of a created file or directory.
fn finish_fd(fd: &impl AsFd, ownership: Ownership, uid: u32, gid: u32, mode: u32, out: &mut Out) -> io::Result<()> {
    if ownership == Ownership::Apply {
        rustix::fs::fchown(fd, Some(uid_of(uid)), Some(gid_of(gid)))?;
    }
    // after chown, which clears setuid/setgid
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
    for (k, v) in out.xattrs {
        if let Err(e) = rustix::fs::fsetxattr(fd, k.as_str(), v, XattrFlags::empty()) {
            if ownership == Ownership::Apply && e != rustix::io::Errno::OPNOTSUPP {
                return Err(e.into());
            }
            out.side.xattrs.insert(k.clone(), hex::encode(v));
            *out.record = true;
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

    fn tar_of(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, uid) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_uid(*uid as u64);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            let body: &[u8] = match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_link_name(data).unwrap();
                    b""
                }
                _ => data.as_bytes(),
            };
            h.set_size(body.len() as u64);
            // raw names: the builder would refuse `..`
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, body).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn applies_layers_with_whiteouts_links_and_recorded_owners() {
        use tar::EntryType as T;
        let dir = tempfile::tempdir().unwrap();
        let root = fsutil::open_root(dir.path()).unwrap();
        let mut report = ExtractReport::default();
        let lower = tar_of(&[
            ("etc/", T::Directory, "", 0),
            ("etc/a", T::Regular, "a", 0),
            ("etc/gone", T::Regular, "x", 0),
            ("opq/", T::Directory, "", 0),
            ("opq/old", T::Regular, "old", 0),
            ("home/u/f", T::Regular, "u", 1000),
            ("../escape", T::Regular, "no", 0),
        ]);
        apply_layer(&root, &mut lower.as_slice(), Ownership::Record, 0, &mut report).unwrap();
        use std::os::unix::fs::MetadataExt;
        let mtime = |r: &str| std::fs::metadata(dir.path().join(r)).unwrap().mtime();
        assert_eq!(mtime("etc"), 1_700_000_000, "directory times are set after their entries");
        let upper = tar_of(&[
            ("etc/.wh.gone", T::Regular, "", 0),
            ("opq/new", T::Regular, "new", 0),
            ("opq/.wh..wh..opq", T::Regular, "", 0),
            ("link", T::Link, "home/u/f", 0),
            ("sym", T::Symlink, "/etc/a", 0),
        ]);
        apply_layer(&root, &mut upper.as_slice(), Ownership::Record, 1, &mut report).unwrap();
        let p = |r: &str| dir.path().join(r);
        assert_eq!(std::fs::read_to_string(p("etc/a")).unwrap(), "a");
        assert!(!p("etc/gone").exists(), "whited out");
        assert!(!p("opq/old").exists() && p("opq/new").exists(), "opaque keeps this layer's entries only");
        assert_eq!(std::fs::read_link(p("sym")).unwrap().to_str(), Some("/etc/a"));
        assert_eq!(std::fs::read_to_string(p("link")).unwrap(), "u");
        assert_eq!(report.side.get("home/u/f").map(|s| s.uid), Some(1000), "the owner is recorded");
        assert_eq!(report.side.get("link").map(|s| s.uid), Some(1000), "a hard link shares its target's facts");
        assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
        assert!(report.skipped[0].reason.contains("outside the root"));
        assert_eq!(report.entries, 12);
    }
}
