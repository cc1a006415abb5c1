//! The layer a step produced: the snapshot from before the step compared with a walk after it,
//! written as a deterministic tar (the header policy of [`crate::tar::header`]: PAX records for
//! xattrs and what ustar cannot hold; entries in depth-first byte order with whiteouts before
//! their siblings, no user/group names, mtimes clamped to `SOURCE_DATE_EPOCH`),
//! gzip-compressed through a [`LayerSink`].
//!
//! Changes: added = only after; changed = any recorded field differs or ctime is past the
//! fence; deleted = only before → `.wh.NAME` when its parent is still a directory (never below
//! a deleted or replaced path). File content is read only for entries that go into the layer.
//! Hard links among the layer's entries become `TypeLink`s to the first name.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufWriter};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode};

use super::extract::{SideTable, keep_xattr};
use super::fsutil;
use super::rootfs::Rootfs;
use super::snapshot::{Meta, Snapshot, walk};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::media;
use crate::tar::{Content, CopyError, Header, LayerBlob, LayerSink, Sink, TarWriter};

/// How tar ownership is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnerPolicy {
    /// Ownership on disk is real (root sandbox).
    #[default]
    Real,
    /// Everything on disk belongs to `host_uid`/`host_gid`, which is root inside the sandbox:
    /// entries get the base's recorded owner (side table) when they existed before, else
    /// `new_files` (a `USER` that could not be switched to), else 0.
    Flatten { host_uid: u32, host_gid: u32, new_files: Option<(u32, u32)> },
}

#[derive(Debug, Clone)]
pub struct LayerOptions {
    /// Clamp mtimes to this (SOURCE_DATE_EPOCH).
    pub epoch: Option<u64>,
    pub owner: OwnerPolicy,
    /// Directory for the compressed layer (named by its digest).
    pub out_dir: PathBuf,
    pub level: u32,
    pub threads: usize,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            epoch: None,
            owner: OwnerPolicy::Real,
            out_dir: std::env::temp_dir(),
            level: 6,
            threads: crate::compress::default_threads(),
        }
    }
}

/// A layer produced by a step.
#[derive(Debug, Clone)]
pub struct NewLayer {
    /// The gzip blob.
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    pub media_type: &'static str,
    /// Paths in the layer (entries, without whiteouts) and whiteouts.
    pub entries: usize,
    pub whiteouts: usize,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(String),
    Modified(String),
    Deleted(String),
}

/// The changes since `pre`, in layer order (deletions only where a whiteout is due).
pub fn changes(pre: &Snapshot, rootfs: &Rootfs) -> Result<Vec<Change>> {
    let post = walk(rootfs.path())?;
    Ok(compute(pre, &post).into_iter().map(|(c, _)| c).collect())
}

fn changed(a: &Meta, b: &Meta, fence: i128) -> bool {
    a.ino != b.ino
        || a.dev != b.dev
        || a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.size != b.size
        || a.nlink != b.nlink
        || a.rdev != b.rdev
        || a.mtime_ns != b.mtime_ns
        || a.ctime_ns != b.ctime_ns
        || b.ctime_ns > fence
}

fn compute(pre: &Snapshot, post: &BTreeMap<String, Meta>) -> Vec<(Change, Option<Meta>)> {
    let mut out = Vec::new();
    for (p, m) in post {
        match pre.entries.get(p) {
            None => out.push((Change::Added(p.clone()), Some(*m))),
            Some(old) if changed(old, m, pre.fence_ns) => out.push((Change::Modified(p.clone()), Some(*m))),
            _ => {}
        }
    }
    for p in pre.entries.keys() {
        if post.contains_key(p) {
            continue;
        }
        let (parent, _) = fsutil::split_parent(p);
        let parent_is_dir = parent.is_empty() || post.get(parent).is_some_and(|m| m.is_dir());
        if parent_is_dir {
            out.push((Change::Deleted(p.clone()), None));
        }
    }
    out.sort_by(|a, b| order_key(&a.0).cmp(&order_key(&b.0)));
    out
}

