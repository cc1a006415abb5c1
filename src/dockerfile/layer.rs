//! Writing a planned layer: a deterministic tar (walk order, mtimes clamped to the build epoch,
//! no user/group names, PAX records only where ustar cannot hold a value), hashed as it is
//! produced (diff_id) and compressed with the parallel deterministic gzip encoder straight into
//! the blob cache (blob digest), in one pass. [`key`] is the build-cache key of a plan: the
//! layer bytes are a function of it, so equal keys mean equal layers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Read, Write};

use serde::{Deserialize, Serialize};

use super::copy::Plan;
use super::fsview::{ContentSrc, Kind};
use super::layers::{BlobLookup, Staging, write_atomic};
use crate::blob_cache::BlobCache;
use crate::compress::GzipWriter;
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::error::{Error, Result};
use crate::image::Descriptor;

/// Changes whenever the bytes written for a plan change.
const FORMAT: &str = "spxpack-layer-v2";

/// How layers are written.
#[derive(Debug, Clone)]
pub struct LayerOptions {
    /// mtimes later than this are clamped to it (`SOURCE_DATE_EPOCH`, default 0).
    pub epoch: u64,
    pub level: u32,
    pub threads: usize,
}

/// A layer in the blob cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

/// The cache key of a plan: every byte of the layer follows from it.
pub fn key(plan: &Plan, opts: &LayerOptions) -> Digest {
    let mut h = Hasher::new();
    h.update(format!("{FORMAT}\nlevel={}\n", opts.level).as_bytes());
    for (p, e) in &plan.entries {
        let n = &e.node;
        let (tag, extra) = match (&n.kind, &e.hardlink) {
            (_, Some(l)) => ("h", l.clone()),
            (Kind::Dir, _) => ("d", String::new()),
            (Kind::File(c), _) => ("f", c.id.clone()),
            (Kind::Symlink(t), _) => ("l", t.clone()),
            (Kind::Other(t, a, b), _) => ("o", format!("{t}:{a}:{b}")),
        };
        let line = format!(
            "{}\0{tag}\0{:o}\0{}\0{}\0{}\0{}\0{extra}\n",
            p.0,
            n.mode,
            n.uid,
            n.gid,
            n.mtime.min(opts.epoch),
            if tag == "f" { n.size } else { 0 }
        );
        h.update(line.as_bytes());
    }
    h.finish()
}

fn record_path(cache: &BlobCache, key: &Digest) -> std::path::PathBuf {
    cache.root().join("build/steps").join(format!("{}.json", key.hex()))
}

/// A layer built earlier for the same key, if its blob is still cached.
pub fn lookup(cache: &BlobCache, key: &Digest) -> Option<Layer> {
    let l: Layer = serde_json::from_slice(&std::fs::read(record_path(cache, key)).ok()?).ok()?;
    let desc = Descriptor::new("", l.digest.clone(), l.size);
    cache.contains(&desc).then_some(l)
}

pub fn remember(cache: &BlobCache, key: &Digest, layer: &Layer) -> Result<()> {
    let p = record_path(cache, key);
    write_atomic(p.parent().expect("parent"), &p, &serde_json::to_vec(layer).expect("json"))
}

/// Extracts the plan's files that live in other layers into the staging directory.
pub fn stage_contents(plan: &Plan, staging: &Staging, source_of: BlobLookup) -> Result<()> {
    let mut wanted: BTreeMap<Digest, BTreeSet<String>> = BTreeMap::new();
    for e in plan.entries.values() {
        if let Kind::File(c) = &e.node.kind
            && let ContentSrc::Layer { blob, path, .. } = &c.src
            && e.hardlink.is_none()
        {
            wanted.entry(blob.clone()).or_default().insert(path.clone());
        }
    }
    for (blob, paths) in wanted {
        let (src, desc) = source_of(&blob).ok_or_else(|| Error::internal(format!("no source for layer {blob}")))?;
        staging.extract(src.as_ref(), &desc, &paths)?;
    }
    Ok(())
}

