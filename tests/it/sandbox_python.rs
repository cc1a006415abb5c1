//! Real-world steps on the python stand-in (Debian bookworm python3 + pip, arm64) under qemu:
//! `pip install` from PyPI through this machine's TLS-intercepting egress (whose CA only the
//! `ca_bundle` option brings into the sandbox) and `apt-get update && apt-get install`, as root
//! and as an unprivileged user (single-uid user namespace with the fake-root seccomp filter).
//! The results load into Docker 20.10 and run there.
//!
//! The stand-in is unpacked without maintainer scripts, so `/usr/bin/awk` (an alternatives
//! symlink) is missing and apt cannot read its keyrings (`NO_PUBKEY`, also under Docker), and
//! there is no `/etc/ssl/certs/ca-certificates.crt`; the steps create both first, as a real
//! Debian image would have them.

use std::path::Path;

use spxpack::oci_layout::Layout;
use spxpack::platform::Platform;
use spxpack::sandbox::{self, Isolation, Rootfs, RootfsCache, RunSpec, Snapshot, diff};

use crate::sandbox_rungs::runner;
use crate::support::{Scratch, docker, python_oci, run_as, sandbox_bin, test_user, unique, user_scratch};

const HOST_CA: &str = "/etc/ssl/certs/ca-certificates.crt";
const PIP: &str = "python3 -m pip install --no-cache-dir --break-system-packages --retries 0 --timeout 30 six==1.16.0";
const BUNDLE: &str = "cat /usr/share/ca-certificates/mozilla/*.crt > /etc/ssl/certs/ca-certificates.crt";
const APT: &str = "ln -sf mawk /usr/bin/awk && apt-get update -q && apt-get install -q -y --no-install-recommends jq";

fn python_arm64() -> spxpack::image::Image {
    Layout::open_dir(python_oci()).unwrap().image(Some("arm64"), &Platform::linux_arm64()).unwrap()
}

fn layer_names(layer: &Path) -> Vec<String> {
    let f = std::fs::File::open(layer).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    a.entries().unwrap().map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned()).collect()
}

fn load_and_run(archive: &Path, tag: &str, cmd: &str) -> String {
    docker(&["load", "-i", archive.to_str().unwrap()]).ok();
    let r = docker(&["run", "--rm", "--platform", "linux/arm64", "--network", "none", tag, "sh", "-c", cmd]).ok();
    let env = docker(&["image", "inspect", "--format", "{{json .Config.Env}}", tag]).ok();
    assert!(!env.stdout.contains("PIP_CERT") && !env.stdout.contains("APT_CONFIG"), "{}", env.stdout);
    docker(&["rmi", tag]).ok();
    r.stdout
}

