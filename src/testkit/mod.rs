//! The offline test kit (tests only): an in-memory [`BlobSource`] ([`MemBlobs`]) and seeded
//! synthetic images in the style of go-containerregistry's `random.Image` — N layers of
//! random-but-seeded files as real (gzip'd) tar blobs with correct digests and diff_ids, a
//! config, a manifest, and optionally an index over several platforms. The same seed gives the
//! same bytes on every machine, so tests can compare digests across writers and readers.
//! [`registry`] serves these images from an in-process fake registry on 127.0.0.1.

pub(crate) mod registry;

mod conformance;
mod selftest;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::image::{BlobReader, BlobSource, ConfigView, Descriptor, Image, Index, Manifest, media, parse_json};
use crate::platform::Platform;

/// A small seeded generator (splitmix64): deterministic across machines and Rust versions.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5eed_5eed_5eed_5eed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// `n` bytes: half random, half words, so gzip has something to do.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&[u8]; 4] = [b"spot ", b"core-io ", b"extension ", b"layer\n"];
        let mut v = Vec::with_capacity(n + 16);
        while v.len() < n {
            let x = self.next_u64();
            if x & 1 == 0 {
                v.extend_from_slice(&x.to_le_bytes());
            } else {
                v.extend_from_slice(WORDS[(x >> 8) as usize % WORDS.len()]);
            }
        }
        v.truncate(n);
        v
    }
    /// A short lowercase name.
    pub fn name(&mut self) -> String {
        (0..6).map(|_| (b'a' + self.below(26) as u8) as char).collect()
    }
}

/// Blobs held in memory, served with the same verification as every real source.
pub(crate) struct MemBlobs {
    name: String,
    blobs: Mutex<BTreeMap<Digest, Vec<u8>>>,
}

impl MemBlobs {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(MemBlobs { name: name.to_string(), blobs: Mutex::new(BTreeMap::new()) })
    }
    /// Stores `data` under its digest.
    pub fn put(&self, data: &[u8]) -> Digest {
        let d = Digest::of(data);
        self.blobs.lock().expect("poisoned").insert(d.clone(), data.to_vec());
        d
    }
    pub fn get(&self, d: &Digest) -> Option<Vec<u8>> {
        self.blobs.lock().expect("poisoned").get(d).cloned()
    }
    /// Replaces the bytes stored under `d` (to simulate corruption).
    pub fn replace(&self, d: &Digest, data: Vec<u8>) {
        self.blobs.lock().expect("poisoned").insert(d.clone(), data);
    }
    /// Flips one byte in the middle of blob `d`, keeping its size.
    pub fn corrupt(&self, d: &Digest) {
        let mut b = self.get(d).expect("blob to corrupt");
        let i = b.len() / 2;
        b[i] ^= 0xff;
        self.replace(d, b);
    }
    /// Every blob, by digest.
    pub fn all(&self) -> BTreeMap<Digest, Vec<u8>> {
        self.blobs.lock().expect("poisoned").clone()
    }
    /// Copies every blob of `other` into this store.
    pub fn absorb(&self, other: &MemBlobs) {
        let theirs = other.all();
        self.blobs.lock().expect("poisoned").extend(theirs);
    }
}

impl BlobSource for MemBlobs {
    fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        let what = format!("blob {} of {}", desc.digest, self.name);
        let data = self.get(&desc.digest).ok_or_else(|| Error::not_found(format!("{what} is not in memory")))?;
        Ok(Box::new(VerifyingReader::new(std::io::Cursor::new(data), desc.digest.clone(), desc.size, what)))
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// Manifest and media type family of a synthetic image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Oci,
    Docker,
}

/// What a synthetic image looks like.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub seed: u64,
    pub layers: usize,
    /// Regular files per layer (each layer also has one directory and one symlink).
    pub files: usize,
    pub max_size: usize,
    pub platform: Platform,
    pub flavor: Flavor,
    /// Gzip the layers (else plain tar layers, whose digest is their diff_id).
    pub gzip: bool,
}

