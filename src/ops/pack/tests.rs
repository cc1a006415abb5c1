//! The planning steps on the example extension and on small extension directories written into a
//! temporary directory: offline (nothing is pulled, built or written).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::assign::{self, Archives, Wanted};
use super::model::{ArchiveKind, ArchivePlan, ComposeIn, ImageFrom, ImageReq};
use super::plan::{self, choose_output, package_manifest};
use super::{PackOptions, images};
use crate::host_env::HostEnv;
use crate::problem::Problems;
use crate::progress::Silent;
use crate::source::Source;
use crate::spx::writer::Body;

const MANIFEST: &str = r#"{"extension_name": "ext", "version": "1.0.0", "images": ["ext.tar.gz"]}"#;

/// An extension directory with these files (directories are created), and a separate
/// current directory for the output.
fn ext_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, PackOptions) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("ext");
    std::fs::create_dir_all(t.path().join("cwd")).unwrap();
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    let opts = PackOptions::new(&dir, t.path().join("cwd"));
    (t, opts)
}

/// The error lines of a failed plan, with the temporary directory shown as `T`.
fn plan_errors(opts: &PackOptions, t: &Path) -> Vec<String> {
    let e = plan::plan(opts, &Silent).unwrap_err();
    e.message().replace(&t.display().to_string(), "T").split("\nerror: ").map(str::to_string).collect()
}

fn map(json: &str) -> Map<String, Value> {
    serde_json::from_str(json).unwrap()
}

