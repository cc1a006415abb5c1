//! Determinism and the build cache: the same inputs give the same image ID on a fresh cache,
//! the thread count does not change a byte, a rebuild with nothing changed writes no layer,
//! and changing one COPY source rebuilds only that step's layer.

use std::path::Path;

use crate::support::{Scratch, env, tar_member};

fn write_context(ctx: &Path) {
    std::fs::create_dir_all(ctx.join("app/lib")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}/busybox:multi\nWORKDIR /app\nCOPY app/ ./\nCOPY big.txt /data/\nCOPY small.txt /data/\nENV X=1\n",
            env().plain
        ),
    )
    .unwrap();
    std::fs::write(ctx.join("app/main.sh"), "#!/bin/sh\necho main\n").unwrap();
    std::fs::write(ctx.join("app/lib/util.sh"), "util\n").unwrap();
    std::fs::hard_link(ctx.join("app/lib/util.sh"), ctx.join("app/lib/util-link.sh")).unwrap();
    // a few MiB of compressible text: several gzip chunks, so the threads have work to split
    let mut big = String::new();
    let mut x: u64 = 7;
    while big.len() < 5 << 20 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        big.push_str(["alpha ", "beta ", "gamma\n", "delta "][(x >> 60) as usize % 4]);
        if x.is_multiple_of(13) {
            big.push_str(&format!("{x:x}\n"));
        }
    }
    std::fs::write(ctx.join("big.txt"), big).unwrap();
    std::fs::write(ctx.join("small.txt"), "small\n").unwrap();
}

struct Built {
    json: serde_json::Value,
    archive: Vec<u8>,
}

