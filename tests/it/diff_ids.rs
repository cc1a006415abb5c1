//! A registry image whose config `rootfs.diff_ids` do not match its layers (pushed to the
//! plain CNCF registry): `pull` and `build` fail with one error naming the image, the layer and
//! both diff_ids, and write nothing, on the first pull and from the cache alike.

use std::path::{Path, PathBuf};

use crate::support::{Scratch, push_plain, sha256_hex, spx, unique, unique_layout};

/// Rewrites the config of a `unique_layout` so that it lists `wrong` as the layer's diff_id
/// (new config, manifest and index.json); returns the true diff_id it replaced.
fn lie_about_the_diff_id(layout: &Path, wrong: &str) -> String {
    let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let json = |p: PathBuf| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let put = |data: &[u8]| -> (String, usize) {
        let d = sha256_hex(data);
        std::fs::write(blob(&d), data).unwrap();
        (format!("sha256:{d}"), data.len())
    };
    let mut index = json(layout.join("index.json"));
    let mut manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut config = json(blob(manifest["config"]["digest"].as_str().unwrap()));
    let truth = config["rootfs"]["diff_ids"][0].as_str().unwrap().to_string();
    config["rootfs"]["diff_ids"][0] = wrong.into();
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    index["manifests"][0]["digest"] = md.into();
    index["manifests"][0]["size"] = ms.into();
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    truth
}

#[track_caller]
fn refused(r: &crate::support::Run, frags: &[&str]) {
    assert_eq!(r.code, 1, "{}", r.stderr);
    let errors = crate::support::error_chains(&r.stderr);
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    for f in frags {
        assert!(errors[0].contains(f), "{:?} lacks {f:?}", errors[0]);
    }
    assert!(r.stderr.contains("hint: the image's config does not describe its layers"), "{}", r.stderr);
}

#[test]
fn a_diff_id_mismatch_from_the_registry_fails_pull_and_build() {
    let s = Scratch::new();
    let layout = unique_layout(&s.path("src"), &unique("diff-id"));
    let wrong = format!("sha256:{}", sha256_hex(b"not the layer"));
    let truth = lie_about_the_diff_id(&layout, &wrong);
    let reference = push_plain(&layout, &unique("diffid").to_lowercase());
    let want = [
        reference.as_str(),
        "layer 0",
        &format!("its content has diff_id {truth}, but the image config lists {wrong}"),
    ];

    let out = s.path("out.tar");
    // the first pull downloads the layer (its diff_id computed on the way); the second finds it
    // in the cache with its recorded diff_id
    for _ in 0..2 {
        let r = s.spx(&["pull", &reference, "-o", out.to_str().unwrap()]);
        refused(&r, &want);
        assert!(!out.exists(), "pull wrote {}", out.display());
    }

    let ext = s.path("ext");
    spx::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension"), &ext);
    let compose = ext.join("docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap().replace("oci:image:1.0.0", &reference);
    std::fs::write(&compose, text).unwrap();
    let spx_out = s.path("hello.spx");
    let r = s.spx(&["build", ext.to_str().unwrap(), "-o", spx_out.to_str().unwrap()]);
    refused(&r, &want);
    assert!(!spx_out.exists(), "build wrote {}", spx_out.display());
}
