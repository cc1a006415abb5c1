//! Helpers for the Dockerfile builder tests: fixture contexts (copied, placeholders filled,
//! the file modes and links git cannot store added), building with Docker 20.10's classic
//! builder and with spxpack, and comparing the two results the way a user would see them —
//! `docker export` of a container from each image, and the image configs.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::support::{Run, Scratch, docker, env, sha256_hex, unique};

/// The base image every fixture builds on.
pub fn base() -> String {
    format!("{}/busybox:multi", env().plain)
}

/// Makes sure Docker has the arm64 base (the classic builder does not pull by platform itself
/// reliably when another platform of the same tag is present).
pub fn ensure_base() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        docker(&["pull", "-q", "--platform", "linux/arm64", &base()]).ok();
    });
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        let dest = to.join(e.file_name());
        if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else if t.is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Copies `fixtures/dockerfiles/NAME` into the scratch dir and fills `@REGISTRY@`,
/// `@HTTP@` and `@PARENT@` in its Dockerfiles.
pub fn fixture(s: &Scratch, name: &str, subs: &[(&str, &str)]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dockerfiles").join(name);
    let ctx = s.path(&format!("ctx-{}", name.replace('/', "-")));
    copy_tree(&src, &ctx);
    for f in std::fs::read_dir(&ctx).unwrap() {
        let p = f.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        if n.starts_with("Dockerfile") && p.is_file() {
            let mut t = std::fs::read_to_string(&p).unwrap().replace("@REGISTRY@", &env().plain);
            for (k, v) in subs {
                t = t.replace(k, v);
            }
            std::fs::write(&p, t).unwrap();
        }
    }
    ctx
}

pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `DOCKER_BUILDKIT=0 docker build --platform linux/arm64 --network none`.
pub fn docker_build(ctx: &Path, dockerfile: &str, tag: &str, extra: &[&str]) -> Run {
    ensure_base();
    let df = ctx.join(dockerfile);
    let mut args = vec!["build", "--platform", "linux/arm64", "--network", "none", "-q", "-f", df.to_str().unwrap()];
    args.extend_from_slice(&["-t", tag]);
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    crate::support::run(&env().docker, &args, &[("DOCKER_BUILDKIT", "0")])
}

/// `spxpack image build` into an archive, loaded into Docker.
pub fn spx_build_load(s: &Scratch, ctx: &Path, dockerfile: &str, tag: &str, extra: &[&str]) -> Run {
    let out = s.path(&format!("{}.tar", tag.replace(['/', ':'], "_")));
    let df = ctx.join(dockerfile);
    let mut args = vec!["image", "build", "-f", df.to_str().unwrap(), "-t", tag, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = s.spx(&args);
    if r.code == 0 {
        docker(&["load", "-q", "-i", out.to_str().unwrap()]).ok();
    }
    r
}

/// One entry of a container's exported filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub sha256: String,
    pub link: String,
}

/// Runtime files Docker writes into every container (content differs per container).
const RUNTIME: [&str; 4] = ["etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv"];

/// `docker create` + `docker export` of an image, as path → entry.
pub fn export_fs(image: &str) -> BTreeMap<String, FsEntry> {
    let c = docker(&["create", "--platform", "linux/arm64", "--network", "none", image, "x"]).ok();
    let id = c.stdout.trim().to_string();
    let out = std::process::Command::new(&env().docker).args(["export", &id]).output().unwrap();
    docker(&["rm", "-f", &id]).ok();
    assert!(out.status.success(), "docker export failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let mut map = BTreeMap::new();
    let mut hard: Vec<(String, String)> = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Regular => 'f',
            _ => 'o',
        };
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let link = e.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
        if kind == 'h' {
            hard.push((path.clone(), link.clone()));
        }
        let runtime = RUNTIME.contains(&path.as_str());
        map.insert(
            path,
            FsEntry {
                kind,
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                size: if runtime { 0 } else { data.len() as u64 },
                sha256: if kind == 'f' && !runtime { sha256_hex(&data) } else { String::new() },
                link: if kind == 'h' { String::new() } else { link },
            },
        );
    }
    // a hard link has its target's content
    for (p, target) in hard {
        let t = map.get(target.trim_end_matches('/')).cloned();
        if let (Some(t), Some(e)) = (t, map.get_mut(&p)) {
            e.kind = 'f';
            e.size = t.size;
            e.sha256 = t.sha256;
        }
    }
    map
}

