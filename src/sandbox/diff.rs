//! The layer a step produced: the snapshot from before the step compared with a walk after it,
//! written as a deterministic tar (PAX headers for long names and xattrs, entries in
//! depth-first byte order with whiteouts before their siblings, no user/group names, mtimes
//! clamped to `SOURCE_DATE_EPOCH`), gzip-compressed with [`crate::compress::GzipWriter`].
//!
//! Changes: added = only after; changed = any recorded field differs or ctime is past the
//! fence; deleted = only before → `.wh.NAME` when its parent is still a directory (never below
//! a deleted or replaced path). File content is read only for entries that go into the layer.
//! Hard links among the layer's entries become `TypeLink`s to the first name.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode};

use super::extract::{SideTable, keep_xattr};
use super::fsutil;
use super::rootfs::Rootfs;
use super::snapshot::{Meta, Snapshot, walk};
use crate::compress::GzipWriter;
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::error::{Error, Result};
use crate::image::media;

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
    let hashed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let gz = GzipWriter::new(hashed, opts.level, opts.threads).map_err(|e| Error::io("cannot write", tmp.path(), e))?;
    let mut sink = TarSink { gz, hasher: Hasher::new() };
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
        w.emit(&mut sink, c, m.as_ref())?;
    }
    let io_err = |e| Error::io("cannot write", tmp.path(), e);
    sink.write_all(&[0u8; 1024]).map_err(io_err)?;
    let diff_id = sink.hasher.finish();
    let hashed = sink.gz.finish().map_err(io_err)?;
    let digest = hashed.hasher.finish();
    let size = hashed.n;
    let file = hashed.inner.into_inner().map_err(|e| io_err(e.into_error()))?;
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

struct TarSink<W: Write> {
    gz: GzipWriter<W>,
    hasher: Hasher,
}

impl<W: Write> Write for TarSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.gz.write_compressible(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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

    fn emit<W: Write>(&mut self, w: &mut W, c: &Change, m: Option<&Meta>) -> Result<()> {
        let err = |p: &str, e: io::Error| Error::io("cannot add to the layer", &self.root_path.join(p), e);
        match (c, m) {
            (Change::Deleted(p), _) => {
                let (parent, name) = fsutil::split_parent(p);
                let wh = fsutil::rel_join(parent, &format!(".wh.{name}"));
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_size(0);
                h.set_mtime(self.mtime(0));
                write_entry(w, h, &wh, None, &[], &mut io::empty()).map_err(|e| err(p, e))?;
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

    fn entry<W: Write>(&mut self, w: &mut W, p: &str, m: &Meta) -> io::Result<()> {
        let (uid, gid) = self.owner(p, m);
        let mut h = tar::Header::new_ustar();
        h.set_mode(self.mode(p, m));
        h.set_uid(uid as u64);
        h.set_gid(gid as u64);
        h.set_mtime(self.mtime(m.mtime_ns));
        h.set_size(0);
        let xattrs = if m.file_type() == FileType::Symlink { Vec::new() } else { self.xattrs(p)? };
        match m.file_type() {
            FileType::Directory => {
                h.set_entry_type(tar::EntryType::Directory);
                write_entry(w, h, &format!("{p}/"), None, &xattrs, &mut io::empty())
            }
            FileType::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                let (parent, name) = fsutil::split_parent(p);
                let pfd = fsutil::open_dir_in(self.root, parent)?;
                let target = rustix::fs::readlinkat(&pfd, name, Vec::new())?;
                write_entry(w, h, p, Some(target.as_bytes()), &xattrs, &mut io::empty())
            }
            FileType::RegularFile => {
                if m.nlink > 1 {
                    if let Some(first) = self.links.get(&(m.dev, m.ino)) {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        return write_entry(w, h, p, Some(first.as_bytes()), &[], &mut io::empty());
                    }
                    self.links.insert((m.dev, m.ino), p.to_string());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(m.size);
                let fd = self.open_file(p, m)?;
                let mut f = std::fs::File::from(fd);
                let mut limited = (&mut f).take(m.size);
                let mut counted = CountingReader { inner: &mut limited, n: 0 };
                write_entry(w, h, p, None, &xattrs, &mut counted)?;
                if counted.n != m.size {
                    return Err(io::Error::other(format!(
                        "changed size while being read ({} of {} bytes)",
                        counted.n, m.size
                    )));
                }
                Ok(())
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                h.set_entry_type(match m.file_type() {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                h.set_device_major(rustix::fs::major(m.rdev))?;
                h.set_device_minor(rustix::fs::minor(m.rdev))?;
                write_entry(w, h, p, None, &xattrs, &mut io::empty())
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

struct CountingReader<'a, R: Read> {
    inner: &'a mut R,
    n: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// Writes one entry: a PAX header first when the name or link target does not fit the ustar
/// fields or there are xattrs, then the ustar header, then `size` bytes of `data`.
fn write_entry<W: Write>(
    w: &mut W,
    mut h: tar::Header,
    path: &str,
    link: Option<&[u8]>,
    xattrs: &[(String, Vec<u8>)],
    data: &mut dyn Read,
) -> io::Result<()> {
    let mut pax: Vec<u8> = Vec::new();
    let fits = |s: &[u8]| s.len() <= 100 && s.is_ascii();
    if !fits(path.as_bytes()) {
        pax_record(&mut pax, "path", path.as_bytes());
    }
    if let Some(l) = link
        && !fits(l)
    {
        pax_record(&mut pax, "linkpath", l);
    }
    for (k, v) in xattrs {
        pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
    }
    if !pax.is_empty() {
        let mut ph = tar::Header::new_ustar();
        ph.set_entry_type(tar::EntryType::XHeader);
        ph.set_mode(0o644);
        ph.set_uid(0);
        ph.set_gid(0);
        ph.set_mtime(h.mtime().unwrap_or(0));
        ph.set_size(pax.len() as u64);
        set_name(&mut ph, b"PaxHeader");
        ph.set_cksum();
        w.write_all(ph.as_bytes())?;
        w.write_all(&pax)?;
        pad(w, pax.len() as u64)?;
    }
    set_name(&mut h, &path.as_bytes()[..path.len().min(100)]);
    if let Some(l) = link {
        let n = l.len().min(100);
        let u = h.as_ustar_mut().expect("ustar");
        u.linkname = [0; 100];
        u.linkname[..n].copy_from_slice(&l[..n]);
    }
    h.set_cksum();
    w.write_all(h.as_bytes())?;
    let size = h.size()?;
    let n = io::copy(data, w)?;
    if n != size {
        // keep the archive well-formed for the caller's error path
        return Err(io::Error::other(format!("expected {size} bytes, read {n}")));
    }
    pad(w, size)
}

fn set_name(h: &mut tar::Header, name: &[u8]) {
    let u = h.as_ustar_mut().expect("ustar");
    u.name = [0; 100];
    u.name[..name.len()].copy_from_slice(name);
}

fn pad<W: Write>(w: &mut W, size: u64) -> io::Result<()> {
    let rem = (size % 512) as usize;
    if rem != 0 {
        w.write_all(&[0u8; 512][..512 - rem])?;
    }
    Ok(())
}

/// One PAX record: `"<len> <key>=<value>\n"`, where len counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
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
    fn pax_record_lengths_count_themselves() {
        let mut v = Vec::new();
        pax_record(&mut v, "path", b"a");
        assert_eq!(v, b"9 path=a\n"); // Go's archive/tar writes the same
        let mut v = Vec::new();
        pax_record(&mut v, "path", &[b'x'; 95]);
        let s = String::from_utf8(v.clone()).unwrap();
        let len: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, v.len());
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