/// Writes the layer for `plan` into the cache.
pub fn write(plan: &Plan, opts: &LayerOptions, cache: &BlobCache, staging: &Staging) -> Result<Layer> {
    let mut tmp = cache.new_temp()?;
    let tmp_path = tmp.path().to_path_buf();
    let io_err = |e: io::Error| Error::from_io("cannot write", "a layer", e);
    let (diff_id, digest, size) = {
        let file = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        let hw = HashingWriter::new(file);
        let gz = GzipWriter::new(hw, opts.level, opts.threads).map_err(io_err)?;
        let mut tw = TarOut { gz, diff: Hasher::new() };
        for (p, e) in &plan.entries {
            tw.entry(&p.0, e, opts.epoch, staging)?;
        }
        tw.put(&[0u8; 1024]).map_err(io_err)?;
        let TarOut { gz, diff } = tw;
        let mut hw = gz.finish().map_err(io_err)?;
        hw.flush().map_err(io_err)?;
        (diff.finish(), hw.hasher.finish(), hw.n)
    };
    tmp.as_file_mut().sync_data().map_err(|e| Error::io("cannot write", &tmp_path, e))?;
    cache.commit(tmp, &digest)?;
    Ok(Layer { digest, size, diff_id })
}

struct TarOut<W: Write> {
    gz: GzipWriter<W>,
    diff: Hasher,
}

impl<W: Write> TarOut<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.diff.update(b);
        self.gz.write_compressible(b)
    }

    fn entry(&mut self, path: &str, e: &super::copy::PlanEntry, epoch: u64, staging: &Staging) -> Result<()> {
        let io_err = |x: io::Error| Error::from_io("cannot write", "a layer", x);
        let n = &e.node;
        let (typeflag, link, size) = match (&e.hardlink, &n.kind) {
            (Some(l), _) => (b'1', l.clone(), 0),
            (None, Kind::Dir) => (b'5', String::new(), 0),
            (None, Kind::File(_)) => (b'0', String::new(), n.size),
            (None, Kind::Symlink(t)) => (b'2', t.clone(), 0),
            (None, Kind::Other(t, _, _)) => (*t, String::new(), 0),
        };
        let name = if typeflag == b'5' { format!("{path}/") } else { path.to_string() };
        let mtime = n.mtime.min(epoch);
        let mut pax: Vec<(&str, String)> = Vec::new();
        let mut h = tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().expect("ustar");
            if !split_name(&name, &mut u.name, &mut u.prefix) {
                pax.push(("path", name.clone()));
                let short = &name.as_bytes()[name.len().saturating_sub(99)..];
                u.name[..short.len()].copy_from_slice(short);
            }
            if link.len() <= 100 {
                u.linkname[..link.len()].copy_from_slice(link.as_bytes());
            } else {
                pax.push(("linkpath", link.clone()));
            }
        }
        h.set_entry_type(tar::EntryType::new(typeflag));
        h.set_mode(n.mode & 0o7777);
        for (key, v, setter) in [("uid", n.uid, 0u8), ("gid", n.gid, 1)] {
            if v > 0o7777777 {
                pax.push((key, v.to_string()));
            } else if setter == 0 {
                h.set_uid(v);
            } else {
                h.set_gid(v);
            }
        }
        if size > 0o77777777777 {
            pax.push(("size", size.to_string()));
        } else {
            h.set_size(size);
        }
        h.set_mtime(mtime);
        if let Kind::Other(_, maj, min) = &n.kind {
            h.set_device_major(*maj).map_err(io_err)?;
            h.set_device_minor(*min).map_err(io_err)?;
        }
        h.set_cksum();
        if !pax.is_empty() {
            let mut body = Vec::new();
            for (k, v) in &pax {
                body.extend_from_slice(&pax_record(k, v));
            }
            let mut ph = tar::Header::new_ustar();
            ph.as_ustar_mut().expect("ustar").name[..14].copy_from_slice(b"././@PaxHeader");
            ph.set_entry_type(tar::EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_size(body.len() as u64);
            ph.set_mtime(mtime);
            ph.set_cksum();
            self.put(ph.as_bytes()).map_err(io_err)?;
            self.put(&body).map_err(io_err)?;
            self.pad(body.len() as u64).map_err(io_err)?;
        }
        self.put(h.as_bytes()).map_err(io_err)?;
        if typeflag == b'0' {
            let Kind::File(c) = &n.kind else { unreachable!() };
            let file = match &c.src {
                ContentSrc::Inline(_) => None,
                ContentSrc::Local(p) => {
                    Some(std::fs::File::open(p.as_ref()).map_err(|x| Error::io("cannot read", p.as_ref(), x))?)
                }
                ContentSrc::Layer { blob, path, .. } => {
                    let p = staging.get(blob, path).ok_or_else(|| Error::internal(format!("{path} was not staged")))?;
                    Some(std::fs::File::open(&p).map_err(|x| Error::io("cannot read", &p, x))?)
                }
            };
            // large files that do not compress (weights, media, archives) are stored, not deflated
            let stored = match &file {
                Some(f) => looks_incompressible(f, size),
                None => false,
            };
            let mut r: Box<dyn Read> = match (file, &c.src) {
                (Some(f), _) => Box::new(f),
                (None, ContentSrc::Inline(b)) => Box::new(io::Cursor::new(b.to_vec())),
                (None, _) => unreachable!("files have a source"),
            };
            let mut buf = vec![0u8; 1 << 20];
            let mut left = size;
            while left > 0 {
                let want = (buf.len() as u64).min(left) as usize;
                let k = r.read(&mut buf[..want]).map_err(|x| Error::from_io("cannot read", path, x))?;
                if k == 0 {
                    return Err(Error::input(format!("/{path} changed while the layer was written (it shrank)"))
                        .with_hint("do not modify the build context during a build"));
                }
                if stored {
                    self.diff.update(&buf[..k]);
                    self.gz.write_stored(&buf[..k]).map_err(io_err)?;
                } else {
                    self.put(&buf[..k]).map_err(io_err)?;
                }
                left -= k as u64;
            }
            self.pad(size).map_err(io_err)?;
        }
        Ok(())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.put(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }
}

