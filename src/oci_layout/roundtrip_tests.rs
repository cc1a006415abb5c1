//! OCI layout round trips: synthetic image → [`write_dir`] → [`Layout`] → resolve by tag and
//! platform → the same image; and layouts written by hand (not by spxpack) with nested indexes,
//! several platforms, corrupt blobs and missing tags.

use std::path::Path;

use super::*;
use crate::error::Kind;
use crate::testkit::{self, Flavor, Spec, Synth, amd64_arm64, image, index, read_blob, scratch, tagged};

fn arm64() -> Platform {
    Platform::linux_arm64()
}

fn assert_same(got: &Image, want: &Synth) {
    assert_eq!(got.id(), want.image.id());
    assert_eq!(got.config.rootfs.diff_ids, want.image.config.rootfs.diff_ids);
    for (d, l) in got.manifest.layers.iter().zip(&want.layers) {
        assert_eq!(read_blob(got, d).unwrap(), l.blob);
    }
}

#[test]
fn written_layouts_resolve_by_tag() {
    let dir = scratch();
    let s = image(&Spec::new(1));
    write_dir(dir.path(), &[(&s.image, Some("1.0".into()))], &|_| {}).unwrap();
    let l = Layout::open_dir(dir.path()).unwrap();
    assert_eq!(l.tags(), ["1.0"]);
    let got = l.image(Some("1.0"), &arm64()).unwrap();
    assert_same(&got, &s);
    assert_eq!(got.manifest_digest(), s.image.manifest_digest());
    assert_eq!(got.origin, format!("oci:{}:1.0", dir.path().display()));
    assert_eq!(got.index_digest, None);
    assert_same(&l.image(None, &arm64()).unwrap(), &s);
}

#[test]
fn writing_again_replaces_a_tag_and_keeps_others() {
    let dir = scratch();
    let (a, b, c) = (image(&Spec::new(2)), image(&Spec::new(3)), image(&Spec::new(4)));
    write_dir(dir.path(), &[(&a.image, Some("x".into())), (&b.image, Some("example.com/app:y".into()))], &|_| {})
        .unwrap();
    write_dir(dir.path(), &[(&c.image, Some("x".into()))], &|_| {}).unwrap();
    let l = Layout::open_dir(dir.path()).unwrap();
    assert_eq!(l.tags(), ["y", "x"]);
    assert_same(&l.image(Some("x"), &arm64()).unwrap(), &c);
    let y = l.image(Some("example.com/app:y"), &arm64()).unwrap();
    assert_same(&y, &b);
    assert_eq!(y.suggested_tags, ["example.com/app:y"]);
    // blobs of the replaced image stay (a layout is append-only), the index does not list it
    assert!(dir.path().join(a.image.id().blob_path()).is_file());
}

#[test]
fn untagged_entries_are_chosen_by_platform() {
    let dir = scratch();
    let a = image(&Spec::new(5).platform("linux/amd64"));
    let b = image(&Spec::new(6));
    write_dir(dir.path(), &[(&a.image, None), (&b.image, None)], &|_| {}).unwrap();
    let l = Layout::open_dir(dir.path()).unwrap();
    assert_same(&l.image(None, &arm64()).unwrap(), &b);
    assert_same(&l.image(None, &Platform::linux_amd64()).unwrap(), &a);
    let e = l.image(None, &Platform::parse("linux/riscv64").unwrap()).unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(e.to_string().contains("the index has: linux/amd64, linux/arm64/v8"), "{e}");
}

#[test]
fn several_entries_without_platform_need_a_tag() {
    let dir = scratch();
    let (a, b) = (image(&Spec::new(7)), image(&Spec::new(8)));
    let blobs = testkit::MemBlobs::new("x");
    blobs.absorb(&a.blobs);
    blobs.absorb(&b.blobs);
    let strip = |s: &Synth, t: &str| {
        let mut d = tagged(s.descriptor(), t, None);
        d.platform = None;
        d
    };
    testkit::write_layout(dir.path(), &blobs, &[strip(&a, "a"), strip(&b, "b")]);
    let l = Layout::open_dir(dir.path()).unwrap();
    let e = l.image(None, &arm64()).unwrap_err();
    assert!(e.to_string().contains("holds 2 images"), "{e}");
    assert!(e.hint().unwrap().contains("a, b"), "{e:?}");
    assert_same(&l.image(Some("b"), &arm64()).unwrap(), &b);
}

