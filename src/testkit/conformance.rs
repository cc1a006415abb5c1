//! Conformance: every manifest, index and config spxpack emits parses with the ecosystem's OCI
//! types (`oci-spec`, a dev-dependency used as an oracle only; production keeps its own
//! byte-exact model because oci-spec's maps are unordered) and says the same thing our model
//! says: digests, sizes, media types, platforms, diff_ids.

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use super::*;
use crate::blob_cache::BlobCache;
use crate::docker_archive::{ArchiveImage, WriteOptions, write_file};
use crate::tar::index::TarArchive;

fn oracle_manifest(raw: &[u8], ours: &Manifest) -> ImageManifest {
    let m: ImageManifest = serde_json::from_slice(raw).unwrap_or_else(|e| panic!("oci-spec rejects manifest: {e}"));
    assert_eq!(m.schema_version(), 2);
    assert_eq!(m.config().digest().to_string(), ours.config.digest.to_string());
    assert_eq!(m.config().size(), ours.config.size);
    assert_eq!(m.layers().len(), ours.layers.len());
    for (a, b) in m.layers().iter().zip(&ours.layers) {
        assert_eq!(a.digest().to_string(), b.digest.to_string());
        assert_eq!(a.size(), b.size);
        assert_eq!(a.media_type().to_string(), b.media_type);
    }
    m
}

fn oracle_config(raw: &[u8], ours: &ConfigView) {
    let c: ImageConfiguration = serde_json::from_slice(raw).unwrap_or_else(|e| panic!("oci-spec rejects config: {e}"));
    assert_eq!(c.architecture().to_string(), ours.architecture);
    assert_eq!(c.os().to_string(), ours.os);
    let diff: Vec<String> = c.rootfs().diff_ids().to_vec();
    assert_eq!(diff, ours.rootfs.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>());
}

fn oracle_index(raw: &[u8]) -> ImageIndex {
    let i: ImageIndex = serde_json::from_slice(raw).unwrap_or_else(|e| panic!("oci-spec rejects index: {e}"));
    assert_eq!(i.schema_version(), 2);
    i
}

/// Every index entry of `tar` names a manifest in the tar that the oracle accepts.
fn check_layout_docs(read: &dyn Fn(&str) -> Vec<u8>) -> usize {
    let raw = read("index.json");
    let idx = oracle_index(&raw);
    let ours = Index::parse(&raw, "index.json").unwrap();
    for (d, o) in idx.manifests().iter().zip(&ours.manifests) {
        assert_eq!(d.media_type().to_string(), media::OCI_MANIFEST);
        let p = d.platform().as_ref().expect("entries carry a platform");
        let op = o.platform.as_ref().unwrap();
        assert_eq!((p.os().to_string(), p.architecture().to_string()), (op.os.clone(), op.architecture.clone()));
        let mraw = read(&o.digest.blob_path());
        assert_eq!(Digest::of(&mraw), o.digest);
        let m = Manifest::parse(&mraw, "manifest").unwrap();
        let om = oracle_manifest(&mraw, &m);
        assert_eq!(om.media_type().as_ref().map(|t| t.to_string()).as_deref(), Some(media::OCI_MANIFEST));
        let craw = read(&m.config.digest.blob_path());
        oracle_config(&craw, &parse_json(&craw, "config").unwrap());
    }
    idx.manifests().len()
}

#[test]
fn docker_archive_writer_emits_oci_documents() {
    let dir = scratch();
    let a = image(&Spec::new(1));
    let b = image(&Spec::new(2).docker().platform("linux/amd64"));
    let path = dir.path().join("x.tar");
    let imgs = [
        ArchiveImage { image: &a.image, tags: vec!["a:1".into(), "reg.example:5000/a/b:2".into()] },
        ArchiveImage { image: &b.image, tags: vec![] },
    ];
    write_file(&path, &imgs, &WriteOptions::default(), &|_| {}).unwrap();
    let tar = TarArchive::open(&path, "archive").unwrap();
    let n = check_layout_docs(&|p| tar.read(p, 1 << 24).unwrap());
    assert_eq!(n, 3, "one entry per tag, one for the untagged image");
}

