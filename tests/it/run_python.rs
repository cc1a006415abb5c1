//! RUN acceptance on the Debian bookworm python stand-in (pushed to the local registry under a
//! test-unique name): `spxpack image build --platform linux/arm64` of a Dockerfile with
//! `COPY requirements.txt`, `RUN pip install -r` (real wheels from PyPI through this machine's
//! TLS-intercepting egress, whose CA reaches the steps only through `--ca-bundle`),
//! `RUN apt-get update && apt-get install`, a `RUN rm` of a base file and a `RUN mkdir/echo` —
//! as root, as an unprivileged user (user namespace), and with the proot sandbox forced while
//! the kernel's qemu handler is hidden; the images load into Docker 20.10 and run there. The
//! same Dockerfile built by Docker 20.10's classic builder gives the same filesystem.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::build_util::{FsEntry, export_fs, fixture};
use crate::support::{
    Run, Scratch, docker, env, python_oci, run_as, sandbox_bin, skopeo, test_user, unique, user_scratch,
};

const HOST_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The python stand-in (arm64 + amd64) in the plain registry, pushed once per test run.
fn python_ref() -> &'static str {
    static R: OnceLock<String> = OnceLock::new();
    R.get_or_init(|| {
        let dest = format!("{}/{}:t", env().plain, unique("spxpack-it-python"));
        let src = format!("oci:{}:multi", python_oci().display());
        skopeo(&["copy", "-q", "--all", "--dest-tls-verify=false", &src, &format!("docker://{dest}")]).ok();
        dest
    })
}

/// The acceptance context in `dir` (the Dockerfile's FROM filled in, the egress CA next to it
/// for Docker's variant), readable by every user.
fn context(s: &Scratch, extra_steps: &str) -> PathBuf {
    let ctx = fixture(s, "run-python", &[("@PY@", python_ref())]);
    if !extra_steps.is_empty() {
        let df = ctx.join("Dockerfile");
        let t = std::fs::read_to_string(&df).unwrap() + extra_steps;
        std::fs::write(&df, t).unwrap();
    }
    std::fs::copy(HOST_CA, ctx.join("egress-ca.pem")).unwrap();
    crate::support::run("chmod", &["-R", "a+rX", s.dir.path().to_str().unwrap()], &[]).ok();
    ctx
}

fn build_args<'a>(ctx: &'a Path, cache: &'a Path, out: &'a Path, tag: &'a str) -> Vec<&'a str> {
    vec![
        "image",
        "build",
        "--platform",
        "linux/arm64",
        "--ca-bundle",
        HOST_CA,
        "--json",
        "--cache-dir",
        cache.to_str().unwrap(),
        "-t",
        tag,
        "-o",
        out.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]
}

