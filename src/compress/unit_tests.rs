//! Compression: the deterministic gzip writer's framing, levels and stored blocks; reading
//! every supported format through [`decompress`] and [`limited_decoder`].

use super::*;

fn pseudo(n: usize) -> Vec<u8> {
    crate::testkit::Rng::new(n as u64).bytes(n)
}

#[test]
fn gzip_header_and_trailer_are_fixed() {
    let data = pseudo(100_000);
    let mut gz = GzipWriter::new(Vec::new(), 6, 3).unwrap();
    gz.write_compressible(&data).unwrap();
    let out = gz.finish().unwrap();
    assert_eq!(&out[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255], "no mtime, no name, OS unknown");
    let n = out.len();
    assert_eq!(&out[n - 4..], &(data.len() as u32).to_le_bytes(), "ISIZE");
    assert_eq!(&out[n - 8..n - 4], &crc32fast::hash(&data).to_le_bytes(), "CRC32");
    assert_eq!(crate::testkit::gunzip_bytes(&out), data);
}

#[test]
fn levels_change_size_not_content() {
    let data = pseudo(3 * CHUNK);
    let enc = |level| {
        let mut gz = GzipWriter::new(Vec::new(), level, 2).unwrap();
        gz.write_compressible(&data).unwrap();
        gz.finish().unwrap()
    };
    let (l0, l1, l9) = (enc(0), enc(1), enc(9));
    for out in [&l0, &l1, &l9] {
        assert_eq!(crate::testkit::gunzip_bytes(out), data);
    }
    assert!(l0.len() > data.len(), "level 0 stores");
    assert!(l9.len() <= l1.len() && l1.len() < data.len());
    assert_eq!(enc(12), l9, "levels above 9 are 9");
}

#[test]
fn stored_data_costs_five_bytes_per_block() {
    let data = pseudo(STORED_MAX * 3 + 10);
    let mut gz = GzipWriter::new(Vec::new(), 6, 1).unwrap();
    for piece in data.chunks(1000) {
        gz.write_stored(piece).unwrap();
    }
    let out = gz.finish().unwrap();
    // 10 header + 4 blocks of (5 + data) + final empty block 5 + trailer 8
    assert_eq!(out.len(), 10 + data.len() + 4 * 5 + 5 + 8);
    assert_eq!(crate::testkit::gunzip_bytes(&out), data);
}

#[test]
fn every_readable_format_decompresses() {
    let data = pseudo(50_000);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&data).unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&data).unwrap();
    let gz = crate::testkit::gzip_bytes(&data);
    for (packed, want) in [
        (bz.finish().unwrap(), Compression::Bzip2),
        (xz.finish().unwrap(), Compression::Xz),
        (gz, Compression::Gzip),
        (data.clone(), Compression::None),
    ] {
        let (c, mut r) = decompress(io::Cursor::new(packed.clone())).unwrap();
        assert_eq!(c, want);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data, "{}", want.name());
        let mut l = limited_decoder(want, &packed[..], Limits::default()).unwrap();
        let mut out = Vec::new();
        l.read_to_end(&mut out).unwrap();
        assert_eq!(out, data, "limited {}", want.name());
    }
}

#[test]
fn zstd_is_recognised_but_not_read() {
    let e = decompress(io::Cursor::new(vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0])).err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    assert_eq!(Compression::Zstd.name(), "zstd");
}

#[test]
fn concatenated_gzip_members_read_as_one_stream() {
    let (a, b) = (pseudo(1000), pseudo(2000));
    let mut both = crate::testkit::gzip_bytes(&a);
    both.extend(crate::testkit::gzip_bytes(&b));
    let (_, mut r) = decompress(io::Cursor::new(both)).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(out, [a, b].concat(), "the SDK script's multi-member SPX files read whole");
}
