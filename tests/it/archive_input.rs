//! Round trips: spxpack reads what `docker save` (Docker 20.10) and skopeo write, and
//! `inspect` agrees with `docker image inspect`.

use crate::support::{Scratch, docker, env, skopeo};

fn inspect_json(s: &Scratch, what: &str) -> serde_json::Value {
    let r = s.spx(&["inspect", "--json", what]).ok();
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn reads_docker_save_output_and_agrees_with_docker_inspect() {
    let e = env();
    let s = Scratch::new();
    let r = format!("{}/busybox:arm64-v2s2", e.plain);
    let ours = s.path("ours.tar");
    s.spx(&["pull", &r, "-o", ours.to_str().unwrap()]).ok();
    docker(&["load", "-i", ours.to_str().unwrap()]).ok();
    let saved = s.path("saved.tar");
    docker(&["save", &r, "-o", saved.to_str().unwrap()]).ok();
    // docker 20.10 writes the classic layout: <v1id>/layer.tar, no index.json
    let names = crate::support::tar_names(&saved);
    assert!(names.iter().any(|n| n.ends_with("/layer.tar")), "{names:?}");

    let di: serde_json::Value = serde_json::from_str(&docker(&["image", "inspect", &r]).ok().stdout).unwrap();
    for src in [saved.to_str().unwrap().to_string(), format!("docker-archive:{}:{r}", saved.display())] {
        let j = inspect_json(&s, &src);
        let img = &j["images"][0];
        assert_eq!(img["id"], di[0]["Id"], "{src}");
        let diff_ids: Vec<&serde_json::Value> =
            img["layers"].as_array().unwrap().iter().map(|l| &l["diff_id"]).collect();
        let docker_layers: Vec<&serde_json::Value> = di[0]["RootFS"]["Layers"].as_array().unwrap().iter().collect();
        assert_eq!(diff_ids, docker_layers, "{src}");
        assert_eq!(img["platform"], "linux/arm64/v8");
    }
    // and can re-pack it, compressed, into an archive Docker loads
    let again = s.path("again.tar.gz");
    s.spx(&["pull", &format!("docker-archive:{}", saved.display()), "-o", again.to_str().unwrap()]).ok();
    docker(&["rmi", &r]).ok();
    let load = docker(&["load", "-i", again.to_str().unwrap()]).ok();
    assert!(load.stdout.contains(&r), "{}", load.stdout);
    let run = crate::support::docker_run_arm64(&r, &["uname", "-m"]);
    assert_eq!(run.stdout.trim(), "aarch64");
}

#[test]
fn reads_skopeo_docker_archive_with_symlinked_layers() {
    let e = env();
    let s = Scratch::new();
    let sk = s.path("sk.tar");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--override-arch",
        "arm64",
        &format!("docker://{}/busybox:multi", e.plain),
        &format!("docker-archive:{}:busybox:sk", sk.display()),
    ])
    .ok();
    let j = inspect_json(&s, sk.to_str().unwrap());
    assert_eq!(j["images"][0]["platform"], "linux/arm64/v8");
    assert_eq!(j["images"][0]["layers"][0]["compression"], "none");
    let out = s.path("from-skopeo.tar");
    s.spx(&["pull", &format!("docker-archive:{}:busybox:sk", sk.display()), "-o", out.to_str().unwrap()]).ok();
    let load = docker(&["load", "-i", out.to_str().unwrap()]).ok();
    assert!(load.stdout.contains("busybox:sk"), "{}", load.stdout);
    // inspect of a registry reference agrees with the archive it produced
    let reg = inspect_json(&s, &format!("{}/busybox:multi", e.plain));
    assert_eq!(reg["images"][0]["id"], j["images"][0]["id"]);
    assert_eq!(reg["images"][0]["layers"][0]["diff_id"], j["images"][0]["layers"][0]["diff_id"]);
}
