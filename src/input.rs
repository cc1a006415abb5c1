//! Opening untrusted input files: the one way spxpack opens a file the user (or an archive,
//! layout or extension directory) names. Only regular files are read, after following
//! symlinks: a FIFO would block forever and a device (`/dev/zero`) never ends, so they are
//! refused with a message that says what the file is. The type is checked with `stat` before
//! opening (opening some devices has side effects) and again with `fstat` on the descriptor,
//! which is opened with `O_NONBLOCK` so that a FIFO swapped in between cannot block the open.
//! Whole-file reads are bounded by the bytes actually read, never by the size on disk.
//!
//! The functions return `io::Error` so that they drop into existing `std::fs` call sites; a
//! refusal travels inside it as an [`Error`] of kind input, which [`Error::io`] and
//! [`Error::from_io`] give back unchanged and [`refusal`] extracts.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::Error;

/// The cap for text inputs read whole: Dockerfiles, ignore files, extension manifests, compose
/// files, credential files, certificates and secrets.
pub const MAX_TEXT: u64 = 16 << 20;

/// What a non-regular file is, for messages.
fn kind_name(m: &Metadata) -> Option<&'static str> {
    let t = m.file_type();
    if t.is_file() {
        None
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_dir() {
        Some("a directory")
    } else {
        Some("not a regular file")
    }
}

fn refuse(path: &Path, what: &str) -> io::Error {
    let what = if what.starts_with("a ") { format!("{what}, not a regular file") } else { what.to_string() };
    Error::input(format!("{} is {what}", path.display()))
        .with_hint("spxpack reads only regular files here (a FIFO, device or socket can block or never end); copy the content into a file")
        .into_io()
}

fn check(path: &Path, m: &Metadata) -> io::Result<()> {
    match kind_name(m) {
        Some(k) => Err(refuse(path, k)),
        None => Ok(()),
    }
}

/// Opens `path` (following symlinks) for reading if it is a regular file; refuses FIFOs,
/// devices, sockets and directories without blocking.
pub fn open(path: &Path) -> io::Result<File> {
    check(path, &std::fs::metadata(path)?)?;
    let f = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
    check(path, &f.metadata()?)?;
    Ok(f)
}

/// Whether `path` names something that is not a directory (following symlinks): a regular
/// file, or a special file that [`open`] refuses with a message saying what it is. Use it where
/// "is there a file?" is decided, so that a FIFO is reported as a FIFO and not as missing.
pub fn names_a_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_dir())
}

/// Reads all of `r` (the content of `path`) but refuses more than `limit` bytes.
pub fn read_bounded(r: impl Read, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(Error::input(format!("{} is larger than {} bytes", path.display(), limit))
            .with_hint(format!(
                "spxpack reads at most {} of this kind of file; check that the path names the right file",
                human(limit)
            ))
            .into_io());
    }
    Ok(buf)
}

/// `std::fs::read` for untrusted input: a regular file only, at most `limit` bytes (counted
/// as they are read).
pub fn read(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_bounded(open(path)?, path, limit)
}

/// The spxpack error inside an `io::Error` from this module (a refused file type or size).
pub fn refusal(e: &io::Error) -> Option<Error> {
    let inner = e.get_ref()?.downcast_ref::<Error>()?;
    let out = Error::new(inner.kind(), inner.message());
    Some(match inner.hint() {
        Some(h) => out.with_hint(h),
        None => out,
    })
}

fn human(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) { format!("{} MiB", n >> 20) } else { format!("{n} bytes") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_reads_refuse_special_files_and_are_bounded_by_bytes_read() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read(&f, 5).unwrap(), b"12345");
        let e = Error::io("cannot read", &f, read(&f, 4).unwrap_err());
        assert!(e.to_string().contains("larger than 4 bytes") && e.hint().is_some(), "{e}");
        assert_eq!(e.exit_code(), 1);
        // a symlink to a regular file is followed
        let l = d.path().join("l");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        assert_eq!(read(&l, 10).unwrap(), b"12345");
        // /dev/zero: a character device, refused before reading
        let z = d.path().join("z");
        std::os::unix::fs::symlink("/dev/zero", &z).unwrap();
        let e = refusal(&read(&z, 10).unwrap_err()).unwrap();
        assert!(e.to_string().contains("a character device, not a regular file"), "{e}");
        // a FIFO with no writer: refused, does not block
        let p = d.path().join("p");
        assert!(std::process::Command::new("mkfifo").arg(&p).status().unwrap().success());
        let e = refusal(&open(&p).unwrap_err()).unwrap();
        assert!(e.to_string().contains("a FIFO, not a regular file") && e.hint().is_some(), "{e}");
        let e = refusal(&open(d.path()).unwrap_err()).unwrap();
        assert!(e.to_string().contains("a directory"), "{e}");
        // a missing file keeps its io::ErrorKind for the callers' own messages
        assert_eq!(open(&d.path().join("missing")).unwrap_err().kind(), io::ErrorKind::NotFound);
        // a reader that never ends stops at the limit
        let e = refusal(&read_bounded(io::repeat(0), &f, 1 << 20).unwrap_err()).unwrap();
        assert!(e.to_string().contains("larger than"), "{e}");
    }
}
