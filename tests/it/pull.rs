//! `spxpack pull` against the real registries, with the output loaded by Docker 20.10 and read
//! by skopeo.

use crate::support::{Scratch, docker, env, push_plain, skopeo, tar_member, tar_names, unique, unique_layout};

#[test]
fn plain_registry_index_pull_loads_and_runs_arm64_on_docker_20_10() {
    let e = env();
    let v = docker(&["version", "--format", "{{.Server.Version}}"]).ok();
    assert!(v.stdout.trim().starts_with("20.10."), "the tests must run against Docker 20.10, got {}", v.stdout);
    let s = Scratch::new();
    let out = s.path("busybox.tar.gz");
    let r = format!("{}/busybox:multi", e.plain);
    s.spx(&["pull", &r, "-o", out.to_str().unwrap()]).ok();
    let load = docker(&["load", "-i", out.to_str().unwrap()]).ok();
    assert!(load.stdout.contains(&format!("Loaded image: {r}")), "{}", load.stdout);
    let run = crate::support::docker_run_arm64(&r, &["uname", "-m"]);
    assert_eq!(run.stdout.trim(), "aarch64");
    // docker agrees with the archive on the image ID
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &r]).ok();
    let manifest: serde_json::Value = serde_json::from_slice(&{
        let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap());
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut gz, &mut raw).unwrap();
        let p = s.path("plain.tar");
        std::fs::write(&p, raw).unwrap();
        tar_member(&p, "manifest.json")
    })
    .unwrap();
    let cfg = manifest[0]["Config"].as_str().unwrap().trim_start_matches("blobs/sha256/");
    assert_eq!(id.stdout.trim(), format!("sha256:{cfg}"));
}

#[test]
fn tls_registry_needs_ca_and_right_password() {
    let e = env();
    let s = Scratch::new();
    let r = format!("{}/busybox:multi", e.tls);
    let ca = e.tls_ca.to_str().unwrap();
    let good = format!("{}:{}", e.user, e.pass);
    let out = s.path("ok.tar");
    s.spx(&["pull", "--ca-cert", ca, "--creds", &good, &r, "-o", out.to_str().unwrap()]).ok();
    assert!(tar_names(&out).contains(&"manifest.json".to_string()));

    let bad = s.spx(&[
        "pull",
        "--ca-cert",
        ca,
        "--creds",
        &format!("{}:wrong", e.user),
        &r,
        "-o",
        s.path("bad.tar").to_str().unwrap(),
    ]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    let line = bad.error_line();
    assert!(line.contains("denied access") && line.contains(&e.user) && line.contains(&e.tls), "{line}");
    assert!(bad.stderr.contains("hint:"), "{}", bad.stderr);

    let nocreds = s.spx(&["pull", "--ca-cert", ca, &r, "-o", s.path("anon.tar").to_str().unwrap()]);
    assert_eq!(nocreds.code, 1);
    assert!(nocreds.error_line().contains("requires authentication"), "{}", nocreds.stderr);

    // a skopeo-style cert dir (DIR/ca.crt) works as well as --ca-cert
    s.spx(&[
        "pull",
        "--cert-dir",
        e.tls_cert_dir.to_str().unwrap(),
        "--creds",
        &good,
        &r,
        "-o",
        s.path("ok2.tar").to_str().unwrap(),
    ])
    .ok();
    let noca = s.spx(&["pull", "--creds", &good, &r, "-o", s.path("noca.tar").to_str().unwrap()]);
    assert_ne!(noca.code, 0);
    assert!(noca.error_line().contains("not trusted"), "{}", noca.stderr);
    assert!(noca.stderr.contains("--ca-cert"), "{}", noca.stderr);

    // credentials from a docker config.json work as well
    let home = s.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let auth = base64_encode(&good);
    std::fs::write(home.join("config.json"), format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, e.tls)).unwrap();
    s.spx(&["pull", "--ca-cert", ca, &r, "-o", s.path("cfg.tar").to_str().unwrap()]).ok();
    assert_eq!(s.files(), vec!["cfg.tar", "ok.tar", "ok2.tar"], "failed pulls leave no output");
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn token_registry_flow_and_auth_errors() {
    let e = env();
    let s = Scratch::new();
    let r = format!("{}/busybox:multi", e.token);
    let out = s.path("ok.tar");
    s.spx(&["pull", "--creds", &format!("{}:{}", e.user, e.pass), &r, "-o", out.to_str().unwrap()]).ok();

    let bad = s.spx(&["pull", "--creds", &format!("{}:nope", e.user), &r, "-o", s.path("bad.tar").to_str().unwrap()]);
    assert_eq!(bad.code, 1);
    let line = bad.error_line();
    assert!(line.contains("token server") && line.contains("rejected the credentials of testuser"), "{line}");

    let anon = s.spx(&["pull", &r, "-o", s.path("anon.tar").to_str().unwrap()]);
    assert_eq!(anon.code, 1);
    assert!(anon.error_line().contains("requires authentication"), "{}", anon.stderr);
    assert_eq!(s.files(), vec!["ok.tar"]);
}

#[test]
fn archive_is_read_by_skopeo_as_docker_archive_and_oci_archive() {
    let e = env();
    let s = Scratch::new();
    let out = s.path("x.tar");
    s.spx(&["pull", &format!("{}/busybox:multi", e.plain), "-o", out.to_str().unwrap()]).ok();
    let d = skopeo(&["inspect", &format!("docker-archive:{}", out.display())]).ok();
    let dv: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    assert_eq!(dv["Architecture"], "arm64");
    let o = skopeo(&["inspect", &format!("oci-archive:{}:multi", out.display())]).ok();
    let ov: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    // the OCI manifest is the registry's own (same digest), layers stay compressed blobs
    assert_eq!(ov["Digest"].as_str().unwrap(), e.arm64_digest);
    assert_eq!(ov["Architecture"], "arm64");
    let raw = skopeo(&["inspect", "--raw", &format!("oci-archive:{}:multi", out.display())]).ok();
    let m: serde_json::Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    // docker-archive reports diff_ids; they are the config's
    let cfg: serde_json::Value = serde_json::from_slice(&tar_member(
        &out,
        &format!("blobs/sha256/{}", m["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:")),
    ))
    .unwrap();
    assert_eq!(dv["Layers"], cfg["rootfs"]["diff_ids"]);
}

#[test]
fn multi_image_archive_stores_shared_layers_once_and_loads_all_tags() {
    let e = env();
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("multi"));
    let uniq = push_plain(&layout, &unique("multi").to_lowercase());
    let a = format!("{}/busybox:multi", e.plain);
    let b = format!("{}/busybox:arm64-v2s2", e.plain);
    let out = s.path("multi.tar");
    s.spx(&["pull", &a, &b, &uniq, "-o", out.to_str().unwrap()]).ok();
    let names = tar_names(&out);
    let mj: serde_json::Value = serde_json::from_slice(&tar_member(&out, "manifest.json")).unwrap();
    assert_eq!(mj.as_array().unwrap().len(), 3);
    // busybox:multi and busybox:arm64-v2s2 share their layer: stored once
    let l0 = mj[0]["Layers"][0].as_str().unwrap();
    assert_eq!(l0, mj[1]["Layers"][0].as_str().unwrap());
    assert_eq!(names.iter().filter(|n| n.as_str() == l0).count(), 1);
    let idx: serde_json::Value = serde_json::from_slice(&tar_member(&out, "index.json")).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 3, "one index entry per tag");
    let load = docker(&["load", "-i", out.to_str().unwrap()]).ok();
    for t in [&a, &b, &uniq] {
        assert!(load.stdout.contains(&format!("Loaded image: {t}")), "{t} missing in {}", load.stdout);
        docker(&["image", "inspect", t]).ok();
    }
}

