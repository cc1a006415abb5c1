//! Shared helpers: the test environment (from `scripts/testenv/setup.sh`'s env.sh), running
//! spxpack and the real consumers, and unique test images pushed to the registries.

#![allow(dead_code)]

pub mod bounded;
pub mod hello;
pub mod spx;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::Digest as _;

pub struct Env {
    pub plain: String,
    pub plain_data: PathBuf,
    pub tls: String,
    pub tls_ca: PathBuf,
    pub tls_cert_dir: PathBuf,
    pub token: String,
    pub user: String,
    pub pass: String,
    pub busybox_oci: PathBuf,
    pub docker: String,
    pub arm64_digest: String,
}

fn var(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| {
        panic!(
            "{k} is not set: this test needs the real test environment (CNCF registry, Docker 20.10, skopeo, qemu-user-static).\n\
             Run the tests with ./scripts/test.sh (it installs the Debian packages docker.io docker-registry skopeo \
             qemu-user-static apache2-utils and starts the services), or start them with scripts/testenv/setup.sh and \
             `source /tmp/spxpack-testenv/env.sh`."
        )
    })
}

/// The test environment; panics with install instructions when it is missing.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        assert_eq!(var("SPXPACK_TEST_ENV"), "1", "SPXPACK_TEST_ENV must be 1");
        Env {
            plain: var("SPXPACK_TEST_REGISTRY_PLAIN"),
            plain_data: var("SPXPACK_TEST_REGISTRY_PLAIN_DATA").into(),
            tls: var("SPXPACK_TEST_REGISTRY_TLS"),
            tls_ca: var("SPXPACK_TEST_REGISTRY_TLS_CA").into(),
            tls_cert_dir: var("SPXPACK_TEST_REGISTRY_TLS_CERT_DIR").into(),
            token: var("SPXPACK_TEST_REGISTRY_TOKEN"),
            user: var("SPXPACK_TEST_REGISTRY_USER"),
            pass: var("SPXPACK_TEST_REGISTRY_PASS"),
            busybox_oci: var("SPXPACK_TEST_BUSYBOX_OCI").into(),
            docker: var("SPXPACK_TEST_DOCKER"),
            arm64_digest: var("SPXPACK_TEST_BUSYBOX_ARM64_DIGEST"),
        }
    })
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
    /// The first error spxpack printed, as one line: its `error:` line and the `caused by:`
    /// lines under it, joined with ": " (the chain as `Error`'s `Display` shows it).
    pub fn error_line(&self) -> String {
        error_chains(&self.stderr).into_iter().next().unwrap_or_else(|| panic!("no error line in {:?}", self.stderr))
    }
}

/// Every `error:` line of `stderr` with the `caused by:` lines under it joined with ": ".
pub fn error_chains(stderr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in stderr.lines() {
        if l.starts_with("error:") {
            out.push(l.to_string());
        } else if let (Some(cause), Some(last)) = (l.strip_prefix("caused by: "), out.last_mut()) {
            last.push_str(": ");
            last.push_str(cause);
        }
    }
    out
}

#[track_caller]
pub fn run(prog: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    run_in(None, prog, args, envs)
}

/// Like [`run`], in the directory `cwd`.
#[track_caller]
pub fn run_in(cwd: Option<&Path>, prog: &str, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut c = Command::new(prog);
    c.args(args);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().unwrap_or_else(|e| {
        panic!("cannot run {prog}: {e}; run the tests through ./scripts/test.sh, which installs it")
    });
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A scratch directory with its own spxpack cache and an empty HOME (no user credentials).
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch { dir: tempfile::tempdir().expect("tempdir") }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn cache(&self) -> PathBuf {
        self.path("cache")
    }
    /// Runs spxpack with this scratch's cache and HOME.
    pub fn spx(&self, args: &[&str]) -> Run {
        self.spx_env(args, &[])
    }
    pub fn spx_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        self.spx_in(None, args, envs)
    }
    /// Runs spxpack in `cwd` (default: the test's working directory).
    pub fn spx_in(&self, cwd: Option<&Path>, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let cache = self.cache();
        let home = self.path("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut all: Vec<(&str, &str)> = vec![
            ("SPXPACK_CACHE_DIR", cache.to_str().unwrap()),
            ("HOME", home.to_str().unwrap()),
            ("DOCKER_CONFIG", home.to_str().unwrap()),
        ];
        all.extend_from_slice(envs);
        run_in(cwd, env!("CARGO_BIN_EXE_spxpack"), args, &all)
    }
    /// Files in the scratch dir (to check that nothing partial is left).
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "cache" && n != "home")
            .collect();
        v.sort();
        v
    }
}

