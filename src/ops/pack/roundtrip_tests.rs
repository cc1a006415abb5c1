//! The SPX round trip, offline: an extension directory whose compose services take synthetic
//! images from `x-spxpack.source` (docker archives and OCI layouts written from the test kit)
//! → [`pack`] → [`crate::ops::verify`] → the bundled image archive read back: the same image IDs,
//! diff_ids and layer bytes. Also [`plan::plan`] on small extension directories.

use std::path::{Path, PathBuf};

use super::*;
use crate::docker_archive::{ArchiveImage, DockerArchive, Selector, WriteOptions, write_file};
use crate::error::Kind;
use crate::ops::verify::{SpxReport, VerifyOptions, verify_file};
use crate::progress::Silent;
use crate::tar::index::TarArchive;
use crate::testkit::{self, Flavor, Spec, Synth, amd64_arm64, image, read_blob, scratch, tagged};

const MANIFEST: &str = r#"{"extension_name": "kit_ext", "description": "test kit extension", "version": "1.0.0", "images": ["kit_ext.tar.gz"], "installation_target": "spot"}"#;

fn options(dir: &Path, out: &Path) -> PackOptions {
    let mut o = PackOptions::new(dir, out);
    o.cache_dir = Some(out.join("cache"));
    o.offline = true;
    o.jobs = 2;
    o
}

/// An extension directory with `manifest.json` and a compose file of `services` lines.
fn extension(root: &Path, compose: &str) -> PathBuf {
    let dir = root.join("ext");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifest.json"), MANIFEST).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), format!("services:\n{compose}")).unwrap();
    dir
}

/// A service taking `image` from `source`.
fn service(name: &str, image: &str, source: &str) -> String {
    format!("  {name}:\n    image: \"{image}\"\n    x-spxpack:\n      source: \"{source}\"\n")
}

fn save(dir: &Path, name: &str, images: &[&Synth]) -> String {
    let list: Vec<ArchiveImage> = images.iter().map(|s| ArchiveImage { image: &s.image, tags: vec![] }).collect();
    write_file(&dir.join(name), &list, &WriteOptions::default(), &|_| {}).unwrap();
    name.to_string()
}

/// One service taking `spec`'s image from a docker archive, packed with default options.
fn pack_one(spec: &Spec) -> (tempfile::TempDir, Synth, PackSummary) {
    let root = scratch();
    let s = image(spec);
    let dir = extension(root.path(), &service("app", "kit/app:1.0", "docker-archive:app.tar"));
    save(&dir, "app.tar", &[&s]);
    let summary = pack(&options(&dir, root.path()), &Silent).unwrap();
    (root, s, summary)
}

fn quick() -> VerifyOptions {
    VerifyOptions { full: false, platform: None, limits: Default::default() }
}

/// The image archive `name` inside the SPX, opened.
fn bundled(spx: &Path, name: &str, scratch: &Path) -> DockerArchive {
    let tar = TarArchive::open(spx, "SPX").unwrap();
    let (mut r, _) = tar.open_entry(name).unwrap();
    let p = scratch.join(format!("bundled-{name}"));
    std::io::copy(&mut r, &mut std::fs::File::create(&p).unwrap()).unwrap();
    DockerArchive::open(&p).unwrap()
}

fn assert_bundled(arch: &DockerArchive, tag: &str, want: &Synth) {
    let got = arch.image(&Selector::Tag(tag.into())).unwrap();
    assert_eq!(got.id(), want.image.id());
    assert_eq!(got.config.rootfs.diff_ids, want.image.config.rootfs.diff_ids);
    for (d, l) in got.manifest.layers.iter().zip(&want.layers) {
        assert_eq!(read_blob(&got, d).unwrap(), l.blob);
    }
}

fn messages(r: &SpxReport) -> Vec<String> {
    r.findings.0.iter().map(|f| f.message.clone()).collect()
}

#[test]
fn an_spx_round_trips_through_pack_and_verify() {
    let (root, s, summary) = pack_one(&Spec::new(1));
    assert_eq!(summary.output, root.path().join("kit_ext.spx"));
    assert_eq!(summary.platform, "linux/arm64/v8");
    assert_eq!(summary.archives[0].tags, ["kit/app:1.0"]);
    let report = verify_file(&summary.output, &quick()).unwrap();
    assert!(report.ok(), "{:?}", messages(&report));
    assert_eq!(report.extension_name.as_deref(), Some("kit_ext"));
    assert_eq!(report.services[0].status, "bundled in kit_ext.tar.gz");
    assert_eq!(report.archives[0].info.tags().collect::<Vec<_>>(), ["kit/app:1.0"]);
    let full = verify_file(&summary.output, &VerifyOptions { full: true, ..quick() }).unwrap();
    assert!(full.ok() && full.archives[0].info.layers_verified, "{:?}", messages(&full));
    assert_bundled(&bundled(&summary.output, "kit_ext.tar.gz", root.path()), "kit/app:1.0", &s);
}

