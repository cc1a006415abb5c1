//! Real-world steps on the python stand-in (Debian bookworm python3 + pip, arm64) under qemu,
//! through the sandbox's own API: `pip install` from PyPI through this machine's
//! TLS-intercepting egress fails without the CA and works with the `ca_bundle` option, which
//! never reaches a layer, and `apt-get update && apt-get install` works. The same steps built
//! from a Dockerfile, as root and as an unprivileged user, and run in Docker 20.10, are in
//! `run_python.rs`.
//!
//! The stand-in is unpacked without maintainer scripts, so `/usr/bin/awk` (an alternatives
//! symlink) is missing and apt cannot read its keyrings (`NO_PUBKEY`, also under Docker), and
//! there is no `/etc/ssl/certs/ca-certificates.crt`; the steps create both first, as a real
//! Debian image would have them.

use std::path::Path;

use spxpack::oci_layout::Layout;
use spxpack::platform::Platform;
use spxpack::sandbox::{Isolation, Rootfs, RootfsCache, RunSpec, Snapshot, diff};

use crate::sandbox_rungs::runner;
use crate::support::{Scratch, python_oci};

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

#[test]
fn sandbox_pip_needs_the_ca_option_and_apt_works_as_root() {
    let s = Scratch::new();
    let r = runner(Isolation::Root);
    let cache = RootfsCache::new(s.path("rc")).unwrap();
    let rootfs = Rootfs::extract(&python_arm64(), &r, &cache).unwrap();
    let t = std::time::Instant::now();
    let snap = Snapshot::take(&rootfs).unwrap();
    r.run(&rootfs, &RunSpec::shell(BUNDLE), &mut |_| {}).unwrap().check().unwrap();
    let l = diff::layer(&snap, &rootfs, &r.layer_options(&RunSpec::default(), Some(1_700_000_000), &s.path("layers")));
    l.unwrap();

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
    }
    eprintln!("pip + apt as root: {:?}", t.elapsed());
}