impl Spec {
    /// Three gzip'd layers of four files, linux/arm64/v8, OCI media types.
    pub fn new(seed: u64) -> Self {
        Spec {
            seed,
            layers: 3,
            files: 4,
            max_size: 3000,
            platform: Platform::linux_arm64(),
            flavor: Flavor::Oci,
            gzip: true,
        }
    }
    pub fn layers(mut self, n: usize) -> Self {
        self.layers = n;
        self
    }
    pub fn platform(mut self, p: &str) -> Self {
        self.platform = Platform::parse(p).expect("test platform");
        self
    }
    pub fn docker(mut self) -> Self {
        self.flavor = Flavor::Docker;
        self
    }
    pub fn plain(mut self) -> Self {
        self.gzip = false;
        self
    }
}

/// One synthetic layer.
#[derive(Clone)]
pub(crate) struct Layer {
    /// The uncompressed tar.
    pub tar: Vec<u8>,
    /// The blob as stored (gzip'd or the tar itself).
    pub blob: Vec<u8>,
    pub desc: Descriptor,
    pub diff_id: Digest,
}

/// A synthetic image and everything it was made from.
pub(crate) struct Synth {
    pub image: Image,
    pub layers: Vec<Layer>,
    /// Layers, config and manifest.
    pub blobs: Arc<MemBlobs>,
}

impl Synth {
    /// The manifest descriptor (with the config's platform), as an index lists it.
    pub fn descriptor(&self) -> Descriptor {
        let mut d = Descriptor::new(
            self.image.manifest.media_type.as_deref().unwrap_or(media::OCI_MANIFEST),
            self.image.manifest_digest(),
            self.image.manifest_raw.len() as u64,
        );
        d.platform = Some(self.image.platform());
        d
    }
}

/// A random layer: a directory, `files` regular files of up to `max_size` bytes and a symlink,
/// written as a tar (mtime 0, uid/gid 0), gzip'd when `gzip`.
pub(crate) fn layer(rng: &mut Rng, n: usize, files: usize, max_size: usize, gzip: bool, flavor: Flavor) -> Layer {
    let mut b = tar::Builder::new(Vec::new());
    let dir = format!("layer{n}-{}", rng.name());
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, format!("{dir}/"), std::io::empty()).expect("tar");
    let mut first = None;
    for i in 0..files {
        let size = rng.below(max_size.max(1)) + 1;
        let data = rng.bytes(size);
        let name = format!("{dir}/f{i}-{}", rng.name());
        let mut h = header(tar::EntryType::Regular, if i % 3 == 0 { 0o755 } else { 0o644 }, data.len() as u64);
        b.append_data(&mut h, &name, &data[..]).expect("tar");
        first.get_or_insert(name);
    }
    if let Some(target) = first {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, format!("{dir}/link"), format!("/{target}")).expect("tar");
    }
    let tar = b.into_inner().expect("tar");
    let diff_id = Digest::of(&tar);
    let blob = if gzip { gzip_bytes(&tar) } else { tar.clone() };
    let mt = match (flavor, gzip) {
        (Flavor::Oci, true) => media::OCI_LAYER_GZIP,
        (Flavor::Oci, false) => media::OCI_LAYER,
        (Flavor::Docker, true) => media::DOCKER_LAYER_GZIP,
        (Flavor::Docker, false) => media::DOCKER_LAYER,
    };
    let desc = Descriptor::new(mt, Digest::of(&blob), blob.len() as u64);
    Layer { tar, blob, desc, diff_id }
}

/// A layer of the given entries, in order: regular files (mode 0755), or hard links when the
/// content is `link:TARGET`; gzip'd, OCI media type.
pub(crate) fn file_layer(entries: &[(&str, &[u8])]) -> Layer {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        if let Some(target) = data.strip_prefix(b"link:") {
            let mut h = header(tar::EntryType::Link, 0o755, 0);
            b.append_link(&mut h, name, String::from_utf8_lossy(target).as_ref()).expect("tar");
        } else {
            let mut h = header(tar::EntryType::Regular, 0o755, data.len() as u64);
            b.append_data(&mut h, name, *data).expect("tar");
        }
    }
    let tar = b.into_inner().expect("tar");
    let blob = gzip_bytes(&tar);
    let desc = Descriptor::new(media::OCI_LAYER_GZIP, Digest::of(&blob), blob.len() as u64);
    Layer { diff_id: Digest::of(&tar), tar, blob, desc }
}

