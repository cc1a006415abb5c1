//! ggcr-style round trips (`tarball/write_test.go`): synthetic image → [`write_file`] →
//! [`DockerArchive`] → validate: the same image ID, diff_ids, tags and byte-identical layers;
//! layers shared between images are stored once; the writer is deterministic; bad input is
//! refused with errors that name the problem.

use std::path::{Path, PathBuf};

use super::read::synthesize_manifest;
use super::write::check_tag;
use super::*;
use crate::digest::Digest;
use crate::error::Kind;
use crate::image::oci::{CONTAINERD_NAME, REF_NAME, oci_manifest_bytes};
use crate::image::{Image, Manifest, media, validate};
use crate::oci_layout::{Layout, LayoutFs};
use crate::platform::Platform;
use crate::tar::index::TarArchive;
use crate::testkit::{self, Spec, Synth, image, read_blob, scratch, tar_entries};

fn write(dir: &Path, name: &str, images: &[(&Image, &[&str])], opts: &WriteOptions) -> (PathBuf, WriteSummary) {
    let path = dir.join(name);
    let list: Vec<ArchiveImage> = images
        .iter()
        .map(|(i, t)| ArchiveImage { image: i, tags: t.iter().map(|s| s.to_string()).collect() })
        .collect();
    let summary = write_file(&path, &list, opts, &|_| {}).unwrap();
    (path, summary)
}

/// ggcr's `validate.Image` for a read-back image against the synthetic original.
fn assert_same_image(got: &Image, want: &Synth) {
    assert_eq!(got.id(), want.image.id(), "image id");
    assert_eq!(got.config_raw, want.image.config_raw, "config bytes");
    assert_eq!(got.config.rootfs.diff_ids, want.image.config.rootfs.diff_ids, "diff_ids");
    assert_eq!(got.manifest.layers.len(), want.layers.len());
    for (d, l) in got.manifest.layers.iter().zip(&want.layers) {
        assert_eq!(d.digest, l.desc.digest);
        assert_eq!(d.size, l.desc.size);
        assert_eq!(read_blob(got, d).unwrap(), l.blob, "layer {} byte-identical", d.digest);
    }
    assert!(validate::check(got, Some(&want.image.platform())).is_empty());
}

#[test]
fn one_image_round_trips() {
    let dir = scratch();
    let s = image(&Spec::new(1));
    let (path, summary) = write(dir.path(), "a.tar", &[(&s.image, &["example/app:1.0"])], &WriteOptions::default());
    assert_eq!(summary.layers_written, 3);
    assert_eq!(summary.blobs, 3 + 2, "layers, config, manifest");
    let a = DockerArchive::open(&path).unwrap();
    let got = a.image(&Selector::Only).unwrap();
    assert_same_image(&got, &s);
    // an OCI source keeps its manifest digest through the hybrid layout
    assert_eq!(got.manifest_digest(), s.image.manifest_digest());
    assert_eq!(got.suggested_tags, ["example/app:1.0"]);
    assert_eq!(a.tags_of(0), ["example/app:1.0"]);
}

#[test]
fn docker_v2s2_images_round_trip_as_oci() {
    let dir = scratch();
    let s = image(&Spec::new(2).docker());
    let (path, _) = write(dir.path(), "d.tar", &[(&s.image, &["d:1"])], &WriteOptions::default());
    let got = DockerArchive::open(&path).unwrap().image(&Selector::Tag("d:1".into())).unwrap();
    assert_same_image(&got, &s);
    assert_eq!(got.manifest.media_type.as_deref(), Some(media::OCI_MANIFEST));
    assert_eq!(got.manifest_raw, oci_manifest_bytes(&s.image));
    assert!(got.manifest.layers.iter().all(|l| l.media_type == media::OCI_LAYER_GZIP));
}

#[test]
fn plain_layers_round_trip_under_their_diff_id() {
    let dir = scratch();
    let s = image(&Spec::new(3).plain());
    let (path, _) = write(dir.path(), "p.tar", &[(&s.image, &["p:1"])], &WriteOptions::default());
    let got = DockerArchive::open(&path).unwrap().image(&Selector::Only).unwrap();
    assert_same_image(&got, &s);
    for (l, d) in got.manifest.layers.iter().zip(&got.config.rootfs.diff_ids) {
        assert_eq!((l.media_type.as_str(), &l.digest), (media::OCI_LAYER, d));
    }
}

