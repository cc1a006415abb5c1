//! Helpers for the SPX tests: reading SPX files with independent readers (flate2 + the tar crate,
//! GNU tar, Python's tarfile), the SDK examples in `../shared/spot-sdk-examples`, fixture images
//! pushed under the tags those examples use, `docker load` and `docker-compose config`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{Run, env, run, run_in, skopeo};

/// (name, mode, size) of every entry, in archive order.
pub fn entries(spx: &Path) -> Vec<(String, u32, u64)> {
    let f = std::fs::File::open(spx).unwrap();
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
            (name, e.header().mode().unwrap(), e.size())
        })
        .collect()
}

pub fn names(spx: &Path) -> Vec<String> {
    entries(spx).into_iter().map(|e| e.0).collect()
}

/// The content of one member.
pub fn member(spx: &Path, name: &str) -> Vec<u8> {
    let f = std::fs::File::open(spx).unwrap();
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("{name} not in {}", spx.display())
}

/// Extracts with GNU tar (what a manual install on the robot does: `tar xzfm`).
pub fn extract(spx: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    run("tar", &["xzfm", spx.to_str().unwrap(), "-C", dir.to_str().unwrap()], &[]).ok();
}

/// `docker load -i FILE` on the test environment's Docker 20.10; returns the loaded names.
pub fn docker_load(archive: &Path) -> Vec<String> {
    let r = super::docker(&["load", "-i", archive.to_str().unwrap()]).ok();
    r.stdout.lines().filter_map(|l| l.strip_prefix("Loaded image: ").map(str::to_string)).collect()
}

/// `docker-compose -f FILE config -q` (the Debian docker-compose 1.29 the SDK script calls).
pub fn compose_config(file: &Path) -> Run {
    run_in(file.parent(), "docker-compose", &["-f", file.to_str().unwrap(), "config", "-q"], &[])
}

/// `../shared/spot-sdk-examples` beside the repository.
pub fn sdk_examples() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spot-sdk-examples");
    assert!(
        p.join("NOTICE.md").is_file(),
        "{} is missing: these tests read the Spot SDK example extensions from ../shared/spot-sdk-examples \
         beside the repository (BD-licensed test data, not committed here; see its NOTICE.md)",
        p.display()
    );
    p
}

/// Copies a directory tree (files only, permissions made writable).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::write(&dest, std::fs::read(e.path()).unwrap()).unwrap();
        }
    }
}

/// The tags the SDK examples' compose files use, all pushed (as a copy of the multi-platform
/// busybox index) to `<plain registry>/library/…`, so `--registry-mirror docker.io=<registry>`
/// serves them while the compose files stay untouched.
pub const SDK_IMAGES: [&str; 14] = [
    "docking_callback:arm64",
    "spotcam_video:latest",
    "fire_ext_detector:l4t",
    "custom_parameter_image_server:l4t",
    "signals_lte:arm64",
    "gps_listener_image_arm64:latest",
    "metrics_over_coreio:arm64",
    "webhook_integration:latest",
    "spot_check_rms:latest",
    "fetch_detector:l4t",
    "openvpn_client:latest",
    "spot_detect_and_follow:latest",
    "web_cam_image_service:latest",
    "battery_service:latest",
];

/// Pushes [`SDK_IMAGES`] once per test run; returns the `--registry-mirror` value.
pub fn sdk_mirror() -> String {
    static DONE: OnceLock<String> = OnceLock::new();
    DONE.get_or_init(|| {
        let e = env();
        let src = format!("oci:{}:multi", e.busybox_oci.display());
        for img in SDK_IMAGES {
            skopeo(&[
                "copy",
                "-q",
                "--all",
                "--dest-tls-verify=false",
                &src,
                &format!("docker://{}/library/{img}", e.plain),
            ])
            .ok();
        }
        // the Debian python stand-in as python:3.10-slim, for the SDK Dockerfiles' RUN pip
        let py = format!("oci:{}:multi", crate::support::python_oci().display());
        let dest = format!("docker://{}/library/python:3.10-slim", e.plain);
        skopeo(&["copy", "-q", "--all", "--dest-tls-verify=false", &py, &dest]).ok();
        format!("docker.io={}", e.plain)
    })
    .clone()
}

/// The architecture Docker reports for each image of a (loaded) docker archive, looked up by
/// image ID — content-addressed, so tests loading other images under the same tags cannot race.
pub fn loaded_architectures(archive: &Path) -> Vec<String> {
    let data = std::fs::read(archive).unwrap();
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut tar).unwrap();
    let mut a = tar::Archive::new(&tar[..]);
    let mut items = serde_json::Value::Null;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == "manifest.json" {
            items = serde_json::from_reader(&mut e).unwrap();
        }
    }
    items
        .as_array()
        .expect("manifest.json")
        .iter()
        .map(|i| {
            let hex = i["Config"].as_str().unwrap().trim_start_matches("blobs/sha256/").trim_end_matches(".json");
            let id = format!("sha256:{hex}");
            super::docker(&["image", "inspect", "--format", "{{.Architecture}}", &id]).ok().stdout.trim().to_string()
        })
        .collect()
}

/// The `manifest.json` Python's `json.dumps` writes for the SDK script (spec §1.4) from `input`,
/// with `date` as given.
pub fn sdk_manifest(input: &Path, date: &str, extra: &[(&str, &str)]) -> String {
    let script = r#"
import json, sys
d = json.load(open(sys.argv[1]))
for k, v in json.loads(sys.argv[3]):
    d[k] = v
if not d.get("installation_target"):
    d["installation_target"] = "spot"
if not d.get("date"):
    d["date"] = sys.argv[2]
sys.stdout.write(json.dumps(d))
"#;
    let extra = serde_json::to_string(&extra).unwrap();
    run("python3", &["-c", script, input.to_str().unwrap(), date, &extra], &[]).ok().stdout
}
