//! `spxpack push` against the real CNCF registry in its three modes, read back by skopeo and
//! pulled and run by Docker 20.10.

use crate::support::{
    Run, Scratch, docker, docker_run_arm64, env, sha256_hex, skopeo, tar_member, unique, unique_layout,
};

/// The manifest digest an archive spxpack wrote records for its image (its `index.json`).
fn archive_manifest_digest(archive: &std::path::Path) -> String {
    let idx: serde_json::Value = serde_json::from_slice(&tar_member(archive, "index.json")).unwrap();
    idx["manifests"][0]["digest"].as_str().unwrap().to_string()
}

fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

/// (uploaded, mounted, existing) of a `push --json`.
fn counts(v: &serde_json::Value) -> (u64, u64, u64) {
    let b = &v["blobs"];
    (b["uploaded"].as_u64().unwrap(), b["mounted"].as_u64().unwrap(), b["existing"].as_u64().unwrap())
}

/// `skopeo inspect --raw` of `r`, hashed.
fn registry_digest(r: &str, auth: &[&str]) -> String {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    args.extend_from_slice(auth);
    let d = format!("docker://{r}");
    args.push(&d);
    format!("sha256:{}", sha256_hex(skopeo(&args).ok().stdout.as_bytes()))
}

#[test]
fn push_to_every_registry_mode_is_byte_exact_skips_existing_blobs_and_mounts_across_repositories() {
    let e = env();
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("push-modes"));
    let archive = s.path("app.tar");
    s.spx(&["pull", &format!("oci:{}:t", layout.display()), "-o", archive.to_str().unwrap()]).ok();
    let want = archive_manifest_digest(&archive);
    let good = format!("{}:{}", e.user, e.pass);
    let ca = e.tls_ca.to_str().unwrap().to_string();
    let creds_skopeo = format!("--creds={good}");
    let modes: [(&str, Vec<&str>, Vec<&str>); 3] = [
        (&e.plain, vec![], vec![]),
        (&e.tls, vec!["--ca-cert", &ca, "--creds", &good], vec![&creds_skopeo]),
        (&e.token, vec!["--creds", &good], vec![&creds_skopeo]),
    ];
    let repo = unique("push");
    for (host, flags, auth) in &modes {
        let dest = format!("{host}/{repo}/a:t");
        let mut args = vec!["push", "--json", archive.to_str().unwrap(), &dest];
        args.extend_from_slice(flags);
        let v = json(&s.spx(&args).ok());
        assert_eq!(v["digest"], want.as_str(), "{host}");
        assert_eq!(v["schema_version"], 1);
        assert_eq!(counts(&v), (2, 0, 0), "{host}: config and layer uploaded");
        assert_eq!(registry_digest(&dest, auth), want, "{host}: the registry serves the archive's manifest");
        // a second push uploads nothing
        let v = json(&s.spx(&args).ok());
        assert_eq!((counts(&v), v["bytes_uploaded"].as_u64()), ((0, 0, 2), Some(0)), "{host}");
        // another repository of the same registry: every blob mounted
        let other = format!("{host}/{repo}/b:t");
        args[3] = &other;
        let v = json(&s.spx(&args).ok());
        assert_eq!(counts(&v), (0, 2, 0), "{host}: mounted from {repo}/a");
        assert_eq!(registry_digest(&other, auth), want);
    }
    // a wrong password: one clear error, exit 1, and no tag
    for (host, flags) in [(&e.tls, vec!["--ca-cert", &ca]), (&e.token, vec![])] {
        let dest = format!("{host}/{repo}/denied:t");
        let bad = format!("{}:wrong", e.user);
        let mut args = vec!["push", archive.to_str().unwrap(), &dest, "--creds", &bad];
        args.extend_from_slice(&flags);
        let r = s.spx(&args);
        assert_eq!(r.code, 1, "{}", r.stderr);
        let line = r.error_line();
        assert!(
            line.contains(&e.user)
                && (line.contains("denied push access") || line.contains("rejected the credentials")),
            "{line}"
        );
        let inspect = skopeo(&["inspect", "--raw", "--tls-verify=false", &creds_skopeo, &format!("docker://{dest}")]);
        assert_ne!(inspect.code, 0, "no tag was created at {dest}");
    }
}

