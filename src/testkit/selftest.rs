//! The test kit checks itself: seeded images are deterministic and internally consistent
//! (digests, sizes, diff_ids, platforms), and [`MemBlobs`] verifies like a real source.

use std::io::Read;

use super::*;
use crate::error::Kind;
use crate::image::validate;

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = image(&Spec::new(7));
    let b = image(&Spec::new(7));
    let c = image(&Spec::new(8));
    assert_eq!(a.image.manifest_raw, b.image.manifest_raw);
    assert_eq!(a.image.config_raw, b.image.config_raw);
    assert_eq!(a.blobs.all(), b.blobs.all());
    assert_ne!(a.image.id(), c.image.id());
    assert_ne!(a.layers[0].desc.digest, c.layers[0].desc.digest);
}

#[test]
fn layer_digests_sizes_and_diff_ids_are_true() {
    let s = image(&Spec::new(1).layers(4));
    assert_eq!(s.image.manifest.layers.len(), 4);
    assert_eq!(s.image.config.rootfs.diff_ids.len(), 4);
    for (i, l) in s.layers.iter().enumerate() {
        let blob = read_blob(&s.image, &s.image.manifest.layers[i]).unwrap();
        assert_eq!(Digest::of(&blob), s.image.manifest.layers[i].digest);
        assert_eq!(blob.len() as u64, s.image.manifest.layers[i].size);
        assert_eq!(Digest::of(&gunzip_bytes(&blob)), s.image.config.rootfs.diff_ids[i]);
        assert_eq!(l.diff_id, s.image.config.rootfs.diff_ids[i]);
    }
    assert_eq!(Digest::of(&s.image.config_raw), s.image.id());
    assert_eq!(s.image.manifest.config.size, s.image.config_raw.len() as u64);
}

#[test]
fn layers_are_real_tars_with_deterministic_headers() {
    let s = image(&Spec::new(2).layers(1));
    let entries = tar_entries(&s.layers[0].tar);
    // a directory, four files, a symlink
    assert_eq!(entries.len(), 6, "{:?}", entries.iter().map(|e| &e.0).collect::<Vec<_>>());
    assert!(entries[0].0.ends_with('/'));
    assert_eq!(entries[5].1.entry_type(), tar::EntryType::Symlink);
    for (_, h, _) in &entries {
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.uid().unwrap(), 0);
    }
    assert!(entries[1..5].iter().all(|e| !e.2.is_empty()));
}

#[test]
fn plain_layers_are_addressed_by_their_diff_id() {
    let s = image(&Spec::new(3).plain());
    for (l, d) in s.image.manifest.layers.iter().zip(&s.image.config.rootfs.diff_ids) {
        assert_eq!(l.media_type, media::OCI_LAYER);
        assert_eq!(&l.digest, d);
    }
}

#[test]
fn flavors_use_their_media_types() {
    let d = image(&Spec::new(4).docker());
    assert_eq!(d.image.manifest.media_type.as_deref(), Some(media::DOCKER_MANIFEST));
    assert_eq!(d.image.manifest.config.media_type, media::DOCKER_CONFIG);
    assert!(d.image.manifest.layers.iter().all(|l| l.media_type == media::DOCKER_LAYER_GZIP));
    let o = image(&Spec::new(4));
    assert_eq!(o.image.manifest.media_type.as_deref(), Some(media::OCI_MANIFEST));
    // same files, same diff_ids: only the media types differ
    assert_eq!(d.image.config.rootfs.diff_ids, o.image.config.rootfs.diff_ids);
}

#[test]
fn configs_declare_the_spec_platform_and_pass_validation() {
    for p in ["linux/amd64", "linux/arm64/v8"] {
        let s = image(&Spec::new(5).platform(p));
        assert_eq!(s.image.platform().to_string(), p);
        assert!(validate::check(&s.image, Some(&Platform::parse(p).unwrap())).is_empty());
    }
    let amd = image(&Spec::new(5).platform("linux/amd64"));
    let problems = validate::check(&amd.image, Some(&Platform::linux_arm64()));
    assert_eq!(problems.len(), 1);
    assert!(problems[0].message.contains("not the requested linux/arm64/v8"), "{problems:?}");
}

#[test]
fn mem_blobs_verify_missing_and_corrupt_blobs() {
    let s = image(&Spec::new(6));
    let l = s.image.manifest.layers[0].clone();
    s.blobs.corrupt(&l.digest);
    let mut out = Vec::new();
    let e = s.image.source.open(&l).unwrap().read_to_end(&mut out).unwrap_err();
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    let mut gone = l.clone();
    gone.digest = Digest::of(b"not there");
    let e = s.image.source.open(&gone).err().unwrap();
    assert_eq!(e.kind(), Kind::NotFound);
    let mut short = s.image.manifest.layers[1].clone();
    short.size += 1;
    let e = read_blob(&s.image, &short).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn images_on_a_base_share_its_layers() {
    let base = image(&Spec::new(10).layers(2));
    let top = image_on(&base, &Spec::new(11).layers(1));
    assert_eq!(top.image.manifest.layers.len(), 3);
    assert_eq!(top.image.manifest.layers[..2], base.image.manifest.layers[..]);
    assert_ne!(top.image.manifest.layers[2], base.image.manifest.layers[1]);
    assert_ne!(top.image.id(), base.image.id());
}

#[test]
fn indexes_list_each_platform_with_its_manifest() {
    let idx = index(20, &amd64_arm64(), Flavor::Oci);
    assert_eq!(idx.index.manifests.len(), 2);
    assert_eq!(Digest::of(&idx.raw), idx.digest);
    for (d, s) in idx.index.manifests.iter().zip(&idx.images) {
        assert_eq!(d.digest, s.image.manifest_digest());
        assert!(s.image.platform().satisfies(d.platform.as_ref().unwrap()));
        assert_eq!(idx.blobs.get(&d.digest).unwrap(), s.image.manifest_raw);
    }
    assert_eq!(Index::parse(&idx.raw, "i").unwrap().manifests.len(), 2);
    let docker = index(20, &amd64_arm64(), Flavor::Docker);
    assert_eq!(docker.index.media_type.as_deref(), Some(media::DOCKER_LIST));
}

#[test]
fn rng_is_seeded_and_spreads() {
    let mut a = Rng::new(1);
    let mut b = Rng::new(1);
    let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
    assert_eq!(xs, (0..8).map(|_| b.next_u64()).collect::<Vec<_>>());
    assert_eq!(xs.iter().collect::<std::collections::BTreeSet<_>>().len(), 8);
    let mut c = Rng::new(2);
    assert!((0..1000).map(|_| c.below(10)).all(|x| x < 10));
    assert_eq!(c.bytes(777).len(), 777);
}