/// Depth-first order: components compared bytewise, a whiteout before its siblings.
fn order_key(c: &Change) -> Vec<(u8, &[u8])> {
    let (p, wh) = match c {
        Change::Added(p) | Change::Modified(p) => (p, false),
        Change::Deleted(p) => (p, true),
    };
    let comps: Vec<&str> = p.split('/').collect();
    let n = comps.len();
    comps.into_iter().enumerate().map(|(i, c)| (if wh && i + 1 == n { 0 } else { 1 }, c.as_bytes())).collect()
}

/// Writes the layer for the changes since `pre`.
pub fn layer(pre: &Snapshot, rootfs: &Rootfs, opts: &LayerOptions) -> Result<NewLayer> {
    let t = std::time::Instant::now();
    let post = walk(rootfs.path())?;
    let list = compute(pre, &post);
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io("cannot create", &opts.out_dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".layer-")
        .tempfile_in(&opts.out_dir)
        .map_err(|e| Error::io("cannot create a temporary file in", &opts.out_dir, e))?;
    crate::atomic::register(tmp.path());
    let file = tmp.reopen().map_err(|e| Error::io("cannot open", tmp.path(), e))?;
    let io_err = |e| Error::io("cannot write", tmp.path(), e);
    let mut sink = LayerSink::new(BufWriter::with_capacity(1 << 20, file), opts.level, opts.threads).map_err(io_err)?;
    let mut tw = TarWriter::new(&mut sink);
    let root = fsutil::open_root(rootfs.path()).map_err(|e| Error::io("cannot open", rootfs.path(), e))?;
    let mut w = Writer {
        root: &root,
        root_path: rootfs.path(),
        side: rootfs.side_table(),
        pre,
        opts,
        links: HashMap::new(),
        entries: 0,
        whiteouts: 0,
    };
    for (c, m) in &list {
        w.emit(&mut tw, c, m.as_ref())?;
    }
    tw.finish().map_err(io_err)?;
    let LayerBlob { diff_id, digest, size, inner } = sink.finish().map_err(io_err)?;
    let file = inner.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    let dest = opts.out_dir.join(digest.hex());
    crate::atomic::unregister(tmp.path());
    tmp.persist(&dest).map_err(|e| Error::io("cannot store the layer at", &dest, e.error))?;
    tracing::info!(
        "layer {}: {} entries, {} whiteouts, {} bytes in {:.2}s",
        digest.short(),
        w.entries,
        w.whiteouts,
        size,
        t.elapsed().as_secs_f64()
    );
    Ok(NewLayer {
        path: dest,
        digest,
        size,
        diff_id,
        media_type: media::OCI_LAYER_GZIP,
        entries: w.entries,
        whiteouts: w.whiteouts,
    })
}

struct Writer<'a> {
    root: &'a OwnedFd,
    root_path: &'a Path,
    side: &'a SideTable,
    pre: &'a Snapshot,
    opts: &'a LayerOptions,
    /// (dev, ino) → first path in the layer
    links: HashMap<(u64, u64), String>,
    entries: usize,
    whiteouts: usize,
}