#[test]
fn packing_is_deterministic() {
    let root = scratch();
    let s = image(&Spec::new(2).docker());
    let dir = extension(root.path(), &service("app", "kit/app:1.0", "docker-archive:app.tar"));
    save(&dir, "app.tar", &[&s]);
    let mut o = options(&dir, root.path());
    o.output = Some(root.path().join("a.spx"));
    pack(&o, &Silent).unwrap();
    o.output = Some(root.path().join("b.spx"));
    o.jobs = 1;
    pack(&o, &Silent).unwrap();
    let a = std::fs::read(root.path().join("a.spx")).unwrap();
    assert_eq!(a, std::fs::read(root.path().join("b.spx")).unwrap());
    let names: Vec<String> = testkit::tar_entries(&testkit::gunzip_bytes(&a)).into_iter().map(|e| e.0).collect();
    assert_eq!(names[0], "manifest.json", "{names:?}");
}

#[test]
fn services_sharing_a_base_share_layers_in_one_archive() {
    let root = scratch();
    let [a, b] = testkit::siblings(3, [1, 1]);
    let compose =
        service("a", "kit/a:1", "docker-archive:ab.tar@0") + &service("b", "kit/b:1", "docker-archive:ab.tar@1");
    let dir = extension(root.path(), &compose);
    save(&dir, "ab.tar", &[&a, &b]);
    let summary = pack(&options(&dir, root.path()), &Silent).unwrap();
    assert_eq!(summary.archives.len(), 1);
    assert_eq!(summary.archives[0].tags, ["kit/a:1", "kit/b:1"]);
    let arch = bundled(&summary.output, "kit_ext.tar.gz", root.path());
    assert_bundled(&arch, "kit/a:1", &a);
    assert_bundled(&arch, "kit/b:1", &b);
    let inner = testkit::gunzip_bytes(&std::fs::read(arch.tar.path()).unwrap());
    let layers = testkit::tar_entries(&inner)
        .into_iter()
        .filter(|(_, _, b)| crate::compress::sniff(b) == crate::compress::Compression::Gzip)
        .count();
    assert_eq!(layers, 4, "two base layers stored once, one top layer each");
}

#[test]
fn oci_layout_sources_are_resolved_for_the_target_platform() {
    let root = scratch();
    let dir = extension(root.path(), &service("app", "kit/multi:2", "oci:layout:multi"));
    let idx = testkit::index(6, &amd64_arm64(), Flavor::Oci);
    testkit::write_layout(&dir.join("layout"), &idx.blobs, &[tagged(idx.descriptor(), "multi", None)]);
    let summary = pack(&options(&dir, root.path()), &Silent).unwrap();
    assert!(verify_file(&summary.output, &quick()).unwrap().ok());
    assert_bundled(&bundled(&summary.output, "kit_ext.tar.gz", root.path()), "kit/multi:2", &idx.images[1]);
    // the same extension for an amd64 target bundles the other image
    let mut o = options(&dir, root.path());
    o.platform = Some(crate::platform::Platform::linux_amd64());
    o.output = Some(root.path().join("amd.spx"));
    let summary = pack(&o, &Silent).unwrap();
    assert_bundled(&bundled(&summary.output, "kit_ext.tar.gz", root.path()), "kit/multi:2", &idx.images[0]);
}

#[test]
fn an_image_for_another_platform_is_refused() {
    let root = scratch();
    let s = image(&Spec::new(7).platform("linux/amd64"));
    let dir = extension(root.path(), &service("app", "kit/app:1.0", "docker-archive:app.tar"));
    save(&dir, "app.tar", &[&s]);
    let e = pack(&options(&dir, root.path()), &Silent).unwrap_err();
    assert!(e.to_string().contains("linux/amd64"), "{e}");
    assert!(e.to_string().contains("linux/arm64/v8"), "{e}");
    assert!(!root.path().join("kit_ext.spx").exists(), "nothing is left behind");
}