#[test]
fn pulling_twice_gives_identical_bytes_with_any_cache_and_thread_count() {
    let e = env();
    let s = Scratch::new();
    let r = format!("{}/busybox:multi", e.plain);
    let a = s.path("a.tar.gz");
    let b = s.path("b.tar.gz");
    s.spx(&["pull", &r, "-o", a.to_str().unwrap()]).ok();
    let s2 = Scratch::new();
    s2.spx(&["pull", "-j", "1", &r, "-o", b.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // SOURCE_DATE_EPOCH is the one input that changes entry times
    let c = s.path("c.tar");
    s.spx_env(&["pull", &r, "-o", c.to_str().unwrap()], &[("SOURCE_DATE_EPOCH", "1700000000")]).ok();
    let f = std::fs::File::open(&c).unwrap();
    for entry in tar::Archive::new(f).entries().unwrap() {
        assert_eq!(entry.unwrap().header().mtime().unwrap(), 1_700_000_000);
    }
}

#[test]
fn second_pull_downloads_nothing_and_tampered_blobs_are_caught() {
    let e = env();
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("tamper"));
    let r = push_plain(&layout, &unique("tamper").to_lowercase());
    let first = s.path("first.tar");
    s.spx(&["pull", &r, "-o", first.to_str().unwrap()]).ok();

    // alter the layer in the registry's storage (same size, one byte flipped)
    let hex = crate::support::layout_layer_hex(&layout);
    let data = e.plain_data.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let mut bytes = std::fs::read(&data).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    // the cached blob is used: nothing is downloaded, the output is the same
    let second = s.path("second.tar");
    s.spx(&["pull", &r, "-o", second.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
    // offline works from the cache too
    let offline = s.path("offline.tar");
    s.spx(&["pull", "--offline", &r, "-o", offline.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&offline).unwrap());

    // a fresh cache has to download, and the altered blob is rejected
    let fresh = Scratch::new();
    let bad = fresh.spx(&["pull", &r, "-o", fresh.path("bad.tar").to_str().unwrap()]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    let line = bad.error_line();
    assert!(line.contains("digest mismatch") && line.contains(&hex), "{line}");
    assert!(fresh.files().is_empty(), "no output after a digest mismatch: {:?}", fresh.files());
    let tmp = fresh.cache().join("tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0, "no partial download left in the cache");
}

#[test]
fn offline_without_cache_names_what_is_missing() {
    let e = env();
    let s = Scratch::new();
    let r = format!("{}/busybox:multi", e.plain);
    let res = s.spx(&["pull", "--offline", &r, "-o", s.path("x.tar").to_str().unwrap()]);
    assert_eq!(res.code, 1);
    let line = res.error_line();
    assert!(line.contains("--offline") && line.contains("busybox:multi"), "{line}");
    assert!(s.files().is_empty());
}

#[test]
fn oci_layout_and_oci_archive_inputs() {
    let e = env();
    let s = Scratch::new();
    let out = s.path("from-layout.tar");
    s.spx(&["pull", &format!("oci:{}:multi", e.busybox_oci.display()), "-o", out.to_str().unwrap()]).ok();
    let mj: serde_json::Value = serde_json::from_slice(&tar_member(&out, "manifest.json")).unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&tar_member(&out, mj[0]["Config"].as_str().unwrap())).unwrap();
    assert_eq!(cfg["architecture"], "arm64");
    let amd = s.path("amd.tar");
    s.spx(&[
        "pull",
        "--platform",
        "linux/amd64",
        &format!("oci:{}:multi", e.busybox_oci.display()),
        "-o",
        amd.to_str().unwrap(),
    ])
    .ok();
    let oa = s.path("layout.oci.tar");
    skopeo(&[
        "copy",
        "-q",
        "--all",
        &format!("oci:{}:multi", e.busybox_oci.display()),
        &format!("oci-archive:{}:multi", oa.display()),
    ])
    .ok();
    let out2 = s.path("from-oci-archive.tar.gz");
    s.spx(&["pull", &format!("oci-archive:{}:multi", oa.display()), "-o", out2.to_str().unwrap()]).ok();
    let load = docker(&["load", "-i", out2.to_str().unwrap()]).ok();
    assert!(load.stdout.contains("Loaded image"), "{}", load.stdout);
}

#[test]
fn credentials_from_helpers_and_auth_files() {
    let e = env();
    let s = Scratch::new();
    let r = format!("{}/busybox:multi", e.token);
    // a docker-credential helper on PATH, named by credHelpers
    let bin = s.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-spxtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = {} ] || exit 1\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{}\",\"Secret\":\"{}\"}}' \"$server\"\n",
            e.token, e.user, e.pass
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let home = s.path("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("config.json"), format!(r#"{{"credHelpers":{{"{}":"spxtest"}}}}"#, e.token)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    s.spx_env(&["pull", &r, "-o", s.path("helper.tar").to_str().unwrap()], &[("PATH", &path)]).ok();
    std::fs::remove_file(home.join("config.json")).unwrap();

    // a podman-style auth.json with a namespace key, through $REGISTRY_AUTH_FILE
    let authfile = s.path("auth.json");
    std::fs::write(
        &authfile,
        format!(r#"{{"auths":{{"{}/busybox":{{"username":"{}","password":"{}"}}}}}}"#, e.token, e.user, e.pass),
    )
    .unwrap();
    s.spx_env(
        &["pull", &r, "-o", s.path("authfile.tar").to_str().unwrap()],
        &[("REGISTRY_AUTH_FILE", authfile.to_str().unwrap())],
    )
    .ok();
    // and a helper that is configured but missing is a clear error
    std::fs::write(home.join("config.json"), format!(r#"{{"credHelpers":{{"{}":"absent"}}}}"#, e.token)).unwrap();
    let r2 = s.spx(&["pull", &r, "-o", s.path("absent.tar").to_str().unwrap()]);
    assert_eq!(r2.code, 1);
    assert!(r2.error_line().contains("docker-credential-absent"), "{}", r2.stderr);
}

#[test]
fn concurrent_pulls_can_share_one_cache() {
    let e = env();
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("concurrent").repeat(20000));
    let r = push_plain(&layout, &unique("concurrent").to_lowercase());
    let outs: Vec<std::path::PathBuf> = (0..3).map(|i| s.path(&format!("c{i}.tar.gz"))).collect();
    std::thread::scope(|sc| {
        for o in &outs {
            let (s, r) = (&s, &r);
            sc.spawn(move || {
                s.spx(&["pull", r, &format!("{}/busybox:multi", e.plain), "-o", o.to_str().unwrap()]).ok()
            });
        }
    });
    let first = std::fs::read(&outs[0]).unwrap();
    for o in &outs[1..] {
        assert_eq!(std::fs::read(o).unwrap(), first);
    }
    assert_eq!(std::fs::read_dir(s.cache().join("tmp")).unwrap().count(), 0);
}
