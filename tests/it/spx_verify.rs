//! `spxpack verify` and `inspect` on SPX files spxpack did not write: one made the way the SDK
//! script makes it (Python `tarfile` PAX entries, a Docker 20.10 `docker save` archive gzip'd in
//! several members, the udev file stored twice), a hand-made `tar czf` one, and archives Docker
//! 20.10 itself refuses to load (verify must refuse them too).

use std::path::{Path, PathBuf};

use crate::support::{Scratch, docker, env, run, spx};

/// A `docker save` archive written by the test environment's Docker 20.10, tagged `tag`.
fn docker_save(s: &Scratch, tag: &str) -> PathBuf {
    let e = env();
    let src = format!("{}/busybox:arm64", e.plain);
    docker(&["pull", "-q", "--platform", "linux/arm64", &src]).ok();
    docker(&["tag", &src, tag]).ok();
    let out = s.path("saved.tar");
    docker(&["save", tag, "-o", out.to_str().unwrap()]).ok();
    out
}

/// Packs like build_extension.py: pgzip-style multi-member gzip of the archive, then
/// `tarfile.open(spx, "w:gz")` with manifest.json (json.dumps, mtime 0) first; `extra` files are
/// added with `tar.add` (filesystem metadata), in order, duplicates included.
const SDK_PACK: &str = r#"
import gzip, io, json, sys, tarfile, os
saved, spx, manifest, compose = sys.argv[1:5]
extra = sys.argv[5:]
data = open(saved, "rb").read()
half = len(data) // 2
archive = gzip.compress(data[:half]) + gzip.compress(data[half:])
m = json.load(open(manifest))
if not m.get("installation_target"):
    m["installation_target"] = "spot"
if not m.get("date"):
    m["date"] = "2025-05-12T22:10:15.123456"
with tarfile.open(spx, "w:gz") as t:
    body = json.dumps(m).encode()
    info = tarfile.TarInfo("manifest.json")
    info.size = len(body)
    t.addfile(info, io.BytesIO(body))
    info = tarfile.TarInfo(m["images"][0])
    info.size = len(archive)
    info.mtime = 1715551815.25
    t.addfile(info, io.BytesIO(archive))
    t.add(compose, "docker-compose.yml")
    for f in extra:
        t.add(f, os.path.basename(f))
"#;

fn sdk_style(s: &Scratch, saved: &Path) -> PathBuf {
    let d = s.path("pkg");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("manifest.json"),
        r#"{"extension_name": "sdk_style", "version": "1.0.0", "udev_rules": "99-x.rules", "images": ["sdk_style_arm64.tar.gz"]}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("docker-compose.yml"),
        "services:\n  app:\n    image: sdkstyle:arm64\n    restart: unless-stopped\n",
    )
    .unwrap();
    std::fs::write(d.join("99-x.rules"), "SUBSYSTEM==\"usb\", SYMLINK+=\"x\"\n").unwrap();
    let out = s.path("sdk_style.spx");
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let rules = p(&d.join("99-x.rules"));
    run(
        "python3",
        &[
            "-c",
            SDK_PACK,
            &p(saved),
            &p(&out),
            &p(&d.join("manifest.json")),
            &p(&d.join("docker-compose.yml")),
            &rules,
            &rules,
        ],
        &[],
    )
    .ok();
    out
}

#[test]
fn an_sdk_script_style_spx_verifies_with_a_warning_for_the_duplicate() {
    let s = Scratch::new();
    let saved = docker_save(&s, "sdkstyle:arm64");
    let spx_path = sdk_style(&s, &saved);
    let r = s.spx(&["verify", spx_path.to_str().unwrap()]).ok();
    assert!(r.stdout.starts_with("ok: "), "{}", r.stdout);
    assert!(r.stdout.contains("layer diff_ids verified"), "{}", r.stdout);
    assert!(
        r.stderr.contains("warning: sdk_style.spx: contains \"99-x.rules\" twice with the same content"),
        "{}",
        r.stderr
    );
    let strict = s.spx(&["verify", "--strict", spx_path.to_str().unwrap()]);
    assert_eq!(strict.code, 1, "{}", strict.stderr);
    let i = s.spx(&["inspect", spx_path.to_str().unwrap()]).ok();
    assert!(i.stdout.contains("sdkstyle:arm64  linux/arm64"), "{}", i.stdout);
    assert!(i.stdout.contains("app: sdkstyle:arm64 (bundled in sdk_style_arm64.tar.gz)"), "{}", i.stdout);
    let j = s.spx(&["inspect", "--json", spx_path.to_str().unwrap()]).ok();
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["archives"][0]["images"][0]["tags"][0], "sdkstyle:arm64");
    assert_eq!(v["entries"].as_array().unwrap().len(), 5);
}

