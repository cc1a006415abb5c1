//! The non-image files of a build: the icon and udev rules (from the SDK flags, the manifest, or
//! the SDK's default names), the additional files (`--additional-files` and the compose file's
//! `x-spxpack.additional_files`) and the final check that no two entries share a name.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::model::ComposeIn;
use super::options::PackOptions;

use crate::problem::Problems;
use crate::progress::Reporter;
use crate::spx::writer::{Body, Entry};
use crate::spx::{MANIFEST, assets, manifest};

/// The entries besides the manifest, compose file and image archives.
#[derive(Debug, Default)]
pub struct Assets {
    pub icon: Vec<Entry>,
    /// The additional files, sorted by name.
    pub extra: Vec<Entry>,
    pub udev: Vec<Entry>,
}

/// Collects the icon, the udev rules and the additional files; returns them and the
/// directories among the additional files (read whole, so no output may be inside them).
pub fn collect_assets(
    opts: &PackOptions,
    m: Option<&Map<String, Value>>,
    compose: &ComposeIn,
    added: &mut Vec<(String, Value)>,
    f: &mut Problems,
) -> (Assets, Vec<PathBuf>) {
    let dir = &opts.dir;
    let mut out = Assets::default();
    if let Some(m) = m {
        asset(opts.icon.as_deref(), "icon", "icon.png", m, dir, &opts.cwd, &mut out.icon, added, f);
        asset(opts.udev_rule.as_deref(), "udev_rules", "udev_rule.rule", m, dir, &opts.cwd, &mut out.udev, added, f);
    }
    if let Some(Entry { body: Body::File { path, size }, name, .. }) = out.icon.first() {
        let head = assets::read_head(path, 64).unwrap_or_default();
        assets::check_icon(&format!("icon {name}"), &head, *size, f);
    }
    let mut tree_files: Vec<PathBuf> = Vec::new();
    for a in &opts.additional_files {
        if dir.join(a).is_dir() {
            tree_files.push(dir.join(a));
        }
        let Some(base) = a.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            f.error(format!("--additional-files {}: names no file", a.display()), None);
            continue;
        };
        assets::add_path(&mut out.extra, &dir.join(a), &base, dir, true, "additional file", f);
    }
    for p in compose.compose.iter().flat_map(|c| &c.additional_files) {
        if let Err(why) = manifest::check_member_path(p) {
            f.error(
                format!("{}: x-spxpack.additional_files: {p:?} {why}", compose.label()),
                Some("list paths inside the extension directory"),
            );
            continue;
        }
        if dir.join(p).is_dir() {
            tree_files.push(dir.join(p));
        }
        let name = crate::tar::index::normalize(p).ok().flatten().unwrap_or_else(|| p.clone());
        assets::add_path(&mut out.extra, &dir.join(p), &name, dir, true, "additional file", f);
    }
    out.extra.sort_by(|a, b| a.name.cmp(&b.name));
    (out, tree_files)
}

/// Adds the icon or udev rules: the flag (resolved in the package directory, then the current
/// one), else the manifest's file, else the SDK default name when that file exists.
#[allow(clippy::too_many_arguments)]
pub fn asset(
    flag: Option<&Path>,
    key: &str,
    default: &str,
    m: &Map<String, Value>,
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
