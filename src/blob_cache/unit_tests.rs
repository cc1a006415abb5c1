//! The blob cache: small blobs, wrong sizes, refs, the offline error and the cache-only source.

use super::*;
use crate::testkit::scratch;

fn open(dir: &Path, offline: bool) -> Arc<BlobCache> {
    BlobCache::open(Some(dir.to_path_buf()), offline).unwrap()
}

#[test]
fn small_blobs_are_stored_once_and_read_verified() {
    let d = scratch();
    let c = open(d.path(), false);
    let digest = c.insert_bytes(b"{\"a\":1}").unwrap();
    assert_eq!(c.insert_bytes(b"{\"a\":1}").unwrap(), digest);
    assert_eq!(c.read_small(&digest, 100).unwrap().unwrap(), b"{\"a\":1}");
    assert!(c.read_small(&digest, 3).unwrap_err().to_string().contains("larger than 3 bytes"));
    assert!(c.read_small(&Digest::of(b"absent"), 100).unwrap().is_none());
    // a corrupted small blob reads as absent and is removed
    fs::write(c.blob_path(&digest), b"{\"a\":2}").unwrap();
    assert!(c.read_small(&digest, 100).unwrap().is_none());
    assert!(!c.blob_path(&digest).exists());
}

#[test]
fn a_blob_of_the_wrong_size_is_not_served() {
    let d = scratch();
    let c = open(d.path(), false);
    let data = b"0123456789".to_vec();
    let desc = Descriptor::new("x", Digest::of(&data), 10);
    c.insert_from(&desc, &mut &data[..], "b").unwrap();
    let mut longer = desc.clone();
    longer.size = 11;
    assert!(!c.contains(&longer));
    assert!(c.open_blob(&longer, "b").unwrap().is_none());
    let e = c.insert_from(&longer, &mut &data[..], "blob z").unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn refs_are_per_registry_repository_and_tag_and_overwritable() {
    let d = scratch();
    let c = open(d.path(), false);
    let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
    c.set_ref("127.0.0.1:5000", "x/y", "1", &a).unwrap();
    c.set_ref("127.0.0.1:5001", "x/y", "1", &b).unwrap();
    assert_eq!(c.get_ref("127.0.0.1:5000", "x/y", "1"), Some(a));
    c.set_ref("127.0.0.1:5000", "x/y", "1", &b).unwrap();
    assert_eq!(c.get_ref("127.0.0.1:5000", "x/y", "1"), Some(b.clone()));
    assert_eq!(c.get_ref("127.0.0.1:5001", "x/y", "1"), Some(b));
    assert_eq!(c.get_ref("127.0.0.1:5000", "x/y", "2"), None);
    assert!(d.path().join("refs/127.0.0.1_5000/x/y/1").is_file(), "':' is not used in file names");
    fs::write(d.path().join("refs/127.0.0.1_5000/x/y/1"), "garbage").unwrap();
    assert_eq!(c.get_ref("127.0.0.1:5000", "x/y", "1"), None, "an unreadable ref is no ref");
}

#[test]
fn the_cache_source_serves_cached_blobs_and_names_missing_ones() {
    let d = scratch();
    let c = open(d.path(), true);
    let s = crate::testkit::image(&crate::testkit::Spec::new(1).layers(1));
    let l = &s.layers[0];
    c.insert_from(&l.desc, &mut &l.blob[..], "layer").unwrap();
    let src = CacheSource { cache: c.clone(), origin: "kit".into() };
    let mut out = Vec::new();
    src.open(&l.desc).unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out, l.blob);
    let missing = Descriptor::new("x", Digest::of(b"missing"), 7);
    let e = src.open(&missing).err().unwrap();
    assert_eq!(e.kind(), Kind::Offline);
    assert!(e.to_string().contains("is not in the cache at"), "{e}");
    assert!(e.hint().unwrap().contains("without --offline"));
    assert!(c.offline());
}

#[test]
fn blobs_verified_by_this_process_are_not_hashed_again_but_new_processes_check() {
    let d = scratch();
    let c = open(d.path(), false);
    let data = b"verified once".to_vec();
    let desc = Descriptor::new("x", Digest::of(&data), data.len() as u64);
    c.insert_from(&desc, &mut &data[..], "b").unwrap();
    fs::write(c.blob_path(&desc.digest), b"VERIFIED ONCE").unwrap(); // same size, other bytes
    let mut out = Vec::new();
    c.open_blob(&desc, "b").unwrap().unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out, b"VERIFIED ONCE", "this process trusts what it verified");
    let fresh = open(d.path(), false);
    let e = fresh.open_blob(&desc, "b").unwrap().unwrap().read_to_end(&mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("digest mismatch"), "{e}");
}
