//! Registry resolution against the test kit's in-process fake registry on 127.0.0.1: a tag to
//! an index, the platform, the manifest and config, blobs into the cache; digests checked at
//! every step; the cache answering repeated and `--offline` pulls.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::image::resolve::select_platform;
use crate::registry::auth::CredentialOptions;
use crate::testkit::registry::{Content, FakeRegistry};
use crate::testkit::{Flavor, SynthIndex, amd64_arm64, index, read_blob, scratch};

struct Setup {
    fake: FakeRegistry,
    idx: SynthIndex,
    cache_dir: tempfile::TempDir,
}

impl Setup {
    fn new(flavor: Flavor) -> Self {
        let idx = index(40, &amd64_arm64(), flavor);
        let mut c = Content::default();
        c.add_index("multi", &idx);
        Setup { fake: FakeRegistry::serve("kit/app", c), idx, cache_dir: scratch() }
    }
    fn registry(&self, offline: bool) -> Registry {
        let cache = BlobCache::open(Some(self.cache_dir.path().to_path_buf()), offline).unwrap();
        if offline {
            return Registry::new(None, cache);
        }
        let opts = ClientOptions {
            retries: 0,
            retry_delay: Duration::from_millis(1),
            creds: CredentialOptions { anonymous: true, ..Default::default() },
            ..Default::default()
        };
        Registry::new(Some(Arc::new(Client::new(opts).unwrap())), cache)
    }
    fn gets(&self, kind: &str) -> usize {
        self.fake.requests().iter().filter(|r| r.starts_with("GET ") && r.contains(kind)).count()
    }
}

#[test]
fn a_tag_resolves_through_the_index_to_the_platform() {
    let s = Setup::new(Flavor::Oci);
    let reg = s.registry(false);
    let img = reg.resolve(&s.fake.reference("multi"), &Platform::linux_arm64()).unwrap();
    let want = &s.idx.images[1].image;
    assert_eq!(img.id(), want.id());
    assert_eq!(img.manifest_digest(), want.manifest_digest());
    assert_eq!(img.index_digest.as_ref(), Some(&s.idx.digest));
    assert_eq!(img.suggested_tags, [format!("{}/kit/app:multi", s.fake.host)]);
    assert!(!img.source.is_local());
    let amd = reg.resolve(&s.fake.reference("multi"), &Platform::parse("linux/x86_64").unwrap()).unwrap();
    assert_eq!(amd.id(), s.idx.images[0].image.id());
}

#[test]
fn docker_manifest_lists_resolve_too() {
    let s = Setup::new(Flavor::Docker);
    let img = s.registry(false).resolve(&s.fake.reference("multi"), &Platform::linux_arm64()).unwrap();
    assert_eq!(img.manifest.media_type.as_deref(), Some(crate::image::media::DOCKER_MANIFEST));
    assert_eq!(img.id(), s.idx.images[1].image.id());
}

#[test]
fn blobs_are_fetched_verified_and_cached() {
    let s = Setup::new(Flavor::Oci);
    let reg = s.registry(false);
    let img = reg.resolve(&s.fake.reference("multi"), &Platform::linux_arm64()).unwrap();
    let layer = img.manifest.layers[0].clone();
    assert!(img.source.prefetch(&layer).unwrap(), "downloaded");
    assert!(!img.source.prefetch(&layer).unwrap(), "cached the second time");
    assert_eq!(read_blob(&img, &layer).unwrap(), s.idx.images[1].layers[0].blob);
    assert_eq!(read_blob(&img, &img.manifest.layers[1]).unwrap(), s.idx.images[1].layers[1].blob);
    assert_eq!(s.gets(&format!("blobs/{}", layer.digest)), 1);
    assert!(s.cache_dir.path().join(layer.digest.blob_path()).is_file());
}

#[test]
fn a_corrupt_blob_is_a_digest_mismatch_and_is_not_cached() {
    let s = Setup::new(Flavor::Oci);
    let layer = s.idx.images[1].layers[0].desc.clone();
    let mut bad = s.idx.images[1].layers[0].blob.clone();
    bad[20] ^= 0xff;
    s.fake.content.lock().unwrap().blobs.insert(layer.digest.to_string(), bad);
    let reg = s.registry(false);
    let img = reg.resolve(&s.fake.reference("multi"), &Platform::linux_arm64()).unwrap();
    let e = read_blob(&img, &layer).unwrap_err();
    assert_eq!(e.kind(), Kind::Integrity);
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    assert!(!s.cache_dir.path().join(layer.digest.blob_path()).exists());
}

