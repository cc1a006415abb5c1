//! Wrong-architecture content: an x86-64 executable (the host's `/bin/true`, as a `COPY` of a
//! host-built binary would bring in) in an arm64 image is a warning naming its path in `pull`,
//! `build`, `image build` and `verify`; `--strict` makes it an error. A later layer that deletes
//! it (a whiteout) leaves nothing to report.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::support::{Scratch, sha256_hex, spx};

/// An arm64 OCI layout (tag `t`) with one gzip'd layer per entry of `layers`: (path, content).
fn layout(dir: &Path, layers: &[Vec<(&str, Vec<u8>)>]) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = sha256_hex(data);
        std::fs::write(blobs.join(&d), data).unwrap();
        (format!("sha256:{d}"), data.len())
    };
    let (mut descs, mut diff_ids) = (Vec::new(), Vec::new());
    for files in layers {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_mtime(0);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        let raw = b.into_inner().unwrap();
        diff_ids.push(format!("\"sha256:{}\"", sha256_hex(&raw)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let (d, n) = put(&gz.finish().unwrap());
        descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{n}}}"#
        ));
    }
    let config = format!(
        r#"{{"architecture":"arm64","variant":"v8","os":"linux","config":{{"Cmd":["/usr/bin/tool"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let (cd, cs) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{}]}}"#,
        descs.join(",")
    );
    let (md, ms) = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#
    );
    std::fs::write(dir.join("index.json"), index).unwrap();
    dir.to_path_buf()
}

const WARNING: &str = "an image for linux/arm64/v8 holds 1 x86-64 ELF file that cannot run on it: /usr/bin/tool";

#[test]
fn an_x86_64_binary_in_an_arm64_image_is_a_warning_and_strict_makes_it_an_error() {
    let s = Scratch::new();
    let host_binary = std::fs::read("/bin/true").unwrap();
    let arm = crate::support::hello::elf();
    let base = vec![("usr/bin/tool", host_binary.clone()), ("usr/bin/hello", arm), ("etc/motd", b"hi\n".to_vec())];
    let bad = layout(&s.path("bad"), std::slice::from_ref(&base));
    let fixed = layout(&s.path("fixed"), &[base, vec![("usr/bin/.wh.tool", Vec::new())]]);
    let out = s.path("out.tar");
    let o = out.to_str().unwrap();

    // pull: a warning, exit 0; --strict: exit 1, nothing written
    let r = s.spx(&["pull", &format!("oci:{}:t", bad.display()), "-o", o]).ok();
    assert!(r.stderr.contains(&format!("warning: oci:{}:t: {WARNING}", bad.display())), "{}", r.stderr);
    assert!(r.stderr.contains("hint: a binary built on the host was copied in?"), "{}", r.stderr);
    std::fs::remove_file(&out).unwrap();
    let r = s.spx(&["pull", "--strict", &format!("oci:{}:t", bad.display()), "-o", o]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.error_line().contains(WARNING), "{}", r.stderr);
    assert!(!out.exists());
    // deleted by a later layer: nothing to report
    let r = s.spx(&["pull", "--strict", &format!("oci:{}:t", fixed.display()), "-o", o]).ok();
    assert!(!r.stderr.contains("ELF"), "{}", r.stderr);

    // image build: COPY of the host binary onto the image
    let ctx = s.path("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("tool"), &host_binary).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM oci:{}:t\nCOPY tool /opt/tool\n", fixed.display())).unwrap();
    let img = s.path("img.tar");
    let r = s.spx(&["image", "build", ctx.to_str().unwrap(), "-o", img.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("holds 1 x86-64 ELF file that cannot run on it: /opt/tool"), "{}", r.stderr);

    // build and verify: the SPX of an extension with the image
    let ext = s.path("ext");
    spx::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension"), &ext);
    let compose = ext.join("docker-compose.yml");
    let text =
        std::fs::read_to_string(&compose).unwrap().replace("oci:image:1.0.0", &format!("oci:{}:t", bad.display()));
    std::fs::write(&compose, text).unwrap();
    let spx_out = s.path("x.spx");
    let (e, so) = (ext.to_str().unwrap(), spx_out.to_str().unwrap());
    let r = s.spx(&["build", e, "-o", so, "--strict"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.error_line().contains(WARNING) && !spx_out.exists(), "{}", r.stderr);
    let r = s.spx(&["build", e, "-o", so]).ok();
    assert!(r.stderr.contains(WARNING), "{}", r.stderr);
    let r = s.spx(&["verify", so]).ok();
    assert!(
        r.stderr.contains("image hello_extension:1.0.0: an image for linux/arm64/v8 holds 1 x86-64 ELF file"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let r = s.spx(&["verify", "--strict", so]);
    assert_eq!(r.code, 1, "{}", r.stderr);
}
