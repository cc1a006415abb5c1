//! Random access to the entries of a tar archive given as input (docker-archive, oci-archive,
//! SPX): one pass records every entry's offset and size, paths are normalised and checked
//! (absolute paths, `..`, NUL, duplicates and truncation are errors), and links are resolved
//! only within the archive. PAX records and GNU long names are capped at [`MAX_HEADER_BYTES`]
//! per entry ([`HeaderGuard`], shared with the streaming readers). A compressed archive (gzip, bzip2, xz) is first decompressed into
//! an anonymous temporary file that the kernel removes even if the process is killed.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use super::read_policy;
use crate::compress::{self, Compression, Limits};
use crate::error::{Error, Result};

/// Entries beyond this count are refused (a bomb guard).
const MAX_ENTRIES: usize = 2_000_000;
/// Link hops beyond this count mean a cycle.
const MAX_HOPS: usize = 40;
/// What the tar reader may consume between two entries: headers, PAX records and GNU long
/// names (Go caps PAX headers at 1 MiB after CVE-2022-2879; the tar crate has no cap).
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Wraps the reader under `tar::Archive` and fails it when more than [`MAX_HEADER_BYTES`] are
/// read while the archive looks for the next entry. Arm it before each `next()`, disarm it
/// once an entry is returned (its content is not counted); see [`HeaderGuard::next`].
pub struct HeaderGuard<R> {
    inner: R,
    left: Rc<Cell<Option<u64>>>,
}

/// The switch of a [`HeaderGuard`].
#[derive(Clone)]
pub struct GuardSwitch(Rc<Cell<Option<u64>>>);

impl<R> HeaderGuard<R> {
    pub fn new(inner: R) -> (Self, GuardSwitch) {
        let left = Rc::new(Cell::new(None));
        (HeaderGuard { inner, left: left.clone() }, GuardSwitch(left))
    }
}

impl GuardSwitch {
    /// `entries.next()` with the guard armed.
    pub fn next<I: Iterator>(&self, entries: &mut I) -> Option<I::Item> {
        self.0.set(Some(MAX_HEADER_BYTES));
        let e = entries.next();
        self.0.set(None);
        e
    }
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(left) = self.left.get() else { return self.inner.read(buf) };
        let k = self.inner.read(buf)?;
        if k as u64 > left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "more than {} MiB of tar headers (PAX records, GNU long names) for one entry",
                    MAX_HEADER_BYTES >> 20
                ),
            ));
        }
        self.left.set(Some(left - k as u64));
        Ok(k)
    }
}

impl<R: Seek> Seek for HeaderGuard<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File { offset: u64, size: u64 },
    Dir,
    Symlink(String),
    Hardlink(String),
    Other,
}

/// An indexed tar archive.
#[derive(Debug)]
pub struct TarArchive {
    display: String,
    file: Arc<File>,
    entries: BTreeMap<String, Entry>,
    /// Entry names in archive order.
    order: Vec<String>,
    outer: Compression,
}

impl TarArchive {
    /// Opens and indexes `path` with the default decompression limits. `what` names the archive
    /// kind in errors ("docker archive").
    pub fn open(path: &Path, what: &str) -> Result<Self> {
        Self::open_limited(path, what, Limits::default())
    }

