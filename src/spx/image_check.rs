//! `docker load`'s checks, replayed offline on a `docker save` archive read as a stream (so an
//! archive inside an SPX is checked in the same pass that reads the SPX, without temporary
//! files): safe entry names, no duplicates, links resolved inside the archive, `manifest.json`
//! items whose config and layers exist, layer count = `diff_ids` count, at most 125 layers,
//! compression Docker 20.10 reads (gzip, bzip2, xz or none; never zstd, outer or layer),
//! `RepoTags` syntax, OS/architecture against the target and — with `full` — every layer's
//! `diff_id` over its decompressed bytes and every `blobs/sha256/<hex>` name over its bytes.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};

use serde::Serialize;

use super::tar_stream::{StreamEntry, Wording, walk_entries};
use crate::compress::{self, Compression, Limits};
use crate::digest::{Digest, Hasher};
use crate::docker_archive::read::Item;
use crate::error::{Error, Result};
use crate::image::arch_lint::{self, LayerElves};
use crate::image::validate::MAX_LAYERS;
use crate::image::{ConfigView, parse_json};
use crate::platform::Platform;
use crate::problem::Problems;
use crate::progress::human_size;
use crate::tar::index::{normalize, read_up_to};

/// Small entries are kept in memory (configs, manifests) up to this size each…
const KEEP_MAX: u64 = 8 << 20;
/// …and this much in total.
const KEEP_TOTAL: u64 = 128 << 20;

/// How thoroughly to check.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions<'a> {
    /// Hash every layer (decompressed) and blob; otherwise structure only.
    pub full: bool,
    /// The platform the images must be for.
    pub platform: Option<&'a Platform>,
    /// Decompression-bomb guard for the archive and its layers.
    pub limits: Limits,
}

/// One image of an archive.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub tags: Vec<String>,
    /// sha256 of the config bytes.
    pub id: String,
    pub platform: String,
    pub layers: usize,
    /// Sum of the layer file sizes as stored.
    pub layer_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// What an archive holds.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveInfo {
    /// Outer compression of the archive.
    pub compression: &'static str,
    pub images: Vec<ImageInfo>,
    /// Whether every layer's diff_id was recomputed.
    pub layers_verified: bool,
}

impl ArchiveInfo {
    /// Every tag of every image.
    pub fn tags(&self) -> impl Iterator<Item = &String> {
        self.images.iter().flat_map(|i| i.tags.iter())
    }
}

#[derive(Debug, Clone)]
enum Rec {
    File {
        size: u64,
        head: Vec<u8>,
        data: Option<Vec<u8>>,
        sha: Option<Digest>,
        diff: Option<Digest>,
        /// With `full`, what the file does to the ELF files of an image if it is a layer.
        elves: Option<LayerElves>,
    },
    Dir,
    Symlink(String),
    Hardlink(String),
}

/// Checks the archive read from `r`; every problem goes to `findings`, labelled with `label`.
/// Returns what could be learnt (`None` when it is not a readable archive at all).
pub fn check(r: &mut dyn Read, label: &str, opts: &CheckOptions, findings: &mut Problems) -> Option<ArchiveInfo> {
    let mut br = BufReader::with_capacity(1 << 16, r);
    let outer = match br.fill_buf() {
        Ok(head) => compress::sniff(head),
        Err(e) => {
            findings.error(format!("{label}: cannot read: {e}"), None);
            return None;
        }
    };
    let Some(dec) = compress::limited_decoder(outer, br, opts.limits) else {
        findings.error(
            format!("{label}: the archive is zstd-compressed; Docker 20.10 (CORE I/O) cannot load it"),
            Some("compress it with gzip, or leave it uncompressed"),
        );
        return None;
    };
    let mut recs: BTreeMap<String, Rec> = BTreeMap::new();
    if let Err(e) = read_entries(dec, opts.full, opts.limits, &mut recs) {
        findings.error(
            format!("{label}: {}", e.message()),
            Some("the archive is damaged or not a tar file; save it again"),
        );
        return None;
    }
    let mut info = ArchiveInfo { compression: outer.name(), images: Vec::new(), layers_verified: opts.full };
    let items: Vec<Item> = match recs.get("manifest.json") {
        Some(Rec::File { data: Some(d), .. }) => match parse_json::<Option<Vec<Item>>>(d, "manifest.json") {
            Ok(Some(items)) if !items.is_empty() => items,
            Ok(_) => {
                findings.error(format!("{label}: manifest.json lists no images"), None);
                return Some(info);
            }
            Err(e) => {
                findings.error(format!("{label}: {}", e.message()), Some("save the image again"));
                return Some(info);
            }
        },
        _ => {
            let hint = if recs.contains_key("index.json") {
                "it is an OCI archive; Docker 20.10 loads only docker save archives (with manifest.json)"
            } else {
                "a docker save archive has a manifest.json at its root"
            };
            findings.error(format!("{label}: not a docker save archive: no manifest.json"), Some(hint));
            return Some(info);
        }
    };
    for (i, item) in items.iter().enumerate() {
        if let Some(img) = check_item(&recs, i, item, label, opts, findings) {
            info.images.push(img);
        }
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, img) in info.images.iter().enumerate() {
        for t in &img.tags {
            if let Some(j) = seen.insert(t.clone(), i) {
                findings
                    .warn(format!("{label}: images {j} and {i} are both tagged {t}; docker load keeps the last"), None);
            }
        }
    }
    Some(info)
}

