//! `spxpack verify`: an offline check of an existing SPX — ours or one made by the SDK script or
//! by hand (`tar czf`) — read as a single stream (multi-member gzip, PAX and GNU headers are
//! fine): safe entry names, the manifest rules, compose checks, compose `image:` ↔ bundled
//! `RepoTags`, icon/udev/images ↔ entries, and every image archive replayed through
//! `docker load`'s checks ([`crate::spx::image_check`]). Duplicate entries are an error, except
//! byte-identical ones (which the SDK script writes), which are a warning.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{Map, Value};

use crate::compress::{self, Compression, Limits};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::problem::Problems;
use crate::spx::image_check::{self, ArchiveInfo, CheckOptions};
use crate::spx::tar_stream::{StreamEntry, Wording, walk_entries};
use crate::spx::{COMPOSE_NAMES, MANIFEST, manifest};

mod cross_check;
mod report;

use cross_check::cross_check;
use report::Top;
pub use report::{EntryInfo, NamedArchive, ServiceInfo, SpxReport, VerifyOptions};

/// Verifies the SPX at `path`.
pub fn verify_file(path: &Path, opts: &VerifyOptions) -> Result<SpxReport> {
    let mut f = crate::input::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            Error::not_found(format!("{}: no such file", path.display())).with_hint("give the path of an .spx file")
        }
        _ => Error::io("cannot open", path, e),
    })?;
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    verify_stream(&mut f, &name, opts)
}

/// Verifies an SPX read from `r` (rewound first); `file` is its file name (the extension name
/// falls back to its stem).
pub fn verify_stream<R: Read + Seek>(r: &mut R, file: &str, opts: &VerifyOptions) -> Result<SpxReport> {
    let mut report = SpxReport::empty(file);
    let mut scan = Scan::new(file, opts);
    let io_err = |e: io::Error| Error::from_io("cannot read", file, e);

    r.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut br = BufReader::with_capacity(1 << 20, &mut *r);
    let outer = compress::sniff(br.fill_buf().map_err(io_err)?);
    report.compression = outer.name();
    match outer {
        Compression::Gzip => {}
        Compression::Zstd => {
            report.findings.error(format!("{file}: zstd-compressed; an SPX is a gzip-compressed tar"), Some(GZ_HINT));
            return Ok(report);
        }
        other => {
            scan.findings.error(format!("{file}: {}; an SPX is a gzip-compressed tar", describe(other)), Some(GZ_HINT))
        }
    }
    let walked = walk(decoder(outer, br, opts.limits), &mut |name, kind, size, mode, reader| {
        scan.visit(name, kind, size, mode, reader)
    });
    if let Err(e) = walked {
        scan.findings.error(
            format!("{file}: {}", e.message()),
            Some("the file is damaged or not an SPX; build or download it again"),
        );
    }
    let missed = scan.missed_archives();
    if !missed.is_empty() {
        r.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let br = BufReader::with_capacity(1 << 20, &mut *r);
        scan.check_missed(decoder(outer, br, opts.limits), &missed);
    }

    let Scan { entries, tops, manifest: manifest_map, mut findings, .. } = scan;
    report.entries = entries;
    let stem = file.strip_suffix(".spx").unwrap_or(file);
    cross_check(&mut report, &tops, manifest_map.as_ref(), stem, file, opts, &mut findings);
    report.manifest = manifest_map.map(Value::Object);
    report.findings = findings;
    Ok(report)
}

/// The first pass over an SPX: every entry, the top-level files with what the cross checks need,
/// the manifest, and the image archives checked as they stream by.
struct Scan<'a> {
    file: &'a str,
    opts: &'a VerifyOptions,
    entries: Vec<EntryInfo>,
    tops: BTreeMap<String, Top>,
    manifest: Option<Map<String, Value>>,
    /// The manifest's `images` once it was read; until then archives are recognised by name.
    want_images: Option<Vec<String>>,
    findings: Problems,
}