#[test]
fn verify_refuses_what_docker_load_refuses() {
    let s = Scratch::new();
    let saved = docker_save(&s, "sdkstyle:arm64");
    // rewrite the config's diff_id, keeping every name: docker load must fail, and so must verify
    let bad = s.path("bad.tar");
    let script = r#"
import io, json, sys, tarfile
src, dst = sys.argv[1:3]
with tarfile.open(src) as t, tarfile.open(dst, "w", format=tarfile.GNU_FORMAT) as o:
    cfg = json.load(t.extractfile("manifest.json"))[0]["Config"]
    for m in t.getmembers():
        data = t.extractfile(m).read() if m.isfile() else None
        if m.name == cfg:
            c = json.loads(data)
            c["rootfs"]["diff_ids"][0] = "sha256:" + "0" * 64
            data = json.dumps(c).encode()
            m.size = len(data)
        o.addfile(m, io.BytesIO(data) if data is not None else None)
"#;
    run("python3", &["-c", script, saved.to_str().unwrap(), bad.to_str().unwrap()], &[]).ok();
    let load = docker(&["load", "-i", bad.to_str().unwrap()]);
    assert_ne!(load.code, 0, "Docker 20.10 loaded it: {}", load.stdout);
    assert!(load.stderr.contains("invalid diffID"), "{}", load.stderr);
    let spx_path = sdk_style(&s, &bad);
    let r = s.spx(&["verify", spx_path.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("does not match its name"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("the config says sha256:{}", "0".repeat(64))), "{}", r.stderr);
    // --quick skips the layer hashes (but still sees the renamed config)
    let q = s.spx(&["verify", "--quick", spx_path.to_str().unwrap()]);
    assert!(!q.stderr.contains("the config says"), "{}", q.stderr);
}

#[test]
fn a_hand_made_tar_czf_spx_with_the_archive_before_the_manifest() {
    let s = Scratch::new();
    let saved = docker_save(&s, "sdkstyle:arm64");
    let d = s.path("manual");
    std::fs::create_dir_all(&d).unwrap();
    // an archive name without .tar: found only through manifest.json, which comes after it
    std::fs::copy(&saved, d.join("image.docker")).unwrap();
    std::fs::write(
        d.join("manifest.json"),
        r#"{"version": "1.0.0", "images": ["image.docker"], "installation_target": "spot"}"#,
    )
    .unwrap();
    std::fs::write(d.join("docker-compose.yml"), "services:\n  app:\n    image: sdkstyle:arm64\n").unwrap();
    let out = s.path("manual_ext.spx");
    run("sh", &["-c", &format!("cd {} && tar czf {} *", d.display(), out.display())], &[]).ok();
    assert_eq!(spx::names(&out), ["docker-compose.yml", "image.docker", "manifest.json"]);
    let r = s.spx(&["verify", out.to_str().unwrap()]).ok();
    assert!(r.stdout.contains("1 image in 1 archive"), "{}", r.stdout);
    assert!(r.stderr.contains("\"image.docker\" does not end in .tar, .tar.gz or .tgz"), "{}", r.stderr);
    // the same file under another name: inspect still recognises an SPX
    let renamed = s.path("manual_ext.tgz");
    std::fs::copy(&out, &renamed).unwrap();
    let i = s.spx(&["inspect", renamed.to_str().unwrap()]).ok();
    assert!(i.stdout.contains("image archive image.docker"), "{}", i.stdout);
}

#[test]
fn verify_reports_broken_spx_files() {
    let s = Scratch::new();
    let good = s.path("good");
    let r = s
        .spx_in(
            None,
            &[
                "build",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension").to_str().unwrap(),
                "-o",
                good.with_extension("spx").to_str().unwrap(),
            ],
            &[],
        )
        .ok();
    assert!(r.stdout.starts_with("wrote "));
    let bytes = std::fs::read(good.with_extension("spx")).unwrap();
    // truncated
    let cut = s.path("cut.spx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let v = s.spx(&["verify", cut.to_str().unwrap()]);
    assert_eq!(v.code, 1);
    assert!(v.stderr.contains("cut.spx:"), "{}", v.stderr);
    // not gzip
    let plain = s.path("plain.spx");
    let mut d = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut d).unwrap();
    std::fs::write(&plain, d).unwrap();
    let v = s.spx(&["verify", plain.to_str().unwrap()]);
    assert_eq!(v.code, 1);
    assert!(v.stderr.contains("plain.spx: not compressed; an SPX is a gzip-compressed tar"), "{}", v.stderr);
    // a name the robot refuses (no extension_name is not the case here, so rename the file only)
    let ok = s.path("any name.spx");
    std::fs::write(&ok, &bytes).unwrap();
    s.spx(&["verify", ok.to_str().unwrap()]).ok();
}

#[test]
fn verify_stops_decompression_bombs() {
    use std::io::{Read, Write};
    let s = Scratch::new();
    // 100 MiB of zeros in a tar: gzip -9 shrinks it about 1000×
    let mut t = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best()));
    let mut h = tar::Header::new_gnu();
    h.set_size(100 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "zeros.bin", std::io::repeat(0).take(100 << 20)).unwrap();
    let bytes = t.into_inner().unwrap().finish().unwrap();
    let bomb = s.path("bomb.spx");
    std::fs::File::create(&bomb).unwrap().write_all(&bytes).unwrap();
    let path = bomb.to_str().unwrap();
    let r = s.spx(&["verify", "--max-decompressed", "10M", path]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("bomb.spx: ") && r.stderr.contains("more than 10485760 bytes"), "{}", r.stderr);
    assert!(r.stderr.contains("--max-decompressed"), "{}", r.stderr);
    // by default a stream may expand 1000× (deflate of zeros reaches about 1030×)
    let r = s.spx(&["verify", path]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("bomb.spx: zeros.bin: the gzip stream expands more than 1000×"), "{}", r.stderr);
    // raised limits let it through to the ordinary checks (it has no manifest.json)
    let r = s.spx(&["verify", "--max-ratio", "2000", path]);
    assert!(!r.stderr.contains("decompression bomb"), "{}", r.stderr);
    assert!(r.stderr.contains("no manifest.json"), "{}", r.stderr);
    let r = s.spx(&["verify", "--max-decompressed", "lots", path]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not a size like 500M"), "{}", r.stderr);
}