/// The words of [`walk_entries`]' problems for a `docker save` archive.
const WORDS: Wording =
    Wording { unsafe_note: "", no_end_marker: "it ends without the end-of-archive marker (truncated?)" };

fn read_entries(r: Box<dyn Read + '_>, full: bool, limits: Limits, recs: &mut BTreeMap<String, Rec>) -> Result<()> {
    let mut kept = 0u64;
    walk_entries(r, WORDS, &mut |name, entry| {
        let rec = read_rec(name, entry, full, limits, &mut kept)?;
        match recs.get(name) {
            Some(Rec::Dir) if matches!(rec, Rec::Dir) => return Ok(()),
            Some(_) => return Err(Error::input(format!("contains the entry {name:?} twice"))),
            None => {}
        }
        recs.insert(name.to_string(), rec);
        Ok(())
    })
}

/// What the checks keep of one entry: small files whole (at most [`KEEP_TOTAL`] in all), the
/// first bytes and (with `full`) the digests of the others, link targets.
fn read_rec(name: &str, entry: &mut StreamEntry, full: bool, limits: Limits, kept: &mut u64) -> Result<Rec> {
    let truncated = |e: io::Error| Error::input(format!("{name}: truncated ({e})"));
    let kind = entry.header().entry_type();
    let size = entry.size();
    Ok(if kind.is_file() || kind == tar::EntryType::Continuous {
        if size <= KEEP_MAX && *kept + size <= KEEP_TOTAL {
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(truncated)?;
            *kept += size;
            let (sha, diff, elves) = if full { hash_bytes(&data, limits) } else { (None, None, None) };
            Rec::File { size, head: data[..data.len().min(8)].to_vec(), data: Some(data), sha, diff, elves }
        } else if full {
            let (head, sha, diff, elves) =
                hash_stream(entry, limits).map_err(|e| Error::input(format!("{name}: {e}")))?;
            Rec::File { size, head, data: None, sha: Some(sha), diff, elves }
        } else {
            let mut head = vec![0u8; 8];
            let n = read_up_to(entry, &mut head).map_err(truncated)?;
            head.truncate(n);
            io::copy(entry, &mut io::sink()).map_err(truncated)?;
            Rec::File { size, head, data: None, sha: None, diff: None, elves: None }
        }
    } else if kind.is_dir() {
        Rec::Dir
    } else if kind.is_symlink() || kind.is_hard_link() {
        let target = entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        if target.is_empty() {
            return Err(Error::input(format!("link {name:?} has no target")));
        }
        if kind.is_symlink() { Rec::Symlink(target) } else { Rec::Hardlink(target) }
    } else {
        return Err(Error::input(format!("entry {name:?} is a {kind:?}, not a file, directory or link")));
    })
}

/// (sha256 of the bytes, sha256 of their decompressed content when compressed, their ELF
/// summary when they are a layer).
fn hash_bytes(data: &[u8], limits: Limits) -> (Option<Digest>, Option<Digest>, Option<LayerElves>) {
    let sha = Digest::of(data);
    let (diff, elves) = decoded_digest(&mut &data[..], limits).unwrap_or((None, None));
    (Some(sha), diff, elves)
}