fn build(s: &Scratch, ctx: &Path, out: &str, extra: &[&str]) -> Built {
    let out = s.path(out);
    let mut args = vec!["image", "build", "--json", "-t", "cache-test:t", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = s.spx(&args).ok();
    Built { json: serde_json::from_str(&r.stdout).unwrap(), archive: std::fs::read(out).unwrap() }
}

#[test]
fn build_cache_same_inputs_same_image_on_any_machine_and_thread_count() {
    let a = Scratch::new();
    let b = Scratch::new();
    let ctx = a.path("ctx");
    write_context(&ctx);
    let one = build(&a, &ctx, "one.tar", &["--threads", "1"]);
    // a fresh cache, another copy of the context (other inodes and mtimes), other threads
    let ctx2 = b.path("ctx");
    write_context(&ctx2);
    let two = build(&b, &ctx2, "two.tar", &["--threads", "4"]);
    assert_eq!(one.json["id"], two.json["id"], "same image ID");
    assert_eq!(one.json["layers_built"], 4);
    assert!(one.archive == two.archive, "the archives are byte-identical");
    // SOURCE_DATE_EPOCH moves timestamps, so the ID changes — and is again reproducible
    let e1 = a.spx_env(
        &["image", "build", "--json", "-o", a.path("e1.tar").to_str().unwrap(), ctx.to_str().unwrap()],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    let e1: serde_json::Value = serde_json::from_str(&e1.ok().stdout).unwrap();
    assert_ne!(e1["id"], one.json["id"]);
    let e2 = b.spx(&[
        "image",
        "build",
        "--json",
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
        "-o",
        b.path("e2.tar").to_str().unwrap(),
        ctx2.to_str().unwrap(),
    ]);
    let e2: serde_json::Value = serde_json::from_str(&e2.ok().stdout).unwrap();
    assert_eq!(e1["id"], e2["id"], "SOURCE_DATE_EPOCH as env or build arg gives the same image");
    let cfg = tar_member(&a.path("e1.tar"), &format!("blobs/sha256/{}", &e1["id"].as_str().unwrap()[7..]));
    let cfg: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
    assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
    let ours: Vec<&serde_json::Value> =
        cfg["history"].as_array().unwrap().iter().filter(|h| h["comment"] == "spxpack").collect();
    assert_eq!(ours.len(), 5);
    assert!(ours.iter().all(|h| h["created"] == "2023-11-14T22:13:20Z"), "{ours:?}");
}

#[test]
fn build_cache_rebuilds_only_what_changed() {
    let s = Scratch::new();
    let ctx = s.path("ctx");
    write_context(&ctx);
    let first = build(&s, &ctx, "1.tar", &[]);
    assert_eq!((first.json["layers_built"].as_u64(), first.json["layers_cached"].as_u64()), (Some(4), Some(0)));
    let again = build(&s, &ctx, "2.tar", &[]);
    assert_eq!((again.json["layers_built"].as_u64(), again.json["layers_cached"].as_u64()), (Some(0), Some(4)));
    assert_eq!(again.json["id"], first.json["id"]);
    assert!(again.archive == first.archive);
    // one source of one step changes: that step's layer is rebuilt, the others come from the cache
    std::fs::write(ctx.join("small.txt"), "changed\n").unwrap();
    let changed = build(&s, &ctx, "3.tar", &[]);
    assert_eq!((changed.json["layers_built"].as_u64(), changed.json["layers_cached"].as_u64()), (Some(1), Some(3)));
    assert_ne!(changed.json["id"], first.json["id"]);
    // same content again: back to the first image, all from the cache
    std::fs::write(ctx.join("small.txt"), "small\n").unwrap();
    let back = build(&s, &ctx, "4.tar", &[]);
    assert_eq!(back.json["id"], first.json["id"]);
    assert_eq!(back.json["layers_built"].as_u64(), Some(0));
    // --no-cache writes every layer again, byte for byte the same
    let fresh = build(&s, &ctx, "5.tar", &["--no-cache"]);
    assert_eq!(fresh.json["layers_built"].as_u64(), Some(4));
    assert!(fresh.archive == first.archive);
}

#[test]
fn build_cache_layers_keep_hard_links_and_sorted_entries() {
    let s = Scratch::new();
    let ctx = s.path("ctx");
    write_context(&ctx);
    let out = s.path("o");
    s.spx(&["image", "build", "-o", &format!("oci:{}", out.display()), ctx.to_str().unwrap()]).ok();
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let m = idx["manifests"][0]["digest"].as_str().unwrap()[7..].to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("blobs/sha256").join(m)).unwrap()).unwrap();
    // layer 2 is COPY app/ ./ into /app
    let l = m["layers"][2]["digest"].as_str().unwrap()[7..].to_string();
    let gz = std::fs::File::open(out.join("blobs/sha256").join(l)).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()), (0, 0, 0));
        assert!(h.username().unwrap().unwrap_or("").is_empty());
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == "app/lib/util.sh" {
            assert_eq!(h.entry_type(), tar::EntryType::Link, "the second name of an inode is a hard link");
            assert_eq!(e.link_name().unwrap().unwrap().to_string_lossy(), "app/lib/util-link.sh");
        }
        names.push(p);
    }
    assert_eq!(names, vec!["app/lib/", "app/lib/util-link.sh", "app/lib/util.sh", "app/main.sh"]);
}

/// A Dockerfile that changes nothing gives the base image itself (same config bytes, same ID);
/// any instruction gives a new config that keeps the base's key order.
#[test]
fn build_cache_unchanged_base_keeps_its_config_bytes() {
    let s = Scratch::new();
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let base = format!("{}/busybox:multi", env().plain);
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {base}\n")).unwrap();
    let same = build(&s, &ctx, "same.tar", &[]);
    let base_id = s.spx(&["inspect", "--json", &base]).ok().stdout;
    let base_id: serde_json::Value = serde_json::from_str(&base_id).unwrap();
    assert_eq!(same.json["id"], base_id["images"][0]["id"], "FROM alone is the base image");
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {base}\nLABEL x=y\n")).unwrap();
    let edited = build(&s, &ctx, "edited.tar", &[]);
    assert_ne!(edited.json["id"], same.json["id"]);
    let cfg = |b: &Built, out: &str| -> String {
        let id = b.json["id"].as_str().unwrap()[7..].to_string();
        String::from_utf8(tar_member(&s.path(out), &format!("blobs/sha256/{id}"))).unwrap()
    };
    let keys = |j: &str| -> Vec<String> {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(j).unwrap();
        v.keys().cloned().collect()
    };
    let (before, after) = (cfg(&same, "same.tar"), cfg(&edited, "edited.tar"));
    assert_eq!(keys(&before), keys(&after), "top-level key order is kept");
    assert!(after.contains(r#""Labels":{"x":"y"}"#), "{after}");
}
