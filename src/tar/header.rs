//! The one header policy of every tar spxpack writes, the one Go's `archive/tar` follows (the
//! writer behind `docker save`, moby's layer tars and BuildKit's diffs):
//!
//! - a POSIX ustar header when every value fits it: names and link names that are ASCII and at
//!   most 100 bytes (a longer ASCII name is split at a `/` into the 155-byte prefix and the
//!   100-byte name), numbers in octal (ids below 2^21, sizes and mtimes below 2^33);
//! - otherwise a PAX extended header (`x`) first, carrying only what ustar cannot hold:
//!   `path`, `linkpath`, `uid`, `gid`, `size`, `mtime`, `SCHILY.xattr.*`, keys sorted. Once an
//!   entry needs PAX, a long name goes into a `path` record instead of the prefix, as Go does.
//!   The ustar fields then keep an ASCII-only stand-in (the first 100 bytes) and 0 for numbers
//!   that do not fit.
//! - The PAX header block is named as Go names it, `<dir>/PaxHeaders.0/<base>`, with mode,
//!   ids and mtime 0: it is the convention of the images spxpack's layers sit next to, it does
//!   not depend on the process (GNU tar puts its pid there), and a reader without PAX support
//!   extracts it as a harmless file beside the entry instead of a hidden `././@PaxHeader`.
//!
//! Fields are written as the `tar` crate writes them (octal with a NUL terminator, no
//! user/group names; device numbers only for devices).

use ::tar::EntryType;

/// Largest octal value in an 8-byte field (ids, mode, device numbers): 7 digits.
const MAX_OCTAL_8: u64 = (1 << 21) - 1;
/// Largest octal value in a 12-byte field (size, mtime): 11 digits, 8 GiB - 1.
pub const MAX_OCTAL_12: u64 = (1 << 33) - 1;
const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;

/// One entry's metadata, as the entry is meant to be read back.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// The name as stored: relative, a directory's ending in `/`.
    pub name: &'a str,
    pub kind: EntryType,
    /// Permission bits plus setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Content bytes that follow the header (0 for everything but regular files).
    pub size: u64,
    pub mtime: u64,
    /// Target of a symlink or hard link.
    pub link: &'a [u8],
    /// (major, minor) of a character or block device.
    pub device: Option<(u32, u32)>,
    /// Extended attributes, written as `SCHILY.xattr.<name>` records.
    pub xattrs: &'a [(String, Vec<u8>)],
}

impl<'a> Header<'a> {
    /// An entry of `kind` with mode 0644, ids 0, size 0, mtime 0 and no link.
    pub fn new(name: &'a str, kind: EntryType) -> Self {
        Header { name, kind, mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0, link: &[], device: None, xattrs: &[] }
    }

    /// A regular file of `size` bytes.
    pub fn file(name: &'a str, size: u64, mode: u32) -> Self {
        Header { size, mode, ..Header::new(name, EntryType::Regular) }
    }

