//! `spxpack inspect FILE.spx` and `spxpack verify`'s human output: the entries, a manifest
//! summary, the images of every archive (tags, platform, layers) and where each compose
//! service's image comes from.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use super::verify::SpxReport;
use crate::problem::Severity;
use crate::progress::human_size;
use crate::spx::{MANIFEST, manifest};

/// Whether `path` is an SPX: named `*.spx`, or a gzip'd tar whose first entry is a JSON-object
/// `manifest.json` (a docker save archive's `manifest.json` is an array).
pub fn looks_like_spx(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("spx")) {
        return path.is_file();
    }
    let Ok(f) = crate::input::open(path) else { return false };
    let mut head = Vec::new();
    if flate2::read::MultiGzDecoder::new(f).take(64 << 10).read_to_end(&mut head).is_err() && head.len() < 1024 {
        return false;
    }
    let mut ar = tar::Archive::new(&head[..]);
    let Ok(mut entries) = ar.entries() else { return false };
    let Some(Ok(mut first)) = entries.next() else { return false };
    if first.path().map(|p| p.to_string_lossy() != MANIFEST).unwrap_or(true) {
        return false;
    }
    let mut data = Vec::new();
    let _ = first.read_to_end(&mut data);
    data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Whether a gzip'd (or plain) tar holds a JSON-object `manifest.json` at its root, wherever it
/// is in the stream (reads up to that entry).
pub fn has_extension_manifest(path: &Path) -> bool {
    let Ok(mut f) = crate::input::open(path) else { return false };
    let mut magic = [0u8; 2];
    if f.read_exact(&mut magic).is_err() {
        return false;
    }
    let Ok(f) = crate::input::open(path) else { return false };
    let r: Box<dyn Read> =
        if magic == [0x1f, 0x8b] { Box::new(flate2::read::MultiGzDecoder::new(f)) } else { Box::new(f) };
    let mut ar = tar::Archive::new(r);
    let Ok(entries) = ar.entries() else { return false };
    for e in entries.take(10_000) {
        let Ok(mut e) = e else { return false };
        if e.path().map(|p| p.to_string_lossy() == MANIFEST).unwrap_or(false) {
            let mut data = Vec::new();
            let _ = (&mut e).take(1 << 20).read_to_end(&mut data);
            return data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        }
    }
    false
}

fn mode_string(kind: &str, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        "dir" => 'd',
        "symlink" => 'l',
        "hardlink" => 'h',
        _ => '-',
    });
    for shift in [6, 3, 0] {
        let m = (mode >> shift) & 7;
        s.push(if m & 4 != 0 { 'r' } else { '-' });
        s.push(if m & 2 != 0 { 'w' } else { '-' });
        s.push(if m & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// The human rendering of a report (without its findings).
pub fn render(r: &SpxReport) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "{} ({}-compressed tar, {} entries)", r.file, r.compression, r.entries.len());
    if let Some(m) = r.manifest.as_ref().and_then(|m| m.as_object()) {
        let get = |k: &str| manifest::get_str(m, k).unwrap_or("-");
        let _ = writeln!(w, "extension:  {} {}", r.extension_name.as_deref().unwrap_or("-"), get("version"));
        if let Some(d) = manifest::get_str(m, "description") {
            let _ = writeln!(w, "            {d}");
        }
        let target = r.target.map_or("-", |t| t.as_str());
        let _ = writeln!(w, "target:     {target} ({}), date {}", r.platform, get("date"));
        for k in ["icon", "udev_rules"] {
            if let Some(v) = manifest::get_str(m, k) {
                let _ = writeln!(w, "{:<11} {v}", format!("{k}:"));
            }
        }
    }
    let _ = writeln!(w, "entries:");
    for e in &r.entries {
        let size = if e.kind == "dir" { String::new() } else { human_size(e.size) };
        let _ = writeln!(
            w,
            "  {}  {:>9}  {}{}",
            mode_string(e.kind, e.mode),
            size,
            e.name,
            if e.kind == "dir" { "/" } else { "" }
        );
    }
    for a in &r.archives {
        let _ = writeln!(w, "image archive {} ({}, {}):", a.name, a.info.compression, human_size(a.size));
        for img in &a.info.images {
            let tags = if img.tags.is_empty() { "<untagged>".to_string() } else { img.tags.join(", ") };
            let _ = writeln!(
                w,
                "  {tags}  {}  {} layer{} ({})  id {}",
                img.platform,
                img.layers,
                if img.layers == 1 { "" } else { "s" },
                human_size(img.layer_bytes),
                &img.id[..img.id.len().min(19)]
            );
        }
    }
    if !r.services.is_empty() {
        let _ = writeln!(w, "services:");
        for s in &r.services {
            let _ = writeln!(w, "  {}: {} ({})", s.name, s.image.as_deref().unwrap_or("-"), s.status);
        }
    }
    out
}

/// `N errors, M warnings`.
pub fn counts(r: &SpxReport) -> String {
    let e = r.findings.0.iter().filter(|f| f.severity == Severity::Error).count();
    let wn = r.findings.0.len() - e;
    let plural = |n: usize, s: &str| format!("{n} {s}{}", if n == 1 { "" } else { "s" });
    format!("{}, {}", plural(e, "error"), plural(wn, "warning"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(mode_string("file", 0o644), "-rw-r--r--");
        assert_eq!(mode_string("dir", 0o755), "drwxr-xr-x");
    }
}
