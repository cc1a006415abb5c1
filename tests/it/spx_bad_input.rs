//! Bad extension inputs: each is one `error:` line naming the file and the field (plus a
//! `hint:`), exit code 1, and nothing left in the output directory — no `.spx`, no partial file.
//! Several problems are all reported at once, one line each.

use std::path::{Path, PathBuf};

use crate::support::{Run, Scratch, spx};

/// A copy of the bundled example (builds offline) at `<scratch>/ext`.
fn ext(s: &Scratch) -> PathBuf {
    let dir = s.path("ext");
    spx::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension"), &dir);
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn build(s: &Scratch, extra: &[&str]) -> Run {
    let out = s.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let dir = s.path("ext");
    let mut args = vec!["build", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    s.spx_in(Some(&out), &args, &[])
}

/// Exit 1, one error line per fragment list (each line holds all its fragments), a hint, no output.
#[track_caller]
fn rejected(s: &Scratch, r: &Run, errors: &[&[&str]]) {
    assert_eq!(r.code, 1, "exit code; stderr: {}", r.stderr);
    let lines = crate::support::error_chains(&r.stderr);
    assert_eq!(lines.len(), errors.len(), "error lines: {}", r.stderr);
    for (line, frags) in lines.iter().zip(errors) {
        for f in *frags {
            assert!(line.contains(f), "{line:?} lacks {f:?}");
        }
    }
    assert!(r.stderr.lines().any(|l| l.starts_with("hint: ") && l.len() > 10), "no hint: {}", r.stderr);
    let left: Vec<_> = std::fs::read_dir(s.path("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn manifest(s: &Scratch) -> PathBuf {
    s.path("ext/manifest.json")
}
fn compose(s: &Scratch) -> PathBuf {
    s.path("ext/docker-compose.yml")
}

#[test]
fn the_base_extension_builds() {
    let s = Scratch::new();
    ext(&s);
    build(&s, &[]).ok();
    assert!(s.path("out/hello_extension.spx").is_file());
}

#[test]
fn malformed_manifest_json() {
    let s = Scratch::new();
    ext(&s);
    edit(&manifest(&s), "\"version\": \"1.0.0\",", "\"version\": \"1.0.0\",,");
    let r = build(&s, &[]);
    rejected(&s, &r, &[&["ext/manifest.json: invalid JSON at line 4 column 22: key must be a string"]]);
}

#[test]
fn malformed_compose_yaml() {
    let s = Scratch::new();
    ext(&s);
    std::fs::write(compose(&s), "services:\n  hello: [\n").unwrap();
    let r = build(&s, &[]);
    rejected(&s, &r, &[&["ext/docker-compose.yml: invalid YAML:", "line 2"]]);
}

#[test]
fn missing_required_version() {
    let s = Scratch::new();
    ext(&s);
    edit(&manifest(&s), "\"version\": \"1.0.0\",", "");
    let r = build(&s, &[]);
    rejected(&s, &r, &[&["ext/manifest.json: $.version: missing (required)"]]);
}

#[test]
fn wrong_installation_target() {
    let s = Scratch::new();
    ext(&s);
    edit(&manifest(&s), "\"installation_target\": \"spot\"", "\"installation_target\": \"robot\"");
    let r = build(&s, &[]);
    rejected(&s, &r, &[&["ext/manifest.json: $.installation_target: \"robot\" is not one of spot, orbit"]]);
}

#[test]
fn images_entry_without_an_archive() {
    let s = Scratch::new();
    ext(&s);
    edit(&manifest(&s), "[\"hello_extension.tar.gz\"]", "[\"hello_extension.tar.gz\", \"other.tgz\"]");
    let r = build(&s, &[]);
    rejected(
        &s,
        &r,
        &[&["ext/manifest.json: $.images[1]: no image goes into \"other.tgz\"", "ext/other.tgz does not exist"]],
    );
}

#[test]
fn compose_image_not_bundled() {
    let s = Scratch::new();
    ext(&s);
    let r = build(&s, &["-i", "hello_extension.tar.gz", "--extra-image-tags", "127.0.0.1:15000/library/other:1"]);
    rejected(&s, &r, &[&["ext/docker-compose.yml: services.hello.image: hello_extension:1.0.0 is not bundled"]]);
}

#[test]
fn icon_named_but_missing() {
    let s = Scratch::new();
    ext(&s);
    std::fs::remove_file(s.path("ext/icon.png")).unwrap();
    let r = build(&s, &[]);
    rejected(&s, &r, &[&["ext/manifest.json: $.icon: \"icon.png\" does not exist"]]);
}

#[test]
fn additional_file_outside_the_package_dir() {
    let s = Scratch::new();
    ext(&s);
    std::fs::write(s.path("secret.txt"), "s").unwrap();
    let r = build(&s, &["--additional-files", "../secret.txt"]);
    rejected(&s, &r, &[&["additional file", "ext/../secret.txt: outside the package directory"]]);
    // the compose key is checked the same way
    let s = Scratch::new();
    ext(&s);
    edit(&compose(&s), "services:", "x-spxpack:\n  additional_files: [../secret.txt]\nservices:");
    let r = build(&s, &[]);
    rejected(
        &s,
        &r,
        &[&["ext/docker-compose.yml: x-spxpack.additional_files: \"../secret.txt\" leaves the extension directory"]],
    );
}

#[test]
fn duplicate_json_key() {
    let s = Scratch::new();
    ext(&s);
    edit(&manifest(&s), "\"version\": \"1.0.0\",", "\"version\": \"1.0.0\", \"version\": \"2.0.0\",");
    let r = build(&s, &[]);
    rejected(&s, &r, &[&["ext/manifest.json: $.version: duplicate key"]]);
}

#[test]
fn reserved_extension_name() {
    let s = Scratch::new();
    ext(&s);
    edit(&manifest(&s), "\"hello_extension\"", "\"hello_coreio\"");
    let r = build(&s, &[]);
    rejected(
        &s,
        &r,
        &[&["ext/manifest.json: $.extension_name: \"hello_coreio\" contains the reserved word \"coreio\""]],
    );
}

#[test]
fn misspelt_compose_key() {
    let s = Scratch::new();
    ext(&s);
    edit(&compose(&s), "network_mode:", "netwrok_mode:");
    let r = build(&s, &[]);
    rejected(&s, &r, &[&["ext/docker-compose.yml: services.hello.netwrok_mode: unknown service key"]]);
    assert!(r.stderr.contains("hint: did you mean network_mode?"), "{}", r.stderr);
}

#[test]
fn dockerfile_build_in_compose_without_a_dockerfile() {
    let s = Scratch::new();
    ext(&s);
    edit(&compose(&s), "    x-spxpack:\n      # spxpack", "    build: .\n    x-spxpack-off:\n      # spxpack");
    let r = build(&s, &[]);
    rejected(&s, &r, &[&["ext/docker-compose.yml: services.hello.build: Dockerfile", "ext/Dockerfile does not exist"]]);
    assert!(r.stderr.contains("hint: add a Dockerfile"), "{}", r.stderr);
}

#[test]
fn dockerfile_build_in_compose_without_an_image_name() {
    let s = Scratch::new();
    ext(&s);
    edit(&compose(&s), "    image: \"hello_extension:1.0.0\"\n", "    build: .\n");
    std::fs::write(s.path("ext/Dockerfile"), "FROM scratch\nCOPY icon.png /\n").unwrap();
    let r = build(&s, &[]);
    rejected(&s, &r, &[&["ext/docker-compose.yml: services.hello: build: needs an image: NAME:TAG"]]);
}

#[test]
fn missing_manifest() {
    let s = Scratch::new();
    ext(&s);
    std::fs::remove_file(manifest(&s)).unwrap();
    let r = build(&s, &[]);
    rejected(&s, &r, &[&["ext/manifest.json: no such file or directory"]]);
    assert!(r.stderr.contains("hint: create one with: spxpack init"), "{}", r.stderr);
}

#[test]
fn every_problem_at_once() {
    let s = Scratch::new();
    ext(&s);
    edit(&manifest(&s), "\"version\": \"1.0.0\",", "");
    edit(&manifest(&s), "\"installation_target\": \"spot\"", "\"installation_target\": \"robot\"");
    edit(&compose(&s), "restart: on-failure", "restart: sometimes");
    std::fs::remove_file(s.path("ext/icon.png")).unwrap();
    let r = build(&s, &[]);
    rejected(
        &s,
        &r,
        &[
            &["ext/manifest.json: $.version: missing (required)"],
            &["ext/manifest.json: $.installation_target: \"robot\""],
            &["ext/docker-compose.yml: services.hello.restart: \"sometimes\" is not a restart policy"],
            &["ext/manifest.json: $.icon: \"icon.png\" does not exist"],
        ],
    );
}

#[test]
fn corrupt_layer_fails_the_write_and_leaves_nothing() {
    let s = Scratch::new();
    let dir = ext(&s);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("image/index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("image/blobs/sha256").join(m)).unwrap()).unwrap();
    let layer = dir
        .join("image/blobs/sha256")
        .join(manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let r = build(&s, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.error_line().contains("sha256"), "{}", r.stderr);
    let left: Vec<_> = std::fs::read_dir(s.path("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn output_directory_missing_is_found_before_any_download() {
    let s = Scratch::new();
    ext(&s);
    // the image would come from an unreachable registry: the output problem must be reported first
    edit(&compose(&s), "source: \"oci:image:1.0.0\"", "source: \"127.0.0.1:9/nothing:1\"");
    let r = build(&s, &["-o", "no/such/dir/x.spx"]);
    rejected(&s, &r, &[&["the output no/such/dir/x.spx: the directory no/such/dir does not exist"]]);
    let v = s.spx(&["verify", s.path("missing.spx").to_str().unwrap()]);
    assert_eq!(v.code, 1, "{}", v.stderr);
    assert!(v.error_line().ends_with("missing.spx: no such file"), "{}", v.stderr);
}

/// One rule for every file that goes into the SPX: a symlink leading out of the extension
/// directory is refused (the host file is never packaged), whichever way the file is named.
#[test]
fn packaged_files_that_are_symlinks_out_of_the_extension_are_refused() {
    let symlink_out = |s: &Scratch, name: &str| {
        std::fs::write(s.path("host_secret"), "PRIVATE KEY").unwrap();
        let p = s.path("ext").join(name);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(s.path("host_secret"), &p).unwrap();
    };
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("icon", "icon.png", &[], "manifest.json $.icon"),
        ("udev_rules", "99-x.rules", &[], "manifest.json $.udev_rules"),
        ("--udev-rule", "99-y.rules", &["--udev-rule", "99-y.rules"], "manifest.json $.udev_rules"),
        ("--additional-files", "notes.txt", &["--additional-files", "notes.txt"], "additional file"),
        ("prebuilt archive", "hello_extension.tar.gz", &[], "image archive"),
        ("compose file", "docker-compose.yml", &[], "the compose file"),
        ("manifest", "manifest.json", &[], "the manifest"),
    ];
    for (case, name, extra, what) in cases {
        let s = Scratch::new();
        ext(&s);
        if *case == "udev_rules" {
            edit(&manifest(&s), "\"icon\": \"icon.png\",", "\"icon\": \"icon.png\", \"udev_rules\": \"99-x.rules\",");
        }
        symlink_out(&s, name);
        let r = build(&s, extra);
        rejected(
            &s,
            &r,
            &[&[what, &format!("ext/{name}: is a symlink to"), "host_secret", "outside the extension directory"]],
        );
        assert!(r.stderr.contains("hint: copy the file into the extension directory"), "{case}: {}", r.stderr);
    }
    // a symlink that stays inside the extension directory is followed
    let s = Scratch::new();
    ext(&s);
    std::fs::rename(s.path("ext/icon.png"), s.path("ext/image/icon.png")).unwrap();
    std::os::unix::fs::symlink("image/icon.png", s.path("ext/icon.png")).unwrap();
    build(&s, &[]).ok();
}