fn nested(dir: &Path, flavor: Flavor) -> testkit::SynthIndex {
    let idx = index(20, &amd64_arm64(), flavor);
    testkit::write_layout(dir, &idx.blobs, &[tagged(idx.descriptor(), "multi", Some("example.com/multi:multi"))]);
    idx
}

#[test]
fn nested_indexes_resolve_to_the_platform() {
    for flavor in [Flavor::Oci, Flavor::Docker] {
        let dir = scratch();
        let idx = nested(dir.path(), flavor);
        let l = Layout::open_dir(dir.path()).unwrap();
        // arm64/v8 requested, the index says arm64 without a variant
        let got = l.image(Some("multi"), &arm64()).unwrap();
        assert_same(&got, &idx.images[1]);
        assert_eq!(got.index_digest.as_ref(), Some(&idx.digest));
        assert_eq!(got.suggested_tags, ["example.com/multi:multi"]);
        let got = l.image(Some("example.com/multi:multi"), &Platform::parse("linux/x86_64").unwrap()).unwrap();
        assert_same(&got, &idx.images[0]);
    }
}

#[test]
fn a_missing_platform_lists_what_the_index_has() {
    let dir = scratch();
    nested(dir.path(), Flavor::Oci);
    let e = Layout::open_dir(dir.path()).unwrap().image(Some("multi"), &Platform::parse("linux/arm/v7").unwrap());
    let e = e.unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(e.to_string().contains("has no image for linux/arm/v7; the index has: linux/amd64, linux/arm64/v8"), "{e}");
    assert!(e.hint().unwrap().contains("--platform"));
}

#[test]
fn oci_archives_resolve_like_directories() {
    let dir = scratch();
    let layout = dir.path().join("l");
    let idx = nested(&layout, Flavor::Oci);
    let tar = dir.path().join("l.tar");
    std::fs::write(&tar, testkit::tar_dir(&layout)).unwrap();
    let l = Layout::open_archive(&tar).unwrap();
    assert_eq!(l.kind, "oci-archive");
    let got = l.image(Some("multi"), &arm64()).unwrap();
    assert_same(&got, &idx.images[1]);
    assert!(got.origin.starts_with("oci-archive:"), "{}", got.origin);
    let gz = dir.path().join("l.tar.gz");
    std::fs::write(&gz, testkit::gzip_bytes(&std::fs::read(&tar).unwrap())).unwrap();
    assert_same(&Layout::open_archive(&gz).unwrap().image(Some("multi"), &arm64()).unwrap(), &idx.images[1]);
}

#[test]
fn corrupt_manifests_configs_and_layers_are_caught() {
    let dir = scratch();
    let s = image(&Spec::new(9));
    testkit::write_layout(dir.path(), &s.blobs, &[tagged(s.descriptor(), "t", None)]);
    let corrupt = |d: &crate::digest::Digest| {
        let p = dir.path().join(d.blob_path());
        let mut b = std::fs::read(&p).unwrap();
        b[10] ^= 1;
        std::fs::write(&p, b).unwrap();
    };
    // a layer: found when it is read
    corrupt(&s.layers[0].desc.digest);
    let got = Layout::open_dir(dir.path()).unwrap().image(Some("t"), &arm64()).unwrap();
    assert!(read_blob(&got, &got.manifest.layers[0]).unwrap_err().to_string().contains("digest mismatch"));
    assert!(read_blob(&got, &got.manifest.layers[1]).is_ok());
    // the config: found at once
    corrupt(&s.image.id());
    let e = Layout::open_dir(dir.path()).unwrap().image(Some("t"), &arm64()).unwrap_err();
    assert_eq!(e.kind(), Kind::Integrity);
    assert!(e.hint().unwrap().contains("corrupt"), "{e:?}");
}

