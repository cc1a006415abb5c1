//! The SPX writer: a flat, deterministic, gzip-compressed tar. Entries are written in the order
//! given (the planner puts `manifest.json` first and sorts where order is free) with the header
//! policy of [`crate::tar::header`] (ustar, PAX only for what ustar cannot hold), uid/gid 0, no
//! user/group names, one mtime, and mode 0644/0755 (directories 0755) keeping only the
//! executable bit of the source. Content that is already compressed (image archives, PNG,
//! gzip …) goes into *stored* deflate blocks through the [`Sink`] so no CPU is spent on it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::tar::{Content, CopyError, Header, Sink, TarWriter, expect_end};

/// What an entry holds.
#[derive(Debug, Clone)]
pub enum Body {
    /// Generated in memory (the rewritten manifest).
    Bytes(Vec<u8>),
    /// A file copied from disk; its size is checked again while copying.
    File {
        path: PathBuf,
        size: u64,
    },
    Dir,
    /// An image archive produced while writing (index into the planner's archives).
    Archive {
        index: usize,
        size: u64,
    },
}

/// One SPX member.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the SPX, without `./` and without a trailing `/`.
    pub name: String,
    pub body: Body,
    /// 0o644, 0o755.
    pub mode: u32,
    /// Where it comes from, for messages.
    pub origin: String,
}

impl Entry {
    pub fn size(&self) -> u64 {
        match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::File { size, .. } | Body::Archive { size, .. } => *size,
            Body::Dir => 0,
        }
    }
}

/// Writes the tar stream of `entries` into `sink`. For an [`Body::Archive`] entry, `produce` is
/// called with the sink and must write exactly the announced size. Returns the tar size.
pub fn write_tar(
    sink: &mut dyn Sink,
    entries: &[Entry],
    mtime: u64,
    produce: &mut dyn FnMut(usize, &mut dyn Sink) -> Result<u64>,
    progress: &dyn Fn(u64),
) -> Result<u64> {
    let io_err = |name: &str| {
        let what = format!("{name} into the SPX");
        move |e: std::io::Error| Error::from_io("cannot write", &what, e)
    };
    let mut tw = TarWriter::new(sink);
    for e in entries {
        let size = e.size();
        let dir_name;
        let mut h = Header::file(&e.name, size, e.mode);
        h.mtime = mtime;
        if let Body::Dir = e.body {
            dir_name = format!("{}/", e.name);
            h = Header { name: &dir_name, kind: ::tar::EntryType::Directory, mode: 0o755, ..h };
        }
        tw.header(&h).map_err(io_err(&e.name))?;
        match &e.body {
            Body::Dir => continue,
            Body::Bytes(b) => tw.meta(b).map_err(io_err(&e.name))?,
            Body::File { path, size } => copy_file(&mut tw, path, *size, &e.name, progress)?,
            Body::Archive { index, size } => {
                let n = produce(*index, &mut tw)?;
                if n != *size {
                    return Err(Error::internal(format!(
                        "{}: the image archive is {n} bytes, {size} were planned",
                        e.name
                    )));
                }
            }
        }
        if !matches!(e.body, Body::File { .. }) {
            tw.pad(size).map_err(io_err(&e.name))?;
        }
    }
    tw.finish().map_err(io_err("the end of archive"))?;
    Ok(tw.written())
}

fn copy_file(
    tw: &mut TarWriter<'_, dyn Sink + '_>,
    path: &Path,
    size: u64,
    name: &str,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let mut f = crate::input::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let changed = |how: &str| Error::input(format!("{} changed while it was being packaged ({how})", path.display()));
    tw.copy(&mut f, size, Content::Sniff, progress).and_then(|()| expect_end(&mut f)).map_err(|e| match e {
        CopyError::Short(_) => changed("it shrank"),
        CopyError::Long => changed("it grew"),
        CopyError::Read(e) => Error::io("cannot read", path, e),
        CopyError::Write(e) => Error::from_io("cannot write", &format!("{name} into the SPX"), e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::Plain;

    #[test]
    fn deterministic_ustar_with_pax_for_long_names() {
        let long = format!("data/{}/{}", "d".repeat(150), "f".repeat(120));
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("i.png");
        std::fs::write(&png, b"\x89PNG....").unwrap();
        let entries = vec![
            Entry { name: "manifest.json".into(), body: Body::Bytes(b"{}".to_vec()), mode: 0o644, origin: "m".into() },
            Entry { name: "data".into(), body: Body::Dir, mode: 0o755, origin: "d".into() },
            Entry {
                name: "data/café.png".into(),
                body: Body::File { path: png, size: 8 },
                mode: 0o644,
                origin: "".into(),
            },
            Entry { name: long.clone(), body: Body::Bytes(b"x".to_vec()), mode: 0o755, origin: "l".into() },
            Entry {
                name: "arch.tar".into(),
                body: Body::Archive { index: 0, size: 3 },
                mode: 0o644,
                origin: "a".into(),
            },
        ];
        let mut sink = Plain(Vec::new());
        let n = write_tar(
            &mut sink,
            &entries,
            7,
            &mut |i, s| {
                assert_eq!(i, 0);
                s.compressed(b"abc").unwrap();
                Ok(3)
            },
            &|_| {},
        )
        .unwrap();
        let out = sink.0;
        assert_eq!(n as usize, out.len());
        let mut a = tar::Archive::new(&out[..]);
        let got: Vec<(String, u32, u64, u64, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                    e.size(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("manifest.json".into(), 0o644, 0, 7, 2),
                ("data/".into(), 0o755, 0, 7, 0),
                ("data/café.png".into(), 0o644, 0, 7, 8),
                (long, 0o755, 0, 7, 1),
                ("arch.tar".into(), 0o644, 0, 7, 3)
            ]
        );
        assert!(out.windows(6).any(|w| w == b"ustar\0"));
        crate::tar::golden::check("spx.tar", &out);
    }

    #[test]
    fn refuses_a_producer_that_lies() {
        let entries = vec![Entry {
            name: "a.tar.gz".into(),
            body: Body::Archive { index: 0, size: 4 },
            mode: 0o644,
            origin: String::new(),
        }];
        let e = write_tar(&mut Plain(Vec::new()), &entries, 0, &mut |_, _| Ok(3), &|_| {}).unwrap_err();
        assert!(e.to_string().contains("were planned"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345678").unwrap();
        for (size, how) in [(9, "it shrank"), (7, "it grew")] {
            let body = Body::File { path: f.clone(), size };
            let entries = [Entry { name: "f".into(), body, mode: 0o644, origin: String::new() }];
            let e = write_tar(&mut Plain(Vec::new()), &entries, 0, &mut |_, _| Ok(0), &|_| {}).unwrap_err();
            assert!(e.to_string().contains(how), "{e}");
        }
    }
}