/// Streams an entry once: first bytes, sha256 of the raw bytes, sha256 of the decompressed
/// bytes, the ELF summary of a layer.
type Hashed = (Vec<u8>, Digest, Option<Digest>, Option<LayerElves>);
fn hash_stream(r: &mut dyn Read, limits: Limits) -> io::Result<Hashed> {
    let mut br = BufReader::with_capacity(1 << 20, HashTee { inner: r, h: Hasher::new() });
    let head = br.fill_buf()?;
    let head = head[..head.len().min(8)].to_vec();
    let (diff, elves) = decoded_digest(&mut br, limits)?;
    io::copy(&mut br, &mut io::sink())?;
    let tee = br.into_inner();
    Ok((head, tee.h.finish(), diff, elves))
}

/// In one pass over `r`: the sha256 of its decompressed content (`None` when it is not
/// compressed or is zstd) and, when that content is a tar, its ELF summary
/// ([`arch_lint::scan_layer`]).
fn decoded_digest(r: &mut dyn BufRead, limits: Limits) -> io::Result<(Option<Digest>, Option<LayerElves>)> {
    let c = compress::sniff(r.fill_buf()?);
    if c == Compression::None {
        return Ok((None, arch_lint::scan_layer(r).ok()));
    }
    let Some(dec) = compress::limited_decoder(c, r, limits) else { return Ok((None, None)) };
    let mut tee = HashTee { inner: dec, h: Hasher::new() };
    let elves = arch_lint::scan_layer(&mut tee).ok();
    io::copy(&mut tee, &mut io::sink())?;
    Ok((Some(tee.h.finish()), elves))
}

/// A reader that hashes what passes through it.
struct HashTee<R> {
    inner: R,
    h: Hasher,
}

impl<R: Read> Read for HashTee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
}

/// Follows links inside the archive to a regular file; the error says why `path` is unusable.
fn resolve<'a>(recs: &'a BTreeMap<String, Rec>, path: &str) -> Result<(String, &'a Rec)> {
    let mut cur = normalize(path)
        .map_err(|why| Error::input(format!("{path:?} {why}")))?
        .ok_or_else(|| Error::input(format!("{path:?} is empty")))?;
    for _ in 0..40 {
        match recs.get(&cur) {
            None => return Err(Error::input(format!("{path:?} is not in the archive"))),
            Some(Rec::Symlink(t)) => {
                let base = cur.rsplit_once('/').map_or("", |(d, _)| d);
                let joined = if t.starts_with('/') { t.clone() } else { format!("{base}/{t}") };
                cur = normalize_lexically(&joined)
                    .ok_or_else(|| Error::input(format!("{path:?} links outside the archive")))?;
            }
            Some(Rec::Hardlink(t)) => {
                cur = normalize_lexically(t)
                    .ok_or_else(|| Error::input(format!("{path:?} links outside the archive")))?;
            }
            Some(Rec::Dir) => return Err(Error::input(format!("{path:?} is a directory"))),
            Some(rec @ Rec::File { .. }) => return Ok((cur, rec)),
        }
    }
    Err(Error::input(format!("{path:?}: too many links (a cycle?)")))
}