/// A ustar header with uid/gid 0 and mtime 0.
pub(crate) fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Gzip with flate2 (level 6, mtime 0): deterministic.
pub(crate) fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

pub(crate) fn gunzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).expect("gunzip");
    out
}

/// A synthetic image as [`Spec`] describes.
pub(crate) fn image(spec: &Spec) -> Synth {
    let mut rng = Rng::new(spec.seed);
    let layers =
        (0..spec.layers).map(|n| layer(&mut rng, n, spec.files, spec.max_size, spec.gzip, spec.flavor)).collect();
    assemble(spec, layers)
}

/// An image with `base`'s layers first and `spec.layers` new ones on top (layers shared
/// between images, as with a common base image).
pub(crate) fn image_on(base: &Synth, spec: &Spec) -> Synth {
    let mut rng = Rng::new(spec.seed);
    let mut layers = base.layers.clone();
    let start = layers.len();
    layers.extend(
        (0..spec.layers).map(|n| layer(&mut rng, start + n, spec.files, spec.max_size, spec.gzip, spec.flavor)),
    );
    assemble(spec, layers)
}

/// Two images on one base of two layers (seeds `seed`…`seed + 2`), with `tops` layers of their
/// own: the usual shape of images that share layers in one archive.
pub(crate) fn siblings(seed: u64, tops: [usize; 2]) -> [Synth; 2] {
    let base = image(&Spec::new(seed).layers(2));
    [image_on(&base, &Spec::new(seed + 1).layers(tops[0])), image_on(&base, &Spec::new(seed + 2).layers(tops[1]))]
}

/// The config, manifest and [`Image`] for `layers`.
pub(crate) fn assemble(spec: &Spec, layers: Vec<Layer>) -> Synth {
    let blobs = MemBlobs::new(&format!("testkit:{}", spec.seed));
    for l in &layers {
        blobs.put(&l.blob);
    }
    let p = &spec.platform;
    let mut config = json!({
        "architecture": p.architecture,
        "os": p.os,
    });
    if let Some(v) = &p.variant {
        config["variant"] = json!(v);
    }
    config["config"] = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
        "Labels": {"testkit.seed": spec.seed.to_string()},
    });
    config["created"] = json!("1970-01-01T00:00:00Z");
    config["history"] = json!(
        (0..layers.len())
            .map(|i| json!({"created": "1970-01-01T00:00:00Z", "created_by": format!("testkit layer {i}")}))
            .collect::<Vec<_>>()
    );
    config["rootfs"] =
        json!({"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()});
    let config_raw = serde_json::to_vec(&config).expect("json");
    let (mt, cmt) = match spec.flavor {
        Flavor::Oci => (media::OCI_MANIFEST, media::OCI_CONFIG),
        Flavor::Docker => (media::DOCKER_MANIFEST, media::DOCKER_CONFIG),
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(mt.to_string()),
        config: Descriptor::new(cmt, blobs.put(&config_raw), config_raw.len() as u64),
        layers: layers.iter().map(|l| l.desc.clone()).collect(),
        annotations: None,
    };
    let manifest_raw = serde_json::to_vec(&manifest).expect("json");
    blobs.put(&manifest_raw);
    let image = Image {
        manifest: Manifest::parse(&manifest_raw, "testkit manifest").expect("valid manifest"),
        manifest_raw,
        config: parse_json::<ConfigView>(&config_raw, "testkit config").expect("valid config"),
        config_raw,
        source: blobs.clone(),
        origin: format!("testkit:{}", spec.seed),
        suggested_tags: Vec::new(),
        index_digest: None,
    };
    Synth { image, layers, blobs }
}

/// A multi-platform image: an index over one synthetic image per platform.
pub(crate) struct SynthIndex {
    pub raw: Vec<u8>,
    pub digest: Digest,
    pub index: Index,
    pub images: Vec<Synth>,
    /// Every blob of every image, plus the index itself.
    pub blobs: Arc<MemBlobs>,
}

impl SynthIndex {
    /// The index descriptor, as a registry tag or a layout's `index.json` points at it.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.index.media_type.as_deref().unwrap_or(media::OCI_INDEX),
            self.digest.clone(),
            self.raw.len() as u64,
        )
    }
}

