//! The files an SPX carries besides its manifest, compose file and images: the icon, udev rules
//! and additional files or whole directories (recursively, hidden files included). Sources are
//! checked here: a named file that is missing is an error, symlinks are followed only while they
//! stay inside the extension directory, and special files (FIFOs, sockets, devices) are refused.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::writer::{Body, Entry};
use crate::error::io_text;
use crate::problem::Problems;

/// The one symlink rule for every file that goes into an SPX (manifest, compose file, prebuilt
/// image archives, icon, udev rules, additional files and everything below them): a symlink is
/// followed only while it resolves inside the extension directory `root`, so a link to a host
/// file (`icon.png -> ~/.ssh/id_rsa`) is never packaged. `None` when `src` is fine under this
/// rule (or missing: reported by the caller), else the error and its hint, naming `src`.
/// A regular file outside `root` reached without a symlink — `--icon` found in the current
/// directory — is not this rule's business (additional files are confined by [`add_path`]).
pub fn symlink_escape(src: &Path, root: &Path, what: &str) -> Option<(String, String)> {
    escape_shown(src, src, root, what)
}

/// [`symlink_escape`], naming the file as `shown`.
fn escape_shown(src: &Path, shown: &Path, root: &Path, what: &str) -> Option<(String, String)> {
    let canon = fs::canonicalize(src).ok()?;
    let root_canon = fs::canonicalize(root).ok()?;
    if canon.starts_with(&root_canon) {
        return None;
    }
    let is_link = fs::symlink_metadata(src).is_ok_and(|m| m.file_type().is_symlink());
    let how = if is_link {
        "is a symlink"
    } else if lexical(src).starts_with(lexical(root)) {
        "is inside the extension directory only through a symlink" // a symlinked parent directory
    } else {
        return None;
    };
    Some((
        format!(
            "{what} {}: {how} to {}, outside the extension directory {}",
            shown.display(),
            canon.display(),
            root.display()
        ),
        "copy the file into the extension directory instead of linking to it; spxpack never packages host files through symlinks"
            .to_string(),
    ))
}

/// The absolute form of `p` with `.` and `..` removed by name, without following symlinks.
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c.as_os_str()),
        }
    }
    out
}

/// Adds `src` under the SPX name `name`: a file, or a directory with everything below it.
/// Every symlink, `src` included, must resolve inside the extension directory `root`
/// ([`symlink_escape`]); with `confine`, `src` itself must be inside `root` too.
pub fn add_path(
    entries: &mut Vec<Entry>,
    src: &Path,
    name: &str,
    root: &Path,
    confine: bool,
    what: &str,
    findings: &mut Problems,
) {
    let canon = match fs::canonicalize(src) {
        Ok(c) => c,
        Err(e) => {
            findings.error(
                format!("{what} {}: {}", src.display(), io_text(&e)),
                Some("check the path; a file that is named but missing is an error"),
            );
            return;
        }
    };
    if let Some((msg, hint)) = symlink_escape(src, root, what) {
        findings.error(msg, Some(&hint));
        return;
    }
    let root_canon = fs::canonicalize(root).ok();
    if confine
        && let Some(r) = &root_canon
        && !canon.starts_with(r)
    {
        findings.error(
            format!("{what} {}: outside the package directory {}", src.display(), root.display()),
            Some("only files inside the extension directory can be packaged; copy it there"),
        );
        return;
    }
    let mut ancestors = BTreeSet::new();
    walk(entries, &canon, src, name, root, what, &mut ancestors, findings);
}