#[test]
fn the_example_extension_plans_offline() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension");
    let cwd = tempfile::tempdir().unwrap();
    let p = plan::plan(&PackOptions::new(&example, cwd.path()), &Silent).unwrap();
    assert_eq!(p.extension_name, "hello_extension");
    assert_eq!(p.output, cwd.path().join("hello_extension.spx"));
    assert_eq!(p.platform.normalized().to_string(), "linux/arm64/v8");
    let names: Vec<&str> = p.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["manifest.json", "hello_extension.tar.gz", "docker-compose.yml", "icon.png"]);
    assert_eq!(p.manifest_added, ["date"]);
    assert_eq!(p.images.len(), 1);
    assert_eq!(p.images[0].tag, "hello_extension:1.0.0");
    assert!(
        matches!(&p.images[0].from, ImageFrom::Source(Source::OciDir { path, .. }) if path == &example.join("image"))
    );
    assert!(matches!(p.archives[0].kind, ArchiveKind::Generated { ref reqs } if reqs == &[0]));
    let Body::Bytes(m) = &p.entries[0].body else { panic!("the manifest is generated") };
    assert!(String::from_utf8_lossy(m).ends_with(r#""installation_target": "spot", "date": "1970-01-01T00:00:00"}"#));
    assert!(p.tee.is_none());
}

#[test]
fn every_problem_of_a_directory_at_once() {
    let (t, mut opts) = ext_dir(&[
        ("manifest.json", r#"{"extension_name": "ext", "installation_target": "robot", "images": ["ext.tar.gz"]}"#),
        ("docker-compose.yml", "services:\n  a:\n    build: .\n  b:\n    image: b:1\n    restart: sometimes\n"),
    ]);
    opts.provided = vec!["nobody:1".into()];
    assert_eq!(
        plan_errors(&opts, t.path()),
        [
            "T/ext/manifest.json: $.version: missing (required)",
            "T/ext/manifest.json: $.installation_target: \"robot\" is not one of spot, orbit",
            "T/ext/docker-compose.yml: services.b.restart: \"sometimes\" is not a restart policy",
            "T/ext/docker-compose.yml: services.a: build: needs an image: NAME:TAG to save the built image under",
        ]
    );
}

#[test]
fn a_missing_directory_or_manifest_ends_planning() {
    let (t, opts) = ext_dir(&[]);
    let e = plan::plan(&opts, &Silent).unwrap_err();
    assert!(e.message().ends_with("ext/manifest.json: no such file or directory"), "{e}");
    assert!(e.hint().unwrap().starts_with("create one with: spxpack init"));
    let e = plan::plan(&PackOptions::new(t.path().join("nope"), t.path()), &Silent).unwrap_err();
    assert!(e.message().contains("does not exist"), "{e}");
}

#[test]
fn the_output_is_named_after_the_extension_or_the_directory() {
    let (_t, opts) = ext_dir(&[]);
    let mut f = Problems::new();
    let out = choose_output(&opts, Some(&map(MANIFEST)), &mut f);
    assert_eq!((out.path, out.extension_name), (opts.cwd.join("ext.spx"), "ext".to_string()));
    let out = choose_output(&opts, Some(&map("{}")), &mut f);
    assert_eq!(out.file, "ext.spx"); // the directory's name
    assert!(f.0.is_empty(), "{f:?}");

    let mut o = opts.clone();
    o.output = Some(opts.cwd.join("x.tar"));
    o.image_archive = Some("x.tar".into());
    let out = choose_output(&o, None, &mut f);
    assert_eq!(out.extension_name, "x.tar");
    let msgs: Vec<&str> = f.0.iter().map(|p| p.message.as_str()).collect();
    assert!(msgs[0].contains("and --image-archive") && msgs[0].ends_with("are the same file"), "{msgs:?}");
    assert_eq!(msgs[1], "the output x.tar does not end in .spx");
}

#[test]
fn the_packaged_manifest_keeps_the_users_order_and_adds_defaults() {
    let mut m = map(r#"{"version": "2.0.0", "installation_target": "", "icon": "i.png"}"#);
    let added = vec![("images".to_string(), Value::from(vec!["a.tgz"])), ("icon".to_string(), Value::from("x.png"))];
    let p = package_manifest(Some(&mut m), added, 86_400);
    assert_eq!(p.added, ["images", "installation_target", "date"]);
    assert_eq!(p.version.as_deref(), Some("2.0.0"));
    assert_eq!(
        String::from_utf8(p.bytes).unwrap(),
        r#"{"version": "2.0.0", "installation_target": "spot", "icon": "i.png", "images": ["a.tgz"], "date": "1970-01-02T00:00:00"}"#
    );
    assert!(package_manifest(None, Vec::new(), 0).bytes.is_empty());
}

#[test]
fn compose_build_args_come_from_the_given_environment() {
    let (_t, mut opts) = ext_dir(&[
        ("manifest.json", MANIFEST),
        (
            "docker-compose.yml",
            "services:\n  a:\n    image: a:1\n    build:\n      context: .\n      args: [SET, UNSET, EMPTY, GIVEN=1]\n",
        ),
        ("Dockerfile", "FROM scratch\n"),
    ]);
    opts.env = HostEnv::from_vars([("SET", "from-env"), ("EMPTY", "")]);
    let mut f = Problems::new();
    let compose =
        plan::check_compose(&opts, crate::spx::Target::Spot, &crate::platform::Platform::linux_arm64(), &mut f);
    let w = assign::wanted_images(&opts, Some(&map(MANIFEST)), &compose, &[], &mut f);
    assert!(f.0.is_empty(), "{f:?}");
    let ImageFrom::Build(b) = &w.reqs[0].0.from else { panic!("a build") };
    let args: Vec<(&str, &str)> = b.args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(args, [("SET", "from-env"), ("EMPTY", ""), ("GIVEN", "1")]);
    assert_eq!(b.dockerfile, opts.dir.join("Dockerfile"));
}

#[test]
fn the_sdk_image_archive_takes_the_flag_images() {
    let (_t, mut opts) = ext_dir(&[]);
    opts.image_archive = Some("imgs.tar".into());
    opts.extra_images = vec!["redis:7".into()];
    let mut f = Problems::new();
    let w = assign::wanted_images(&opts, Some(&map(r#"{"version": "1.0.0"}"#)), &ComposeIn::default(), &[], &mut f);
    assert!(f.0.is_empty(), "{f:?}");
    assert_eq!(w.images_list, Some(vec!["imgs.tar".to_string()]));
    assert_eq!(w.added, [("images".to_string(), Value::from(vec!["imgs.tar"]))]);
    assert_eq!(w.tee, Some((0, opts.cwd.join("imgs.tar"))));
    assert_eq!(w.reqs[0].0.tag, "redis:7");
    assert_eq!(w.reqs[0].1.as_deref(), Some("imgs.tar"));
    assert!(!w.uncertain);

    opts.extra_images.clear();
    opts.image_archive = Some("imgs.zip".into());
    let w = assign::wanted_images(&opts, Some(&map(MANIFEST)), &ComposeIn::default(), &[], &mut f);
    assert!(w.reqs.is_empty());
    let msgs: Vec<&str> = f.0.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(msgs[0], "--image-archive imgs.zip: must end in .tar, .tar.gz or .tgz");
    assert!(msgs[1].ends_with("$.images does not list \"imgs.zip\", the --image-archive"), "{msgs:?}");
    assert_eq!(msgs[2], "--image-archive imgs.zip: no image to put in it");
}

#[test]
fn sdk_builds_need_one_tag_per_dockerfile() {
    let (_t, mut opts) = ext_dir(&[("Dockerfile", "FROM scratch\n")]);
    opts.dockerfiles = vec![opts.dir.join("Dockerfile")];
    let mut f = Problems::new();
    assert!(assign::sdk_builds(&opts, &mut f).is_empty());
    assert_eq!(f.0[0].message, "--build-image-tags has 0 tags for 1 --dockerfile-paths");
    opts.build_tags = vec!["app:1".into()];
    let mut f = Problems::new();
    let reqs = assign::sdk_builds(&opts, &mut f);
    assert!(f.0.is_empty(), "{f:?}");
    assert!(matches!(&reqs[0].from, ImageFrom::Build(b) if b.context == opts.dir));
}

fn req(tag: &str) -> ImageReq {
    let from = ImageFrom::Source(Source::parse(tag).unwrap());
    ImageReq { tag: tag.into(), from, shown: tag.into(), archive: 0 }
}

fn generated(names: &[&str]) -> Vec<ArchivePlan> {
    names.iter().map(|n| ArchivePlan { name: n.to_string(), kind: ArchiveKind::Generated { reqs: vec![] } }).collect()
}

#[test]
fn images_go_into_the_archive_named_after_them() {
    let mut f = Problems::new();
    let mut w = Wanted {
        reqs: vec![(req("reg.io/team/app:1"), None), (req("db:2"), Some("db.tgz".into())), (req("app:1"), None)],
        images_list: Some(vec!["app.tar.gz".into(), "db.tgz".into()]),
        ..Wanted::default()
    };
    let archives = Archives { archives: generated(&["app.tar.gz", "db.tgz"]), refused: false };
    let (images, archives) = assign::assign_images(&mut w, archives, "ext", &mut f, &Silent);
    assert!(f.0.is_empty(), "{f:?}");
    let placed: Vec<(&str, usize)> = images.iter().map(|r| (r.tag.as_str(), r.archive)).collect();
    assert_eq!(placed, [("reg.io/team/app:1", 0), ("db:2", 1), ("app:1", 0)]);
    assign::check_archives_used(Path::new("/x"), &archives.archives, false, &mut f);
    assert!(f.0.is_empty(), "{f:?}");

    // which of two archives holds "other" cannot be told; an empty archive is not reported then
    let mut w = Wanted { reqs: vec![(req("other:1"), None)], ..Wanted::default() };
    let archives = Archives { archives: generated(&["a.tar", "b.tar"]), refused: false };
    let (images, archives) = assign::assign_images(&mut w, archives, "ext", &mut f, &Silent);
    assert!(images.is_empty() && w.uncertain);
    assert_eq!(f.0[0].message, "other:1: cannot tell which of a.tar, b.tar holds it");
    assign::check_archives_used(Path::new("/x"), &archives.archives, w.uncertain, &mut f);
    assert_eq!(f.0.len(), 1);
}

#[test]
fn without_an_images_list_one_archive_is_added() {
    let mut f = Problems::new();
    let mut list = None;
    let mut archives = Vec::new();
    assert_eq!(images::pick_archive(&req("a:1"), None, &mut archives, &mut list, "ext", &mut f), Some(0));
    assert_eq!(list, Some(vec!["ext.tar.gz".to_string()]));
    assert_eq!(assign::images_key(&archives), Some(("images".to_string(), Value::from(vec!["ext.tar.gz"]))));
    // an x-spxpack.archive not in an explicit list is an error
    assert_eq!(images::pick_archive(&req("b:1"), Some("b.tar"), &mut archives, &mut list, "ext", &mut f), None);
    assert_eq!(f.0[0].message, "b:1: x-spxpack.archive \"b.tar\" is not in manifest.json images");
}

#[test]
fn compose_images_must_be_bundled_or_provided() {
    let (t, mut opts) = ext_dir(&[
        ("manifest.json", MANIFEST),
        (
            "docker-compose.yml",
            "services:\n  a:\n    image: a:1\n    x-spxpack: {provided: true}\n  b:\n    image: b:1\n",
        ),
    ]);
    opts.image_archive = Some("ext.tar.gz".into());
    opts.extra_images = vec!["c:1".into()];
    let errors = plan_errors(&opts, t.path());
    assert_eq!(
        errors,
        [
            "T/ext/docker-compose.yml: services.b.image: b:1 is not bundled: it is in neither --extra-image-tags nor marked provided"
        ]
    );
}

#[test]
fn additional_files_and_assets_are_collected() {
    let (_t, mut opts) = ext_dir(&[
        ("manifest.json", MANIFEST),
        (
            "docker-compose.yml",
            "x-spxpack:\n  additional_files: [conf/a.txt, ../out]\nservices:\n  a:\n    image: a:1\n",
        ),
        ("conf/a.txt", "a"),
        ("data/b.txt", "b"),
        ("udev_rule.rule", "x"),
    ]);
    opts.additional_files = vec![PathBuf::from("data")];
    let mut f = Problems::new();
    let compose =
        plan::check_compose(&opts, crate::spx::Target::Spot, &crate::platform::Platform::linux_arm64(), &mut f);
    let mut added = Vec::new();
    let (assets, trees) = super::files::collect_assets(&opts, Some(&map(MANIFEST)), &compose, &mut added, &mut f);
    let extra: Vec<&str> = assets.extra.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(extra, ["conf/a.txt", "data", "data/b.txt"]);
    assert_eq!(trees, [opts.dir.join("data")]);
    assert_eq!(assets.udev[0].name, "udev_rule.rule");
    assert!(assets.icon.is_empty());
    assert_eq!(added, [("udev_rules".to_string(), Value::from("udev_rule.rule"))]);
    assert_eq!(f.0.len(), 1, "{f:?}");
    assert!(f.0[0].message.ends_with("x-spxpack.additional_files: \"../out\" leaves the extension directory ('..')"));
}