fn json(r: &Run) -> serde_json::Value {
    assert_eq!(r.code, 0, "build failed:\n{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

/// Loads the archive and checks the steps' results from an arm64 container.
fn check_image(archive: &Path, tag: &str) -> String {
    docker(&["load", "-q", "-i", archive.to_str().unwrap()]).ok();
    let script = "python3 -c 'import six, platform; print(six.__version__, platform.machine())'; \
        echo '{\"a\":7}' | jq .a; test -e /usr/bin/pydoc3.11 || echo pydoc-removed; cat /data/greeting; \
        cat /usr/share/ca-certificates/mozilla/*.crt | cmp - /etc/ssl/certs/ca-certificates.crt && echo ca-not-baked-in; \
        ls -ln /usr/bin/jq | awk '{print $3, $4}'";
    let r = crate::support::docker_run_arm64(tag, &["sh", "-c", script]);
    let env = docker(&["image", "inspect", "--format", "{{json .Config.Env}}", tag]).ok();
    for leaked in ["PIP_CERT", "APT_CONFIG", "SSL_CERT_FILE", ".spxpack"] {
        assert!(!env.stdout.contains(leaked), "{leaked} in the image's Env: {}", env.stdout);
    }
    assert_eq!(r.stdout, "1.16.0 aarch64\n7\npydoc-removed\nhello\nca-not-baked-in\n0 0\n", "{}", r.stderr);
    r.stdout
}

fn steps(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["run"]["steps"].as_array().unwrap_or_else(|| panic!("no run steps in {v}"))
}

#[test]
fn run_python_pip_apt_rm_mkdir_as_root_then_cached_rebuild() {
    let s = Scratch::new();
    let ctx = context(&s, "");
    let tag = format!("{}:t", unique("spxpack-it-run-py-root"));
    let (cache, out) = (s.path("cache"), s.path("py.tar"));
    let t = std::time::Instant::now();
    let v = json(&s.spx(&build_args(&ctx, &cache, &out, &tag)));
    let cold = t.elapsed();
    assert_eq!(v["run"]["sandbox"], "root", "{v}");
    assert_eq!(v["run"]["emulation"], "kernel-binfmt", "{v}");
    assert_eq!(steps(&v).len(), 5);
    assert!(steps(&v).iter().all(|s| s["cached"] == false && s["code"] == 0), "{v}");
    // `RUN rm` of a base file is a whiteout
    assert_eq!(steps(&v)[3]["layer"]["whiteouts"], 1, "{v}");
    check_image(&out, &tag);
    let hist = docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]).ok();
    assert!(hist.stdout.contains("RUN /bin/sh -c rm /usr/bin/pydoc3.11\n"), "{}", hist.stdout);

    // nothing changed: every step comes from the build cache, the same image, no sandbox
    let t = std::time::Instant::now();
    let out2 = s.path("py2.tar");
    let v2 = json(&s.spx(&build_args(&ctx, &cache, &out2, &tag)));
    let warm = t.elapsed();
    assert!(steps(&v2).iter().all(|s| s["cached"] == true), "{v2}");
    assert_eq!(v2["run"]["sandbox"], serde_json::Value::Null, "no sandbox needed: {v2}");
    assert_eq!(v2["id"], v["id"]);
    eprintln!("pip + apt as root: cold {cold:?}, cached rebuild {warm:?}");
    // a changed requirement reruns pip and everything after it, not the first step
    std::fs::write(ctx.join("requirements.txt"), "six==1.16.0\n# touched\n").unwrap();
    let v3 = json(&s.spx(&build_args(&ctx, &cache, &s.path("py3.tar"), &tag)));
    let cached: Vec<bool> = steps(&v3).iter().map(|s| s["cached"].as_bool().unwrap()).collect();
    assert_eq!(cached, vec![true, false, false, false, false], "{v3}");
    // the rootfs came from the rootfs cache; no working copy is left behind
    let work: Vec<_> = std::fs::read_dir(cache.join("rootfs/work")).unwrap().collect();
    assert!(work.is_empty(), "{work:?}");
}

#[test]
fn run_python_pip_apt_rm_mkdir_as_an_unprivileged_user() {
    let user = test_user();
    let d = user_scratch(user);
    let s = Scratch { dir: d };
    // apt's own sandbox user is switched off inside the single-uid user namespace
    let ctx = context(&s, "RUN apt-config dump | grep -i 'sandbox::user'; id -u\n");
    let tag = format!("{}:t", unique("spxpack-it-run-py-user"));
    let (cache, out) = (s.path("cache"), s.path("py.tar"));
    let mut argv = vec![sandbox_bin().to_str().unwrap()];
    argv.extend(build_args(&ctx, &cache, &out, &tag));
    let home = s.path("home");
    let t = std::time::Instant::now();
    let r = run_as(user, &argv, &[("HOME", home.to_str().unwrap())]);
    let v = json(&r);
    eprintln!("pip + apt as {user}: {:?}", t.elapsed());
    assert_eq!(v["run"]["sandbox"], "userns", "{v}");
    let st = steps(&v);
    assert_eq!(st[5]["output"], serde_json::json!(["APT::Sandbox::User \"root\";", "0"]), "{v}");
    assert!(st[5]["layer"].is_null(), "a step that changes nothing adds no layer: {v}");
    check_image(&out, &tag);
}

