//! Input archives that cannot hurt.
//!
//! Archives that GNU tar, Python's tarfile and Go's archive/tar (Docker) read differently: a
//! hard link out of the archive, a PAX global `path=`, a non-numeric PAX `size`, a PAX record
//! whose length prefix lies. Each is built byte by byte; the test records what GNU tar and
//! Python make of it (the disagreement), then checks that `spxpack verify` refuses it as an SPX
//! and `spxpack pull docker-archive:` refuses it as an input archive, with nothing written.
//!
//! Decompression bombs as input archives (`docker-archive:`, `oci-archive:`, `ADD` of a local
//! tar) stop at `--max-decompressed`/`--max-ratio`, with no temporary file left.

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

/// A tar holding one file of `mib` MiB of zeros, compressed with `enc` as it is written.
fn zeros_tar<W: Write>(mut enc: W, mib: usize) -> W {
    enc.write_all(&block("zeros", b'0', "", mib << 20, b"")).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        enc.write_all(&chunk).unwrap();
    }
    enc.write_all(&[0u8; 1024]).unwrap();
    enc
}

/// Temporary files left in `dir` (the runs' `TMPDIR`).
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn input_archive_bombs_stop_at_the_limit_with_one_error_and_no_temp_file() {
    use crate::support::bounded::{one_error_with_hint, run_bounded, spx_command};
    use std::time::Duration;
    let s = Scratch::new();
    let tmp = s.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // 512 MiB of zeros: bzip2 makes a few hundred bytes of it, gzip about 500 KB
    let bz = s.path("bomb.tar.bz2");
    let e = zeros_tar(bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast()), 512);
    std::fs::write(&bz, e.finish().unwrap()).unwrap();
    let gz = s.path("bomb.tar.gz");
    let e = zeros_tar(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()), 512);
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let ctx = s.path("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::copy(&bz, ctx.join("bomb.tar.bz2")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nADD bomb.tar.bz2 /\n").unwrap();

    let out = s.path("out.tar");
    let (o, c) = (out.to_str().unwrap(), ctx.to_str().unwrap());
    let (bz_src, gz_src) = (format!("docker-archive:{}", bz.display()), format!("oci-archive:{}", gz.display()));
    let cases: [(&[&str], &str); 3] = [
        // the default ratio guard: 1000× once 64 MiB came out
        (&["pull", &bz_src, "-o", o], "bomb.tar.bz2: the bzip2 stream expands more than 1000×"),
        // the byte cap, set with the flag
        (
            &["pull", &gz_src, "-o", o, "--max-decompressed", "16M"],
            "bomb.tar.gz: the gzip stream decompresses to more than 16777216 bytes",
        ),
        (&["image", "build", c, "-o", o], "ADD bomb.tar.bz2: the bzip2 stream expands more than 1000×"),
    ];
    for (args, want) in cases {
        let mut cmd = spx_command(&s, args);
        cmd.env("TMPDIR", &tmp);
        let b = run_bounded(cmd, Duration::from_secs(20), 256);
        assert_eq!(b.run.code, 1, "{args:?}: {}", b.run.stderr);
        let (line, hint) = one_error_with_hint(&b.run);
        assert!(line.contains(want), "{args:?}: {line}");
        assert!(hint.contains("raise --max-decompressed or --max-ratio"), "{args:?}: {hint}");
        assert!(!out.exists(), "{args:?} wrote the output");
        assert_eq!(leftovers(&tmp), Vec::<String>::new(), "{args:?} left temporary files");
    }
}