impl Writer<'_> {
    fn mtime(&self, ns: i128) -> u64 {
        let s = if ns < 0 { 0 } else { (ns / 1_000_000_000) as u64 };
        match self.opts.epoch {
            Some(e) => s.min(e),
            None => s,
        }
    }

    fn owner(&self, path: &str, m: &Meta) -> (u32, u32) {
        match self.opts.owner {
            OwnerPolicy::Real => (m.uid, m.gid),
            OwnerPolicy::Flatten { new_files, .. } => {
                let existed = self.pre.entries.contains_key(path);
                if existed && let Some(s) = self.side.get(path) {
                    return (s.uid, s.gid);
                }
                if !existed && let Some(u) = new_files {
                    return u;
                }
                // the calling user is root inside; any other id cannot have been set
                (0, 0)
            }
        }
    }

    fn mode(&self, path: &str, m: &Meta) -> u32 {
        let on_disk = m.mode & 0o7777;
        if let OwnerPolicy::Flatten { .. } = self.opts.owner
            && let (Some(s), Some(old)) = (self.side.get(path), self.pre.entries.get(path))
            && let Some(orig) = s.mode
            && old.mode == m.mode
        {
            return orig;
        }
        on_disk
    }

    fn emit<S: Sink>(&mut self, w: &mut TarWriter<S>, c: &Change, m: Option<&Meta>) -> Result<()> {
        let err = |p: &str, e: io::Error| Error::io("cannot add to the layer", &self.root_path.join(p), e);
        match (c, m) {
            (Change::Deleted(p), _) => {
                let (parent, name) = fsutil::split_parent(p);
                let wh = fsutil::rel_join(parent, &format!(".wh.{name}"));
                let h = Header { mtime: self.mtime(0), ..Header::file(&wh, 0, 0o644) };
                w.empty(&h).map_err(|e| err(p, e))?;
                self.whiteouts += 1;
            }
            (Change::Added(p) | Change::Modified(p), Some(m)) => {
                if let Some(name) = p.rsplit('/').next()
                    && name.starts_with(".wh.")
                {
                    return Err(Error::input(format!(
                        "the step created /{p}: names starting with .wh. are reserved for whiteouts in image layers"
                    )));
                }
                self.entry(w, p, m).map_err(|e| err(p, e))?;
                self.entries += 1;
            }
            _ => {}
        }
        Ok(())
    }

    fn entry<S: Sink>(&mut self, w: &mut TarWriter<S>, p: &str, m: &Meta) -> io::Result<()> {
        use ::tar::EntryType;
        let (uid, gid) = self.owner(p, m);
        let xattrs = if m.file_type() == FileType::Symlink { Vec::new() } else { self.xattrs(p)? };
        let h = Header {
            mode: self.mode(p, m),
            uid: uid.into(),
            gid: gid.into(),
            mtime: self.mtime(m.mtime_ns),
            xattrs: &xattrs,
            ..Header::new(p, EntryType::Regular)
        };
        match m.file_type() {
            FileType::Directory => w.empty(&Header { name: &format!("{p}/"), kind: EntryType::Directory, ..h }),
            FileType::Symlink => {
                let (parent, name) = fsutil::split_parent(p);
                let pfd = fsutil::open_dir_in(self.root, parent)?;
                let target = rustix::fs::readlinkat(&pfd, name, Vec::new())?;
                w.empty(&Header { kind: EntryType::Symlink, link: target.as_bytes(), ..h })
            }
            FileType::RegularFile => {
                if m.nlink > 1 {
                    if let Some(first) = self.links.get(&(m.dev, m.ino)) {
                        let first = first.clone();
                        return w.empty(&Header { kind: EntryType::Link, link: first.as_bytes(), xattrs: &[], ..h });
                    }
                    self.links.insert((m.dev, m.ino), p.to_string());
                }
                w.header(&Header { size: m.size, ..h })?;
                let mut f = std::fs::File::from(self.open_file(p, m)?);
                w.copy(&mut f, m.size, Content::Compressible, &|_| {}).map_err(|e| match e {
                    CopyError::Short(left) => io::Error::other(format!(
                        "changed size while being read ({} of {} bytes)",
                        m.size - left,
                        m.size
                    )),
                    CopyError::Long => io::Error::other("grew while being read"),
                    CopyError::Read(e) | CopyError::Write(e) => e,
                })
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let kind = match m.file_type() {
                    FileType::CharacterDevice => EntryType::Char,
                    FileType::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let device = Some((rustix::fs::major(m.rdev), rustix::fs::minor(m.rdev)));
                w.empty(&Header { kind, device, ..h })
            }
            // sockets cannot be stored in a layer
            _ => {
                tracing::debug!("skipping socket /{p}");
                Ok(())
            }
        }
    }

    fn open_file(&self, p: &str, m: &Meta) -> io::Result<OwnedFd> {
        match fsutil::open_file_beneath(self.root, p) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                // rootless: a file the step made unreadable (mode 000); we own it
                let (parent, name) = fsutil::split_parent(p);
                let pfd = fsutil::open_dir_in(self.root, parent)?;
                rustix::fs::chmodat(&pfd, name, Mode::from_raw_mode((m.mode & 0o7777) | 0o400), AtFlags::empty())?;
                let fd = fsutil::open_file_beneath(self.root, p);
                rustix::fs::chmodat(&pfd, name, Mode::from_raw_mode(m.mode & 0o7777), AtFlags::empty())?;
                fd
            }
            r => r,
        }
    }

    fn xattrs(&self, p: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
        let full = self.root_path.join(p);
        let mut out = Vec::new();
        let mut names = vec![0u8; 4096];
        let n = match rustix::fs::llistxattr(&full, &mut names) {
            Ok(n) => n,
            Err(rustix::io::Errno::OPNOTSUPP) => 0,
            Err(e) => return Err(e.into()),
        };
        for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
            let Ok(name) = std::str::from_utf8(name) else { continue };
            if !keep_xattr(name) {
                continue;
            }
            let mut val = vec![0u8; 4096];
            let k = rustix::fs::lgetxattr(&full, name, &mut val)?;
            val.truncate(k);
            if name == "security.capability" {
                val = caps_v2(&val);
            }
            out.push((name.to_string(), val));
        }
        // attributes recorded at extraction that the filesystem could not take
        if let OwnerPolicy::Flatten { .. } = self.opts.owner
            && let Some(s) = self.side.get(p)
            && self.pre.entries.contains_key(p)
        {
            for (k, v) in &s.xattrs {
                if !out.iter().any(|(n, _)| n == k)
                    && let Ok(v) = hex::decode(v)
                {
                    out.push((k.clone(), v));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// `security.capability` as seen from outside a user namespace is v3 with the namespace's root
/// uid; images carry v2 (no root id).
pub fn caps_v2(v: &[u8]) -> Vec<u8> {
    if v.len() == 24 && v[3] == 0x03 {
        let mut out = v[..20].to_vec();
        out[3] = 0x02;
        return out;
    }
    v.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ino: u64, dir: bool) -> Meta {
        Meta {
            dev: 1,
            ino,
            mode: if dir { 0o040755 } else { 0o100644 },
            uid: 0,
            gid: 0,
            size: 0,
            nlink: 1,
            rdev: 0,
            mtime_ns: 0,
            ctime_ns: 0,
        }
    }

    #[test]
    fn whiteouts_only_for_topmost_deletions_and_before_siblings() {
        let mut pre = BTreeMap::new();
        for (p, d) in [
            ("a", true),
            ("a/b", true),
            ("a/b/c", false),
            ("a/z", false),
            ("keep", true),
            ("keep/gone", false),
            ("f", true),
            ("f/x", false),
        ] {
            pre.insert(p.to_string(), meta(p.len() as u64 * 7 + 1, d));
        }
        let pre = Snapshot { entries: pre, fence_ns: 10 };
        let mut post = BTreeMap::new();
        // a/ deleted entirely; keep/ stays (its mtime changes); f became a file
        let mut keep = meta(8, true);
        keep.mtime_ns = 5;
        post.insert("keep".to_string(), keep);
        post.insert("keep/-new".to_string(), meta(100, false));
        post.insert("f".to_string(), meta(200, false));
        let got: Vec<Change> = compute(&pre, &post).into_iter().map(|(c, _)| c).collect();
        assert_eq!(
            got,
            vec![
                Change::Deleted("a".into()),
                Change::Modified("f".into()),
                Change::Modified("keep".into()),
                Change::Deleted("keep/gone".into()),
                Change::Added("keep/-new".into()),
            ]
        );
    }

    #[test]
    fn ctime_after_the_fence_is_a_change_even_when_everything_else_matches() {
        let mut a = meta(1, false);
        a.ctime_ns = 5;
        let mut b = a;
        assert!(!changed(&a, &b, 10));
        b.ctime_ns = 11;
        a.ctime_ns = 11;
        assert!(changed(&a, &b, 10));
    }

    /// A RUN layer's tar for a small tree: the header policy (ustar split, PAX for non-ASCII
    /// names, long link targets and xattrs), a hard link, a whiteout, owners and modes.
    #[test]
    fn run_layer_bytes_are_golden() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let long_dir = format!("opt/{}", "d".repeat(120));
        for dir in ["opt", "bin", long_dir.as_str()] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (f, data) in [("bin/ping", &b"ping"[..]), ("opt/café.txt", b"caf\xc3\xa9"), ("opt/a", b"a\n")] {
            std::fs::write(root.join(f), data).unwrap();
        }
        std::fs::write(root.join(&long_dir).join("f"), b"long").unwrap();
        std::fs::hard_link(root.join("opt/a"), root.join("opt/b")).unwrap();
        symlink(format!("/{}/{}", "t".repeat(60), "u".repeat(60)), root.join("opt/link")).unwrap();
        for (p, mode) in [("opt", 0o755), ("bin", 0o755), ("bin/ping", 0o4755), ("opt/a", 0o600)] {
            std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        for p in ["opt/café.txt", &format!("{long_dir}/f")] {
            std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(root.join(&long_dir), std::fs::Permissions::from_mode(0o750)).unwrap();
        // bin/ping existed (changed since) with a capability the filesystem could not take
        let cap = hex::encode([1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let entry = super::super::extract::SideEntry {
            uid: 0,
            gid: 11,
            xattrs: [("security.capability".to_string(), cap)].into(),
            ..Default::default()
        };
        let side = SideTable([("bin/ping".to_string(), entry)].into());
        let mut pre = BTreeMap::new();
        pre.insert("bin".to_string(), meta(1, true));
        pre.insert("bin/ping".to_string(), meta(2, false));
        pre.insert("bin/gone".to_string(), meta(3, false));
        let pre = Snapshot { entries: pre, fence_ns: 0 };
        let opts = LayerOptions {
            epoch: Some(1_600_000_000),
            owner: OwnerPolicy::Flatten { host_uid: 0, host_gid: 0, new_files: Some((7, 8)) },
            ..Default::default()
        };
        let fd = fsutil::open_root(root).unwrap();
        let mut w = Writer {
            root: &fd,
            root_path: root,
            side: &side,
            pre: &pre,
            opts: &opts,
            links: HashMap::new(),
            entries: 0,
            whiteouts: 0,
        };
        let mut sink = crate::tar::Plain(Vec::new());
        let mut tw = TarWriter::new(&mut sink);
        for (c, m) in compute(&pre, &walk(root).unwrap()) {
            w.emit(&mut tw, &c, m.as_ref()).unwrap();
        }
        tw.finish().unwrap();
        assert_eq!((w.entries, w.whiteouts), (9, 1));
        crate::tar::golden::check("run-layer.tar", &sink.0);
    }

    #[test]
    fn converts_v3_capabilities_to_v2() {
        let mut v3 = vec![0x01, 0, 0, 0x03];
        v3.extend_from_slice(&[0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        v3.extend_from_slice(&65534u32.to_le_bytes());
        let v2 = caps_v2(&v3);
        assert_eq!(v2.len(), 20);
        assert_eq!(&v2[..4], &[0x01, 0, 0, 0x02]);
        assert_eq!(caps_v2(&v2), v2);
    }
}