fn normalize_lexically(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

/// Checks one `manifest.json` item: its tags, its config (name, OS, platform, rootfs) and its
/// layers (count, compression and, with `full`, content).
fn check_item(
    recs: &BTreeMap<String, Rec>,
    i: usize,
    item: &Item,
    label: &str,
    opts: &CheckOptions,
    findings: &mut Problems,
) -> Option<ImageInfo> {
    let tags = item.repo_tags.clone().unwrap_or_default();
    let who = match tags.first() {
        Some(t) => format!("{label}: image {t}"),
        None => format!("{label}: image {i}"),
    };
    for t in &tags {
        if let Err(e) = crate::docker_archive::write::check_tag(t) {
            findings.error(format!("{who}: RepoTags: {}", e.message()), e.hint());
        }
    }
    if tags.is_empty() {
        findings.warn(format!("{who}: has no RepoTags, so docker load leaves it untagged"), None);
    }
    let (id, config) = check_config(recs, item, &who, opts, findings)?;
    let diff_ids = &config.rootfs.diff_ids;
    if item.layers.len() != diff_ids.len() {
        findings.error(
            format!(
                "{who}: manifest.json lists {} layers but the config has {} diff_ids",
                item.layers.len(),
                diff_ids.len()
            ),
            Some("docker load rejects it; save the image again"),
        );
    }
    if item.layers.len() > MAX_LAYERS {
        findings.error(
            format!("{who}: {} layers, more than Docker's limit of {MAX_LAYERS}", item.layers.len()),
            Some("squash the image into fewer layers"),
        );
    }
    let layer_bytes = check_layers(recs, item, diff_ids, &who, opts, findings);
    if opts.full {
        check_architecture(recs, item, &config.platform(), &who, findings);
    }
    Some(ImageInfo {
        tags,
        id: id.to_string(),
        platform: config.platform().to_string(),
        layers: item.layers.len(),
        layer_bytes,
        created: config.created.clone(),
    })
}

/// The item's config: found (links followed), small enough, valid JSON, matching its name, for
/// linux on the target platform, with `layers` rootfs. `None` when it cannot be read.
fn check_config(
    recs: &BTreeMap<String, Rec>,
    item: &Item,
    who: &str,
    opts: &CheckOptions,
    findings: &mut Problems,
) -> Option<(Digest, ConfigView)> {
    let config_bytes = match resolve(recs, &item.config) {
        Ok((_, Rec::File { data: Some(d), .. })) => d,
        Ok((_, Rec::File { size, .. })) => {
            findings.error(format!("{who}: config {} is {}, too large to check", item.config, human_size(*size)), None);
            return None;
        }
        Ok(_) => unreachable!("resolve returns files"),
        Err(why) => {
            findings.error(format!("{who}: Config {}", why.message()), None);
            return None;
        }
    };
    let id = Digest::of(config_bytes);
    let config: ConfigView = match parse_json(config_bytes, &format!("config {}", item.config)) {
        Ok(c) => c,
        Err(e) => {
            findings.error(format!("{who}: {}", e.message()), None);
            return None;
        }
    };
    if let Some(claimed) = digest_in_name(&item.config)
        && claimed != id.hex()
    {
        findings.error(format!("{who}: config {} does not match its name (sha256 {})", item.config, id.hex()), None);
    }
    let platform = config.platform();
    if config.os != "linux" {
        findings.error(format!("{who}: OS is {:?}, the robot runs linux", config.os), None);
    } else if let Some(want) = opts.platform
        && !platform.satisfies(want)
    {
        findings.error(
            format!("{who}: image is {platform}, but the target is {}", want.normalized()),
            Some("pull or build the image for the target platform (--platform)"),
        );
    }
    if config.rootfs.kind != "layers" {
        findings.error(format!("{who}: config rootfs.type is {:?}, expected \"layers\"", config.rootfs.kind), None);
    }
    Some((id, config))
}

/// Each layer: found (links followed), not zstd, and with `full` matching its name and its
/// `diff_id`. Returns the sum of the layer sizes as stored.
fn check_layers(
    recs: &BTreeMap<String, Rec>,
    item: &Item,
    diff_ids: &[Digest],
    who: &str,
    opts: &CheckOptions,
    findings: &mut Problems,
) -> u64 {
    let mut layer_bytes = 0;
    for (n, path) in item.layers.iter().enumerate() {
        let (name, rec) = match resolve(recs, path) {
            Ok(x) => x,
            Err(why) => {
                findings.error(format!("{who}: layer {n}: {}", why.message()), None);
                continue;
            }
        };
        let Rec::File { size, head, sha, diff, .. } = rec else { continue };
        layer_bytes += size;
        let c = compress::sniff(head);
        if c == Compression::Zstd {
            findings.error(
                format!("{who}: layer {n} ({name}) is zstd-compressed; Docker 20.10 (CORE I/O) cannot load it"),
                Some("re-push or rebuild the image with gzip layers"),
            );
            continue;
        }
        if !opts.full {
            continue;
        }
        if let (Some(claimed), Some(sha)) = (digest_in_name(&name), sha)
            && claimed != sha.hex()
        {
            findings.error(format!("{who}: layer {n}: {name} does not match its name (sha256 {})", sha.hex()), None);
        }
        let actual = if c == Compression::None { sha.as_ref() } else { diff.as_ref() };
        if let (Some(actual), Some(want)) = (actual, diff_ids.get(n))
            && actual != want
        {
            findings.error(
                format!("{who}: layer {n} ({name}): its content has diff_id {actual}, the config says {want}"),
                Some("docker load fails with \"invalid diffID\"; save the image again"),
            );
        }
    }
    layer_bytes
}

/// The image's final filesystem against its platform: ELF executables and shared objects for
/// another machine are a warning (as in `build` and `pull`).
fn check_architecture(
    recs: &BTreeMap<String, Rec>,
    item: &Item,
    platform: &Platform,
    who: &str,
    findings: &mut Problems,
) {
    let mut layers = Vec::with_capacity(item.layers.len());
    for path in &item.layers {
        match resolve(recs, path) {
            Ok((_, Rec::File { elves: Some(e), .. })) => layers.push(e.clone()),
            _ => return, // missing or unreadable layers are errors of their own
        }
    }
    let elves = arch_lint::final_elves(&layers);
    if let Some((msg, hint)) =
        arch_lint::warning(who, platform, &arch_lint::foreign(&elves, platform).unwrap_or_default())
    {
        findings.warn(msg, Some(hint));
    }
}

/// The hex digest a blob path claims: `blobs/sha256/<hex>` or `<hex>.json`.
fn digest_in_name(path: &str) -> Option<&str> {
    let hex = path.strip_prefix("blobs/sha256/").or_else(|| path.strip_suffix(".json"))?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())).then_some(hex)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (n, d) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, n, *d).unwrap();
        }
        b.into_inner().unwrap()
    }

    pub(crate) fn gz(d: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    /// A one-image `docker save` archive (a one-file layer) for `arch`, tagged `tag`.
    pub(crate) fn archive(diff_override: Option<&str>, arch: &str, tag: &str) -> Vec<u8> {
        let layer_tar = tar_of(&[("hello", b"hi")]);
        let layer = gz(&layer_tar);
        let diff = diff_override.map_or_else(|| Digest::of(&layer_tar).to_string(), str::to_string);
        let config =
            format!(r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#);
        let cfg_name = format!("blobs/sha256/{}", Digest::of(config.as_bytes()).hex());
        let layer_name = format!("blobs/sha256/{}", Digest::of(&layer).hex());
        let manifest = format!(r#"[{{"Config":"{cfg_name}","RepoTags":["{tag}"],"Layers":["{layer_name}"]}}]"#);
        tar_of(&[(&cfg_name, config.as_bytes()), (&layer_name, &layer), ("manifest.json", manifest.as_bytes())])
    }

    fn run(bytes: &[u8], full: bool) -> (Option<ArchiveInfo>, Vec<String>) {
        let mut f = Problems::new();
        let p = Platform::linux_arm64();
        let info = check(
            &mut &bytes[..],
            "a.tar",
            &CheckOptions { full, platform: Some(&p), limits: Limits::default() },
            &mut f,
        );
        (info, f.0.into_iter().map(|x| x.message).collect())
    }

    #[test]
    fn good_archive_plain_and_gzipped() {
        let a = archive(None, "arm64", "x:1");
        let (info, f) = run(&a, true);
        assert!(f.is_empty(), "{f:?}");
        let info = info.unwrap();
        assert_eq!(info.images[0].tags, ["x:1"]);
        assert_eq!(info.images[0].platform, "linux/arm64");
        let (info, f) = run(&gz(&a), false);
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(info.unwrap().compression, "gzip");
    }

    #[test]
    fn replays_docker_load_failures() {
        let zero = format!("sha256:{}", "0".repeat(64));
        let (_, f) = run(&archive(Some(&zero), "amd64", "Bad:tag"), true);
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(f[0].contains("RepoTags: invalid image tag"), "{f:?}");
        assert!(f[1].contains("image is linux/amd64, but the target is linux/arm64/v8"), "{f:?}");
        assert!(f[2].contains("its content has diff_id"), "{f:?}");
        // quick mode does not hash
        let (_, f) = run(&archive(Some(&zero), "arm64", "x:1"), false);
        assert!(f.is_empty(), "{f:?}");
        let (_, f) = run(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0], false);
        assert!(f[0].contains("zstd"), "{f:?}");
        let a = archive(None, "arm64", "x:1");
        let (_, f) = run(&a[..a.len() - 1024], false);
        assert!(f[0].contains("end-of-archive"), "{f:?}");
        let (_, f) = run(&tar_of(&[("index.json", b"{}")]), false);
        assert!(f[0].contains("no manifest.json"), "{f:?}");
    }
}