#[test]
fn multi_image_archives_share_layers() {
    let dir = scratch();
    let [a, b] = testkit::siblings(10, [1, 2]);
    let (path, summary) =
        write(dir.path(), "m.tar", &[(&a.image, &["a:1"]), (&b.image, &["b:1", "b:latest"])], &WriteOptions::default());
    assert_eq!(summary.layers_deduplicated, 2);
    assert_eq!(summary.layers_written, 2 + 1 + 2);
    let layer_files = tar_entries(&std::fs::read(&path).unwrap())
        .into_iter()
        .filter(|(n, _, b)| {
            n.starts_with("blobs/sha256/") && crate::compress::sniff(b) == crate::compress::Compression::Gzip
        })
        .count();
    assert_eq!(layer_files, 5, "each shared layer is stored once");
    let arch = DockerArchive::open(&path).unwrap();
    assert_same_image(&arch.image(&Selector::Tag("a:1".into())).unwrap(), &a);
    assert_same_image(&arch.image(&Selector::Tag("b:latest".into())).unwrap(), &b);
    assert_same_image(&arch.image(&Selector::Index(1)).unwrap(), &b);
    let all = arch.all_images().unwrap();
    assert_eq!(all.iter().map(Image::id).collect::<Vec<_>>(), [a.image.id(), b.image.id()]);
}

#[test]
fn tags_match_in_familiar_and_qualified_form() {
    let dir = scratch();
    let s = image(&Spec::new(4));
    let (path, _) = write(dir.path(), "t.tar", &[(&s.image, &["python:3.10"])], &WriteOptions::default());
    let a = DockerArchive::open(&path).unwrap();
    for t in ["python:3.10", "docker.io/library/python:3.10", "library/python:3.10"] {
        assert_eq!(a.image(&Selector::Tag(t.into())).unwrap().id(), s.image.id(), "{t}");
    }
    let e = a.image(&Selector::Tag("python:3.11".into())).unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(e.to_string().contains("it has: python:3.10"), "{e}");
    assert_eq!(a.index_names(), ["docker.io/library/python:3.10"]);
}

#[test]
fn selectors_on_multi_image_archives_say_which_exist() {
    let dir = scratch();
    let (a, b) = (image(&Spec::new(5)), image(&Spec::new(6)));
    let (path, _) = write(dir.path(), "s.tar", &[(&a.image, &["a:1"]), (&b.image, &["b:1"])], &WriteOptions::default());
    let arch = DockerArchive::open(&path).unwrap();
    let e = arch.image(&Selector::Only).unwrap_err();
    assert!(e.to_string().contains("holds 2 images"), "{e}");
    assert!(e.hint().unwrap().contains("a:1, b:1"), "{e:?}");
    let e = arch.image(&Selector::Index(2)).unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(e.to_string().contains("there is no image @2"), "{e}");
}

#[test]
fn untagged_images_round_trip_without_names() {
    let dir = scratch();
    let s = image(&Spec::new(7));
    let (path, _) = write(dir.path(), "u.tar", &[(&s.image, &[])], &WriteOptions::default());
    let tar = TarArchive::open(&path, "a").unwrap();
    assert!(!tar.contains("repositories"));
    let arch = DockerArchive::from_tar(std::sync::Arc::new(tar)).unwrap();
    let got = arch.image(&Selector::Only).unwrap();
    assert_same_image(&got, &s);
    assert!(got.suggested_tags.is_empty());
    assert!(arch.index_names().is_empty());
}