pub fn docker(args: &[&str]) -> Run {
    run(&env().docker, args, &[])
}

/// `docker run --rm --platform linux/arm64 --network none IMAGE CMD…` on the test daemon (qemu
/// through the host's binfmt handler); fails the test when it fails.
pub fn docker_run_arm64(image: &str, cmd: &[&str]) -> Run {
    let mut args = vec!["run", "--rm", "--platform", "linux/arm64", "--network", "none", image];
    args.extend_from_slice(cmd);
    docker(&args).ok()
}

pub fn skopeo(args: &[&str]) -> Run {
    run("skopeo", args, &[])
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Builds a one-layer arm64 OCI layout whose layer holds `content` at `/hello.txt` (so its
/// blobs are unique to the test), tagged `t`.
pub fn unique_layout(dir: &Path, content: &str) -> PathBuf {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "hello.txt", content.as_bytes()).unwrap();
    let raw = tar.into_inner().unwrap();
    let diff_id = sha256_hex(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    let layer = gz.finish().unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = sha256_hex(data);
        std::fs::write(layout.join("blobs/sha256").join(&d), data).unwrap();
        (d, data.len())
    };
    let (ld, ls) = put(&layer);
    let config = format!(
        r#"{{"architecture":"arm64","variant":"v8","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}},"history":[{{"created_by":"test"}}]}}"#
    );
    let (cd, cs) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{ld}","size":{ls}}}]}}"#
    );
    let (md, ms) = put(manifest.as_bytes());
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{md}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#
        ),
    )
    .unwrap();
    layout
}

/// The layer digest (hex) of a layout made by `unique_layout`.
pub fn layout_layer_hex(layout: &Path) -> String {
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let md = idx["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(md)).unwrap()).unwrap();
    m["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string()
}

/// Pushes `oci:LAYOUT:t` to the plain registry as `REPO:t` and returns the reference.
pub fn push_plain(layout: &Path, repo: &str) -> String {
    let dest = format!("{}/{repo}:t", env().plain);
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:t", layout.display()),
        &format!("docker://{dest}"),
    ])
    .ok();
    dest
}

/// A name unique to this test run.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Reads a member of a tar file.
pub fn tar_member(archive: &Path, name: &str) -> Vec<u8> {
    let f = std::fs::File::open(archive).unwrap();
    let mut a = tar::Archive::new(f);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            return v;
        }
    }
    panic!("{name} not in {}", archive.display())
}

pub fn tar_names(archive: &Path) -> Vec<String> {
    let f = std::fs::File::open(archive).unwrap();
    let mut a = tar::Archive::new(f);
    a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect()
}

