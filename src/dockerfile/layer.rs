//! Writing a planned layer: a deterministic tar (walk order, mtimes clamped to the build epoch,
//! no user/group names, PAX records only where ustar cannot hold a value), hashed as it is
//! produced (diff_id) and compressed with the parallel deterministic gzip encoder straight into
//! the blob cache (blob digest), in one pass. [`key`] is the build-cache key of a plan: the
//! layer bytes are a function of it, so equal keys mean equal layers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Read};

use serde::{Deserialize, Serialize};

use super::copy::{Plan, PlanEntry};
use super::fsview::{Content as FileContent, ContentSrc, Kind};
use super::layer_reader::{BlobLookup, Staging, write_atomic};
use crate::blob_cache::BlobCache;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::image::Descriptor;
use crate::tar::{Content, CopyError, Header, LayerBlob, LayerSink, Sink, TarWriter};

/// Changes whenever the bytes written for a plan change.
const FORMAT: &str = "spxpack-layer-v3";

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
    let LayerBlob { diff_id, digest, size, .. } = {
        let file = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        let mut sink = LayerSink::new(file, opts.level, opts.threads).map_err(io_err)?;
        let mut tw = TarWriter::new(&mut sink);
        for (p, e) in &plan.entries {
            entry(&mut tw, &p.0, e, opts.epoch, staging)?;
        }
        tw.finish().map_err(io_err)?;
        sink.finish().map_err(io_err)?
    };
    tmp.as_file_mut().sync_data().map_err(|e| Error::io("cannot write", &tmp_path, e))?;
    cache.commit(tmp, &digest)?;
    Ok(Layer { digest, size, diff_id })
}

/// One entry: its header, then a regular file's content.
fn entry<S: Sink>(tw: &mut TarWriter<S>, path: &str, e: &PlanEntry, epoch: u64, staging: &Staging) -> Result<()> {
    use ::tar::EntryType;
    let n = &e.node;
    let (kind, link) = match (&e.hardlink, &n.kind) {
        (Some(l), _) => (EntryType::Link, l.as_str()),
        (None, Kind::Dir) => (EntryType::Directory, ""),
        (None, Kind::File(_)) => (EntryType::Regular, ""),
        (None, Kind::Symlink(t)) => (EntryType::Symlink, t.as_str()),
        (None, Kind::Other(t, _, _)) => (EntryType::new(*t), ""),
    };
    let name = if kind == EntryType::Directory { format!("{path}/") } else { path.to_string() };
    let h = Header {
        mode: n.mode & 0o7777,
        uid: n.uid,
        gid: n.gid,
        size: if kind == EntryType::Regular { n.size } else { 0 },
        mtime: n.mtime.min(epoch),
        link: link.as_bytes(),
        device: match n.kind {
            Kind::Other(_, major, minor) => Some((major, minor)),
            _ => None,
        },
        ..Header::new(&name, kind)
    };
    tw.header(&h).map_err(|x| Error::from_io("cannot write", "a layer", x))?;
    match &n.kind {
        Kind::File(c) if kind == EntryType::Regular => copy_content(tw, path, c, h.size, staging),
        _ => Ok(()),
    }
}

/// A file's content; large files that do not compress (weights, media, archives) are stored,
/// not deflated.
fn copy_content<S: Sink>(
    tw: &mut TarWriter<S>,
    path: &str,
    c: &FileContent,
    size: u64,
    staging: &Staging,
) -> Result<()> {
    let open = |p: &std::path::Path| std::fs::File::open(p).map_err(|x| Error::io("cannot read", p, x));
    let (mut r, how): (Box<dyn Read>, Content) = match &c.src {
        ContentSrc::Inline(b) => (Box::new(io::Cursor::new(b.to_vec())), Content::Compressible),
        ContentSrc::Local(p) => stored_if_incompressible(open(p.as_ref())?, size),
        ContentSrc::Layer { blob, path, .. } => {
            let p = staging.get(blob, path).ok_or_else(|| Error::internal(format!("{path} was not staged")))?;
            stored_if_incompressible(open(&p)?, size)
        }
    };
    tw.copy(&mut r, size, how, &|_| {}).map_err(|x| match x {
        CopyError::Short(_) | CopyError::Long => {
            Error::input(format!("/{path} changed while the layer was written (it shrank)"))
                .with_hint("do not modify the build context during a build")
        }
        CopyError::Read(x) => Error::from_io("cannot read", path, x),
        CopyError::Write(x) => Error::from_io("cannot write", "a layer", x),
    })
}

fn stored_if_incompressible(f: std::fs::File, size: u64) -> (Box<dyn Read>, Content) {
    let how = if looks_incompressible(&f, size) { Content::Compressed } else { Content::Compressible };
    (Box::new(f), how)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A COPY layer blob for a small plan: the header policy (ustar split, PAX for long and
    /// non-ASCII names and big ids), links, a device, mtimes clamped to the epoch.
    #[test]
    fn layer_bytes_are_golden() {
        use super::super::copy::PlanEntry;
        use super::super::fsview::{Node, PathKey};
        let d = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(Some(d.path().join("cache")), true).unwrap();
        let staging = Staging::new(&cache).unwrap();
        let file = |b: &[u8]| {
            let src = ContentSrc::Inline(std::sync::Arc::new(b.to_vec()));
            Kind::File(FileContent { id: Digest::of(b).to_string(), src })
        };
        let long = format!("app/{}/{}", "d".repeat(120), "f".repeat(90));
        let longer = format!("app/{}", "g".repeat(300));
        let entries = [
            ("app", Kind::Dir, 0o755, 0),
            ("app/a.txt", file(b"hello\n"), 0o644, 0),
            ("app/café", file(b"x"), 0o600, 0),
            (long.as_str(), file(b"long"), 0o644, 0),
            (longer.as_str(), file(b"longer"), 0o644, 0),
            ("app/link", Kind::Symlink("a.txt".into()), 0o777, 0),
            ("app/owned", file(b"id"), 0o644, 1 << 22),
            ("app/null", Kind::Other(b'3', 1, 3), 0o666, 0),
        ];
        let mut plan = Plan::default();
        for (p, kind, mode, uid) in entries {
            let size = if let Kind::File(FileContent { src: ContentSrc::Inline(b), .. }) = &kind { b.len() } else { 0 };
            let node = Node { kind, mode, uid, gid: 0, mtime: 1_700_000_000, size: size as u64 };
            plan.entries.insert(PathKey(p.to_string()), PlanEntry { node, hardlink: None, implied: false });
        }
        let mut hard = plan.entries[&PathKey("app/a.txt".into())].clone();
        hard.hardlink = Some("app/a.txt".into());
        plan.entries.insert(PathKey("app/hard".into()), hard);
        let opts = LayerOptions { epoch: 1_600_000_000, level: 6, threads: 2 };
        let layer = write(&plan, &opts, &cache, &staging).unwrap();
        crate::tar::golden::check("copy-layer.tar.gz", &std::fs::read(cache.blob_path(&layer.digest)).unwrap());
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