#[test]
fn a_pushed_archive_pulls_and_runs_arm64_on_docker_20_10() {
    let e = env();
    let s = Scratch::new();
    let archive = s.path("bb.tar");
    s.spx(&["pull", &format!("{}/busybox:multi", e.plain), "-o", archive.to_str().unwrap()]).ok();
    let dest = format!("{}/{}:arm64", e.plain, unique("pushed-busybox"));
    let v = json(&s.spx(&["push", "--json", archive.to_str().unwrap(), &dest]).ok());
    assert_eq!(v["digest"], archive_manifest_digest(&archive).as_str());
    docker(&["pull", "--platform", "linux/arm64", &dest]).ok();
    assert_eq!(docker_run_arm64(&dest, &["uname", "-m"]).stdout.trim(), "aarch64");
    let digests = docker(&["image", "inspect", "--format", "{{json .RepoDigests}}", &dest]).ok();
    assert!(digests.stdout.contains(v["digest"].as_str().unwrap()), "{}", digests.stdout);
    docker(&["rmi", &dest]).ok();
}

#[test]
fn registry_to_registry_all_keeps_the_index_digest() {
    let e = env();
    let s = Scratch::new();
    let multi = std::env::var("SPXPACK_TEST_BUSYBOX_MULTI_DIGEST").unwrap();
    let src = format!("{}/busybox:multi", e.plain);
    let repo = unique("mirror");
    // to another registry: everything uploaded
    let dest = format!("{}/{repo}:multi", e.token);
    let good = format!("{}:{}", e.user, e.pass);
    let v = json(&s.spx(&["push", "--all", "--json", &src, &dest, "--creds", &format!("{}={good}", e.token)]).ok());
    assert_eq!(v["digest"], multi.as_str());
    assert_eq!(registry_digest(&dest, &[&format!("--creds={good}")]), multi);
    let (uploaded, mounted, _) = counts(&v);
    assert!(uploaded >= 4 && mounted == 0, "{v}");
    // within the registry: every blob mounted from the source repository
    let dest = format!("{}/{repo}:multi", e.plain);
    let v = json(&s.spx(&["push", "--all", "--json", &src, &dest]).ok());
    assert_eq!(v["digest"], multi.as_str());
    assert_eq!(counts(&v), (0, uploaded, 0));
    // without --all: the arm64 image only
    let v = json(&s.spx(&["push", "--json", &src, &format!("{}/{repo}:arm64", e.plain)]).ok());
    assert_eq!(v["digest"], std::env::var("SPXPACK_TEST_BUSYBOX_ARM64_DIGEST").unwrap().as_str());
}

#[test]
fn image_build_pushes_what_it_writes() {
    let e = env();
    let s = Scratch::new();
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), unique("built")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {}/busybox:multi\nCOPY hello.txt /\n", e.plain)).unwrap();
    let out = s.path("img.tar");
    let dest = format!("{}/{}:t", e.plain, unique("built"));
    let r = s
        .spx(&[
            "image",
            "build",
            ctx.to_str().unwrap(),
            "-t",
            "built:1",
            "-o",
            out.to_str().unwrap(),
            "--push",
            &dest,
            "--json",
        ])
        .ok();
    let v = json(&r);
    let want = archive_manifest_digest(&out);
    assert_eq!(v["manifest_digest"], want.as_str());
    assert_eq!(v["pushed"][0]["digest"], want.as_str());
    assert_eq!(registry_digest(&dest, &[]), want);
    // --push alone, no -o, to another repository: the same image, its blobs mounted
    let dest2 = format!("{}/{}:t", e.plain, unique("built"));
    let r = s.spx(&["image", "build", ctx.to_str().unwrap(), "--push", &dest2, "--json"]).ok();
    assert_eq!(counts(&json(&r)["pushed"][0]), (0, 3, 0));
    assert_eq!(registry_digest(&dest2, &[]), want);
}

#[test]
fn build_push_images_pushes_bundled_images_named_by_a_registry() {
    let e = env();
    let s = Scratch::new();
    let tag = format!("{}/{}:1.0", e.plain, unique("ext-app"));
    let dir = crate::spx_dockerfile::ext(&s, &tag, "    build: app\n");
    let out = s.path("pushed_ext.spx");
    let r = s.spx(&["build", dir.to_str().unwrap(), "-o", out.to_str().unwrap(), "--push-images", "--json"]).ok();
    let v = json(&r);
    assert_eq!(v["pushed"][0]["image"], tag.as_str(), "{v}");
    // the registry serves the manifest the SPX's archive holds
    let x = s.path("x");
    crate::support::spx::extract(&out, &x);
    let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(x.join("built.tar.gz")).unwrap());
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut gz, &mut raw).unwrap();
    std::fs::write(s.path("app.tar"), raw).unwrap();
    let want = archive_manifest_digest(&s.path("app.tar"));
    assert_eq!(v["pushed"][0]["digest"], want.as_str());
    assert_eq!(registry_digest(&tag, &[]), want);
}
