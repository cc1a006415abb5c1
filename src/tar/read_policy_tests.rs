//! The shapes [`super`] refuses, built byte by byte, against the input-archive reader
//! ([`crate::tar::index::TarArchive`]); `spx::tar_stream` tests the streaming reader with the same
//! shapes, and `tests/it/archive_shapes.rs` shows what GNU tar and Python make of them.

use std::io::Write;

use crate::tar::index::TarArchive;

/// One raw ustar header block with `size_field` as its size, then `data` padded to 512.
pub(crate) fn raw(name: &str, kind: u8, size_field: u64, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size_field);
    h.set_mode(0o644);
    h.set_cksum();
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(data);
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

/// A well-formed PAX record `LEN key=value\n`.
pub(crate) fn record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut n = body.len() + 1;
    while format!("{n}{body}").len() != n {
        n += 1;
    }
    format!("{n}{body}")
}

/// A PAX `x` or `g` header entry holding `records` as they are.
pub(crate) fn pax(kind: u8, records: &str) -> Vec<u8> {
    raw("PaxHeaders/x", kind, records.len() as u64, "", records.as_bytes())
}

/// The hostile shapes, each a complete archive with a harmless entry `a` after the trick:
/// (class, archive bytes).
pub(crate) fn hostile_shapes() -> Vec<(&'static str, Vec<u8>)> {
    let end = vec![0u8; 1024];
    let file = raw("a", b'0', 1, "", b"1");
    let with = |head: Vec<u8>| [head, file.clone(), end.clone()].concat();
    vec![
        (
            "hard link out of the archive",
            [file.clone(), raw("l", b'1', 0, "../../etc/passwd", b""), end.clone()].concat(),
        ),
        ("hard link to a later entry", [raw("l", b'1', 0, "a", b""), file.clone(), end.clone()].concat()),
        ("global path", with(pax(b'g', &record("path", "../../x")))),
        ("global size", with(pax(b'g', &record("size", "0")))),
        ("non-numeric size", with(pax(b'x', &record("size", "1k")))),
        ("lying length prefix", with(pax(b'x', "99 path=evil\n"))),
        ("duplicate path", with(pax(b'x', &(record("path", "b") + &record("path", "../../c"))))),
        ("sparse record", with(pax(b'x', &record("GNU.sparse.major", "1")))),
        ("x before g", [pax(b'x', &record("path", "p")), pax(b'g', &record("comment", "c")), file, end].concat()),
    ]
}

fn open(bytes: &[u8]) -> crate::error::Result<TarArchive> {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    TarArchive::open(f.path(), "test archive")
}

#[test]
fn archives_other_readers_see_differently_are_refused() {
    for (class, bytes) in hostile_shapes() {
        let e = open(&bytes).err().unwrap_or_else(|| panic!("{class}: accepted"));
        let want = match class {
            "hard link out of the archive" => "hard link \"l\" points outside the archive",
            "hard link to a later entry" => "which is not an earlier entry of the archive",
            "global path" => "a PAX global header that sets \"path\" for every following entry",
            "global size" => "a PAX global header that sets \"size\"",
            "non-numeric size" => "a PAX size record that is not a decimal number (\"1k\"",
            "duplicate path" => "two PAX path records for one entry",
            "sparse record" => "a GNU sparse PAX record",
            "x before g" => "a PAX x header that describes a global header",
            _ => "a malformed PAX record",
        };
        assert!(e.message().contains(want), "{class}: {}", e.message());
        assert!(e.message().starts_with("/"), "{class}: names the file: {}", e.message());
        assert!(e.hint().is_some_and(|h| h.contains("GNU tar, Python and Docker")), "{class}");
    }
}

#[test]
fn well_formed_pax_and_harmless_global_headers_are_read() {
    let end = vec![0u8; 1024];
    let a = [
        pax(b'g', &(record("comment", "4b825dc6") + &record("mtime", "1700000000.5"))),
        pax(b'x', &(record("path", "long/name") + &record("size", "1") + &record("mtime", "1"))),
        raw("short", b'0', 1, "", b"1"),
        raw("l", b'1', 0, "./long/name", b""),
        end,
    ]
    .concat();
    let t = open(&a).unwrap();
    assert_eq!(t.names(), ["long/name", "l"]);
    assert_eq!(t.read("l", 10).unwrap(), b"1");
}