#[test]
fn sandbox_pip_needs_the_ca_option_and_apt_works_as_root() {
    let s = Scratch::new();
    let r = runner(Isolation::Root);
    let cache = RootfsCache::new(s.path("rc")).unwrap();
    let rootfs = Rootfs::extract(&python_arm64(), &r, &cache).unwrap();
    let t = std::time::Instant::now();
    let mut layers = Vec::new();
    let snap = Snapshot::take(&rootfs).unwrap();
    r.run(&rootfs, &RunSpec::shell(BUNDLE), &mut |_| {}).unwrap().check().unwrap();
    let l = diff::layer(&snap, &rootfs, &r.layer_options(&RunSpec::default(), Some(1_700_000_000), &s.path("layers")));
    layers.push((l.unwrap(), format!("RUN {BUNDLE}")));

    // with the image's public CAs only, TLS to PyPI through the intercepting egress fails
    let out = r.run(&rootfs, &RunSpec::shell(PIP), &mut |_| {}).unwrap();
    assert_ne!(out.code, 0, "pip must not reach PyPI without the egress CA: {:?}", out.tail);
    let text = out.tail.join("\n");
    assert!(text.contains("CERTIFICATE_VERIFY_FAILED"), "{text}");
    for (cmd, ca) in [(PIP, true), (APT, false)] {
        let spec = RunSpec {
            ca_bundle: ca.then(|| HOST_CA.into()),
            env: vec![("DEBIAN_FRONTEND".into(), "noninteractive".into())],
            ..RunSpec::shell(cmd)
        };
        let snap = Snapshot::take(&rootfs).unwrap();
        let out = r.run(&rootfs, &spec, &mut |_| {}).unwrap();
        out.check().unwrap();
        let l = diff::layer(&snap, &rootfs, &r.layer_options(&spec, Some(1_700_000_000), &s.path("layers"))).unwrap();
        let names = layer_names(&l.path);
        assert!(!names.iter().any(|n| n.contains(".spxpack") || n.starts_with("dev/")), "plumbing in layer: {names:?}");
        assert!(!names.contains(&"etc/ssl/certs/ca-certificates.crt".to_string()), "CA baked in");
        if ca {
            assert!(names.contains(&"usr/local/lib/python3.11/dist-packages/six.py".to_string()), "{names:?}");
        } else {
            assert!(names.contains(&"usr/bin/jq".to_string()), "{names:?}");
        }
        eprintln!("{cmd}: {} entries, {} bytes, step {:?}", l.entries, l.size, out.elapsed);
        layers.push((l, format!("RUN {cmd}")));
    }
    eprintln!("pip + apt as root: {:?}", t.elapsed());
    let built =
        sandbox::append::append_layers(&python_arm64(), &layers, &sandbox::append::rfc3339(1_700_000_000)).unwrap();
    let tag = format!("{}:t", unique("spxpack-it-sandbox-py-root"));
    let archive = s.path("py.tar");
    spxpack::docker_archive::write_file(
        &archive,
        &[spxpack::docker_archive::ArchiveImage { image: &built, tags: vec![tag.clone()] }],
        &Default::default(),
        &|_| {},
    )
    .unwrap();
    let got = load_and_run(
        &archive,
        &tag,
        "python3 -c 'import six, platform; print(six.__version__, platform.machine())'; echo '{\"a\":7}' | jq .a",
    );
    assert_eq!(got, "1.16.0 aarch64\n7\n");
}

#[test]
fn sandbox_pip_and_apt_work_for_an_unprivileged_user() {
    let user = test_user();
    let d = user_scratch(user);
    let oci = python_oci();
    let archive = d.path().join("py.tar");
    let tag = format!("{}:t", unique("spxpack-it-sandbox-py-user"));
    let t = std::time::Instant::now();
    let r = run_as(
        user,
        &[
            sandbox_bin().to_str().unwrap(),
            "sandbox-run",
            "--json",
            "--cache-dir",
            d.path().join("cache").to_str().unwrap(),
            &format!("oci:{}:arm64", oci.display()),
            "--ca-bundle",
            HOST_CA,
            "--env",
            "DEBIAN_FRONTEND=noninteractive",
            "--run",
            BUNDLE,
            "--run",
            PIP,
            "--run",
            APT,
            "--run",
            "apt-config dump | grep -i 'sandbox::user'; id -u",
            "-o",
            archive.to_str().unwrap(),
            "--tag",
            &tag,
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["sandbox"], "userns", "{v}");
    // apt's _apt sandbox is switched off through APT_CONFIG (setgroups is impossible here)
    assert_eq!(v["steps"][3]["output"], serde_json::json!(["APT::Sandbox::User \"root\";", "0"]), "{v}");
    eprintln!("pip + apt as {user}: {:?}", t.elapsed());
    let got = load_and_run(
        &archive,
        &tag,
        "python3 -c 'import six; print(six.__version__)'; jq --version; ls -ln /usr/bin/jq",
    );
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(&lines[..2], &["1.16.0", "jq-1.6"], "{got}");
    assert!(lines[2].contains(" 0 0 "), "owned by root in the image: {got}");
}