/// `unshare --user --map-root-user --mount` with an empty binfmt_misc mounted over the kernel's:
/// arm64 binaries cannot run through binfmt, so `--isolation proot` must bring qemu itself.
#[test]
fn run_python_pip_with_proot_forced_and_binfmt_hidden() {
    let user = test_user();
    let s = Scratch { dir: user_scratch(user) };
    let ctx = context(&s, "");
    // pip only: Debian's proot 5.1.0 does not translate statx, which apt's gpgv needs
    let df = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    let pip_only: String = df.lines().filter(|l| !l.starts_with("RUN apt-get")).map(|l| format!("{l}\n")).collect();
    std::fs::write(ctx.join("Dockerfile"), pip_only).unwrap();
    let tag = format!("{}:t", unique("spxpack-it-run-py-proot"));
    let (cache, out) = (s.path("cache"), s.path("py.tar"));
    let bb = format!("{}/bin/busybox", std::env::var("SPXPACK_TEST_BUSYBOX_ROOTFS_ARM64").unwrap());
    let script = format!(
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 97; \
         if {bb} true 2>/dev/null; then echo 'arm64 still runs: binfmt not hidden' >&2; exit 98; fi; \
         exec \"$@\""
    );
    let mut argv = vec!["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", &script, "sh"];
    argv.push(sandbox_bin().to_str().unwrap());
    argv.extend(["image", "build", "--isolation", "proot"]);
    argv.extend(build_args(&ctx, &cache, &out, &tag)[2..].iter().copied());
    let home = s.path("home");
    let t = std::time::Instant::now();
    let r = run_as(user, &argv, &[("HOME", home.to_str().unwrap())]);
    let v = json(&r);
    eprintln!(
        "pip with proot: {:?}\n{}",
        t.elapsed(),
        r.stderr.lines().filter(|l| l.contains("warning")).collect::<Vec<_>>().join("\n")
    );
    assert_eq!((v["run"]["sandbox"].as_str(), v["run"]["emulation"].as_str()), (Some("proot"), Some("proot-qemu")));
    docker(&["load", "-q", "-i", out.to_str().unwrap()]).ok();
    let run = crate::support::docker_run_arm64(
        &tag,
        &[
            "sh",
            "-c",
            "python3 -c 'import six, platform; print(six.__version__, platform.machine())'; cat /data/greeting; \
             test -e /usr/bin/pydoc3.11 || echo pydoc-removed",
        ],
    );
    assert_eq!(run.stdout, "1.16.0 aarch64\nhello\npydoc-removed\n", "{}", run.stderr);
}

/// Files whose content depends on when they were written: pip's byte code embeds the source's
/// mtime, apt's caches and logs embed times. Everything else must be identical.
fn content_varies(p: &str) -> bool {
    p.ends_with(".pyc")
        || p == "var/cache/apt/pkgcache.bin"
        || p == "var/cache/apt/srcpkgcache.bin"
        || p == "var/log/dpkg.log"
        || (p.starts_with("var/log/apt/") && p.ends_with(".log"))
}