/// An index with one image per platform (seeds `seed`, `seed + 1`, …). The index entries carry
/// the platforms exactly as given (so `linux/arm64` without a variant can be tested).
pub(crate) fn index(seed: u64, platforms: &[Platform], flavor: Flavor) -> SynthIndex {
    let blobs = MemBlobs::new(&format!("testkit index {seed}"));
    let mut images = Vec::new();
    let mut entries = Vec::new();
    for (i, p) in platforms.iter().enumerate() {
        let mut spec = Spec::new(seed + i as u64).layers(2);
        spec.platform = p.clone();
        spec.flavor = flavor;
        let s = image(&spec);
        blobs.absorb(&s.blobs);
        let mut d = s.descriptor();
        d.platform = Some(p.clone());
        entries.push(d);
        images.push(s);
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(match flavor {
            Flavor::Oci => media::OCI_INDEX.to_string(),
            Flavor::Docker => media::DOCKER_LIST.to_string(),
        }),
        manifests: entries,
        annotations: None,
    };
    let raw = serde_json::to_vec(&index).expect("json");
    let digest = blobs.put(&raw);
    SynthIndex { raw, digest, index, images, blobs }
}

/// linux/amd64 and linux/arm64 (no variant, as many registries list it).
pub(crate) fn amd64_arm64() -> Vec<Platform> {
    vec![Platform::new("linux", "amd64", None), Platform::new("linux", "arm64", None)]
}

/// Writes an OCI layout by hand (not with spxpack's writer): every blob of `blobs`, and an
/// `index.json` listing `entries`.
pub(crate) fn write_layout(dir: &Path, blobs: &MemBlobs, entries: &[Descriptor]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
    for (d, b) in blobs.all() {
        std::fs::write(dir.join(d.blob_path()), b).expect("write blob");
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        manifests: entries.to_vec(),
        annotations: None,
    };
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).expect("json")).expect("write index");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
}

/// `desc` with a `ref.name` annotation (and the containerd name when given).
pub(crate) fn tagged(mut desc: Descriptor, tag: &str, containerd: Option<&str>) -> Descriptor {
    let mut ann = BTreeMap::from([(crate::image::oci::REF_NAME.to_string(), tag.to_string())]);
    if let Some(c) = containerd {
        ann.insert(crate::image::oci::CONTAINERD_NAME.to_string(), c.to_string());
    }
    desc.annotations = Some(ann);
    desc
}

/// Tars a directory tree (sorted, deterministic headers).
pub(crate) fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    let mut paths: Vec<_> = walk(dir);
    paths.sort();
    for p in paths {
        let rel = p.strip_prefix(dir).expect("inside");
        if p.is_dir() {
            b.append_dir(rel, &p).expect("tar dir");
        } else {
            b.append_path_with_name(&p, rel).expect("tar file");
        }
    }
    b.into_inner().expect("tar")
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// The entries of a tar: `(name, header, content)`.
pub(crate) fn tar_entries(data: &[u8]) -> Vec<(String, tar::Header, Vec<u8>)> {
    let mut a = tar::Archive::new(data);
    a.entries()
        .expect("tar")
        .map(|e| {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let h = e.header().clone();
            let mut body = Vec::new();
            e.read_to_end(&mut body).expect("read entry");
            (name, h, body)
        })
        .collect()
}

/// Reads a blob of `image` fully through its source (so the source's verification runs).
pub(crate) fn read_blob(image: &Image, desc: &Descriptor) -> Result<Vec<u8>> {
    let mut r = image.source.open(desc)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| Error::from_io("cannot read", &desc.digest.to_string(), e))?;
    Ok(out)
}

/// A fresh scratch directory.
pub(crate) fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("spxpack-testkit-").tempdir().expect("tempdir")
}

/// Every `.rs` file below `src/` (for the checks that read the source: layering, `unsafe`).
pub(crate) fn source_files() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