#[test]
fn a_corrupt_source_layer_fails_the_build() {
    let root = scratch();
    let s = image(&Spec::new(8));
    let dir = extension(root.path(), &service("app", "kit/app:1.0", "oci:layout:t"));
    testkit::write_layout(&dir.join("layout"), &s.blobs, &[tagged(s.descriptor(), "t", None)]);
    let p = dir.join("layout").join(s.layers[1].desc.digest.blob_path());
    let mut b = std::fs::read(&p).unwrap();
    let i = b.len() / 2;
    b[i] ^= 1;
    std::fs::write(&p, b).unwrap();
    let e = pack(&options(&dir, root.path()), &Silent).unwrap_err();
    assert_eq!(e.kind(), Kind::Integrity, "{e}");
    assert!(!root.path().join("kit_ext.spx").exists());
}

#[test]
fn a_tampered_spx_is_caught_by_verify() {
    let (root, _, summary) = pack_one(&Spec::new(9));
    // rewrite the SPX with another manifest image list and compose image
    let tar = testkit::gunzip_bytes(&std::fs::read(&summary.output).unwrap());
    let mut b = tar::Builder::new(Vec::new());
    for (name, h, mut data) in testkit::tar_entries(&tar) {
        if name == "manifest.json" {
            data = String::from_utf8(data).unwrap().replace("kit_ext.tar.gz", "other.tar.gz").into_bytes();
        } else if name == "docker-compose.yml" {
            data = String::from_utf8(data).unwrap().replace("kit/app:1.0", "kit/app:2.0").into_bytes();
        }
        let mut h = h.clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, &name, &data[..]).unwrap();
    }
    let bad = root.path().join("bad.spx");
    std::fs::write(&bad, testkit::gzip_bytes(&b.into_inner().unwrap())).unwrap();
    let r = verify_file(&bad, &quick()).unwrap();
    assert!(!r.ok());
    let m = messages(&r);
    assert!(m.iter().any(|x| x.contains("\"other.tar.gz\" is not in the SPX")), "{m:?}");
    assert!(m.iter().any(|x| x.contains("kit/app:2.0 is in no image archive")), "{m:?}");
}

#[test]
fn plan_names_the_output_after_the_extension_and_tags_latest() {
    let root = scratch();
    let compose = service("app", "kit/app", "docker-archive:app.tar")
        + "  cache:\n    image: redis:7\n    x-spxpack:\n      provided: true\n";
    let dir = extension(root.path(), &compose);
    let p = plan::plan(&options(&dir, root.path()), &Silent).unwrap();
    assert_eq!(p.output, root.path().join("kit_ext.spx"));
    assert_eq!(p.extension_name, "kit_ext");
    assert_eq!(p.version.as_deref(), Some("1.0.0"));
    assert_eq!(p.images.iter().map(|i| i.tag.as_str()).collect::<Vec<_>>(), ["kit/app:latest"]);
    assert_eq!(p.archives.len(), 1);
    assert_eq!(p.archives[0].name, "kit_ext.tar.gz");
    let names: Vec<&str> = p.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["manifest.json", "kit_ext.tar.gz", "docker-compose.yml"],
        "the SDK script's order: manifest, image archives, compose"
    );
}

#[test]
fn plan_reports_every_problem_at_once() {
    let root = scratch();
    let dir = extension(root.path(), "  app:\n    image: kit/app:1\n    x-spxpack:\n      sourc: x\n");
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"extension_name": "Bad Name", "version": 3, "images": ["kit_ext.tar.gz"], "installation_target": "spot"}"#,
    )
    .unwrap();
    let e = plan::plan(&options(&dir, root.path()), &Silent).unwrap_err();
    let msg = e.to_string();
    for want in ["$.extension_name", "$.version: must be a string", "x-spxpack.sourc: unknown key"] {
        assert!(msg.contains(want), "{want} missing from {msg}");
    }
    assert!(e.hint().unwrap().contains("did you mean source?"), "{e:?}");
}

#[test]
fn plan_without_a_manifest_points_at_init() {
    let root = scratch();
    let dir = root.path().join("empty");
    std::fs::create_dir_all(&dir).unwrap();
    let e = plan::plan(&options(&dir, root.path()), &Silent).unwrap_err();
    assert!(e.hint().unwrap().contains("spxpack init"), "{e:?}");
    let e = plan::plan(&options(&root.path().join("missing"), root.path()), &Silent).unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
}