    /// The blocks that introduce the entry: the PAX header and its records when needed, then
    /// the ustar header. Their length is a multiple of 512.
    pub fn encode(&self) -> Vec<u8> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if !fits_ustar(self.link) {
            pax.push(("linkpath".into(), self.link.to_vec()));
        }
        let uid = numeric(&mut pax, "uid", self.uid, MAX_OCTAL_8);
        let gid = numeric(&mut pax, "gid", self.gid, MAX_OCTAL_8);
        let size = numeric(&mut pax, "size", self.size, MAX_OCTAL_12);
        let mtime = numeric(&mut pax, "mtime", self.mtime, MAX_OCTAL_12);
        for (k, v) in self.xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        let name = self.name.as_bytes();
        let split = if fits_ustar(name) {
            Some((&b""[..], name))
        } else if pax.is_empty() {
            split_ustar_path(name)
        } else {
            None
        };
        let mut h = ::tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().expect("a ustar header");
            match split {
                Some((prefix, rest)) => {
                    u.prefix[..prefix.len()].copy_from_slice(prefix);
                    u.name[..rest.len()].copy_from_slice(rest);
                }
                None => {
                    pax.push(("path".into(), name.to_vec()));
                    put_truncated(&mut u.name, &to_ascii(name));
                }
            }
            put_truncated(&mut u.linkname, &to_ascii(self.link));
        }
        h.set_entry_type(self.kind);
        h.set_mode(self.mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(size);
        h.set_mtime(mtime);
        if let Some((major, minor)) = self.device {
            h.set_device_major(major).expect("a ustar header takes device numbers");
            h.set_device_minor(minor).expect("a ustar header takes device numbers");
        }
        h.set_cksum();
        let mut out = Vec::with_capacity(512);
        if !pax.is_empty() {
            pax.sort();
            let mut records = Vec::new();
            for (k, v) in &pax {
                records.extend_from_slice(&pax_record(k, v));
            }
            out.extend_from_slice(pax_header(self.name, records.len() as u64).as_bytes());
            out.extend_from_slice(&records);
            out.resize(padded(out.len() as u64) as usize, 0);
        }
        out.extend_from_slice(h.as_bytes());
        out
    }
}

/// `n` rounded up to whole 512-byte blocks.
pub fn padded(n: u64) -> u64 {
    n.div_ceil(512) * 512
}

/// `v` when it fits `max`, else 0 and a PAX record with its decimal value.
fn numeric(pax: &mut Vec<(String, Vec<u8>)>, key: &str, v: u64, max: u64) -> u64 {
    if v <= max {
        return v;
    }
    pax.push((key.into(), v.to_string().into_bytes()));
    0
}

/// The extended header block for the entry `name`, holding `len` bytes of records.
fn pax_header(name: &str, len: u64) -> ::tar::Header {
    let (dir, base) = match name.rfind('/') {
        Some(i) => (&name[..=i], &name[i + 1..]),
        None => ("", name),
    };
    let full = if base.is_empty() { format!("{dir}PaxHeaders.0") } else { format!("{dir}PaxHeaders.0/{base}") };
    let mut h = ::tar::Header::new_ustar();
    let mut n = to_ascii(full.as_bytes());
    n.truncate(NAME_LEN);
    while n.last() == Some(&b'/') {
        n.pop();
    }
    h.as_ustar_mut().expect("a ustar header").name[..n.len()].copy_from_slice(&n);
    h.set_entry_type(EntryType::XHeader);
    h.set_mode(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(len);
    h.set_mtime(0);
    h.set_cksum();
    h
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let digits = |n: usize| n.to_string().len();
    let mut len = body + 1;
    while len != body + digits(len) {
        len = body + digits(len);
    }
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(format!("{len} {key}=").as_bytes());
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// Whether a name or link name fits a 100-byte ustar field as it is.
fn fits_ustar(s: &[u8]) -> bool {
    s.len() <= NAME_LEN && is_ascii(s)
}

fn is_ascii(s: &[u8]) -> bool {
    s.iter().all(|&c| c != 0 && c < 0x80)
}

/// Go's `toASCII`: the name without its non-ASCII and NUL bytes.
fn to_ascii(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(|&c| c != 0 && c < 0x80).collect()
}

fn put_truncated(field: &mut [u8], s: &[u8]) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s[..n]);
}