#[test]
fn gzip_archives_round_trip_and_do_not_depend_on_threads() {
    let dir = scratch();
    let s = image(&Spec::new(8));
    let opts = |threads| WriteOptions { gzip: true, threads, ..WriteOptions::default() };
    let (p1, _) = write(dir.path(), "a.tar.gz", &[(&s.image, &["a:1"])], &opts(1));
    let (p4, _) = write(dir.path(), "b.tar.gz", &[(&s.image, &["a:1"])], &opts(4));
    let (b1, b4) = (std::fs::read(&p1).unwrap(), std::fs::read(&p4).unwrap());
    assert_eq!(b1, b4);
    assert_eq!(crate::compress::sniff(&b1), crate::compress::Compression::Gzip);
    assert_same_image(&DockerArchive::open(&p1).unwrap().image(&Selector::Only).unwrap(), &s);
    let (plain, _) = write(dir.path(), "c.tar", &[(&s.image, &["a:1"])], &WriteOptions::default());
    assert_eq!(testkit::gunzip_bytes(&b1), std::fs::read(plain).unwrap());
}

#[test]
fn writing_is_deterministic_and_headers_are_normalised() {
    let dir = scratch();
    let s = image(&Spec::new(9));
    let opts = WriteOptions { mtime: 1_700_000_000, ..WriteOptions::default() };
    let (p1, summary) = write(dir.path(), "1.tar", &[(&s.image, &["x:1"])], &opts);
    let (p2, _) = write(dir.path(), "2.tar", &[(&s.image, &["x:1"])], &opts);
    let bytes = std::fs::read(&p1).unwrap();
    assert_eq!(bytes, std::fs::read(&p2).unwrap());
    assert_eq!(summary.tar_bytes, bytes.len() as u64);
    let entries = tar_entries(&bytes);
    for (name, h, _) in &entries {
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{name}");
        assert_eq!(h.mtime().unwrap(), 1_700_000_000, "{name}");
        assert!(h.username().unwrap().unwrap_or("").is_empty());
    }
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    let blobs: Vec<&str> = names.iter().copied().filter(|n| n.len() > 13 && n.starts_with("blobs/sha256/")).collect();
    let mut sorted = blobs.clone();
    sorted.sort();
    assert_eq!(blobs, sorted, "blobs sorted by digest");
    assert_eq!(names[names.len() - 4..], ["index.json", "manifest.json", "oci-layout", "repositories"]);
    let (p3, _) = write(dir.path(), "3.tar", &[(&s.image, &["x:1"])], &WriteOptions::default());
    assert_ne!(bytes, std::fs::read(&p3).unwrap(), "the mtime is in the headers");
}

#[test]
fn manifest_json_and_repositories_describe_the_images() {
    let dir = scratch();
    let s = image(&Spec::new(11));
    let (path, _) =
        write(dir.path(), "r.tar", &[(&s.image, &["reg.example:5000/team/app:2", "app:1"])], &Default::default());
    let tar = TarArchive::open(&path, "a").unwrap();
    let mj: serde_json::Value = serde_json::from_slice(&tar.read("manifest.json", 1 << 20).unwrap()).unwrap();
    assert_eq!(mj[0]["Config"], s.image.id().blob_path());
    assert_eq!(mj[0]["RepoTags"], serde_json::json!(["reg.example:5000/team/app:2", "app:1"]));
    let layers: Vec<String> = s.layers.iter().map(|l| l.desc.digest.blob_path()).collect();
    assert_eq!(mj[0]["Layers"], serde_json::json!(layers));
    let repos: serde_json::Value = serde_json::from_slice(&tar.read("repositories", 1 << 20).unwrap()).unwrap();
    let top = s.image.config.rootfs.diff_ids.last().unwrap().hex().to_string();
    assert_eq!(repos["app"]["1"], top);
    assert_eq!(repos["reg.example:5000/team/app"]["2"], top);
    let idx = crate::image::Index::parse(&tar.read("index.json", 1 << 20).unwrap(), "i").unwrap();
    let names: Vec<(&str, &str)> = idx
        .manifests
        .iter()
        .map(|d| (d.annotation(CONTAINERD_NAME).unwrap(), d.annotation(REF_NAME).unwrap()))
        .collect();
    assert_eq!(names, [("reg.example:5000/team/app:2", "2"), ("docker.io/library/app:1", "1")]);
}

