//! File-system helpers that never leave a root directory: every path below a root is resolved
//! with `openat2(RESOLVE_IN_ROOT)`, so `..` and absolute or relative symlinks are clamped to the
//! root exactly as they would be after a `chroot`, and entries are created, replaced and removed
//! relative to directory file descriptors with `*at` calls that do not follow the final
//! component.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};

/// Opens a directory as the root of later in-root lookups.
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?)
}

fn resolve() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// Opens `rel` (a clean relative path, `""` for the root itself) below `root`, following
/// symlinks only inside the root.
pub fn open_in_root(root: impl AsFd, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
    let p = if rel.is_empty() { "." } else { rel };
    Ok(rustix::fs::openat2(root, p, flags | OFlags::CLOEXEC, Mode::empty(), resolve())?)
}

/// Opens the directory `rel` below `root` (in-root resolution).
pub fn open_dir_in(root: impl AsFd, rel: &str) -> io::Result<OwnedFd> {
    open_in_root(root, rel, OFlags::DIRECTORY | OFlags::RDONLY)
}

/// Opens a regular file below `root` for reading without following any symlink at all (the
/// walker already knows the path is a regular file; a symlink there now is a race or an attack).
pub fn open_file_beneath(root: impl AsFd, rel: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Creates the directory `rel` and its missing parents below `root` (mode `mode` for each
/// created directory) and returns it opened.
pub fn mkdir_all_in(root: impl AsFd, rel: &str, mode: u32) -> io::Result<OwnedFd> {
    let root = root.as_fd();
    match open_dir_in(root, rel) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut dir = open_dir_in(root, "")?;
    let mut sofar = String::new();
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        match rustix::fs::mkdirat(&dir, comp, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        // resolve from the root again: a symlink found here is followed, clamped inside it
        sofar = rel_join(&sofar, comp);
        dir = open_dir_in(root, &sofar)?;
    }
    Ok(dir)
}

/// `a` + `/` + `b`, with `""` meaning the root.
pub fn rel_join(a: &str, b: &str) -> String {
    if a.is_empty() { b.to_string() } else { format!("{a}/{b}") }
}

/// Splits a clean relative path into (parent, name).
pub fn split_parent(rel: &str) -> (&str, &str) {
    match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    }
}

/// The names in an open directory, without `.` and `..`, sorted bytewise.
pub fn dir_names(dir: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let mut d = Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes `name` in `dir` and, for a directory, everything below it, without following
/// symlinks. Directories the owner cannot write (rootless trees keep modes like 0555) are made
/// writable first.
pub fn remove_all_at(dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    let dir = dir.as_fd();
    let name = OsStr::from_bytes(name);
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = match rustix::fs::openat(
            dir,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::ACCESS) => {
                rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
                rustix::fs::openat(
                    dir,
                    name,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?
            }
            Err(e) => return Err(e.into()),
        };
        if st.st_mode & 0o300 != 0o300 {
            let _ = rustix::fs::fchmod(&sub, Mode::from_raw_mode(0o700));
        }
        for child in dir_names(&sub)? {
            remove_all_at(&sub, &child)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Removes a whole tree by host path (cleanup of work directories); a missing path is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::other("refusing to remove a root directory"));
    };
    let parent = match rustix::fs::open(parent, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    remove_all_at(&parent, name.as_bytes())
}

/// Reads a small file below `root` with in-root resolution (e.g. the image's CA bundle or
/// `/etc/passwd`). `Ok(None)` when it does not exist or is not a regular file.
pub fn read_in_root(root: &Path, rel: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let r = open_root(root)?;
    let fd = match open_in_root(&r, rel, OFlags::RDONLY) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    if st.st_size as u64 > limit {
        return Err(io::Error::other(format!("{rel} is larger than {limit} bytes")));
    }
    let mut f = std::fs::File::from(fd);
    let mut v = Vec::new();
    io::Read::read_to_end(&mut f, &mut v)?;
    Ok(Some(v))
}

/// An OS error's text without the `(os error N)` suffix (`operation not permitted`).
pub(crate) fn errno_text(e: impl std::fmt::Display) -> String {
    crate::error::os_error_text(&e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_root_resolution_clamps_symlinks_and_dotdot() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/", root.join("etc/up")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("dots")).unwrap();
        let r = open_root(&root).unwrap();
        // both resolve to the root itself, never to the host /
        let a = mkdir_all_in(&r, "etc/up/created", 0o755).unwrap();
        drop(a);
        assert!(root.join("created").is_dir());
        let b = mkdir_all_in(&r, "dots/x/y", 0o755).unwrap();
        drop(b);
        assert!(root.join("x/y").is_dir());
        assert!(!Path::new("/x/y").exists());
        assert_eq!(split_parent("a/b/c"), ("a/b", "c"));
        assert_eq!(split_parent("c"), ("", "c"));
        // a regular file behind a symlink is not opened by the no-symlink opener
        std::fs::write(root.join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("f", root.join("l")).unwrap();
        assert!(open_file_beneath(&r, "f").is_ok());
        assert!(open_file_beneath(&r, "l").is_err());
    }

    #[test]
    fn remove_tree_handles_read_only_directories() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", d.join("a/link")).unwrap();
        std::fs::set_permissions(d.join("a/b"), std::fs::Permissions::from_mode(0o555)).unwrap();
        std::fs::set_permissions(d.join("a"), std::fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&d).unwrap();
        assert!(!d.exists());
        assert!(Path::new("/etc").is_dir());
        remove_tree(&d).unwrap();
    }
}