/// Go's `splitUSTARPath`: (prefix, name) split at the last `/` that leaves a prefix of at most
/// 155 bytes, when the rest fits 100 bytes; only for ASCII names longer than 100 bytes.
fn split_ustar_path(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= NAME_LEN || !is_ascii(name) {
        return None;
    }
    let mut length = name.len();
    if length > PREFIX_LEN + 1 {
        length = PREFIX_LEN + 1;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|&c| c == b'/')?;
    let rest = name.len() - i - 1;
    if i == 0 || rest > NAME_LEN || rest == 0 || i > PREFIX_LEN {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, link name, uid) as the `tar` crate reads the entry back.
    fn read_back(blocks: &[u8]) -> (String, Vec<u8>, u64) {
        let all = [blocks, &[0u8; 1024]].concat();
        let mut a = ::tar::Archive::new(&all[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let link = e.link_name_bytes().map(|b| b.into_owned()).unwrap_or_default();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let pax_uid = e.pax_extensions().unwrap().and_then(|mut x| {
            x.find_map(|r| r.ok().filter(|r| r.key() == Ok("uid")).map(|r| r.value().unwrap().parse().unwrap()))
        });
        (name, link, pax_uid.unwrap_or(e.header().uid().unwrap()))
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("path", b"a"), b"9 path=a\n"); // as Go's archive/tar writes it
        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
        for n in [1, 88, 89, 90, 91, 95, 985, 994, 995, 996, 10_000] {
            let r = pax_record("path", &vec![b'x'; n]);
            let len: usize = std::str::from_utf8(&r).unwrap().split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, r.len(), "{n}");
        }
    }

    #[test]
    fn ustar_splits_long_ascii_names_like_go() {
        let long = format!("{}/{}", "a".repeat(120), "b".repeat(90));
        assert_eq!(split_ustar_path(long.as_bytes()), Some((&long.as_bytes()[..120], &long.as_bytes()[121..])));
        assert_eq!(split_ustar_path("c".repeat(300).as_bytes()), None);
        let dir = format!("{}/{}/", "d".repeat(60), "e".repeat(60));
        assert_eq!(split_ustar_path(dir.as_bytes()).unwrap().1, format!("{}/", "e".repeat(60)).as_bytes());
        assert_eq!(split_ustar_path(format!("{}/é", "f".repeat(120)).as_bytes()), None);
        let blocks = Header::file(&long, 0, 0o644).encode();
        assert_eq!(blocks.len(), 512, "no PAX header");
        assert_eq!(read_back(&blocks).0, long);
    }

    #[test]
    fn pax_only_for_what_ustar_cannot_hold() {
        let short = Header::file("a/b.txt", 3, 0o644).encode();
        assert_eq!(short.len(), 512);
        for name in ["a/é.txt".to_string(), format!("d/{}", "x".repeat(300)), format!("{}/", "y".repeat(120))] {
            let blocks = Header::new(&name, EntryType::Directory).encode();
            assert_eq!(blocks.len(), 1536, "{name}");
            assert_eq!(read_back(&blocks).0, name);
        }
        let mut h = Header::new("l", EntryType::Symlink);
        let target = "t/".repeat(80);
        h.link = target.as_bytes();
        h.uid = 1 << 30;
        let blocks = h.encode();
        let (name, link, uid) = read_back(&blocks);
        assert_eq!((name.as_str(), link, uid), ("l", target.into_bytes(), 1 << 30));
        // the records are sorted, the header block named as Go names it
        let body = String::from_utf8_lossy(&blocks[512..1024]);
        assert!(body.starts_with("174 linkpath=t/t/") && body.contains("\n18 uid=1073741824\n"), "{body}");
        assert_eq!(&blocks[..15], b"PaxHeaders.0/l\0");
    }

    #[test]
    fn pax_header_names_follow_go() {
        let name = |n: &str| {
            let h = pax_header(n, 0);
            String::from_utf8(h.path_bytes().into_owned()).unwrap()
        };
        assert_eq!(name("file"), "PaxHeaders.0/file");
        assert_eq!(name("a/b/c"), "a/b/PaxHeaders.0/c");
        assert_eq!(name("a/b/"), "a/b/PaxHeaders.0");
        assert_eq!(name("dir/"), "dir/PaxHeaders.0");
        assert_eq!(name("a/ü"), "a/PaxHeaders.0");
        assert_eq!(name(&"z".repeat(200)).len(), 100);
    }
}