#[test]
fn the_hybrid_archive_is_also_an_oci_layout() {
    let dir = scratch();
    let a = image(&Spec::new(12));
    let b = image(&Spec::new(13).platform("linux/amd64"));
    let (path, _) = write(dir.path(), "h.tar", &[(&a.image, &["a:1"]), (&b.image, &["b:2"])], &Default::default());
    let layout =
        Layout::open(LayoutFs::Tar(std::sync::Arc::new(TarArchive::open(&path, "a").unwrap())), "oci-archive").unwrap();
    let got = layout.image(Some("docker.io/library/b:2"), &Platform::linux_amd64()).unwrap();
    assert_same_image(&got, &b);
    let got = layout.image(None, &Platform::linux_arm64()).unwrap();
    assert_eq!(got.id(), a.image.id(), "untagged lookup picks by platform");
}

#[test]
fn progress_counts_every_layer_byte() {
    let dir = scratch();
    let s = image(&Spec::new(14));
    let total = std::sync::atomic::AtomicU64::new(0);
    let list = [ArchiveImage { image: &s.image, tags: vec!["p:1".into()] }];
    write_file(&dir.path().join("p.tar"), &list, &WriteOptions::default(), &|n| {
        total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(total.into_inner(), s.image.layers_size());
}

fn write_err(images: &[ArchiveImage]) -> crate::Error {
    let dir = scratch();
    write_file(&dir.path().join("e.tar"), images, &WriteOptions::default(), &|_| {}).unwrap_err()
}

#[test]
fn refuses_no_images_duplicate_and_invalid_tags() {
    let s = image(&Spec::new(15));
    let t = image(&Spec::new(16));
    assert!(write_err(&[]).to_string().contains("no images"));
    let e = write_err(&[
        ArchiveImage { image: &s.image, tags: vec!["x:1".into()] },
        ArchiveImage { image: &t.image, tags: vec!["docker.io/library/x:1".into()] },
    ]);
    assert!(e.to_string().contains("given to two images"), "{e}");
    for bad in ["x", "x@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "X:1"] {
        let e = write_err(&[ArchiveImage { image: &s.image, tags: vec![bad.into()] }]);
        assert_eq!(e.kind(), Kind::Input, "{bad}: {e}");
    }
    assert!(check_tag("a/b:c").is_ok());
    assert!(check_tag("a/b").unwrap_err().hint().unwrap().contains("docker load"));
}

#[test]
fn refuses_corrupt_and_short_layers_and_wrong_configs() {
    let s = image(&Spec::new(17));
    s.blobs.corrupt(&s.layers[1].desc.digest);
    let e = write_err(&[ArchiveImage { image: &s.image, tags: vec![] }]);
    assert_eq!(e.kind(), Kind::Integrity, "{e}");
    assert!(e.to_string().contains(&s.layers[1].desc.digest.to_string()), "{e}");

    let s = image(&Spec::new(18));
    let mut blob = s.layers[0].blob.clone();
    blob.truncate(blob.len() - 10);
    s.blobs.replace(&s.layers[0].desc.digest, blob);
    assert_eq!(write_err(&[ArchiveImage { image: &s.image, tags: vec![] }]).kind(), Kind::Integrity);

    let mut s = image(&Spec::new(19));
    s.image.config_raw.push(b' ');
    let e = write_err(&[ArchiveImage { image: &s.image, tags: vec![] }]);
    assert!(e.to_string().contains("config bytes do not match"), "{e}");
}

#[test]
fn refuses_images_that_docker_load_would_reject() {
    let mut s = image(&Spec::new(20));
    s.image.config.rootfs.diff_ids.pop();
    let e = write_err(&[ArchiveImage { image: &s.image, tags: vec![] }]);
    assert!(e.to_string().contains("3 layers but the config has 2 diff_ids"), "{e}");
    let mut s = image(&Spec::new(21));
    s.image.manifest.layers[0].media_type = media::OCI_LAYER_ZSTD.into();
    let e = write_err(&[ArchiveImage { image: &s.image, tags: vec![] }]);
    assert!(e.hint().unwrap().contains("gzip"), "{e:?}");
}

#[test]
fn reader_rejects_inconsistent_archives() {
    let dir = scratch();
    // a manifest.json whose layer list disagrees with the config
    let s = image(&Spec::new(22));
    let mut b = tar::Builder::new(Vec::new());
    let config_path = s.image.id().blob_path();
    let mj = serde_json::json!([{"Config": config_path, "RepoTags": ["x:1"], "Layers": [s.layers[0].desc.digest.blob_path()]}]);
    for (name, data) in [
        (config_path.as_str(), s.image.config_raw.clone()),
        (&s.layers[0].desc.digest.blob_path(), s.layers[0].blob.clone()),
        ("manifest.json", serde_json::to_vec(&mj).unwrap()),
    ] {
        let mut h = testkit::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let p = dir.path().join("bad.tar");
    std::fs::write(&p, b.into_inner().unwrap()).unwrap();
    let e = DockerArchive::open(&p).unwrap().image(&Selector::Only).unwrap_err();
    assert!(e.to_string().contains("lists 1 layers but the config has 3 diff_ids"), "{e}");

    // an OCI archive given as a docker archive
    let layout = dir.path().join("layout");
    crate::oci_layout::write_dir(&layout, &[(&s.image, Some("x".into()))], &|_| {}).unwrap();
    let p = dir.path().join("oci.tar");
    std::fs::write(&p, testkit::tar_dir(&layout)).unwrap();
    let e = DockerArchive::open(&p).err().unwrap();
    assert!(e.hint().unwrap().contains("oci-archive:"), "{e:?}");
}

#[test]
fn classic_archives_with_layer_tar_links_are_read() {
    // docker save before 25: <v1id>/layer.tar (plain) and the config at <id>.json
    let dir = scratch();
    let s = image(&Spec::new(23).plain());
    let mut b = tar::Builder::new(Vec::new());
    let mut layers = Vec::new();
    for (i, l) in s.layers.iter().enumerate() {
        let name = format!("{:064x}/layer.tar", i + 1);
        let mut h = testkit::header(tar::EntryType::Regular, 0o644, l.tar.len() as u64);
        b.append_data(&mut h, &name, &l.tar[..]).unwrap();
        layers.push(name);
    }
    let config = format!("{}.json", s.image.id().hex());
    let mj =
        serde_json::to_vec(&serde_json::json!([{"Config": config, "RepoTags": ["old:1"], "Layers": layers}])).unwrap();
    for (name, data) in [(config.as_str(), &s.image.config_raw), ("manifest.json", &mj)] {
        let mut h = testkit::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let p = dir.path().join("classic.tar");
    std::fs::write(&p, b.into_inner().unwrap()).unwrap();
    let got = DockerArchive::open(&p).unwrap().image(&Selector::Tag("old:1".into())).unwrap();
    assert_same_image(&got, &s);
    let synth = synthesize_manifest(&s.image.id(), s.image.config_raw.len() as u64, &got.manifest.layers);
    assert_eq!(got.manifest_raw, synth, "no index.json: the manifest is synthesised");
}

#[test]
fn selector_parsing() {
    assert_eq!(Selector::parse(None).unwrap(), Selector::Only);
    assert_eq!(Selector::parse(Some("")).unwrap(), Selector::Only);
    assert_eq!(Selector::parse(Some("@3")).unwrap(), Selector::Index(3));
    assert_eq!(Selector::parse(Some("app:1")).unwrap(), Selector::Tag("app:1".into()));
    let e = Selector::parse(Some("@x")).unwrap_err();
    assert!(e.hint().unwrap().contains("@N"), "{e:?}");
}

#[test]
fn oci_manifests_are_kept_and_docker_ones_converted_exactly() {
    let oci = image(&Spec::new(24));
    assert_eq!(oci_manifest_bytes(&oci.image), oci.image.manifest_raw);
    let mut docker = image(&Spec::new(24).docker());
    let ann = std::collections::BTreeMap::from([("k".to_string(), "v".to_string())]);
    docker.image.manifest.layers[0].annotations = Some(ann.clone());
    let m = Manifest::parse(&oci_manifest_bytes(&docker.image), "m").unwrap();
    assert_eq!(m.layers[0].annotations.as_ref(), Some(&ann));
    assert_eq!(m.config.media_type, media::OCI_CONFIG);
    assert_ne!(Digest::of(&oci_manifest_bytes(&docker.image)), docker.image.manifest_digest());
}
