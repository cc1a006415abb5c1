//! Bad input: each case gives one `error:` line naming what failed, a non-zero exit code and
//! no output file.

use std::io::Write;

use crate::support::{Scratch, env};

#[track_caller]
fn fails(s: &Scratch, args: &[&str], code: i32, needles: &[&str]) -> String {
    let r = s.spx(args);
    assert_eq!(r.code, code, "expected exit {code}, got {}: {}", r.code, r.stderr);
    let line = r.error_line();
    for n in needles {
        assert!(line.contains(n), "{n:?} not in {line:?}");
    }
    assert!(s.files().iter().all(|f| !f.starts_with("out")), "output left behind: {:?}", s.files());
    line
}

#[test]
fn unknown_image_missing_tag_and_missing_platform() {
    let e = env();
    let s = Scratch::new();
    let out = s.path("out.tar");
    let out = out.to_str().unwrap();
    fails(&s, &["pull", &format!("{}/no-such-image:1", e.plain), "-o", out], 1, &["no-such-image", "unknown"]);
    fails(
        &s,
        &["pull", &format!("{}/busybox:no-such-tag", e.plain), "-o", out],
        1,
        &["busybox:no-such-tag", "manifest unknown"],
    );
    let line = fails(
        &s,
        &["pull", "--platform", "linux/riscv64", &format!("{}/busybox:multi", e.plain), "-o", out],
        1,
        &["linux/riscv64"],
    );
    assert!(line.contains("linux/amd64") && line.contains("linux/arm64/v8"), "lists the index's platforms: {line}");
    fails(&s, &["pull", "Not A Ref", "-o", out], 1, &["invalid image reference"]);
    fails(
        &s,
        &["pull", "--platform", "linux/", &format!("{}/busybox:multi", e.plain), "-o", out],
        1,
        &["invalid platform"],
    );
    // a single-platform image of the wrong architecture
    fails(&s, &["pull", &format!("{}/busybox:amd64", e.plain), "-o", out], 1, &["linux/amd64", "linux/arm64"]);
}

fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_and_broken_archives_are_rejected() {
    let e = env();
    let s = Scratch::new();
    let out = s.path("out.tar");
    let out = out.to_str().unwrap();
    // a good archive to damage
    let good = s.path("good.tar");
    s.spx(&["pull", &format!("{}/busybox:multi", e.plain), "-o", good.to_str().unwrap()]).ok();
    let bytes = std::fs::read(&good).unwrap();

    let cut = s.path("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails(&s, &["pull", &format!("docker-archive:{}", cut.display()), "-o", out], 1, &["cut.tar", "truncated"]);

    let cutgz = s.path("cut.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let gzb = gz.finish().unwrap();
    std::fs::write(&cutgz, &gzb[..gzb.len() - 5000]).unwrap();
    fails(&s, &["pull", &format!("docker-archive:{}", cutgz.display()), "-o", out], 1, &["cut.tar.gz", "truncated"]);

    let escape = s.path("escape.tar");
    std::fs::write(
        &escape,
        tar_with(&[("manifest.json", br#"[{"Config":"../../etc/passwd","RepoTags":["x:y"],"Layers":[]}]"#)]),
    )
    .unwrap();
    fails(
        &s,
        &["pull", &format!("docker-archive:{}", escape.display()), "-o", out],
        1,
        &["../../etc/passwd", "outside the archive"],
    );

    let abs = s.path("abs.tar");
    std::fs::write(
        &abs,
        tar_with(&[("manifest.json", br#"[{"Config":"/etc/passwd","RepoTags":["x:y"],"Layers":[]}]"#)]),
    )
    .unwrap();
    fails(
        &s,
        &["pull", &format!("docker-archive:{}", abs.display()), "-o", out],
        1,
        &["/etc/passwd", "outside the archive"],
    );

    let null = s.path("null.tar");
    std::fs::write(&null, tar_with(&[("manifest.json", b"null")])).unwrap();
    fails(&s, &["pull", &format!("docker-archive:{}", null.display()), "-o", out], 1, &["manifest.json is null"]);

    let nomf = s.path("nomf.tar");
    std::fs::write(&nomf, tar_with(&[("hello", b"x")])).unwrap();
    fails(&s, &["pull", &format!("docker-archive:{}", nomf.display()), "-o", out], 1, &["no manifest.json"]);

    // a layer whose bytes do not match the config's diff_id
    let names = crate::support::tar_names(&good);
    let mj = crate::support::tar_member(&good, "manifest.json");
    let mut entries: Vec<(String, Vec<u8>)> =
        names.iter().filter(|n| !n.ends_with('/')).map(|n| (n.clone(), crate::support::tar_member(&good, n))).collect();
    let v: serde_json::Value = serde_json::from_slice(&mj).unwrap();
    let layer = v[0]["Layers"][0].as_str().unwrap().to_string();
    for (n, d) in entries.iter_mut() {
        if *n == layer {
            // replace the gzip layer by an uncompressed one: its diff_id cannot match
            *d = tar_with(&[("evil", b"x")]);
        }
    }
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let swapped = s.path("swapped.tar");
    std::fs::write(&swapped, tar_with(&refs)).unwrap();
    fails(&s, &["pull", &format!("docker-archive:{}", swapped.display()), "-o", out], 1, &["digest mismatch"]);

    fails(
        &s,
        &["pull", &format!("docker-archive:{}", s.path("missing.tar").display()), "-o", out],
        2,
        &["missing.tar"],
    );
    fails(&s, &["pull", &format!("docker-archive:{}:nope:1", good.display()), "-o", out], 1, &["no image tagged"]);
    fails(
        &s,
        &["pull", &format!("{}/busybox:multi", e.plain), "-o", "/nonexistent-dir/out.tar"],
        1,
        &["/nonexistent-dir"],
    );
}

/// A tmpfs of `size` mounted on `dir` until dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs needs root (the integration tests run as root)");
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_gives_a_clear_error_and_leaves_nothing_behind() {
    let e = env();
    let s = Scratch::new();
    let disk = SmallDisk::mount(s.path("full"), "64k");
    let out = disk.0.join("out.tar");
    let r = s.spx(&["pull", &format!("oci:{}:multi", e.busybox_oci.display()), "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let line = r.error_line();
    assert!(line.contains("no space left on device") && line.contains(disk.0.to_str().unwrap()), "{line}");
    assert!(r.stderr.contains("hint: the disk is full"), "{}", r.stderr);
    let left: Vec<_> = std::fs::read_dir(&disk.0).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "partial output left on the full disk: {left:?}");

    // the hello SPX is about 18 kB: fill the disk first
    let filler = disk.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    while f.write_all(&[0u8; 4096]).is_ok() {}
    drop(f);
    let spx = disk.0.join("hello.spx");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension");
    let r = s.spx(&["build", example.to_str().unwrap(), "-o", spx.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.error_line().contains("no space left on device"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: the disk is full"), "{}", r.stderr);
    let left: Vec<_> = std::fs::read_dir(&disk.0).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, ["filler"], "partial output left on the full disk");
}
