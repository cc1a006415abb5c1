//! `spxpack init`: the scaffolded files follow the SDK conventions, pass docker-compose and build
//! as they are — for a registry reference, a docker save archive and an OCI layout — and are
//! never overwritten without `--force`.

use std::path::Path;

use crate::support::{Scratch, env, push_plain, spx, unique, unique_layout};

#[test]
fn init_then_build_a_registry_image() {
    let s = Scratch::new();
    let reference = push_plain(&unique_layout(&s.path("src"), &unique("init")), "spxtest/init-registry");
    let dir = s.path("my-ext");
    let r = s.spx(&["init", dir.to_str().unwrap(), "--image", &reference, "--gpu"]).ok();
    assert!(r.stdout.contains("next: spxpack build"), "{}", r.stdout);
    let compose = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    assert!(compose.contains(&format!("image: \"{reference}\"")), "{compose}");
    assert!(compose.contains("restart: unless-stopped") && compose.contains("network_mode: \"bridge\""));
    assert!(compose.contains("- \"/opt/payload_credentials:/creds\""), "{compose}");
    assert!(compose.contains("- driver: nvidia") && compose.contains("capabilities: [gpu]"), "{compose}");
    spx::compose_config(&dir.join("docker-compose.yml")).ok();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["extension_name"], "my-ext");
    assert_eq!(m["images"], serde_json::json!(["my-ext.tar.gz"]));

    let out = s.path("out");
    std::fs::create_dir_all(&out).unwrap();
    s.spx_in(Some(&out), &["build", dir.to_str().unwrap()], &[]).ok();
    let p = out.join("my-ext.spx");
    let x = s.path("x");
    spx::extract(&p, &x);
    let _ = env();
    assert_eq!(spx::docker_load(&x.join("my-ext.tar.gz")), std::slice::from_ref(&reference));

    // existing files are kept unless --force
    let again = s.spx(&["init", dir.to_str().unwrap(), "--image", "busybox:1"]);
    assert_eq!(again.code, 1);
    assert!(again.error_line().contains("already has manifest.json, docker-compose.yml"), "{}", again.stderr);
    assert!(again.stderr.contains("hint: pass --force"), "{}", again.stderr);
    assert!(std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap().contains(&reference));
    s.spx(&["init", dir.to_str().unwrap(), "--image", "busybox:1", "--force"]).ok();
    assert!(std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap().contains("image: \"busybox:1\""));
}

#[test]
fn init_from_a_docker_archive_builds_offline() {
    let s = Scratch::new();
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension");
    // a docker save archive (the one inside the example's SPX), outside the extension directory
    let built = s.path("hello.spx");
    s.spx(&["build", hello.to_str().unwrap(), "-o", built.to_str().unwrap()]).ok();
    let archive = s.path("images/hello.tar");
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    std::fs::write(&archive, spx::member(&built, "hello_extension.tar.gz")).unwrap();
    let dir = s.path("ext");
    s.spx(&["init", dir.to_str().unwrap(), "--image", archive.to_str().unwrap(), "--name", "from_archive"]).ok();
    let compose = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    assert!(compose.contains("image: \"hello_extension:1.0.0\""), "{compose}");
    assert!(compose.contains("source: \"docker-archive:../images/hello.tar:hello_extension:1.0.0\""), "{compose}");
    let out = s.path("out");
    std::fs::create_dir_all(&out).unwrap();
    s.spx_in(Some(&out), &["build", dir.to_str().unwrap(), "--offline"], &[]).ok();
    s.spx(&["verify", out.join("from_archive.spx").to_str().unwrap()]).ok();
}

#[test]
fn init_from_an_oci_layout_for_orbit() {
    let s = Scratch::new();
    let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension/image");
    let dir = s.path("orbit_ext");
    s.spx(&["init", dir.to_str().unwrap(), "--image", &format!("oci:{}:1.0.0", layout.display()), "--orbit"]).ok();
    let compose = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    assert!(compose.contains("image: \"orbit_ext:1.0.0\""), "{compose}");
    assert!(!compose.contains("payload_credentials:/creds\""), "Orbit has no payload credentials: {compose}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["installation_target"], "orbit");
    // the layout holds only arm64: an Orbit (amd64) build must say so
    let r = s.spx(&["build", dir.to_str().unwrap(), "-o", s.path("o.spx").to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.error_line().contains("linux/amd64"), "{}", r.stderr);
    // overriding the platform builds it (with a warning)
    let r = s
        .spx(&["build", dir.to_str().unwrap(), "-o", s.path("o.spx").to_str().unwrap(), "--platform", "linux/arm64"])
        .ok();
    assert!(
        r.stderr.contains("warning: building for linux/arm64/v8 but installation_target is \"orbit\""),
        "{}",
        r.stderr
    );
}
