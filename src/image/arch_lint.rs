//! Wrong-architecture content: ELF executables and shared objects in an image's final
//! filesystem (whiteouts applied) built for another machine than the image's platform — an
//! x86-64 binary `COPY`ed from the host into an arm64 image, say. Each layer is streamed once
//! and only the first 20 bytes (the ELF header's `e_ident`, `e_type` and `e_machine`) of its
//! regular files are read; nothing is extracted.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};

use super::Image;
use crate::compress::{self, Limits};
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::tar::index::{normalize, read_up_to};

/// Paths named in a message; the rest are counted.
const SHOWN: usize = 5;

/// What one layer does to the paths the lint follows, in tar order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LayerElves {
    /// Whiteouts (`.wh.NAME`: the path and everything below) and opaque directories
    /// (`.wh..wh..opq`: everything below), applied to the lower layers first.
    deleted: Vec<(String, bool)>,
    /// Entries in order: an ELF executable or shared object with its `e_machine`, another entry
    /// (`None`: it replaces whatever was at the path), a hard link (to its target).
    entries: Vec<(String, Kind)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Elf(u16),
    Other,
    Link(String),
}

/// Reads a layer's tar stream (decompressed) and records what the lint needs. Names that are
/// not safe are skipped (the layer checks report those).
pub fn scan_layer(r: impl Read) -> io::Result<LayerElves> {
    let mut out = LayerElves::default();
    let mut ar = tar::Archive::new(r);
    for e in ar.entries()? {
        let mut e = e?;
        let Ok(Some(path)) = normalize(&String::from_utf8_lossy(&e.path_bytes())) else { continue };
        let (dir, base) = path.rsplit_once('/').map_or(("", path.as_str()), |(d, b)| (d, b));
        if base == ".wh..wh..opq" {
            out.deleted.push((dir.to_string(), false));
            continue;
        }
        if let Some(name) = base.strip_prefix(".wh.") {
            out.deleted.push((if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }, true));
            continue;
        }
        let t = e.header().entry_type();
        let kind = if t.is_file() || t == tar::EntryType::Continuous {
            let mut head = [0u8; 20];
            let n = read_up_to(&mut e, &mut head)?;
            elf_machine(&head[..n]).map_or(Kind::Other, Kind::Elf)
        } else if t.is_hard_link() {
            let target = e.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            match normalize(&target) {
                Ok(Some(t)) => Kind::Link(t),
                _ => Kind::Other,
            }
        } else {
            Kind::Other
        };
        out.entries.push((path, kind));
    }
    Ok(out)
}

/// `e_machine` of an ELF executable (`ET_EXEC`) or shared object (`ET_DYN`, also PIE
/// executables) from its first 20 bytes; `None` for anything else.
pub fn elf_machine(head: &[u8]) -> Option<u16> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let word = |i: usize| match head[5] {
        1 => Some(u16::from_le_bytes([head[i], head[i + 1]])),
        2 => Some(u16::from_be_bytes([head[i], head[i + 1]])),
        _ => None,
    };
    matches!(word(16)?, 2 | 3).then_some(word(18)?)
}

/// The ELF files of the final filesystem (layers applied in order): path → `e_machine`.
pub fn final_elves(layers: &[LayerElves]) -> BTreeMap<String, u16> {
    let mut fs: BTreeMap<String, u16> = BTreeMap::new();
    let under = |p: &str, dir: &str| dir.is_empty() || p.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
    for l in layers {
        for (p, itself) in &l.deleted {
            fs.retain(|k, _| !(under(k, p) || (*itself && k == p)));
        }
        for (p, kind) in &l.entries {
            match kind {
                Kind::Elf(m) => {
                    fs.insert(p.clone(), *m);
                }
                Kind::Other => {
                    fs.remove(p);
                }
                Kind::Link(t) => match fs.get(t).copied() {
                    Some(m) => {
                        fs.insert(p.clone(), m);
                    }
                    None => {
                        fs.remove(p);
                    }
                },
            }
        }
    }
    fs
}

/// (e_machine, name) of the machines the lint knows, with the `GOARCH` each runs as.
const MACHINES: &[(u16, &str, &str)] = &[
    (3, "x86 (i386)", "386"),
    (62, "x86-64", "amd64"),
    (40, "32-bit ARM", "arm"),
    (183, "arm64 (aarch64)", "arm64"),
    (21, "ppc64", "ppc64le"),
    (22, "s390x", "s390x"),
    (243, "riscv", "riscv64"),
];

/// The files of `elves` built for another machine than `platform` (`None` when the lint does not
/// know the platform's machine). 32-bit ARM under arm64 is fine (arm64 CPUs run it).
pub fn foreign<'a>(elves: &'a BTreeMap<String, u16>, platform: &Platform) -> Option<Vec<(&'a str, u16)>> {
    let want = MACHINES.iter().find(|m| m.2 == platform.architecture)?.0;
    Some(
        elves
            .iter()
            .filter(|(_, m)| **m != want && !(want == 183 && **m == 40) && MACHINES.iter().any(|k| k.0 == **m))
            .map(|(p, m)| (p.as_str(), *m))
            .collect(),
    )
}