/// An intentional difference: at `path`, Docker's classic builder gives mode `docker` and
/// spxpack (following BuildKit) gives mode `spx`; everything else must match.
pub struct Known {
    pub path: &'static str,
    pub docker: u32,
    pub spx: u32,
}

/// Differences between two exported filesystems (empty when they match).
pub fn fs_diff(docker: &BTreeMap<String, FsEntry>, spx: &BTreeMap<String, FsEntry>, known: &[Known]) -> Vec<String> {
    let mut out = Vec::new();
    for (p, d) in docker {
        match (spx.get(p), known.iter().find(|k| k.path == p)) {
            (None, _) => out.push(format!("only in docker: /{p} {d:?}")),
            (Some(s), Some(k)) => {
                let same_otherwise = FsEntry { mode: 0, ..d.clone() } == FsEntry { mode: 0, ..s.clone() };
                if d.mode != k.docker || s.mode != k.spx || !same_otherwise {
                    out.push(format!("/{p}: known difference changed: docker {d:?} vs spxpack {s:?}"));
                }
            }
            (Some(s), None) if s != d => out.push(format!("/{p}: docker {d:?} vs spxpack {s:?}")),
            _ => {}
        }
    }
    for (p, s) in spx {
        if !docker.contains_key(p) {
            out.push(format!("only in spxpack: /{p} {s:?}"));
        }
    }
    out
}

/// The config fields both builders must agree on; null, missing, `[]` and `{}` are the same.
pub fn config_subset(image: &str) -> BTreeMap<String, serde_json::Value> {
    let r = docker(&["image", "inspect", "--format", "{{json .Config}}", image]).ok();
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let mut out = BTreeMap::new();
    for k in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "Shell",
        "OnBuild",
    ] {
        let x = v.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let empty = match &x {
            serde_json::Value::Null => true,
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Object(o) => o.is_empty(),
            serde_json::Value::String(s) => s.is_empty(),
            _ => false,
        };
        out.insert(k.to_string(), if empty { serde_json::Value::Null } else { x });
    }
    out
}

/// The image's architecture, as Docker reports it.
pub fn arch(image: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Architecture}}", image]).ok().stdout.trim().to_string()
}

/// The two images of a comparison. They are left in the test daemon: removing images while
/// other tests build in parallel makes Docker 20.10 lose layers ("layer does not exist").
pub struct Compared {
    pub docker_tag: String,
    pub spx_tag: String,
}

pub fn compare(
    s: &Scratch,
    ctx: &Path,
    name: &str,
    docker_file: &str,
    docker_args: &[&str],
    spx_args: &[&str],
) -> Compared {
    compare_known(s, ctx, name, docker_file, docker_args, spx_args, &[])
}

pub fn compare_known(
    s: &Scratch,
    ctx: &Path,
    name: &str,
    docker_file: &str,
    docker_args: &[&str],
    spx_args: &[&str],
    known: &[Known],
) -> Compared {
    let tag = unique(&format!("spxpack-it-{name}"));
    let docker_tag = format!("{tag}:docker");
    let spx_tag = format!("{tag}:spx");
    let d = docker_build(ctx, docker_file, &docker_tag, docker_args);
    assert_eq!(d.code, 0, "docker build of {name} failed:\n{}\n{}", d.stdout, d.stderr);
    spx_build_load(s, ctx, "Dockerfile", &spx_tag, spx_args).ok();
    assert_eq!(arch(&spx_tag), "arm64");
    let (fd, fs) = (export_fs(&docker_tag), export_fs(&spx_tag));
    let diff = fs_diff(&fd, &fs, known);
    assert!(diff.is_empty(), "{name}: filesystems differ:\n{}", diff.join("\n"));
    let (cd, cs) = (config_subset(&docker_tag), config_subset(&spx_tag));
    assert_eq!(cd, cs, "{name}: configs differ (left docker, right spxpack)");
    Compared { docker_tag, spx_tag }
}
