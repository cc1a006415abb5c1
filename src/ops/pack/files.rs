//! The non-image files of a build: the icon and udev rules (from the SDK flags, the manifest, or
//! the SDK's default names) and the final check that no two entries share a name.

use std::path::Path;

use serde_json::Value;

use crate::problem::Problems;
use crate::progress::Reporter;
use crate::spx::writer::{Body, Entry};
use crate::spx::{MANIFEST, assets, manifest};

/// Adds the icon or udev rules: the flag (resolved in the package directory, then the current
/// one), else the manifest's file, else the SDK default name when that file exists.
#[allow(clippy::too_many_arguments)]
pub fn asset(
    flag: Option<&Path>,
    key: &str,
    default: &str,
    m: &serde_json::Map<String, Value>,
    dir: &Path,
    cwd: &Path,
    out: &mut Vec<Entry>,
    added: &mut Vec<(String, Value)>,
    f: &mut Problems,
) {
    let what = if key == "icon" { "--icon" } else { "--udev-rule" };
    let named = manifest::get_str(m, key);
    let (src, name) = match flag {
        Some(p) => {
            let Some(base) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                f.error(format!("{what} {}: names no file", p.display()), None);
                return;
            };
            let src = [dir.join(p), cwd.join(p)].into_iter().find(|c| crate::input::names_a_file(c));
            let Some(src) = src else {
                f.error(
                    format!("{what} {}: not found (looked in {} and {})", p.display(), dir.display(), cwd.display()),
                    Some("a named file that is missing is an error; check the path"),
                );
                return;
            };
            if let Some(n) = named
                && n != base
            {
                f.error(
                    format!("{what} {}: stored as {base:?}, but manifest.json $.{key} names {n:?}", p.display()),
                    Some("make the names agree"),
                );
                return;
            }
            (src, base)
        }
        None => match named {
            Some(n) if manifest::check_member_path(n).is_ok() => {
                if !dir.join(n).exists() {
                    f.error(
                        format!("{}: $.{key}: {n:?} does not exist in {}", dir.join(MANIFEST).display(), dir.display()),
                        Some("a file named in the manifest must exist; add it, or remove the key"),
                    );
                    return;
                }
                (dir.join(n), n.to_string())
            }
            Some(_) => return, // reported by the manifest rules
            None if crate::input::names_a_file(&dir.join(default)) => (dir.join(default), default.to_string()),
            None => return,
        },
    };
    if named.is_none() {
        added.push((key.to_string(), Value::from(name.clone())));
    }
    let label = format!("manifest.json $.{key}");
    assets::add_path(out, &src, &name, dir, false, &label, f);
    if out.iter().any(|e| matches!(e.body, Body::Dir)) {
        f.error(format!("{label}: {} is a directory", src.display()), None);
        out.clear();
    }
}

/// Refuses two entries with the same name (the same source file twice is kept once).
pub fn dedupe(entries: Vec<Entry>, f: &mut Problems, reporter: &dyn Reporter) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for e in entries {
        if let Some(prev) = out.iter().find(|p| p.name == e.name) {
            let same_file = match (&prev.body, &e.body) {
                (Body::File { path: a, .. }, Body::File { path: b, .. }) => {
                    std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
                }
                (Body::Dir, Body::Dir) => true,
                _ => false,
            };
            if same_file {
                reporter.message(&format!("{} is named twice; it is stored once", e.name));
            } else {
                f.error(
                    format!("{} would be stored twice in the SPX: from {} and from {}", e.name, prev.origin, e.origin),
                    Some("rename one of them"),
                );
            }
            continue;
        }
        out.push(e);
    }
    for e in &out {
        let mut p = e.name.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if out.iter().any(|x| x.name == parent && !matches!(x.body, Body::Dir)) {
                f.error(format!("{} is inside {parent}, which is a file in the SPX", e.name), None);
            }
            p = parent;
        }
    }
    out
}
