//! The image model on synthetic images: `docker load`'s checks in [`validate`], manifest kind
//! sniffing and the parse limits.

use super::model::{MAX_JSON, sniff_manifest_kind};
use super::*;
use crate::testkit::{Spec, image};

fn messages(img: &Image, want: Option<&Platform>) -> Vec<String> {
    validate::check(img, want).into_iter().map(|p| p.message).collect()
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut s = image(&Spec::new(1));
    s.image.config.os = "windows".into();
    s.image.config.rootfs.kind = "snapshots".into();
    s.image.manifest.layers[1].media_type = media::OCI_LAYER_ZSTD.into();
    s.image.manifest.layers[2].urls = Some(vec!["https://example.com/l".into()]);
    let m = messages(&s.image, None);
    assert_eq!(m.len(), 4, "{m:#?}");
    assert!(m[0].contains("rootfs.type is \"snapshots\""));
    assert!(m[1].contains("image OS is \"windows\""));
    assert!(m[2].contains("layer 1") && m[2].contains("zstd"));
    assert!(m[3].contains("layer 2") && m[3].contains("foreign layer"));
}

#[test]
fn dockers_layer_limit_is_enforced() {
    let mut s = image(&Spec::new(2).layers(1));
    let l = s.image.manifest.layers[0].clone();
    let d = s.image.config.rootfs.diff_ids[0].clone();
    s.image.manifest.layers = vec![l; validate::MAX_LAYERS];
    s.image.config.rootfs.diff_ids = vec![d.clone(); validate::MAX_LAYERS];
    assert!(messages(&s.image, None).is_empty(), "125 layers load");
    s.image.manifest.layers.push(s.image.manifest.layers[0].clone());
    s.image.config.rootfs.diff_ids.push(d);
    let p = validate::check(&s.image, None);
    assert!(p[0].message.contains("126 layers, more than Docker's limit of 125"), "{p:?}");
    assert!(p[0].hint.as_deref().unwrap().contains("squash"));
}

#[test]
fn manifest_kinds_are_sniffed_from_type_or_shape() {
    let s = image(&Spec::new(3).docker());
    assert_eq!(sniff_manifest_kind(&s.image.manifest_raw, None).as_deref(), Some(media::DOCKER_MANIFEST));
    let bare = br#"{"schemaVersion":2,"layers":[]}"#;
    assert_eq!(sniff_manifest_kind(bare, None).as_deref(), Some(media::OCI_MANIFEST));
    assert_eq!(
        sniff_manifest_kind(bare, Some(&format!("{}; charset=utf-8", media::DOCKER_MANIFEST))).as_deref(),
        Some(media::DOCKER_MANIFEST)
    );
    assert_eq!(sniff_manifest_kind(br#"{"manifests":[]}"#, None).as_deref(), Some(media::OCI_INDEX));
    assert_eq!(sniff_manifest_kind(br#"{"schemaVersion":1}"#, None).as_deref(), Some(media::DOCKER_MANIFEST_V1));
    assert_eq!(sniff_manifest_kind(b"not json", None), None);
}

#[test]
fn documents_are_size_limited_and_typed() {
    let big = vec![b' '; MAX_JSON + 1];
    assert!(Manifest::parse(&big, "m").unwrap_err().to_string().contains("byte limit"));
    let s = image(&Spec::new(4));
    let relabelled =
        String::from_utf8(s.image.manifest_raw.clone()).unwrap().replacen(media::OCI_MANIFEST, media::OCI_INDEX, 1);
    let e = Manifest::parse(relabelled.as_bytes(), "index as manifest").unwrap_err();
    assert!(e.to_string().contains("not an image manifest"), "{e}");
    assert!(Index::parse(br#"{"schemaVersion":1,"manifests":[]}"#, "i").is_err());
    assert_eq!(s.image.layers_size(), s.layers.iter().map(|l| l.blob.len() as u64).sum::<u64>());
}