impl<'a> Scan<'a> {
    fn new(file: &'a str, opts: &'a VerifyOptions) -> Self {
        Scan {
            file,
            opts,
            entries: Vec::new(),
            tops: BTreeMap::new(),
            manifest: None,
            want_images: None,
            findings: Problems::new(),
        }
    }

    fn visit(&mut self, name: &str, kind: &'static str, size: u64, mode: u32, reader: &mut dyn Read) -> io::Result<()> {
        let file = self.file;
        self.entries.push(EntryInfo { name: name.to_string(), kind, size, mode });
        if kind != "file" {
            self.not_a_file(name, kind, size);
            return Ok(());
        }
        let top = self.read_file(name, size, reader)?;
        if let Some(prev) = self.tops.get(name) {
            let same = prev.size == top.size && prev.sha.is_some() && prev.sha == top.sha;
            if same {
                self.findings.warn(
                    format!("{file}: contains {name:?} twice with the same content"),
                    Some("harmless, but the SDK script only does it by mistake"),
                );
            } else {
                self.findings.error(
                    format!("{file}: contains {name:?} twice with different content"),
                    Some("the robot gets whichever is extracted last; rebuild the SPX"),
                );
            }
            return Ok(());
        }
        if name == MANIFEST {
            self.read_manifest(&top);
        }
        self.tops.insert(name.to_string(), top);
        Ok(())
    }

    /// A directory or link: recorded; links are warned about, a name seen twice is an error
    /// (except a directory twice).
    fn not_a_file(&mut self, name: &str, kind: &'static str, size: u64) {
        let file = self.file;
        if let Some(prev) = self.tops.get(name) {
            if !(kind == "dir" && prev.kind == "dir") {
                self.findings.error(format!("{file}: contains {name:?} twice ({} and {kind})", prev.kind), None);
            }
            return;
        }
        self.tops.insert(name.to_string(), Top::new(kind, size));
        if kind == "symlink" || kind == "hardlink" {
            self.findings.warn(
                format!("{file}: {name} is a {kind}"),
                Some("links in an extension are fragile; package the file itself"),
            );
        }
    }

    /// A file: an image archive is checked as it streams by; any other file is hashed, and the
    /// manifest and compose file are kept.
    fn read_file(&mut self, name: &str, size: u64, reader: &mut dyn Read) -> io::Result<Top> {
        let top_level = !name.contains('/');
        let is_candidate = top_level
            && match &self.want_images {
                Some(list) => list.iter().any(|n| n == name),
                None => crate::spx::is_archive_name(name),
            };
        let mut top = Top::new("file", size);
        if is_candidate {
            top.archive = self.check_archive(name, reader);
            io::copy(reader, &mut io::sink())?;
            return Ok(top);
        }
        let keep = top_level && (name == MANIFEST || COMPOSE_NAMES.contains(&name));
        let limit: u64 = if name == MANIFEST { manifest::MAX_SIZE as u64 } else { 4 << 20 };
        let (data, sha) = hash_keeping(reader, if keep { limit } else { 64 })?;
        top.head = data[..data.len().min(64)].to_vec();
        if keep && size <= limit {
            top.data = Some(data);
        }
        top.sha = Some(sha);
        Ok(top)
    }

    fn read_manifest(&mut self, top: &Top) {
        let file = self.file;
        let mut f = Problems::new();
        if let Some(data) = &top.data {
            self.manifest = manifest::parse(data, &format!("{file}: {MANIFEST}"), &mut f);
        } else {
            f.error(format!("{file}: {MANIFEST} is larger than {} bytes", manifest::MAX_SIZE), None);
        }
        self.findings.extend(f);
        self.want_images = self.manifest.as_ref().map(manifest::images);
    }