/// The warning for the `foreign` files of the image `who`, or `None` when there are none.
pub fn warning(who: &str, platform: &Platform, foreign: &[(&str, u16)]) -> Option<(String, &'static str)> {
    let (_, m) = foreign.first()?;
    let name = |m: u16| MACHINES.iter().find(|k| k.0 == m).map_or("another machine", |k| k.1);
    let same = foreign.iter().all(|(_, x)| x == m);
    let what = if same { format!("{} ELF", name(*m)) } else { "ELF".to_string() };
    let mut shown: Vec<String> = foreign
        .iter()
        .take(SHOWN)
        .map(|(p, x)| if same { format!("/{p}") } else { format!("/{p} ({})", name(*x)) })
        .collect();
    if foreign.len() > SHOWN {
        shown.push(format!("… and {} more", foreign.len() - SHOWN));
    }
    let n = foreign.len();
    let files = if n == 1 { "file" } else { "files" };
    Some((
        format!("{who}: an image for {platform} holds {n} {what} {files} that cannot run on it: {}", shown.join(", ")),
        "a binary built on the host was copied in? Build it for the image's platform (cross-compile, or RUN the build \
         in the image); --strict makes this an error",
    ))
}

/// Streams every layer of `img` once and returns the warning for its wrong-architecture ELF
/// files (`None`: none, or a platform the lint does not know).
pub fn check_image(img: &Image) -> Result<Option<(String, &'static str)>> {
    let platform = img.platform();
    if MACHINES.iter().all(|m| m.2 != platform.architecture) {
        return Ok(None);
    }
    // each layer streamed once, a few at a time
    let descs = &img.manifest.layers;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4).min(descs.len().max(1));
    let mut layers: Vec<Option<Result<Option<LayerElves>>>> = (0..descs.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let chunks: Vec<_> = (0..threads)
            .map(|k| {
                s.spawn(move || (k..descs.len()).step_by(threads).map(|i| (i, scan_blob(img, i))).collect::<Vec<_>>())
            })
            .collect();
        for c in chunks {
            for (i, r) in c.join().expect("layer scan panicked") {
                layers[i] = Some(r);
            }
        }
    });
    let mut scans = Vec::with_capacity(layers.len());
    for l in layers {
        match l.expect("every layer scanned")? {
            Some(l) => scans.push(l),
            None => return Ok(None), // a zstd layer: refused elsewhere
        }
    }
    let layers = scans;
    let elves = final_elves(&layers);
    let foreign = foreign(&elves, &platform).unwrap_or_default();
    Ok(warning(&img.origin, &platform, &foreign))
}

/// Runs [`check_image`] on each of `images` (once per manifest): a warning through `reporter`,
/// or with `strict` an input error (one, naming every image concerned).
pub fn lint(images: &[Image], strict: bool, reporter: &dyn crate::progress::Reporter) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut found = Vec::new();
    for img in images {
        if seen.insert(img.manifest_digest())
            && let Some(w) = check_image(img)?
        {
            found.push(w);
        }
    }
    if strict && !found.is_empty() {
        let hint = found[0].1;
        let msg = found.into_iter().map(|(m, _)| m).collect::<Vec<_>>().join("; ");
        return Err(Error::input(msg).with_hint(hint.replace("; --strict makes this an error", "")));
    }
    for (msg, hint) in found {
        reporter.warn(&format!("warning: {msg}\nhint: {hint}"));
    }
    Ok(())
}

/// Streams layer `i` of `img` through [`scan_layer`] (`None` for zstd, which is not read).
fn scan_blob(img: &Image, i: usize) -> Result<Option<LayerElves>> {
    let what = format!("{}: layer {i}", img.origin);
    let mut br = BufReader::with_capacity(1 << 20, img.source.open(&img.manifest.layers[i])?);
    let c = compress::sniff(br.fill_buf().map_err(|e| Error::from_io("cannot read", &what, e))?);
    let Some(dec) = compress::limited_decoder(c, br, Limits::NONE) else { return Ok(None) };
    scan_and_drain(dec).map(Some).or_else(|e| {
        // the source's own verdict first (a digest mismatch), then the decoding error
        let mut raw = img.source.open(&img.manifest.layers[i])?;
        io::copy(&mut raw, &mut io::sink()).map_err(|e| Error::from_io("cannot read", &what, e))?;
        Err(Error::input(format!("{what}: cannot decompress it ({e})")))
    })
}

/// [`scan_layer`], then the rest of the stream read (so a verifying reader reaches its end).
/// A stream that is not a tar has nothing to report; errors of the stream itself (a digest
/// mismatch at its end) are returned.
pub fn scan_and_drain(mut r: impl Read) -> io::Result<LayerElves> {
    let scan = scan_layer(&mut r).unwrap_or_default();
    io::copy(&mut r, &mut io::sink())?;
    Ok(scan)
}

#[cfg(test)]
#[path = "arch_lint_tests.rs"]
mod tests;