/// Whether a file of at least 256 KiB looks incompressible: three 16 KiB samples (start,
/// middle, end) deflated at level 1 shrink by less than 3%. The answer depends only on the
/// bytes, so the layer stays deterministic.
fn looks_incompressible(f: &std::fs::File, size: u64) -> bool {
    use std::os::unix::fs::FileExt;
    const SAMPLE: u64 = 16 << 10;
    if size < 256 << 10 {
        return false;
    }
    let mut sample = Vec::with_capacity(3 * SAMPLE as usize);
    for off in [0, size / 2, size - SAMPLE] {
        let mut b = vec![0u8; SAMPLE as usize];
        match f.read_exact_at(&mut b, off) {
            Ok(()) => sample.extend_from_slice(&b),
            Err(_) => return false,
        }
    }
    let mut c = flate2::Compress::new(flate2::Compression::new(1), false);
    let mut out = Vec::with_capacity(2 * sample.len() + 1024);
    if c.compress_vec(&sample, &mut out, flate2::FlushCompress::Finish).is_err() {
        return false;
    }
    c.total_in() < sample.len() as u64 || out.len() as u64 * 100 >= sample.len() as u64 * 97
}

/// Puts a path into ustar name/prefix; false when it does not fit.
fn split_name(name: &str, n: &mut [u8; 100], prefix: &mut [u8; 155]) -> bool {
    let b = name.as_bytes();
    if b.len() <= 100 {
        n[..b.len()].copy_from_slice(b);
        return true;
    }
    // split at a '/' so that prefix ≤ 155 and name ≤ 100
    let trimmed = b.strip_suffix(b"/").unwrap_or(b);
    for (i, &c) in trimmed.iter().enumerate().rev() {
        if c == b'/' && i <= 155 && b.len() - i - 1 <= 100 && i > 0 {
            prefix[..i].copy_from_slice(&b[..i]);
            n[..b.len() - i - 1].copy_from_slice(&b[i + 1..]);
            return true;
        }
    }
    false
}

fn pax_record(k: &str, v: &str) -> Vec<u8> {
    let base = k.len() + v.len() + 3; // ' ', '=', '\n'
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    format!("{len} {k}={v}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_lengths_are_self_consistent() {
        for v in ["x", &"y".repeat(95), &"z".repeat(994)] {
            let r = pax_record("path", v);
            let n: usize = std::str::from_utf8(&r).unwrap().split(' ').next().unwrap().parse().unwrap();
            assert_eq!(n, r.len());
        }
        let mut n = [0u8; 100];
        let mut p = [0u8; 155];
        let long = format!("{}/{}", "a".repeat(120), "b".repeat(90));
        assert!(split_name(&long, &mut n, &mut p));
        assert!(!split_name(&"c".repeat(300), &mut [0u8; 100], &mut [0u8; 155]));
    }

    #[test]
    fn incompressible_files_are_detected_from_their_bytes() {
        let d = tempfile::tempdir().unwrap();
        let mut x: u64 = 1;
        let random: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let text = "the quick brown fox jumps over the lazy dog\n".repeat(8000);
        for (name, data, want) in
            [("r", &random[..], true), ("t", text.as_bytes(), false), ("s", &random[..1000], false)]
        {
            std::fs::write(d.path().join(name), data).unwrap();
            let f = std::fs::File::open(d.path().join(name)).unwrap();
            assert_eq!(looks_incompressible(&f, data.len() as u64), want, "{name}");
        }
    }
}
