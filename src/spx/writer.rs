//! The SPX writer: a flat, deterministic, gzip-compressed tar. Entries are written in the order
//! given (the planner puts `manifest.json` first and sorts where order is free) as POSIX ustar
//! headers — with a PAX record only for names over 255 bytes or files of 8 GiB and more — with
//! uid/gid 0, no user/group names, one mtime, and mode 0644/0755 (directories 0755) keeping only
//! the executable bit of the source. Content that is already compressed (image archives, PNG,
//! gzip …) goes into *stored* deflate blocks through the [`Sink`] so no CPU is spent on it.

use std::io::{self, Read};
use std::path::PathBuf;

use crate::compress::{self, Compression};
use crate::docker_archive::write::Sink;
use crate::error::{Error, Result};

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

/// The largest size an ustar header holds in octal (8 GiB - 1).
const USTAR_MAX_SIZE: u64 = 0o77777777777;

/// Writes the tar stream of `entries` into `sink`. For an [`Body::Archive`] entry, `produce` is
/// called with the sink and must write exactly the announced size. Returns the tar size.
pub fn write_tar(
    sink: &mut dyn Sink,
    entries: &[Entry],
    mtime: u64,
    produce: &mut dyn FnMut(usize, &mut dyn Sink) -> Result<u64>,
    progress: &dyn Fn(u64),
) -> Result<u64> {
    fn io_err(name: &str) -> impl Fn(io::Error) -> Error + '_ {
        move |e: io::Error| Error::from_io("cannot write", &format!("{name} into the SPX"), e)
    }
    let mut written = 0u64;
    for e in entries {
        let size = e.size();
        written += header(sink, e, size, mtime).map_err(io_err(&e.name))?;
        match &e.body {
            Body::Dir => continue,
            Body::Bytes(b) => sink.meta(b).map_err(io_err(&e.name))?,
            Body::File { path, size } => copy_file(sink, path, *size, &e.name, progress)?,
            Body::Archive { index, size } => {
                let n = produce(*index, sink)?;
                if n != *size {
                    return Err(Error::internal(format!(
                        "{}: the image archive is {n} bytes, {size} were planned",
                        e.name
                    )));
                }
            }
        }
        let rem = (size % 512) as usize;
        if rem != 0 {
            sink.meta(&[0u8; 512][..512 - rem]).map_err(io_err(&e.name))?;
        }
        written += size.div_ceil(512) * 512;
    }
    sink.meta(&[0u8; 1024]).map_err(io_err("the end of archive"))?;
    Ok(written + 1024)
}

fn header(sink: &mut dyn Sink, e: &Entry, size: u64, mtime: u64) -> io::Result<u64> {
    let dir = matches!(e.body, Body::Dir);
    let tar_name = if dir { format!("{}/", e.name) } else { e.name.clone() };
    let mut h = tar::Header::new_ustar();
    let mut pax: Vec<(&str, String)> = Vec::new();
    if h.set_path(&tar_name).is_err() {
        pax.push(("path", tar_name.clone()));
        // a readable stand-in for readers without PAX support: the last 99 bytes, at a char boundary
        let mut start = tar_name.len().saturating_sub(99);
        while !tar_name.is_char_boundary(start) {
            start += 1;
        }
        h.set_path(tar_name[start..].trim_start_matches('/')).map_err(io::Error::other)?;
    }
    if size > USTAR_MAX_SIZE {
        pax.push(("size", size.to_string()));
    }
    let mut written = 0;
    if !pax.is_empty() {
        let mut records = Vec::new();
        for (k, v) in &pax {
            records.extend_from_slice(&pax_record(k, v));
        }
        let mut ph = tar::Header::new_ustar();
        ph.set_path("././@PaxHeader")?;
        ph.set_entry_type(tar::EntryType::XHeader);
        ph.set_size(records.len() as u64);
        fill(&mut ph, 0o644, mtime);
        sink.meta(ph.as_bytes())?;
        sink.meta(&records)?;
        let rem = records.len() % 512;
        if rem != 0 {
            sink.meta(&[0u8; 512][..512 - rem])?;
        }
        written += 512 + (records.len() as u64).div_ceil(512) * 512;
    }
    h.set_entry_type(if dir { tar::EntryType::Directory } else { tar::EntryType::Regular });
    h.set_size(if dir { 0 } else { size });
    fill(&mut h, if dir { 0o755 } else { e.mode }, mtime);
    sink.meta(h.as_bytes())?;
    Ok(written + 512)
}

fn fill(h: &mut tar::Header, mode: u32, mtime: u64) {
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_cksum();
}

/// One PAX record: `"<len> <key>=<value>\n"` where `<len>` counts the whole record.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + body.to_string().len();
    if len.to_string().len() + body != len {
        len += 1;
    }
    format!("{len} {key}={value}\n").into_bytes()
}

fn copy_file(sink: &mut dyn Sink, path: &std::path::Path, size: u64, name: &str, progress: &dyn Fn(u64)) -> Result<()> {
    let mut f = crate::input::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    let mut stored: Option<bool> = None;
    while left > 0 {
        let want = (buf.len() as u64).min(left) as usize;
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Error::input(format!(
                    "{} changed while it was being packaged (it shrank)",
                    path.display()
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("cannot read", path, e)),
        };
        let store = *stored.get_or_insert_with(|| already_compressed(&buf[..n]));
        let r = if store { sink.compressed(&buf[..n]) } else { sink.meta(&buf[..n]) };
        r.map_err(|e| Error::from_io("cannot write", &format!("{name} into the SPX"), e))?;
        left -= n as u64;
        progress(n as u64);
    }
    let mut one = [0u8; 1];
    if matches!(f.read(&mut one), Ok(n) if n > 0) {
        return Err(Error::input(format!("{} changed while it was being packaged (it grew)", path.display())));
    }
    Ok(())
}

/// Whether data starting with `head` is compressed already, so deflating it again is wasted CPU.
pub fn already_compressed(head: &[u8]) -> bool {
    compress::sniff(head) != Compression::None
        || head.starts_with(b"\x89PNG")
        || head.starts_with(&[0xff, 0xd8, 0xff])
        || head.starts_with(b"PK\x03\x04")
        || head.starts_with(b"7z\xbc\xaf\x27\x1c")
        || head.starts_with(b"RIFF")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker_archive::write::Plain;

    #[test]
    fn deterministic_ustar_with_pax_for_long_names() {
        let long = format!("data/{}/{}", "d".repeat(150), "f".repeat(120));
        let entries = vec![
            Entry { name: "manifest.json".into(), body: Body::Bytes(b"{}".to_vec()), mode: 0o644, origin: "m".into() },
            Entry { name: "data".into(), body: Body::Dir, mode: 0o755, origin: "d".into() },
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
                (long, 0o755, 0, 7, 1),
                ("arch.tar".into(), 0o644, 0, 7, 3)
            ]
        );
        assert!(out.windows(6).any(|w| w == b"ustar\0"));
        assert_eq!(pax_record("path", "abc"), b"12 path=abc\n");
        assert_eq!(pax_record("path", &"x".repeat(90)).len(), 99);
        let r = pax_record("path", &"x".repeat(91));
        assert_eq!(String::from_utf8_lossy(&r[..4]), "101 ");
        assert_eq!(r.len(), 101);
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
    }
}