#[test]
fn oci_layout_writer_emits_oci_documents() {
    let dir = scratch();
    let a = image(&Spec::new(3).docker());
    let b = image(&Spec::new(4));
    crate::oci_layout::write_dir(
        dir.path(),
        &[(&a.image, Some("a".into())), (&b.image, Some("example.com/b:2".into()))],
        &|_| {},
    )
    .unwrap();
    let n = check_layout_docs(&|p| std::fs::read(dir.path().join(p)).unwrap());
    assert_eq!(n, 2);
}

#[test]
fn docker_v2s2_converts_to_a_valid_oci_manifest() {
    let s = image(&Spec::new(5).docker());
    let raw = crate::image::oci::oci_manifest_bytes(&s.image);
    let m = Manifest::parse(&raw, "converted").unwrap();
    let om = oracle_manifest(&raw, &m);
    assert_eq!(om.config().media_type().to_string(), media::OCI_CONFIG);
    assert!(om.layers().iter().all(|l| l.media_type().to_string() == media::OCI_LAYER_GZIP));
    // the converted manifest points at the very same blobs
    assert_eq!(m.config.digest, s.image.manifest.config.digest);
    let theirs: Vec<_> = s.image.manifest.layers.iter().map(|l| (&l.digest, l.size)).collect();
    assert_eq!(m.layers.iter().map(|l| (&l.digest, l.size)).collect::<Vec<_>>(), theirs);
}

#[test]
fn synthesized_archive_manifests_are_valid() {
    let s = image(&Spec::new(6).plain());
    let raw = crate::docker_archive::read::synthesize_manifest(
        &s.image.id(),
        s.image.config_raw.len() as u64,
        &s.image.manifest.layers,
    );
    oracle_manifest(&raw, &Manifest::parse(&raw, "synth").unwrap());
}

#[test]
fn testkit_documents_are_valid_too() {
    // the oracle also guards the kit: a broken synthetic image would make every round trip moot
    for flavor in [Flavor::Oci, Flavor::Docker] {
        let idx = index(7, &amd64_arm64(), flavor);
        let i = oracle_index(&idx.raw);
        assert_eq!(i.manifests().len(), 2);
        for s in &idx.images {
            oracle_manifest(&s.image.manifest_raw, &s.image.manifest);
            oracle_config(&s.image.config_raw, &s.image.config);
        }
    }
}

#[test]
fn dockerfile_builder_configs_and_manifests_are_valid() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM base\nENV A=1\nLABEL x=y\nCOPY hello.txt /srv/\nWORKDIR /srv\nEXPOSE 8080/tcp\nCMD [\"cat\", \"hello.txt\"]\n",
    )
    .unwrap();
    let base = image(&Spec::new(8).layers(2));
    let layout = dir.path().join("base");
    crate::oci_layout::write_dir(&layout, &[(&base.image, Some("base".into()))], &|_| {}).unwrap();
    let cache = BlobCache::open(Some(dir.path().join("cache")), true).unwrap();
    let resolver = crate::source::Resolver::new(cache, Default::default());
    let mut opts = crate::dockerfile::BuildOptions::new(ctx.join("Dockerfile"), &ctx);
    opts.platform = Platform::linux_arm64();
    opts.build_contexts = vec![("base".into(), format!("oci:{}:base", layout.display()))];
    let img = crate::dockerfile::build_image(&opts, &resolver, &crate::progress::Silent).unwrap();
    assert_eq!(img.manifest.layers.len(), 3);
    assert_eq!(img.manifest.layers[..2], base.image.manifest.layers[..]);
    oracle_manifest(&img.manifest_raw, &img.manifest);
    oracle_config(&img.config_raw, &img.config);
    let c: ImageConfiguration = serde_json::from_slice(&img.config_raw).unwrap();
    let cfg = c.config().as_ref().expect("config section");
    assert_eq!(cfg.working_dir().as_deref(), Some("/srv"));
    assert!(cfg.env().as_ref().unwrap().iter().any(|e| e == "A=1"));
    assert_eq!(cfg.labels().as_ref().unwrap().get("x").map(String::as_str), Some("y"));
    assert_eq!(c.history().as_ref().map(Vec::len), Some(2 + 6));
}