    /// Opens and indexes `path`; a compressed archive may expand only within `limits` (the
    /// anonymous temporary file it is decompressed into goes with the error).
    pub fn open_limited(path: &Path, what: &str, limits: Limits) -> Result<Self> {
        let display = path.display().to_string();
        let mut f = crate::input::open(path).map_err(|e| Error::io(&format!("cannot open {what}"), path, e))?;
        let mut head = [0u8; 8];
        let n = read_up_to(&mut f, &mut head).map_err(|e| Error::io("cannot read", path, e))?;
        let outer = compress::sniff(&head[..n]);
        f.seek(SeekFrom::Start(0)).map_err(|e| Error::io("cannot read", path, e))?;
        let file = if outer == Compression::None {
            f
        } else {
            if outer == Compression::Zstd {
                return Err(Error::unsupported(format!(
                    "{display} is zstd-compressed; spxpack reads plain, gzip, bzip2 or xz archives"
                ))
                .with_hint("decompress it first: zstd -d FILE"));
            }
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let mut tmp = tempfile::tempfile_in(std::env::temp_dir())
                .or_else(|_| tempfile::tempfile_in(dir))
                .map_err(|e| Error::io("cannot create a temporary file for", path, e))?;
            let mut r = compress::limited_decoder(outer, BufReader::with_capacity(1 << 20, f), limits)
                .expect("zstd was refused above");
            io::copy(&mut r, &mut tmp).map_err(|e| {
                if let Some(b) = compress::bomb(&e) {
                    Error::input(format!("{display}: {}", b.0)).with_hint(format!(
                        "a decompression bomb? If the {what} is genuine, raise --max-decompressed or --max-ratio"
                    ))
                } else if e.kind() == io::ErrorKind::UnexpectedEof
                    || e.kind() == io::ErrorKind::InvalidInput
                    || e.kind() == io::ErrorKind::InvalidData
                {
                    Error::input(format!(
                        "{display} is truncated or corrupt: its {} stream cannot be decompressed ({e})",
                        outer.name()
                    ))
                    .with_hint("the file was cut short or damaged; copy or export it again")
                } else {
                    Error::io(&format!("cannot decompress {what}"), path, e)
                }
            })?;
            tmp
        };
        let mut a = TarArchive { display, file: Arc::new(file), entries: BTreeMap::new(), order: Vec::new(), outer };
        a.index(what)?;
        Ok(a)
    }

    fn index(&mut self, what: &str) -> Result<()> {
        let len = self.file.metadata().map_err(|e| Error::io("cannot stat", Path::new(&self.display), e))?.len();
        let corrupt = |msg: String| {
            Error::input(format!("{} is not a valid {what}: {msg}", self.display))
                .with_hint("the file is truncated or not a tar archive; export it again")
        };
        if len == 0 {
            return Err(corrupt("it is empty".into()));
        }
        let mut reader = BufReader::with_capacity(1 << 16, &*self.file);
        reader.seek(SeekFrom::Start(0)).map_err(|e| Error::io("cannot read", Path::new(&self.display), e))?;
        let (guarded, guard) = HeaderGuard::new(reader);
        let mut archive = tar::Archive::new(guarded);
        let mut end = 0u64;
        let mut entries = archive.entries_with_seek().map_err(|e| corrupt(e.to_string()))?;
        while let Some(entry) = guard.next(&mut entries) {
            let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
            if let Err(why) = read_policy::check_pax(&mut entry) {
                return Err(unsafe_shape(&self.display, &why));
            }
            if self.order.len() >= MAX_ENTRIES {
                return Err(corrupt(format!("more than {MAX_ENTRIES} entries")));
            }
            let raw = entry.path_bytes().into_owned();
            let name = std::str::from_utf8(&raw).map_err(|_| corrupt("an entry name is not valid UTF-8".into()))?;
            let Some(name) = normalize(name).map_err(|why| {
                Error::input(format!("{} contains an unsafe entry {name:?}: {why}", self.display))
                    .with_hint("the archive may be malicious; do not use it")
            })?
            else {
                continue; // "." or "./"
            };
            let offset = entry.raw_file_position();
            let size = entry.size();
            let header = entry.header();
            let kind = header.entry_type();
            end = offset + size.div_ceil(512) * 512;
            if kind == tar::EntryType::XGlobalHeader {
                continue; // archive-wide PAX metadata (git archive writes one), not an entry
            }
            let e = if kind.is_file() || kind == tar::EntryType::Continuous {
                if offset.checked_add(size).is_none_or(|x| x > len) {
                    return Err(corrupt(format!("entry {name:?} extends past the end of the file (truncated)")));
                }
                Entry::File { offset, size }
            } else if kind.is_dir() {
                Entry::Dir
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target =
                    entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                if target.is_empty() || target.contains('\0') {
                    return Err(corrupt(format!("link {name:?} has an empty or invalid target")));
                }
                if kind.is_symlink() {
                    Entry::Symlink(target)
                } else {
                    let earlier = |t: &str| self.entries.get(t).is_some_and(|e| *e != Entry::Dir);
                    let t = read_policy::hardlink_target(&name, &target, earlier)
                        .map_err(|why| unsafe_shape(&self.display, &why))?;
                    Entry::Hardlink(t)
                }
            } else {
                Entry::Other
            };
            match self.entries.get(&name) {
                Some(Entry::Dir) if e == Entry::Dir => continue,
                Some(_) => {
                    return Err(Error::input(format!("{} contains the entry {name:?} twice", self.display))
                        .with_hint("duplicate entries are ambiguous; re-create the archive"));
                }
                None => {}
            }
            self.order.push(name.clone());
            self.entries.insert(name, e);
        }
        if self.order.is_empty() {
            return Err(corrupt("it has no entries".into()));
        }
        // A complete archive ends with zero blocks; a cut at an entry boundary lacks them.
        let mut tail = [0u8; 512];
        let ok = self.file.read_exact_at(&mut tail, end).is_ok() && tail.iter().all(|b| *b == 0);
        if !ok {
            return Err(corrupt("it ends without the end-of-archive marker (truncated)".into()));
        }
        Ok(())
    }