#[test]
fn oversized_and_missing_blobs_are_errors() {
    let s = Setup::new(Flavor::Oci);
    let l0 = s.idx.images[1].layers[0].clone();
    let l1 = s.idx.images[1].layers[1].desc.clone();
    {
        let mut c = s.fake.content.lock().unwrap();
        let mut long = l0.blob.clone();
        long.extend_from_slice(b"trailing");
        c.blobs.insert(l0.desc.digest.to_string(), long);
        c.blobs.remove(&l1.digest.to_string());
    }
    let img = s.registry(false).resolve(&s.fake.reference("multi"), &Platform::linux_arm64()).unwrap();
    let e = read_blob(&img, &l0.desc).unwrap_err();
    assert!(e.to_string().contains("more than the"), "{e}");
    let e = read_blob(&img, &l1).unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(e.to_string().contains("is missing from"), "{e}");
}

#[test]
fn a_missing_platform_lists_the_index() {
    let s = Setup::new(Flavor::Oci);
    let e = s.registry(false).resolve(&s.fake.reference("multi"), &Platform::parse("linux/ppc64le").unwrap());
    let e = e.unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(e.to_string().contains("the index has: linux/amd64, linux/arm64/v8"), "{e}");
}

#[test]
fn a_missing_tag_is_not_found() {
    let s = Setup::new(Flavor::Oci);
    let e = s.registry(false).resolve(&s.fake.reference("nope"), &Platform::linux_arm64()).unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound, "{e}");
}

#[test]
fn manifests_must_match_their_digests() {
    let s = Setup::new(Flavor::Oci);
    // a registry lying in Docker-Content-Digest
    s.fake.content.lock().unwrap().digest_header.insert("multi".into(), Digest::of(b"other").to_string());
    let e = s.registry(false).resolve(&s.fake.reference("multi"), &Platform::linux_arm64()).unwrap_err();
    assert_eq!(e.kind(), Kind::Integrity);
    assert!(e.to_string().contains("Docker-Content-Digest"), "{e}");
    // a child manifest that is not what the index pinned
    let s = Setup::new(Flavor::Oci);
    let child = s.idx.index.manifests[1].digest.to_string();
    let other = s.idx.images[0].image.manifest_raw.clone();
    s.fake.content.lock().unwrap().manifests.insert(child, (other, media::OCI_MANIFEST.into()));
    let e = s.registry(false).resolve(&s.fake.reference("multi"), &Platform::linux_arm64()).unwrap_err();
    assert!(e.to_string().contains("not the requested"), "{e}");
}

#[test]
fn a_pinned_digest_resolves_without_the_tag() {
    let s = Setup::new(Flavor::Oci);
    let r = Reference::parse(&format!("{}/kit/app@{}", s.fake.host, s.idx.digest)).unwrap();
    let img = s.registry(false).resolve(&r, &Platform::linux_amd64()).unwrap();
    assert_eq!(img.id(), s.idx.images[0].image.id());
    assert!(img.suggested_tags.is_empty(), "a digest gives no tag to save under");
    assert!(s.fake.requests().iter().all(|q| !q.ends_with("/manifests/multi")));
}

#[test]
fn repeated_pulls_only_ask_for_the_digest() {
    let s = Setup::new(Flavor::Oci);
    let r = s.fake.reference("multi");
    s.registry(false).resolve(&r, &Platform::linux_arm64()).unwrap();
    let before = s.gets("/manifests/");
    s.registry(false).resolve(&r, &Platform::linux_arm64()).unwrap();
    assert_eq!(s.gets("/manifests/"), before, "no manifest downloaded twice");
    assert!(s.fake.requests().iter().any(|q| q.starts_with("HEAD ") && q.ends_with("/manifests/multi")));
}

#[test]
fn offline_resolves_what_was_pulled_and_explains_the_rest() {
    let s = Setup::new(Flavor::Oci);
    let r = s.fake.reference("multi");
    let online = s.registry(false).resolve(&r, &Platform::linux_arm64()).unwrap();
    let offline = s.registry(true);
    let img = offline.resolve(&r, &Platform::linux_arm64()).unwrap();
    assert_eq!(img.id(), online.id());
    // layers were never fetched: offline cannot read them
    let e = read_blob(&img, &img.manifest.layers[0]).unwrap_err();
    assert_eq!(e.kind(), Kind::Offline, "{e}");
    let e = offline.resolve(&s.fake.reference("other"), &Platform::linux_arm64()).unwrap_err();
    assert_eq!(e.kind(), Kind::Offline);
    assert!(e.hint().unwrap().contains("without --offline"), "{e:?}");
}

