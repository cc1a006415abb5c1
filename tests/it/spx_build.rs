//! Compose-driven `spxpack build` features, on copies of the bundled example (offline): images
//! provided on the robot, the archive name derived and written back into the manifest, other
//! compose file names, several tags of one image, a prebuilt archive taken byte for byte,
//! `SOURCE_DATE_EPOCH`, and the SPX read back by GNU tar and Python's tarfile.

use std::path::{Path, PathBuf};

use crate::support::{Scratch, run, spx};

fn ext(s: &Scratch) -> PathBuf {
    let dir = s.path("ext");
    spx::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension"), &dir);
    dir
}

fn build(s: &Scratch, extra: &[&str], envs: &[(&str, &str)]) -> crate::support::Run {
    let out = s.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let dir = s.path("ext");
    let mut args = vec!["build", dir.to_str().unwrap(), "--offline"];
    args.extend_from_slice(extra);
    s.spx_in(Some(&out), &args, envs)
}

fn inner_items(spx_path: &Path, archive: &str) -> serde_json::Value {
    let gz = spx::member(spx_path, archive);
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut tar).unwrap();
    let mut a = tar::Archive::new(&tar[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == "manifest.json" {
            return serde_json::from_reader(&mut e).unwrap();
        }
    }
    panic!("no manifest.json in {archive}")
}

#[test]
fn provided_images_are_not_bundled() {
    let s = Scratch::new();
    let dir = ext(&s);
    let mut c = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    c.push_str(
        "  cache:\n    image: redis:7\n    x-spxpack:\n      provided: true\n  side:\n    image: busybox:1.36\n",
    );
    std::fs::write(dir.join("docker-compose.yml"), c).unwrap();
    // offline: an image that had to be pulled would fail the build
    let r = build(&s, &["--provided", "busybox:1.36", "--provided", "alpine:3"], &[]).ok();
    assert!(r.stderr.contains("warning: --provided alpine:3: no service uses this image"), "{}", r.stderr);
    let p = s.path("out/hello_extension.spx");
    assert_eq!(inner_items(&p, "hello_extension.tar.gz")[0]["RepoTags"], serde_json::json!(["hello_extension:1.0.0"]));
    let j = s.spx(&["inspect", "--json", p.to_str().unwrap()]).ok();
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let status: Vec<&str> = v["services"].as_array().unwrap().iter().map(|x| x["status"].as_str().unwrap()).collect();
    // the --provided mark is not in the SPX, so verify can only warn about busybox
    assert_eq!(status, ["bundled in hello_extension.tar.gz", "provided on the robot", "pulled by the robot"]);
}

#[test]
fn archive_name_derived_and_compose_yaml_packaged_as_docker_compose_yml() {
    let s = Scratch::new();
    let dir = ext(&s);
    let m = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    std::fs::write(dir.join("manifest.json"), m.replace("  \"images\": [\"hello_extension.tar.gz\"],\n", "")).unwrap();
    std::fs::rename(dir.join("docker-compose.yml"), dir.join("compose.yaml")).unwrap();
    let r = build(&s, &[], &[]).ok();
    assert!(r.stderr.contains("manifest.json: added images, date"), "{}", r.stderr);
    let p = s.path("out/hello_extension.spx");
    assert_eq!(spx::names(&p), ["manifest.json", "hello_extension.tar.gz", "docker-compose.yml", "icon.png"]);
    let m: serde_json::Value = serde_json::from_slice(&spx::member(&p, "manifest.json")).unwrap();
    assert_eq!(m["images"], serde_json::json!(["hello_extension.tar.gz"]));
    assert_eq!(spx::member(&p, "docker-compose.yml"), std::fs::read(dir.join("compose.yaml")).unwrap());
    // two compose files: ambiguous
    std::fs::write(dir.join("docker-compose.yml"), "services: {}\n").unwrap();
    let r = build(&s, &["-o", "x.spx"], &[]);
    assert_eq!(r.code, 1);
    assert!(r.error_line().contains("several compose files (docker-compose.yml, compose.yaml)"), "{}", r.stderr);
}

#[test]
fn one_image_under_two_tags_is_saved_once() {
    let s = Scratch::new();
    let dir = ext(&s);
    let mut c = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    c.push_str("  again:\n    image: hello_extension:latest\n    x-spxpack:\n      source: oci:image:1.0.0\n    restart: on-failure\n");
    std::fs::write(dir.join("docker-compose.yml"), c).unwrap();
    build(&s, &[], &[]).ok();
    let p = s.path("out/hello_extension.spx");
    let items = inner_items(&p, "hello_extension.tar.gz");
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["RepoTags"], serde_json::json!(["hello_extension:1.0.0", "hello_extension:latest"]));
    let x = s.path("x");
    spx::extract(&p, &x);
    assert_eq!(
        spx::docker_load(&x.join("hello_extension.tar.gz")),
        ["hello_extension:1.0.0", "hello_extension:latest"]
    );
}

#[test]
fn a_prebuilt_archive_in_the_directory_is_packaged_byte_for_byte() {
    let s = Scratch::new();
    let dir = ext(&s);
    build(&s, &["-o", "first.spx"], &[]).ok();
    let archive = spx::member(&s.path("out/first.spx"), "hello_extension.tar.gz");
    std::fs::write(dir.join("hello_extension.tar.gz"), &archive).unwrap();
    std::fs::remove_dir_all(dir.join("image")).unwrap();
    let c = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    let c = c.replace("    x-spxpack:\n", "    x-unused:\n");
    std::fs::write(dir.join("docker-compose.yml"), c).unwrap();
    let r = build(&s, &[], &[]).ok();
    assert!(r.stderr.contains("using the prebuilt image archive hello_extension.tar.gz from the extension directory (hello_extension:1.0.0)"), "{}", r.stderr);
    assert!(spx::member(&s.path("out/hello_extension.spx"), "hello_extension.tar.gz") == archive);
}

#[test]
fn source_date_epoch_sets_date_and_mtimes_and_readers_agree() {
    let s = Scratch::new();
    ext(&s);
    build(&s, &[], &[("SOURCE_DATE_EPOCH", "1700000000")]).ok();
    let p = s.path("out/hello_extension.spx");
    let m: serde_json::Value = serde_json::from_slice(&spx::member(&p, "manifest.json")).unwrap();
    assert_eq!(m["date"], "2023-11-14T22:13:20");
    // GNU tar
    let t = run("tar", &["--numeric-owner", "--full-time", "-tvzf", p.to_str().unwrap()], &[("TZ", "UTC")]).ok();
    let lines: Vec<&str> = t.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", t.stdout);
    for l in &lines {
        assert!(l.starts_with("-rw-r--r-- 0/0 "), "{l}");
        assert!(l.contains(" 2023-11-14 22:13:20 "), "{l}");
    }
    // Python's tarfile (what the robot's tooling is likely to use)
    let py = run(
        "python3",
        &["-c", "import sys, tarfile\nfor m in tarfile.open(sys.argv[1]): print(m.name, oct(m.mode), m.uid, m.gid, repr(m.uname), repr(m.gname), m.mtime, m.type == tarfile.REGTYPE)", p.to_str().unwrap()],
        &[],
    )
    .ok();
    assert_eq!(
        py.stdout,
        "manifest.json 0o644 0 0 '' '' 1700000000 True\nhello_extension.tar.gz 0o644 0 0 '' '' 1700000000 True\ndocker-compose.yml 0o644 0 0 '' '' 1700000000 True\nicon.png 0o644 0 0 '' '' 1700000000 True\n"
    );
}