#[allow(clippy::too_many_arguments)]
fn walk(
    entries: &mut Vec<Entry>,
    real: &Path,
    shown: &Path,
    name: &str,
    root: &Path,
    what: &str,
    ancestors: &mut BTreeSet<PathBuf>,
    findings: &mut Problems,
) {
    let base = name.rsplit('/').next().unwrap_or(name);
    if base.starts_with(".wh.") {
        findings.error(
            format!("{what} {}: the name {base:?} starts with .wh., which marks a deleted file (a whiteout) in image layers", shown.display()),
            Some("rename it; a tool that unpacks the extension like an image layer would delete a file instead of writing this one"),
        );
        return;
    }
    let meta = match fs::metadata(real) {
        Ok(m) => m,
        Err(e) => {
            findings.error(format!("{what} {}: {}", shown.display(), io_text(&e)), None);
            return;
        }
    };
    let ft = meta.file_type();
    if ft.is_file() {
        let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
        entries.push(Entry {
            name: name.to_string(),
            body: Body::File { path: real.to_path_buf(), size: meta.len() },
            mode,
            origin: shown.display().to_string(),
        });
        return;
    }
    if !ft.is_dir() {
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device node"
        } else {
            "not a regular file"
        };
        findings.error(
            format!("{what} {}: is {kind}", shown.display()),
            Some("only regular files and directories can be packaged"),
        );
        return;
    }
    if !ancestors.insert(real.to_path_buf()) {
        findings.error(format!("{what} {}: symlink loop", shown.display()), Some("remove the looping symlink"));
        return;
    }
    entries.push(Entry { name: name.to_string(), body: Body::Dir, mode: 0o755, origin: shown.display().to_string() });
    let mut children: Vec<(String, PathBuf)> = Vec::new();
    match fs::read_dir(real) {
        Ok(rd) => {
            for de in rd {
                match de {
                    Ok(de) => match de.file_name().into_string() {
                        Ok(n) => children.push((n, de.path())),
                        Err(n) => findings.error(
                            format!("{what} {}: file name {n:?} is not valid UTF-8", shown.display()),
                            Some("rename it"),
                        ),
                    },
                    Err(e) => findings.error(format!("{what} {}: {}", shown.display(), io_text(&e)), None),
                }
            }
        }
        Err(e) => findings.error(format!("{what} {}: {}", shown.display(), io_text(&e)), None),
    }
    children.sort();
    for (child_name, child_path) in children {
        let child_shown = shown.join(&child_name);
        let real_child = match fs::symlink_metadata(&child_path) {
            Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(&child_path) {
                Ok(c) => {
                    if let Some((msg, hint)) = escape_shown(&child_path, &child_shown, root, what) {
                        findings.error(msg, Some(&hint));
                        continue;
                    }
                    c
                }
                Err(e) => {
                    findings.error(format!("{what} {}: broken symlink: {}", child_shown.display(), io_text(&e)), None);
                    continue;
                }
            },
            Ok(_) => child_path,
            Err(e) => {
                findings.error(format!("{what} {}: {}", child_shown.display(), io_text(&e)), None);
                continue;
            }
        };
        walk(entries, &real_child, &child_shown, &format!("{name}/{child_name}"), root, what, ancestors, findings);
    }
    ancestors.remove(real);
}

/// The image format of an icon, from its first bytes.
pub fn image_kind(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("PNG")
    } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("JPEG")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("GIF")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("WebP")
    } else {
        let text = String::from_utf8_lossy(&head[..head.len().min(256)]).to_ascii_lowercase();
        let t = text.trim_start_matches('\u{feff}').trim_start();
        (t.starts_with("<svg") || (t.starts_with("<?xml") && text.contains("<svg"))).then_some("SVG")
    }
}