#[test]
fn schema1_and_unknown_documents_are_refused() {
    let s = Setup::new(Flavor::Oci);
    {
        let mut c = s.fake.content.lock().unwrap();
        let v1 = br#"{"schemaVersion":1,"name":"kit/app","tag":"old","fsLayers":[]}"#.to_vec();
        c.manifests.insert("old".into(), (v1, media::DOCKER_MANIFEST_V1_SIGNED.into()));
        c.manifests.insert("odd".into(), (br#"{"hello":1}"#.to_vec(), "application/json".into()));
    }
    let reg = s.registry(false);
    let e = reg.resolve(&s.fake.reference("old"), &Platform::linux_arm64()).unwrap_err();
    assert_eq!(e.kind(), Kind::Unsupported);
    assert!(e.to_string().contains("schema 1"), "{e}");
    let e = reg.resolve(&s.fake.reference("odd"), &Platform::linux_arm64()).unwrap_err();
    assert!(e.to_string().contains("neither an image manifest nor an index"), "{e}");
}

#[test]
fn select_platform_prefers_the_first_match_and_hides_attestations() {
    let idx = index(50, &amd64_arm64(), Flavor::Oci);
    let mut entries = idx.index.manifests.clone();
    let mut att = entries[0].clone();
    att.platform = Some(Platform::new("unknown", "unknown", None));
    entries.insert(0, att);
    let mut dup = entries[2].clone();
    dup.digest = Digest::of(b"second arm64");
    entries.push(dup);
    let got = select_platform(&entries, &Platform::parse("linux/arm64/v8").unwrap(), "x").unwrap();
    assert_eq!(got.digest, entries[2].digest);
    let e = select_platform(&entries, &Platform::parse("windows/amd64").unwrap(), "img").unwrap_err();
    assert_eq!(
        e.message(),
        "img has no image for windows/amd64; the index has: linux/amd64, linux/arm64/v8, linux/arm64/v8"
    );
    let e = select_platform(&[], &Platform::linux_arm64(), "img").unwrap_err();
    assert!(e.message().ends_with("the index has: no platforms"), "{e}");
}

#[test]
fn layer_diff_ids_are_recorded_as_blobs_enter_the_cache() {
    for flavor in [Flavor::Oci, Flavor::Docker] {
        let s = Setup::new(flavor);
        let img = s.registry(false).resolve(&s.fake.reference("multi"), &Platform::linux_arm64()).unwrap();
        assert_eq!(crate::blob_cache::prefetch(std::slice::from_ref(&img), 4, &crate::progress::Silent).unwrap(), 2);
        let cache = BlobCache::open(Some(s.cache_dir.path().to_path_buf()), true).unwrap();
        for (l, want) in img.manifest.layers.iter().zip(&s.idx.images[1].layers) {
            assert_eq!(cache.recorded_diff_id(&l.digest).as_ref(), Some(&want.diff_id), "computed while downloading");
        }
        // a sidecar lost (a cache from an older spxpack): computed once from the cached blob
        let first = &img.manifest.layers[0];
        std::fs::remove_file(s.cache_dir.path().join("diffids/sha256").join(first.digest.hex())).unwrap();
        assert_eq!(img.source.diff_id(first).unwrap().as_ref(), Some(&s.idx.images[1].layers[0].diff_id));
        assert!(cache.recorded_diff_id(&first.digest).is_some(), "recorded again");
    }
}

/// NGC's token service moves when a token expires: the registry answers `401` naming a new
/// realm. The client pings `/v2/` again to learn it, instead of asking the old service for the
/// same (now refused) token and failing.
#[test]
fn a_token_realm_change_is_followed_by_a_fresh_ping() {
    use crate::testkit::registry::BearerSim;
    let s = Setup::new(Flavor::Oci);
    s.fake.content.lock().unwrap().auth = Some(BearerSim { realm_path: "/token1".into(), token: "t1".into() });
    let opts = ClientOptions {
        retries: 0,
        retry_delay: Duration::from_millis(1),
        creds: CredentialOptions { anonymous: true, ..Default::default() },
        ..Default::default()
    };
    let client = Arc::new(Client::new(opts).unwrap());
    let (dir1, dir2) = (scratch(), scratch());
    let cache = |d: &tempfile::TempDir| BlobCache::open(Some(d.path().to_path_buf()), false).unwrap();
    let first = Registry::new(Some(client.clone()), cache(&dir1))
        .resolve(&s.fake.reference("multi"), &Platform::linux_arm64())
        .unwrap();
    // t1 expires and the token service moves; the same client (host, challenge and token
    // remembered) resolves again through an empty cache, so it has to ask the registry
    s.fake.content.lock().unwrap().auth = Some(BearerSim { realm_path: "/token2".into(), token: "t2".into() });
    let again = Registry::new(Some(client), cache(&dir2)).resolve(&s.fake.reference("multi"), &Platform::linux_arm64());
    let again = again.unwrap_or_else(|e| panic!("the moved realm was not followed: {e}\n{:?}", s.fake.requests()));
    assert_eq!(again.id(), first.id());
    let log = s.fake.requests();
    let pings = log.iter().filter(|r| r.as_str() == "GET /v2/").count();
    assert!(pings >= 2, "no second /v2/ ping: {log:?}");
    assert!(log.iter().any(|r| r.starts_with("GET /token2")), "the new realm was not asked: {log:?}");
}