    pub fn display(&self) -> &str {
        &self.display
    }
    pub fn outer_compression(&self) -> Compression {
        self.outer
    }
    /// Entry names in archive order.
    pub fn names(&self) -> &[String] {
        &self.order
    }
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }
    pub fn contains(&self, path: &str) -> bool {
        normalize(path).ok().flatten().is_some_and(|p| self.entries.contains_key(&p))
    }

    /// Resolves `path` (following symlinks and hard links inside the archive only) to a
    /// regular file and returns (resolved name, offset, size).
    pub fn resolve(&self, path: &str) -> Result<(String, u64, u64)> {
        let escape = || {
            Error::input(format!("{}: path {path:?} points outside the archive", self.display))
                .with_hint("the archive may be malicious; do not use it")
        };
        let start = normalize(path).map_err(|_| escape())?.ok_or_else(escape)?;
        let mut pending: Vec<String> = start.split('/').rev().map(str::to_string).collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    resolved.pop().ok_or_else(escape)?;
                    continue;
                }
                _ => {}
            }
            resolved.push(c);
            let cur = resolved.join("/");
            let link = match self.entries.get(&cur) {
                Some(Entry::Symlink(t)) => {
                    resolved.pop();
                    Some((t.clone(), false))
                }
                Some(Entry::Hardlink(t)) => {
                    resolved.clear();
                    Some((t.clone(), true))
                }
                _ => None,
            };
            if let Some((target, from_root)) = link {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(Error::input(format!(
                        "{}: too many links (a cycle?) resolving {path:?}",
                        self.display
                    )));
                }
                if target.starts_with('/') || from_root {
                    resolved.clear();
                }
                for t in target.split('/').rev() {
                    pending.push(t.to_string());
                }
            }
        }
        let name = resolved.join("/");
        match self.entries.get(&name) {
            Some(Entry::File { offset, size }) => Ok((name, *offset, *size)),
            Some(_) => Err(Error::input(format!("{}: {path:?} is not a regular file", self.display))),
            None => Err(Error::not_found(format!("{}: no entry {path:?}", self.display))),
        }
    }

    /// Reads a whole (small) entry.
    pub fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>> {
        let (name, offset, size) = self.resolve(path)?;
        if size > limit {
            return Err(Error::input(format!(
                "{}: {name} is {size} bytes, more than the {limit} byte limit",
                self.display
            )));
        }
        let mut buf = vec![0u8; size as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| Error::io("cannot read", Path::new(&self.display), e))?;
        Ok(buf)
    }

    /// Opens an entry for streaming.
    pub fn open_entry(&self, path: &str) -> Result<(SectionReader, u64)> {
        let (_, offset, size) = self.resolve(path)?;
        Ok((SectionReader::new(self.file.clone(), offset, size), size))
    }

    /// Reads the first bytes of an entry.
    pub fn head(&self, path: &str, n: usize) -> Result<Vec<u8>> {
        let (_, offset, size) = self.resolve(path)?;
        let mut buf = vec![0u8; n.min(size as usize)];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| Error::io("cannot read", Path::new(&self.display), e))?;
        Ok(buf)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.display)
    }
}