#[test]
fn run_python_oracle_docker_classic_builder_gives_the_same_filesystem() {
    let s = Scratch::new();
    let ctx = context(&s, "");
    let name = unique("spxpack-it-run-oracle");
    let (docker_tag, spx_tag) = (format!("{name}:docker"), format!("{name}:spx"));
    let df = ctx.join("Dockerfile.docker");
    let t = std::time::Instant::now();
    let d = crate::support::run(
        &env().docker,
        &[
            "build",
            "--platform",
            "linux/arm64",
            "--network",
            "host",
            "-q",
            "-f",
            df.to_str().unwrap(),
            "-t",
            &docker_tag,
            ctx.to_str().unwrap(),
        ],
        &[("DOCKER_BUILDKIT", "0")],
    );
    assert_eq!(d.code, 0, "docker build failed:\n{}\n{}", d.stdout, d.stderr);
    let docker_s = t.elapsed();
    let t = std::time::Instant::now();
    let out = s.path("spx.tar");
    json(&s.spx(&build_args(&ctx, &s.path("cache"), &out, &spx_tag)));
    eprintln!("docker build {docker_s:?}, spxpack image build {:?}", t.elapsed());
    docker(&["load", "-q", "-i", out.to_str().unwrap()]).ok();
    let (fd, fs) = (export_fs(&docker_tag), export_fs(&spx_tag));
    let mut diffs = Vec::new();
    let mut varied = 0;
    for p in fd.keys().chain(fs.keys().filter(|k| !fd.contains_key(*k))) {
        match (fd.get(p), fs.get(p)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b))
                if content_varies(p)
                    && FsEntry { sha256: String::new(), ..a.clone() }
                        == FsEntry { sha256: String::new(), ..b.clone() } =>
            {
                varied += 1
            }
            (a, b) => diffs.push(format!("/{p}: docker {a:?} vs spxpack {b:?}")),
        }
    }
    assert!(diffs.is_empty(), "filesystems differ:\n{}", diffs.join("\n"));
    // the steps touched these; they must be byte-identical
    for p in ["usr/local/lib/python3.11/dist-packages/six.py", "usr/bin/jq", "data/greeting", "app/requirements.txt"] {
        assert!(fs.contains_key(p) && fd[p] == fs[p], "{p}");
    }
    for p in ["usr/bin/pydoc3.11", "egress-ca.pem", "var/lib/apt/lists/lock"] {
        assert!(!fs.contains_key(p), "{p} must not exist");
    }
    assert!(varied > 0 && varied < 10, "{varied} files differ in content only");
    assert_eq!(
        crate::build_util::config_subset(&docker_tag),
        crate::build_util::config_subset(&spx_tag),
        "configs differ (left docker, right spxpack)"
    );
}

/// Ctrl-C while a step runs on the python base — the background thread is re-extracting the
/// base into the cache at that moment — leaves no process, working tree or partial cache entry.
#[test]
fn run_python_ctrl_c_during_a_step_and_the_cache_refill_leaves_nothing() {
    use std::io::BufRead;
    let s = Scratch::new();
    let c = s.path("ctx");
    std::fs::create_dir_all(&c).unwrap();
    let marker = format!("sleep {}", 800_000 + std::process::id() % 100_000);
    std::fs::write(c.join("Dockerfile"), format!("FROM {}\nRUN echo started; {marker}\n", python_ref())).unwrap();
    let cache = s.path("cache");
    let mut child = std::process::Command::new(sandbox_bin())
        .args(["image", "build", "--cache-dir", cache.to_str().unwrap(), "-o", s.path("o.tar").to_str().unwrap()])
        .arg(&c)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "spxpack ended early: {seen}");
        seen.push_str(&line);
        if line.trim() == "started" {
            break;
        }
    }
    let refilling = std::fs::read_dir(cache.join("rootfs/bases")).unwrap().count();
    crate::support::run("kill", &["-INT", &child.id().to_string()], &[]).ok();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{seen}");
    let left = |d: &str| -> Vec<String> {
        std::fs::read_dir(cache.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert!(left("rootfs/work").is_empty(), "{:?}", left("rootfs/work"));
    assert!(left("rootfs/bases").iter().all(|b| !b.starts_with(".tmp-")), "{:?}", left("rootfs/bases"));
    assert!(left("tmp").is_empty(), "{:?}", left("tmp"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while crate::support::run("pgrep", &["-f", &marker], &[]).code == 0 {
        assert!(std::time::Instant::now() < deadline, "the step's process survived");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("refill in progress at Ctrl-C: {}", refilling > 0);
}
