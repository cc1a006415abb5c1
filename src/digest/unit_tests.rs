//! Digest helpers: hashing writers and copies, chunked reads, serde and ordering.

use super::*;

#[test]
fn hashing_writer_and_copy_hashed_agree_with_digest_of() {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = HashingWriter::new(Vec::new());
    for c in data.chunks(7777) {
        w.write_all(c).unwrap();
    }
    assert_eq!((w.n, w.hasher.finish()), (data.len() as u64, Digest::of(&data)));
    assert_eq!(w.inner, data);
    let mut out = Vec::new();
    let (n, d) = copy_hashed(&mut &data[..], &mut out).unwrap();
    assert_eq!((n, d), (data.len() as u64, Digest::of(&data)));
    assert_eq!(out, data);
}

#[test]
fn for_each_chunk_never_exceeds_the_chunk_and_stops_on_errors() {
    let data = vec![7u8; 10_000];
    let mut sizes = Vec::new();
    let n = for_each_chunk(&mut &data[..], 4096, |c| {
        sizes.push(c.len());
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 10_000);
    assert!(sizes.iter().all(|&s| s <= 4096) && sizes.iter().sum::<usize>() == 10_000);
    let e = for_each_chunk(&mut &data[..], 4096, |_| Err(io::Error::other("sink full"))).unwrap_err();
    assert_eq!(e.to_string(), "sink full");
}

#[test]
fn serde_uses_the_string_form_and_validates() {
    let d = Digest::of(b"x");
    let j = serde_json::to_string(&d).unwrap();
    assert_eq!(j, format!("\"{d}\""));
    assert_eq!(serde_json::from_str::<Digest>(&j).unwrap(), d);
    assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    let e = Digest::parse("sha512:abcd").unwrap_err();
    assert_eq!(e.kind(), crate::error::Kind::Unsupported);
}

#[test]
fn paths_short_ids_and_order_come_from_the_hex() {
    let d = Digest::of(b"");
    assert_eq!(d.blob_path(), format!("blobs/sha256/{}", d.hex()));
    assert_eq!(d.short(), "e3b0c44298fc");
    let mut v = [Digest::of(b"b"), Digest::of(b"a"), Digest::of(b"c")];
    v.sort();
    let hexes: Vec<&str> = v.iter().map(Digest::hex).collect();
    let mut sorted = hexes.clone();
    sorted.sort();
    assert_eq!(hexes, sorted);
    assert!(Digest::from_hex(&"0".repeat(63)).is_err() && Digest::from_hex(&"g".repeat(64)).is_err());
}