/// Width and height of a PNG, from its IHDR chunk.
pub fn png_size(head: &[u8]) -> Option<(u32, u32)> {
    if head.len() < 24 || !head.starts_with(b"\x89PNG\r\n\x1a\n") || &head[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(head[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(head[20..24].try_into().ok()?);
    Some((w, h))
}

/// Checks an icon's content; problems are warnings (the robot documents no format).
pub fn check_icon(label: &str, head: &[u8], size: u64, findings: &mut Problems) {
    if size == 0 {
        findings.error(format!("{label}: the icon file is empty"), Some("use a PNG image"));
        return;
    }
    match image_kind(head) {
        None => findings
            .warn(format!("{label}: not a PNG, JPEG, GIF, WebP or SVG image"), Some("the SDK examples use PNG icons")),
        Some("PNG") => {
            if let Some((w, h)) = png_size(head)
                && (w == 0 || h == 0 || w > 4096 || h > 4096)
            {
                findings.warn(format!("{label}: PNG is {w}x{h}"), Some("the SDK examples use 192 to 512 pixel icons"));
            }
        }
        Some(_) => {}
    }
}

/// Reads up to `n` bytes from the start of a file.
pub fn read_head(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(n);
    crate::input::open(path)?.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names_among_additional_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("data/sub")).unwrap();
        fs::write(root.join("data/sub/.wh.config"), "x").unwrap();
        fs::write(root.join("data/.wh..wh..opq"), "x").unwrap();
        fs::write(root.join("data/ok.wh.txt"), "x").unwrap();
        let (mut entries, mut f) = (Vec::new(), Problems::new());
        add_path(&mut entries, &root.join("data"), "data", root, true, "additional file", &mut f);
        let errs: Vec<&str> = f.errors().map(|p| p.message.as_str()).collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.contains("starts with .wh.") && e.contains("whiteout")), "{errs:?}");
        assert_eq!(entries.iter().filter(|e| e.name.ends_with("ok.wh.txt")).count(), 1);
    }

    #[test]
    fn walks_directories_sorted_with_hidden_files_and_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("pkg");
        fs::create_dir_all(root.join("data/sub")).unwrap();
        fs::write(root.join("data/b.txt"), "b").unwrap();
        fs::write(root.join("data/.hidden"), "h").unwrap();
        fs::write(root.join("data/sub/run.sh"), "#!/bin/sh").unwrap();
        fs::set_permissions(root.join("data/sub/run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("b.txt", root.join("data/link")).unwrap();
        fs::write(d.path().join("secret"), "s").unwrap();
        let mut e = Vec::new();
        let mut f = Problems::new();
        add_path(&mut e, &root.join("data"), "data", &root, true, "additional file", &mut f);
        assert!(f.0.is_empty(), "{f:?}");
        let names: Vec<(String, u32)> = e.iter().map(|x| (x.name.clone(), x.mode)).collect();
        assert_eq!(
            names,
            [
                ("data".into(), 0o755),
                ("data/.hidden".into(), 0o644),
                ("data/b.txt".into(), 0o644),
                ("data/link".into(), 0o644),
                ("data/sub".into(), 0o755),
                ("data/sub/run.sh".into(), 0o755)
            ]
        );
        std::os::unix::fs::symlink("../../secret", root.join("data/escape")).unwrap();
        let mut f = Problems::new();
        add_path(&mut Vec::new(), &root.join("data"), "data", &root, true, "additional file", &mut f);
        assert!(f.0[0].message.contains("data/escape: is a symlink to"), "{f:?}");
        assert!(f.0[0].message.contains("outside the extension directory"), "{f:?}");
        let mut f = Problems::new();
        add_path(&mut Vec::new(), &d.path().join("secret"), "secret", &root, true, "additional file", &mut f);
        assert!(f.0[0].message.contains("outside the package directory"), "{f:?}");
        let mut f = Problems::new();
        add_path(&mut Vec::new(), &root.join("nope"), "nope", &root, true, "icon", &mut f);
        assert!(f.0[0].message.ends_with("nope: no such file or directory"), "{f:?}");
    }

    #[test]
    fn symlinks_leading_out_of_the_extension_directory_are_refused_wherever_the_file_comes_from() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ext");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(d.path().join("host_secret"), "s").unwrap();
        fs::write(root.join("sub/icon.png"), "i").unwrap();
        std::os::unix::fs::symlink("../host_secret", root.join("icon.png")).unwrap();
        std::os::unix::fs::symlink("sub/icon.png", root.join("inside.png")).unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("up")).unwrap();
        // a symlink out: refused, named, with a hint
        let (msg, hint) = symlink_escape(&root.join("icon.png"), &root, "manifest.json $.icon").unwrap();
        assert!(msg.starts_with(&format!("manifest.json $.icon {}: is a symlink to", root.join("icon.png").display())));
        assert!(msg.contains("host_secret") && msg.contains("outside the extension directory"), "{msg}");
        assert!(hint.contains("copy the file"), "{hint}");
        // through a symlinked parent directory
        let (msg, _) = symlink_escape(&root.join("up/host_secret"), &root, "icon").unwrap();
        assert!(msg.contains("only through a symlink"), "{msg}");
        // links that stay inside, plain files, files outside named directly: not this rule's business
        assert!(symlink_escape(&root.join("inside.png"), &root, "icon").is_none());
        assert!(symlink_escape(&root.join("sub/icon.png"), &root, "icon").is_none());
        assert!(symlink_escape(&d.path().join("host_secret"), &root, "icon").is_none());
        // add_path applies it, confined or not (icon/udev from the current directory are not confined)
        for confine in [false, true] {
            let mut f = Problems::new();
            let mut e = Vec::new();
            add_path(&mut e, &root.join("icon.png"), "icon.png", &root, confine, "icon", &mut f);
            assert!(e.is_empty() && f.0.len() == 1 && f.0[0].message.contains("is a symlink"), "{f:?}");
        }
        let mut f = Problems::new();
        add_path(&mut Vec::new(), &d.path().join("host_secret"), "x", &root, false, "icon", &mut f);
        assert!(f.0.is_empty(), "{f:?}");
    }

    #[test]
    fn sniffs_icons() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&512u32.to_be_bytes());
        png.extend_from_slice(&333u32.to_be_bytes());
        assert_eq!(image_kind(&png), Some("PNG"));
        assert_eq!(png_size(&png), Some((512, 333)));
        assert_eq!(image_kind(b"<?xml version='1.0'?><svg>"), Some("SVG"));
        assert_eq!(image_kind(b"hello"), None);
    }
}