    /// Runs the image checks on the archive `name`, for `--platform` or the manifest's target.
    fn check_archive(&mut self, name: &str, reader: &mut dyn Read) -> Option<ArchiveInfo> {
        let target = self.manifest.as_ref().and_then(manifest::target).map(|t| t.platform());
        let platform = self.opts.platform.clone().or(target);
        let opts = self.opts;
        let copts = CheckOptions { full: opts.full, platform: platform.as_ref(), limits: opts.limits };
        image_check::check(reader, &format!("{}: {name}", self.file), &copts, &mut self.findings)
    }

    /// Archives the manifest lists that the first pass did not check (they came before the
    /// manifest and do not look like archives by name).
    fn missed_archives(&self) -> Vec<String> {
        let images = self.manifest.as_ref().map(manifest::images).unwrap_or_default();
        images
            .into_iter()
            .filter(|n| self.tops.get(n).is_some_and(|t| t.archive.is_none() && t.kind == "file"))
            .collect()
    }

    /// The second pass: checks the `missed` archives.
    fn check_missed(&mut self, r: Box<dyn Read + '_>, missed: &[String]) {
        let _ = walk(r, &mut |name, _, _, _, reader| {
            if missed.iter().any(|m| m == name) && self.tops.get(name).is_some_and(|t| t.archive.is_none()) {
                let info = self.check_archive(name, reader);
                if let Some(t) = self.tops.get_mut(name) {
                    t.archive = info;
                }
            }
            Ok(())
        });
    }
}

/// Reads `r` to its end: (its first bytes, at least `keep` of them when there are, and its
/// sha256).
fn hash_keeping(r: &mut dyn Read, keep: u64) -> io::Result<(Vec<u8>, Digest)> {
    let mut h = Hasher::new();
    let mut data = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if (data.len() as u64) < keep {
            data.extend_from_slice(&buf[..n]);
        }
    }
    Ok((data, h.finish()))
}

const GZ_HINT: &str = "create it with spxpack build, or tar czf";

fn describe(c: Compression) -> String {
    match c {
        Compression::None => "not compressed".into(),
        other => format!("{}-compressed", other.name()),
    }
}

fn decoder<'a>(c: Compression, br: BufReader<&'a mut (impl Read + ?Sized)>, limits: Limits) -> Box<dyn Read + 'a> {
    // zstd never gets here (the SPX is refused before)
    compress::limited_decoder(c, br, limits).unwrap_or_else(|| Box::new(io::empty()))
}

type Visit<'v> = dyn FnMut(&str, &'static str, u64, u32, &mut dyn Read) -> io::Result<()> + 'v;

/// The words of [`walk_entries`]' problems for an SPX.
const WORDS: Wording = Wording {
    unsafe_note: "; the SPX may be malicious",
    no_end_marker: "it ends without the end-of-archive marker (truncated)",
};

/// Reads every entry; the visitor gets (name, kind, size, mode, content reader).
fn walk(r: Box<dyn Read + '_>, visit: &mut Visit) -> Result<()> {
    walk_entries(r, WORDS, &mut |name, entry| {
        let kind = entry_kind(name, entry)?;
        let mode = entry.header().mode().unwrap_or(0);
        if mode & 0o6000 != 0 {
            return Err(Error::input(format!("entry {name:?} has the setuid/setgid bit; the SPX may be malicious")));
        }
        let in_entry = |e: io::Error| Error::input(format!("{name}: {e}"));
        visit(name, kind, entry.size(), mode, entry).map_err(in_entry)?;
        io::copy(entry, &mut io::sink()).map_err(in_entry)?;
        Ok(())
    })
}

/// `file`, `dir`, `symlink` (pointing inside the extension) or `hardlink`; anything else is refused.
fn entry_kind(name: &str, entry: &StreamEntry) -> Result<&'static str> {
    let kind = entry.header().entry_type();
    Ok(if kind.is_file() || kind == tar::EntryType::Continuous {
        "file"
    } else if kind.is_dir() {
        "dir"
    } else if kind.is_symlink() {
        let t = entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let base = name.rsplit_once('/').map_or("", |(d, _)| d);
        if t.starts_with('/') || !stays_inside(&format!("{base}/{t}")) {
            return Err(Error::input(format!(
                "symlink {name:?} points outside the extension ({t:?}); the SPX may be malicious"
            )));
        }
        "symlink"
    } else if kind.is_hard_link() {
        "hardlink"
    } else {
        return Err(Error::input(format!("entry {name:?} is a {kind:?}; an SPX holds only files and directories")));
    })
}