#[test]
fn a_layer_of_the_wrong_size_is_refused_before_reading() {
    let dir = scratch();
    let s = image(&Spec::new(10));
    testkit::write_layout(dir.path(), &s.blobs, &[tagged(s.descriptor(), "t", None)]);
    let p = dir.path().join(s.layers[2].desc.digest.blob_path());
    let mut b = std::fs::read(&p).unwrap();
    b.push(0);
    std::fs::write(&p, b).unwrap();
    let got = Layout::open_dir(dir.path()).unwrap().image(Some("t"), &arm64()).unwrap();
    let e = got.source.open(&got.manifest.layers[2]).err().unwrap();
    assert!(e.to_string().contains("the descriptor says"), "{e}");
}

#[test]
fn unknown_tags_empty_indexes_and_non_layouts_are_explained() {
    let dir = scratch();
    let s = image(&Spec::new(11));
    write_dir(dir.path(), &[(&s.image, Some("a".into())), (&s.image, Some("b".into()))], &|_| {}).unwrap();
    let e = Layout::open_dir(dir.path()).unwrap().image(Some("c"), &arm64()).unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(e.to_string().contains("it has: a, b"), "{e}");

    let empty = dir.path().join("empty");
    testkit::write_layout(&empty, &testkit::MemBlobs::new("e"), &[]);
    let e = Layout::open_dir(&empty).unwrap().image(None, &arm64()).unwrap_err();
    assert!(e.to_string().contains("lists no images"), "{e}");

    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(docker.join("manifest.json"), "[]").unwrap();
    assert!(Layout::open_dir(&docker).err().unwrap().hint().unwrap().contains("docker-archive:"));
    assert_eq!(Layout::open_dir(&dir.path().join("nope")).err().unwrap().kind(), Kind::NotFound);
}

#[test]
fn indexes_nested_too_deep_or_of_unknown_type_are_refused() {
    let dir = scratch();
    let idx = index(30, &amd64_arm64(), Flavor::Oci);
    let blobs = testkit::MemBlobs::new("deep");
    blobs.absorb(&idx.blobs);
    let mut top = idx.descriptor();
    for _ in 0..4 {
        top.platform = Some(Platform::new("linux", "arm64", None));
        let wrap = crate::image::Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: vec![top.clone()],
            annotations: None,
        };
        let raw = serde_json::to_vec(&wrap).unwrap();
        top = Descriptor::new(media::OCI_INDEX, blobs.put(&raw), raw.len() as u64);
    }
    testkit::write_layout(dir.path(), &blobs, &[tagged(top, "deep", None)]);
    let e = Layout::open_dir(dir.path()).unwrap().image(Some("deep"), &arm64()).unwrap_err();
    assert!(e.to_string().contains("nested more than 4 levels"), "{e}");

    let odd = dir.path().join("odd");
    let b = testkit::MemBlobs::new("odd");
    let raw = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#;
    let d = Descriptor::new("application/vnd.oci.artifact.manifest.v1+json", b.put(raw), raw.len() as u64);
    testkit::write_layout(&odd, &b, &[tagged(d, "x", None)]);
    let e = Layout::open_dir(&odd).unwrap().image(Some("x"), &arm64()).unwrap_err();
    assert_eq!(e.kind(), Kind::Unsupported, "{e}");
}

#[test]
fn docker_images_are_stored_as_oci_with_the_same_blobs() {
    let dir = scratch();
    let s = image(&Spec::new(12).docker().platform("linux/amd64"));
    write_dir(dir.path(), &[(&s.image, Some("d".into()))], &|_| {}).unwrap();
    let got = Layout::open_dir(dir.path()).unwrap().image(Some("d"), &Platform::linux_amd64()).unwrap();
    assert_same(&got, &s);
    assert_eq!(got.manifest.media_type.as_deref(), Some(media::OCI_MANIFEST));
    assert_eq!(got.manifest_raw, crate::image::oci::oci_manifest_bytes(&s.image));
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"][0]["platform"], serde_json::json!({"architecture": "amd64", "os": "linux"}));
}