/// A `Read` over a byte range of a shared file, using positional reads.
pub struct SectionReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl SectionReader {
    pub fn new(file: Arc<File>, offset: u64, size: u64) -> Self {
        SectionReader { file, pos: offset, end: offset + size }
    }
}

impl Read for SectionReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(left) as usize;
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive entry is truncated"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Normalises an entry name: strips `./` and trailing `/`, collapses `//`. `Ok(None)` for the
/// root itself. Errors for absolute paths, `..` components and NUL bytes.
pub fn normalize(name: &str) -> std::result::Result<Option<String>, &'static str> {
    if name.contains('\0') {
        return Err("it contains a NUL byte");
    }
    if name.starts_with('/') {
        return Err("it is an absolute path");
    }
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => continue,
            ".." => return Err("it contains a '..' component"),
            _ => parts.push(c),
        }
    }
    if parts.is_empty() { Ok(None) } else { Ok(Some(parts.join("/"))) }
}

/// The error for an archive shape that readers see differently ([`read_policy`]).
fn unsafe_shape(display: &str, why: &str) -> Error {
    Error::input(format!("{display} contains {why}"))
        .with_hint("GNU tar, Python and Docker would read this archive differently; it may be malicious, do not use it")
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
pub fn read_up_to(f: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn build(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // bypass the tar crate's own path checks to write hostile names
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn open(bytes: &[u8]) -> Result<TarArchive> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        TarArchive::open(f.path(), "test archive")
    }

    #[test]
    fn resolves_links_within_the_archive() {
        use tar::EntryType::*;
        let a = open(&build(&[
            ("abc.tar", Regular, b"layer", None),
            ("./v1/layer.tar", Symlink, b"", Some("../abc.tar")),
            ("dir/hard", Link, b"", Some("abc.tar")),
            ("loop1", Symlink, b"", Some("loop2")),
            ("loop2", Symlink, b"", Some("loop1")),
            ("esc", Symlink, b"", Some("../../etc/passwd")),
        ]))
        .unwrap();
        assert_eq!(a.read("v1/layer.tar", 100).unwrap(), b"layer");
        assert_eq!(a.read("dir/hard", 100).unwrap(), b"layer");
        assert!(a.read("loop1", 100).unwrap_err().to_string().contains("cycle"));
        assert!(a.read("esc", 100).unwrap_err().to_string().contains("outside"));
        assert!(a.read("../abc.tar", 100).unwrap_err().to_string().contains("outside"));
        assert!(a.read("missing", 100).unwrap_err().to_string().contains("no entry"));
    }

    #[test]
    fn rejects_hostile_and_truncated_archives() {
        use tar::EntryType::*;
        let e = open(&build(&[("../evil", Regular, b"x", None)])).unwrap_err().to_string();
        assert!(e.contains("unsafe entry"), "{e}");
        let e = open(&build(&[("/etc/passwd", Regular, b"x", None)])).unwrap_err().to_string();
        assert!(e.contains("absolute"), "{e}");
        let e = open(&build(&[("a", Regular, b"x", None), ("./a", Regular, b"y", None)])).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        let good = build(&[("a", Regular, &[7u8; 3000], None), ("b", Regular, b"y", None)]);
        assert!(open(&good).is_ok());
        for cut in [100, 600, 2000, 4096] {
            let e = open(&good[..cut]).err().unwrap_or_else(|| panic!("cut at {cut} must fail")).to_string();
            assert!(e.contains("truncated") || e.contains("not a valid"), "{cut}: {e}");
        }
    }

    /// One raw header block (ustar) with `size_field` in the header, followed by `data`.
    fn raw(name: &str, kind: u8, size_field: u64, data: &[u8]) -> Vec<u8> {
        crate::tar::read_policy::tests::raw(name, kind, size_field, "", data)
    }

    /// A PAX `x` (or `g`) entry with one record.
    fn pax(kind: u8, key: &str, value: &str) -> Vec<u8> {
        use crate::tar::read_policy::tests as rp;
        rp::pax(kind, &rp::record(key, value))
    }

    /// The entry names GNU tar sees (`None` when GNU tar is not installed).
    fn gnu_tar_names(bytes: &[u8]) -> Option<Vec<String>> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let out = std::process::Command::new("tar").arg("-tf").arg(f.path()).output().ok()?;
        assert!(out.status.success(), "GNU tar refused it: {}", String::from_utf8_lossy(&out.stderr));
        Some(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim_end_matches('/').to_string()).collect())
    }

    #[track_caller]
    fn same_as_gnu_tar(bytes: &[u8], want: &[&str]) {
        let a = open(bytes).unwrap();
        assert_eq!(a.names(), want);
        if let Some(gnu) = gnu_tar_names(bytes) {
            assert_eq!(gnu, want, "GNU tar sees other entries");
        }
    }

    #[test]
    fn pax_and_gnu_desync_shapes_read_like_gnu_tar() {
        let inner = [raw("smuggled", b'0', 5, b"evil!"), vec![0; 1024]].concat();
        let end = vec![0u8; 1024];
        // TARmageddon (CVE-2025-62518): the ustar size says 0, PAX says 2048: PAX wins
        let a = [pax(b'x', "size", "2048"), raw("f", b'0', 0, &inner), end.clone()].concat();
        same_as_gnu_tar(&a, &["f"]);
        assert_eq!(open(&a).unwrap().read("f", 4096).unwrap(), inner);
        // the inverse (RUSTSEC-2026-0068): ustar 2048, PAX 0; PAX still wins, for both readers
        let b = [pax(b'x', "size", "0"), raw("f", b'0', 2048, &inner), end.clone()].concat();
        same_as_gnu_tar(&b, &["f", "smuggled"]);
        // PAX x before a GNU L long name (GHSA-3pv8-6f4r-ffg2): the size is the file's, not the L's
        let long = "d/".repeat(60) + "file";
        let c = [
            pax(b'x', "size", "2048"),
            raw("././@LongLink", b'L', long.len() as u64 + 1, format!("{long}\0").as_bytes()),
            raw("short", b'0', 0, &inner),
            end.clone(),
        ]
        .concat();
        same_as_gnu_tar(&c, &[long.as_str()]);
        // global headers are metadata, however many there are
        let d =
            [pax(b'g', "comment", "one"), pax(b'g', "comment", "two"), raw("a", b'0', 1, b"1"), end.clone()].concat();
        same_as_gnu_tar(&d, &["a"]);
        // data after the end-of-archive blocks is ignored, as by Docker (Go's archive/tar) and GNU tar
        let e = [raw("a", b'0', 1, b"1"), end.clone(), b"trailing junk".to_vec()].concat();
        same_as_gnu_tar(&e, &["a"]);
    }

    #[test]
    fn oversized_headers_and_shadowing_links_are_refused() {
        let end = vec![0u8; 1024];
        let huge = "n/".repeat(600 << 10);
        let a = [raw("././@LongLink", b'L', huge.len() as u64, huge.as_bytes()), raw("x", b'0', 1, b"1"), end.clone()]
            .concat();
        let e = open(&a).unwrap_err().to_string();
        assert!(e.contains("more than 1 MiB of tar headers"), "{e}");
        let b = [pax(b'x', "comment", &"c".repeat(2 << 20)), raw("x", b'0', 1, b"1"), end.clone()].concat();
        let e = open(&b).unwrap_err().to_string();
        assert!(e.contains("more than 1 MiB of tar headers"), "{e}");
        // a symlink, then a file of the same name (RUSTSEC-2026-0067 / CVE-2021-32760 shape)
        use tar::EntryType::*;
        let e = open(&build(&[("a", Symlink, b"", Some("/etc")), ("a", Regular, b"x", None)])).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        // a file under a symlink: lookups follow the link inside the archive (to its own etc/),
        // never to the host
        let a2 = open(&build(&[("a", Symlink, b"", Some("/etc")), ("a/passwd", Regular, b"x", None)])).unwrap();
        let e = a2.read("a/passwd", 10).unwrap_err().to_string();
        assert!(e.contains("no entry \"a/passwd\""), "{e}");
    }
}