/// Whether a relative path resolved lexically stays inside the root.
fn stays_inside(p: &str) -> bool {
    let mut depth = 0i32;
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn spx(files: &[(&str, &[u8])], gzip: bool) -> std::io::Cursor<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        for (n, d) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            // raw name: the tar crate refuses to write hostile names itself
            h.as_old_mut().name[..n.len()].copy_from_slice(n.as_bytes());
            h.set_cksum();
            b.append(&h, *d).unwrap();
        }
        let t = b.into_inner().unwrap();
        if !gzip {
            return std::io::Cursor::new(t);
        }
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&t).unwrap();
        std::io::Cursor::new(e.finish().unwrap())
    }

    fn msgs(r: &SpxReport) -> Vec<String> {
        r.findings.0.iter().map(|f| format!("{:?}: {}", f.severity, f.message)).collect()
    }

    #[test]
    fn reports_missing_members_and_duplicates() {
        let m = br#"{"version":"1.0.0","extension_name":"x","installation_target":"spot","icon":"icon.png","images":["x.tar.gz"]}"#;
        let c = b"services:\n  a:\n    image: x:1\n";
        let mut s = spx(&[("manifest.json", m), ("docker-compose.yml", c), ("u.rules", b"a"), ("u.rules", b"a")], true);
        let r =
            verify_stream(&mut s, "x.spx", &VerifyOptions { full: false, platform: None, limits: Limits::default() })
                .unwrap();
        assert_eq!(
            msgs(&r),
            [
                "Warning: x.spx: contains \"u.rules\" twice with the same content",
                "Error: x.spx: manifest.json: $.icon: \"icon.png\" is not in the SPX",
                "Error: x.spx: manifest.json: $.images[0]: \"x.tar.gz\" is not in the SPX",
                "Warning: x.spx: docker-compose.yml: services.a.image: x:1 is in no image archive; the robot will try to pull it from docker.io",
            ]
        );
        let mut s = spx(&[("manifest.json", m)], false);
        let r =
            verify_stream(&mut s, "x.spx", &VerifyOptions { full: false, platform: None, limits: Limits::default() })
                .unwrap();
        assert!(msgs(&r)[0].contains("not compressed; an SPX is a gzip-compressed tar"), "{:?}", msgs(&r));
        let mut s = spx(&[("../evil", b"x")], true);
        let r =
            verify_stream(&mut s, "x.spx", &VerifyOptions { full: false, platform: None, limits: Limits::default() })
                .unwrap();
        assert!(msgs(&r)[0].contains("unsafe entry"), "{:?}", msgs(&r));
    }

    #[test]
    fn oversized_long_names_and_shadowed_symlinks_are_errors() {
        let opts = VerifyOptions { full: false, platform: None, limits: Limits::default() };
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "n/".repeat(600 << 10) + "f", &b"1"[..]).unwrap();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&b.into_inner().unwrap()).unwrap();
        let r = verify_stream(&mut std::io::Cursor::new(e.finish().unwrap()), "x.spx", &opts).unwrap();
        assert!(msgs(&r)[0].contains("more than 1 MiB of tar headers"), "{:?}", msgs(&r));

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "a", "b").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "a", &b"1"[..]).unwrap();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&b.into_inner().unwrap()).unwrap();
        let r = verify_stream(&mut std::io::Cursor::new(e.finish().unwrap()), "x.spx", &opts).unwrap();
        assert!(msgs(&r).iter().any(|m| m.contains("contains \"a\" twice")), "{:?}", msgs(&r));
    }

    const QUICK: VerifyOptions = VerifyOptions { full: false, platform: None, limits: Limits::NONE };

    #[test]
    fn a_good_spx_with_its_archive_and_services() {
        use crate::spx::image_check::tests::{archive, gz};
        let m = br#"{"version":"1.0.0","extension_name":"x","images":["x.tar.gz"]}"#;
        let c = b"services:\n  a:\n    image: x:1\n  b:\n    image: redis:7\n    x-spxpack: {provided: true}\n";
        let a = gz(&archive(None, "arm64", "x:1"));
        let mut s = spx(&[("manifest.json", m), ("x.tar.gz", &a), ("docker-compose.yml", c)], true);
        let r = verify_stream(&mut s, "x.spx", &VerifyOptions { full: true, ..QUICK }).unwrap();
        assert_eq!(
            msgs(&r),
            ["Warning: x.spx: manifest.json: $.installation_target: not set; the robot assumes \"spot\""]
        );
        assert!(r.ok());
        assert_eq!((r.extension_name.as_deref(), r.platform.as_str()), (Some("x"), "linux/arm64/v8"));
        assert_eq!(r.archives[0].info.images[0].tags, ["x:1"]);
        assert!(r.archives[0].info.layers_verified);
        let status: Vec<&str> = r.services.iter().map(|s| s.status.as_str()).collect();
        assert_eq!(status, ["bundled in x.tar.gz", "provided on the robot"]);
        let kinds: Vec<(&str, &str)> = r.entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(kinds, [("manifest.json", "file"), ("x.tar.gz", "file"), ("docker-compose.yml", "file")]);
    }

    #[test]
    fn an_archive_before_the_manifest_is_checked_in_a_second_pass() {
        use crate::spx::image_check::tests::archive;
        let m = br#"{"version":"1.0.0","extension_name":"x","installation_target":"orbit","images":["imgs.bin"]}"#;
        let c = b"services:\n  a:\n    image: x:1\n";
        let a = archive(None, "arm64", "x:1");
        let mut s = spx(&[("imgs.bin", &a), ("manifest.json", m), ("docker-compose.yml", c)], true);
        let r = verify_stream(&mut s, "x.spx", &QUICK).unwrap();
        assert_eq!(r.archives.len(), 1);
        assert_eq!(
            msgs(&r),
            [
                "Error: x.spx: imgs.bin: image x:1: image is linux/arm64, but the target is linux/amd64",
                "Warning: x.spx: manifest.json: $.images[0]: \"imgs.bin\" does not end in .tar, .tar.gz or .tgz",
            ]
        );
    }

    #[test]
    fn hostile_entries_end_the_walk() {
        let walk_err = |b: tar::Builder<Vec<u8>>| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&b.into_inner().unwrap()).unwrap();
            let r = verify_stream(&mut std::io::Cursor::new(e.finish().unwrap()), "x.spx", &QUICK).unwrap();
            msgs(&r).remove(0)
        };
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o4755);
        b.append_data(&mut h, "run", &b"x"[..]).unwrap();
        assert_eq!(walk_err(b), "Error: x.spx: entry \"run\" has the setuid/setgid bit; the SPX may be malicious");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "d/l", "../../etc/passwd").unwrap();
        assert!(walk_err(b).contains("symlink \"d/l\" points outside the extension"));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Fifo);
        h.set_size(0);
        b.append_data(&mut h, "p", &b""[..]).unwrap();
        assert!(walk_err(b).contains("is a Fifo; an SPX holds only files and directories"));
    }

    #[test]
    fn zstd_is_refused_at_once() {
        let mut s = std::io::Cursor::new(vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]);
        let r = verify_stream(&mut s, "x.spx", &QUICK).unwrap();
        assert_eq!(msgs(&r), ["Error: x.spx: zstd-compressed; an SPX is a gzip-compressed tar"]);
        assert_eq!(r.compression, "zstd");
    }
}