/// A private copy of the spxpack binary (the shared target directory may be rebuilt by another
/// checkout while the tests run). The RUN sandbox re-executes it as its helper.
pub fn sandbox_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // one copy per binary content, reused by later runs
        let bytes = std::fs::read(env!("CARGO_BIN_EXE_spxpack")).unwrap();
        let dir = std::env::temp_dir().join(format!("spxpack-it-bin-{}", &sha256_hex(&bytes)[..16]));
        let dst = dir.join("spxpack");
        if !dst.exists() {
            let tmp = tempfile::Builder::new().prefix(".spxpack-it-bin-").tempdir().unwrap();
            std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            std::fs::write(tmp.path().join("spxpack"), &bytes).unwrap();
            std::fs::set_permissions(tmp.path().join("spxpack"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            let _ = std::fs::rename(tmp.keep(), &dir); // a concurrent run may have won: fine
        }
        // another test thread may fork while the copy is open for writing: ETXTBSY until its
        // child execs, so retry briefly
        let mut tries = 0;
        let help = loop {
            match Command::new(&dst).args(["sandbox-run", "--help"]).output() {
                Ok(o) => break o,
                Err(e) if e.raw_os_error() == Some(26) && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("cannot run {}: {e}", dst.display()),
            }
        };
        assert!(
            help.status.success(),
            "{} is not this checkout's spxpack (another build replaced it); rerun the tests",
            env!("CARGO_BIN_EXE_spxpack")
        );
        dst
    })
}

/// An unprivileged user for rootless tests (created with useradd once; the tests run as root).
pub fn test_user() -> &'static str {
    static USER: OnceLock<&'static str> = OnceLock::new();
    USER.get_or_init(|| {
        assert!(rustix_euid_is_root(), "the rootless tests create a user with useradd and must run as root");
        let name = "spxpack-it";
        if run("id", &["-u", name], &[]).code != 0 {
            let r = run("useradd", &["--create-home", "--shell", "/bin/sh", name], &[]);
            assert!(r.code == 0 || run("id", &["-u", name], &[]).code == 0, "useradd failed: {}", r.stderr);
        }
        name
    })
}

fn rustix_euid_is_root() -> bool {
    run("id", &["-u"], &[]).stdout.trim() == "0"
}

/// A scratch directory owned by `user` (mode 0755 up the chain) for rootless runs.
pub fn user_scratch(user: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("spxpack-it-user-").tempdir().unwrap();
    run("chown", &[user, d.path().to_str().unwrap()], &[]).ok();
    std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    d
}

/// Runs `argv` as `user` via runuser, with exactly `envs` in the environment (plus PATH).
pub fn run_as(user: &str, argv: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut args: Vec<String> = vec!["-u".into(), user.into(), "--".into(), "env".into(), "-i".into()];
    args.push(format!("PATH={}", std::env::var("PATH").unwrap_or_default()));
    for (k, v) in envs {
        args.push(format!("{k}={v}"));
    }
    args.extend(argv.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run("runuser", &a, &[])
}

/// The python stand-in (Debian bookworm python3 + pip, arm64 + amd64) as an OCI layout:
/// `$SPXPACK_TEST_PYTHON_OCI` when setup made it, else built once per test run with
/// scripts/testenv/make-python-oci.sh (cached in /var/cache/spxpack-testenv).
pub fn python_oci() -> &'static Path {
    static OCI: OnceLock<PathBuf> = OnceLock::new();
    OCI.get_or_init(|| {
        if let Ok(p) = std::env::var("SPXPACK_TEST_PYTHON_OCI")
            && Path::new(&p).join("index.json").exists()
        {
            return PathBuf::from(p);
        }
        let dir = std::env::temp_dir().join("spxpack-it-python");
        let out = dir.join("python-oci");
        if out.join("index.json").exists() {
            return out;
        }
        let tmp = tempfile::Builder::new().prefix(".spxpack-it-python-").tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testenv/make-python-oci.sh");
        let r = run(script, &[tmp.path().join("python-oci").to_str().unwrap()], &[]);
        assert_eq!(r.code, 0, "{script} failed (needs mmdebstrap and the Debian mirror):\n{}\n{}", r.stdout, r.stderr);
        run("chmod", &["-R", "a+rX", tmp.path().to_str().unwrap()], &[]).ok();
        let _ = std::fs::rename(tmp.keep(), &dir); // a concurrent run may have won: fine
        out
    })
}
