//! Archives that GNU tar, Python's tarfile and Go's archive/tar (Docker) read differently: a
//! hard link out of the archive, a PAX global `path=`, a non-numeric PAX `size`, a PAX record
//! whose length prefix lies. Each is built byte by byte; the test records what GNU tar and
//! Python make of it (the disagreement), then checks that `spxpack verify` refuses it as an SPX
//! and `spxpack pull docker-archive:` refuses it as an input archive, with nothing written.

use std::io::Write;

use crate::support::{Scratch, run};

/// One ustar header block (`size` in the header) followed by `data`, padded to 512 bytes.
fn block(name: &str, kind: u8, link: &str, size: usize, data: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..265].copy_from_slice(b"ustar\x0000");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h.extend_from_slice(data);
    h.resize(h.len().div_ceil(512) * 512, 0);
    h
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    block(name, b'0', "", data.len(), data)
}

/// A PAX header (`x` or `g`) holding `records` byte for byte.
fn pax(kind: u8, records: &str) -> Vec<u8> {
    block("PaxHeaders/0", kind, "", records.len(), records.as_bytes())
}

/// The four shapes: (name, archive, what GNU tar says, what Python lists, spxpack's error).
fn shapes() -> Vec<(&'static str, Vec<u8>, &'static str, &'static str, &'static str)> {
    let end = vec![0u8; 1024];
    vec![
        (
            "hardlink",
            [file("a", b"1"), block("l", b'1', "../../etc/passwd", 0, b""), end.clone()].concat(),
            "Removing leading `../../' from hard link targets",
            "('l', '../../etc/passwd')",
            "hard link \"l\" points outside the archive",
        ),
        (
            "global-path",
            [pax(b'g', "16 path=../../x\n"), file("a", b"1"), file("b", b"2"), end.clone()].concat(),
            "Removing leading `../../' from member names",
            "('../../x', ''), ('../../x', '')",
            "a PAX global header that sets \"path\" for every following entry",
        ),
        (
            "size-not-a-number",
            [pax(b'x', "11 size=1k\n"), file("a", b"1"), end.clone()].concat(),
            "Malformed extended header: invalid size=1k",
            "('a', '')",
            "a PAX size record that is not a decimal number",
        ),
        (
            "lying-length",
            [pax(b'x', "99 path=evil\n"), file("a", b"1"), end].concat(),
            "Extended header length 99 path=evil",
            "('evil\\n\\x00",
            "a malformed PAX record",
        ),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const PY: &str = "import sys, tarfile\nt = tarfile.open(sys.argv[1])\nprint(', '.join(repr((m.name, m.linkname)) for m in t.getmembers()))";

#[test]
fn verify_and_pull_refuse_archives_other_readers_see_differently() {
    let s = Scratch::new();
    for (what, tar, gnu_says, python_lists, ours) in shapes() {
        let plain = s.path(&format!("{what}.tar"));
        std::fs::write(&plain, &tar).unwrap();
        // the disagreement: GNU tar rewrites or refuses, Python applies the trick
        let gnu = run("tar", &["tvf", plain.to_str().unwrap()], &[]);
        assert!(gnu.stderr.contains(gnu_says), "{what}: GNU tar: {}", gnu.stderr);
        let py = run("python3", &["-c", PY, plain.to_str().unwrap()], &[]).ok();
        assert!(py.stdout.contains(python_lists), "{what}: Python lists {}", py.stdout);

        let spx = s.path(&format!("{what}.spx"));
        std::fs::write(&spx, gzip(&tar)).unwrap();
        let r = s.spx(&["verify", spx.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{what}: verify: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains(ours) || r.stderr.contains(ours), "{what}: verify: {}{}", r.stdout, r.stderr);

        let out = s.path(&format!("{what}-out.tar"));
        let src = format!("docker-archive:{}", plain.display());
        let r = s.spx(&["pull", &src, "-o", out.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{what}: pull: {}", r.stderr);
        let line = r.error_line();
        assert!(line.contains(ours) && line.contains(&plain.display().to_string()), "{what}: {line}");
        assert!(r.stderr.contains("hint: GNU tar, Python and Docker would read this archive differently"));
        assert!(!out.exists(), "{what}: pull wrote {}", out.display());
    }
}
