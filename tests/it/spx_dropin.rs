//! The SDK script's documented command lines (`build_extension.py … --package-dir … --spx …`,
//! from the examples' READMEs at v5.1.4) run as `spxpack build` with the same flags, in the same
//! directory layout. The SDK's Dockerfiles all have RUN steps: where a README line builds one,
//! it is first run verbatim with such a Dockerfile (FROM python, RUN pip install — built for real
//! in spxpack's sandbox), then with `--dockerfile-paths X --build-image-tags T` replaced by
//! `--extra-image-tags T` (served by the test registry through `--registry-mirror`). The SPX must hold what `docs/spx-format.md` ("Script manifest processing", "The SPX the script writes") says the script
//! writes — entries in its order, its `json.dumps` manifest with `installation_target` and `date`
//! appended — except where spxpack deliberately fixes the script (docs/build-flags.md).

use std::path::PathBuf;

use crate::support::{Run, Scratch, hello, spx};

const DATE: &str = "2023-11-14T22:13:20";

/// Lays out an SDK example at `rel` (as in the SDK repository) with the icons its manifest names.
fn sdk_tree(s: &Scratch, example: &str, rel: &str) -> PathBuf {
    let dir = s.path(rel);
    spx::copy_dir(&spx::sdk_examples().join(example), &dir);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    if let Some(icon) = m["icon"].as_str() {
        std::fs::write(dir.join(icon), hello::icon_png()).unwrap();
    }
    std::fs::create_dir_all(s.path("python/examples/extensions")).unwrap();
    dir
}

fn run(s: &Scratch, cwd: &str, args: &[&str]) -> Run {
    let mirror = spx::sdk_mirror();
    let mut all: Vec<&str> = vec!["build"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--registry-mirror", &mirror]);
    s.spx_in(Some(&s.path(cwd)), &all, &[("SOURCE_DATE_EPOCH", "1700000000")])
}

/// The documented line, verbatim, with a Dockerfile shaped like the SDK's (FROM python, COPY,
/// RUN pip): the image is built for real — pip from PyPI under qemu, the Debian python stand-in
/// serving as python:3.10-slim (its pip needs PEP 668's override, the real image's does not) —
/// and every output is written. Returns the image archive.
fn verbatim_builds(s: &Scratch, cwd: &str, args: &[&str], dockerfile: &str, outputs: &[&str]) -> PathBuf {
    let df = s.path(cwd).join(dockerfile);
    let mirror = spx::sdk_mirror();
    // FROM python:3.10-slim as in the SDK: --registry-mirror serves docker.io from the test registry
    std::fs::write(
        &df,
        "FROM python:3.10-slim\nENV PIP_BREAK_SYSTEM_PACKAGES=1\nCOPY requirements.txt /app/\n\
         RUN python3 -m pip install --no-cache-dir -r /app/requirements.txt\nCOPY . /app/\n",
    )
    .unwrap();
    std::fs::write(df.parent().unwrap().join("requirements.txt"), "six==1.16.0\n").unwrap();
    let mut all: Vec<&str> = vec!["build"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--registry-mirror", &mirror]);
    // the machine's TLS-intercepting egress: pip needs its CA
    let env = [("SOURCE_DATE_EPOCH", "1700000000"), ("SPXPACK_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")];
    let r = s.spx_in(Some(&s.path(cwd)), &all, &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("Successfully installed six-1.16.0"), "{}", r.stderr);
    for o in outputs {
        assert!(s.path(cwd).join(o).exists(), "{o} was not written");
    }
    s.path(cwd).join(outputs[1])
}

struct Expect<'a> {
    cwd: &'a str,
    package: &'a str,
    spx: &'a str,
    archive: &'a str,
    tag: &'a str,
    entries: &'a [&'a str],
    /// Keys spxpack adds on purpose (where the script drops a file silently), before the defaults.
    added: &'a [(&'a str, &'a str)],
    /// `verify --platform` (default: the one installation_target implies).
    platform: Option<&'a str>,
}

/// Checks the SPX against what the script writes.
fn check(s: &Scratch, e: &Expect, r: &Run) -> PathBuf {
    let cwd = s.path(e.cwd);
    let spx_path = cwd.join(e.spx);
    assert!(spx_path.is_file(), "{}\n{}", r.stdout, r.stderr);
    let got = spx::entries(&spx_path);
    assert_eq!(got.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), e.entries);
    assert!(got.iter().all(|x| x.1 == 0o644), "{got:?}");
    let want = spx::sdk_manifest(&cwd.join(e.package).join("manifest.json"), DATE, e.added);
    assert_eq!(String::from_utf8(spx::member(&spx_path, "manifest.json")).unwrap(), want);
    assert_eq!(
        spx::member(&spx_path, "docker-compose.yml"),
        std::fs::read(cwd.join(e.package).join("docker-compose.yml")).unwrap()
    );
    // like the script, the archive is also written at the --image-archive path
    let archive = std::fs::read(cwd.join(e.archive)).unwrap();
    assert!(archive == spx::member(&spx_path, e.archive), "the --image-archive file differs from the SPX member");
    let inner = s.path("inner.tar");
    std::fs::write(&inner, {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&archive[..]), &mut v).unwrap();
        v
    })
    .unwrap();
    let items: serde_json::Value =
        serde_json::from_slice(&crate::support::tar_member(&inner, "manifest.json")).unwrap();
    assert_eq!(items[0]["RepoTags"], serde_json::json!([e.tag]));
    match e.platform {
        Some(p) => s.spx(&["verify", "--platform", p, spx_path.to_str().unwrap()]).ok(),
        None => s.spx(&["verify", spx_path.to_str().unwrap()]).ok(),
    };
    spx_path
}

#[test]
fn post_docking_callbacks_readme() {
    let s = Scratch::new();
    sdk_tree(&s, "post_docking_callbacks", "python/examples/post_docking_callbacks");
    let cwd = "python/examples/post_docking_callbacks";
    let outputs = ["aws_docking_callback.spx", "aws_docking_callback_arm64.tar.gz"];
    let archive = verbatim_builds(
        &s,
        cwd,
        &[
            "--dockerfile-paths",
            "Dockerfile.arm64",
            "--build-image-tags",
            "docking_callback:arm64",
            "-i",
            outputs[1],
            "--package-dir",
            ".",
            "--spx",
            outputs[0],
        ],
        "Dockerfile.arm64",
        &outputs,
    );
    assert_eq!(spx::docker_load(&archive), ["docking_callback:arm64"]);
    let py = crate::support::docker_run_arm64(
        "docking_callback:arm64",
        &["python3", "-c", "import six; print(six.__version__)"],
    );
    assert_eq!(py.stdout, "1.16.0\n");
    let r = run(
        &s,
        cwd,
        &["--extra-image-tags", "docking_callback:arm64", "-i", outputs[1], "--package-dir", ".", "--spx", outputs[0]],
    )
    .ok();
    let p = check(
        &s,
        &Expect {
            cwd,
            package: ".",
            spx: outputs[0],
            archive: outputs[1],
            tag: "docking_callback:arm64",
            entries: &["manifest.json", "aws_docking_callback_arm64.tar.gz", "docker-compose.yml", "icon.png"],
            added: &[],
            platform: None,
        },
        &r,
    );
    let x = s.path("x");
    spx::extract(&p, &x);
    assert_eq!(spx::docker_load(&x.join(outputs[1])), ["docking_callback:arm64"]);
}

#[test]
fn extensions_readme_example() {
    let s = Scratch::new();
    sdk_tree(&s, "post_docking_callbacks", "python/examples/post_docking_callbacks");
    let home = s.path("home/Downloads");
    std::fs::create_dir_all(&home).unwrap();
    let out = home.join("aws_docking_callback.spx");
    let out = out.to_str().unwrap();
    let cwd = "python/examples/extensions";
    verbatim_builds(
        &s,
        cwd,
        &[
            "--dockerfile-paths",
            "../post_docking_callbacks/Dockerfile.arm64",
            "--build-image-tags",
            "docking_callback:arm64",
            "--image-archive",
            "aws_docking_callback_arm64.tar.gz",
            "--package-dir",
            "../post_docking_callbacks",
            "--spx",
            out,
        ],
        "../post_docking_callbacks/Dockerfile.arm64",
        &[out, "aws_docking_callback_arm64.tar.gz"],
    );
    let r = run(
        &s,
        cwd,
        &[
            "--extra-image-tags",
            "docking_callback:arm64",
            "--image-archive",
            "aws_docking_callback_arm64.tar.gz",
            "--package-dir",
            "../post_docking_callbacks",
            "--spx",
            out,
        ],
    )
    .ok();
    check(
        &s,
        &Expect {
            cwd,
            package: "../post_docking_callbacks",
            spx: out,
            archive: "aws_docking_callback_arm64.tar.gz",
            tag: "docking_callback:arm64",
            entries: &["manifest.json", "aws_docking_callback_arm64.tar.gz", "docker-compose.yml", "icon.png"],
            added: &[],
            platform: None,
        },
        &r,
    );
}

#[test]
fn signals_coreio_modem_plugin_readme() {
    let s = Scratch::new();
    let cwd = "python/examples/data_acquisition_service/signals_coreio_modem_plugin";
    sdk_tree(&s, "signals_coreio_modem_plugin", cwd);
    let r = run(
        &s,
        cwd,
        &[
            "--extra-image-tags",
            "signals_lte:arm64",
            "-i",
            "signals_lte_arm.tar.gz",
            "--package-dir",
            ".",
            "--spx",
            "signals_lte.spx",
        ],
    )
    .ok();
    check(
        &s,
        &Expect {
            cwd,
            package: ".",
            spx: "signals_lte.spx",
            archive: "signals_lte_arm.tar.gz",
            tag: "signals_lte:arm64",
            entries: &["manifest.json", "signals_lte_arm.tar.gz", "docker-compose.yml"],
            added: &[],
            platform: None,
        },
        &r,
    );
}

#[test]
fn gps_service_trimble_readme() {
    let s = Scratch::new();
    sdk_tree(&s, "gps-trimble_sps986", "python/examples/gps_service/extensions/trimble_sps986");
    let cwd = "python/examples/extensions";
    let pkg = "../gps_service/extensions/trimble_sps986/";
    let r = run(
        &s,
        cwd,
        &[
            "--extra-image-tags",
            "gps_listener_image_arm64:latest",
            "--image-archive",
            "gps_listener_image_arm64.tgz",
            "--package-dir",
            pkg,
            "--spx",
            "trimble_listener.spx",
        ],
    )
    .ok();
    check(
        &s,
        &Expect {
            cwd,
            package: pkg,
            spx: "trimble_listener.spx",
            archive: "gps_listener_image_arm64.tgz",
            tag: "gps_listener_image_arm64:latest",
            entries: &["manifest.json", "gps_listener_image_arm64.tgz", "docker-compose.yml"],
            added: &[],
            platform: None,
        },
        &r,
    );
}

#[test]
fn gps_service_readme_tag_does_not_match_the_compose_file() {
    // the gps README builds gps_listener:trimble_sps986, but the compose file runs
    // gps_listener_image_arm64:latest: the script packages it anyway, spxpack refuses
    let s = Scratch::new();
    sdk_tree(&s, "gps-trimble_sps986", "python/examples/gps_service/extensions/trimble_sps986");
    let r = run(
        &s,
        "python/examples/extensions",
        &[
            "--extra-image-tags",
            "gps_listener:trimble_sps986",
            "--image-archive",
            "gps_listener_image_arm64.tgz",
            "--package-dir",
            "../gps_service/extensions/trimble_sps986/",
            "--spx",
            "trimble_listener.spx",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.error_line().ends_with("docker-compose.yml: services.app.image: gps_listener_image_arm64:latest is not bundled: it is in neither --extra-image-tags nor marked provided"),
        "{}",
        r.stderr
    );
}

#[test]
fn metrics_over_coreio_readme_keeps_the_icon_the_script_drops() {
    let s = Scratch::new();
    let cwd = "python/examples/metrics_over_coreio";
    sdk_tree(&s, "metrics_over_coreio", &format!("{cwd}/extension"));
    std::fs::write(s.path(cwd).join("extension/icon.png"), hello::icon_png()).unwrap();
    let r = run(
        &s,
        cwd,
        &[
            "--extra-image-tags",
            "metrics_over_coreio:arm64",
            "--image-archive",
            "metrics_over_coreio.tar.gz",
            "--icon",
            "./extension/icon.png",
            "--package-dir",
            "./extension/",
            "--spx",
            "metrics_over_modem.spx",
        ],
    )
    .ok();
    // the script resolves --icon inside --package-dir (extension/extension/icon.png) and silently
    // drops it; spxpack finds it and names it in the manifest so the robot shows it
    check(
        &s,
        &Expect {
            cwd,
            package: "extension",
            spx: "metrics_over_modem.spx",
            archive: "metrics_over_coreio.tar.gz",
            tag: "metrics_over_coreio:arm64",
            entries: &["manifest.json", "metrics_over_coreio.tar.gz", "docker-compose.yml", "icon.png"],
            added: &[("icon", "icon.png")],
            platform: None,
        },
        &r,
    );
}

#[test]
fn remote_mission_service_spot_check_readme() {
    let s = Scratch::new();
    let cwd = "python/examples/remote_mission_service/spot_check";
    sdk_tree(&s, "remote_mission_service-spot_check", &format!("{cwd}/extension"));
    std::fs::write(s.path(cwd).join("extension/icon.png"), hello::icon_png()).unwrap();
    let r = run(
        &s,
        cwd,
        &[
            "--extra-image-tags",
            "spot_check_rms:latest",
            "--image-archive",
            "spot_check_rms.tar.gz",
            "--icon",
            "./extension/icon.png",
            "--package-dir",
            "./extension/",
            "--spx",
            "./spot_check_rms.spx",
        ],
    )
    .ok();
    check(
        &s,
        &Expect {
            cwd,
            package: "extension",
            spx: "spot_check_rms.spx",
            archive: "spot_check_rms.tar.gz",
            tag: "spot_check_rms:latest",
            entries: &["manifest.json", "spot_check_rms.tar.gz", "docker-compose.yml", "icon.png"],
            added: &[("icon", "icon.png")],
            platform: None,
        },
        &r,
    );
}

#[test]
fn orbit_webhook_readme_names_a_missing_icon() {
    let s = Scratch::new();
    let cwd = "python/examples/orbit/webhook_integration";
    sdk_tree(&s, "orbit-webhook_integration", &format!("{cwd}/extension"));
    std::fs::write(s.path(cwd).join("extension/icon.png"), hello::icon_png()).unwrap();
    std::fs::write(s.path(cwd).join("extension/.env"), "URL=http://example\n").unwrap();
    let base = [
        "--amd64",
        "--extra-image-tags",
        "webhook_integration:latest",
        "--image-archive",
        "webhook_integration.tar.gz",
    ];
    let tail = ["--package-dir", "./extension/", "--spx", "./webhook_integration.spx"];
    // as documented: --icon ./extension/image.png does not exist (the script skips it silently)
    let args: Vec<&str> = base.iter().chain(&["--icon", "./extension/image.png"]).chain(&tail).copied().collect();
    let r = run(&s, cwd, &args);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.error_line().starts_with("error: --icon ./extension/image.png: not found"), "{}", r.stderr);
    assert!(!s.path(cwd).join("webhook_integration.spx").exists());
    // with the icon that exists: an amd64 image for Orbit, and a warning about installation_target
    let args: Vec<&str> = base.iter().chain(&["--icon", "./extension/icon.png"]).chain(&tail).copied().collect();
    let r = run(&s, cwd, &args).ok();
    assert!(r.stderr.contains("warning: building for linux/amd64 but installation_target is \"spot\""), "{}", r.stderr);
    let p = check(
        &s,
        &Expect {
            cwd,
            package: "extension",
            spx: "webhook_integration.spx",
            archive: "webhook_integration.tar.gz",
            tag: "webhook_integration:latest",
            entries: &["manifest.json", "webhook_integration.tar.gz", "docker-compose.yml", "icon.png"],
            added: &[("icon", "icon.png")],
            platform: Some("linux/amd64"),
        },
        &r,
    );
    let v = s.spx(&["verify", p.to_str().unwrap()]);
    assert_eq!(v.code, 1, "an amd64 image in a spot extension must fail verify: {}", v.stderr);
    assert!(v.stderr.contains("image is linux/amd64, but the target is linux/arm64/v8"), "{}", v.stderr);
    let x = s.path("x");
    spx::extract(&p, &x);
    assert_eq!(spx::docker_load(&x.join("webhook_integration.tar.gz")), ["webhook_integration:latest"]);
    assert_eq!(spx::loaded_architectures(&x.join("webhook_integration.tar.gz")), ["amd64"]);
}

#[test]
fn fire_extinguisher_server_readme() {
    let s = Scratch::new();
    let cwd = "python/examples/network_compute_bridge/fire_extinguisher_server";
    sdk_tree(&s, "fire_extinguisher_server", cwd);
    let r = run(
        &s,
        cwd,
        &[
            "--extra-image-tags",
            "fire_ext_detector:l4t",
            "-i",
            "fire_ext_detector_image.tar.gz",
            "--package-dir",
            ".",
            "--spx",
            "fire_extinguisher_detector.spx",
        ],
    )
    .ok();
    check(
        &s,
        &Expect {
            cwd,
            package: ".",
            spx: "fire_extinguisher_detector.spx",
            archive: "fire_ext_detector_image.tar.gz",
            tag: "fire_ext_detector:l4t",
            entries: &["manifest.json", "fire_ext_detector_image.tar.gz", "docker-compose.yml", "icon.png"],
            added: &[],
            platform: None,
        },
        &r,
    );
}

#[test]
fn custom_parameter_image_server_readme() {
    let s = Scratch::new();
    let cwd = "python/examples/service_customization/custom_parameter_image_server";
    sdk_tree(&s, "custom_parameter_image_server", cwd);
    let r = run(
        &s,
        cwd,
        &[
            "--extra-image-tags",
            "custom_parameter_image_server:l4t",
            "-i",
            "custom_parameter_image_server.tar.gz",
            "--package-dir",
            ".",
            "--spx",
            "custom_parameter_image_server.spx",
        ],
    )
    .ok();
    check(
        &s,
        &Expect {
            cwd,
            package: ".",
            spx: "custom_parameter_image_server.spx",
            archive: "custom_parameter_image_server.tar.gz",
            tag: "custom_parameter_image_server:l4t",
            entries: &["manifest.json", "custom_parameter_image_server.tar.gz", "docker-compose.yml"],
            added: &[],
            platform: None,
        },
        &r,
    );
}

#[test]
fn spot_cam_readme() {
    let s = Scratch::new();
    sdk_tree(&s, "spot_cam", "python/examples/spot_cam");
    let out = s.path("home/Downloads");
    std::fs::create_dir_all(&out).unwrap();
    let out = out.join("spotcam_video.spx");
    let out = out.to_str().unwrap();
    let cwd = "python/examples/extensions";
    let r = run(
        &s,
        cwd,
        &[
            "--extra-image-tags",
            "spotcam_video:latest",
            "--image-archive",
            "spotcam_video.tgz",
            "--icon",
            "../spot_cam/video.jpg",
            "--package-dir",
            "../spot_cam",
            "--spx",
            out,
        ],
    )
    .ok();
    check(
        &s,
        &Expect {
            cwd,
            package: "../spot_cam",
            spx: out,
            archive: "spotcam_video.tgz",
            tag: "spotcam_video:latest",
            entries: &["manifest.json", "spotcam_video.tgz", "docker-compose.yml", "video.jpg"],
            added: &[],
            platform: None,
        },
        &r,
    );
}

#[test]
fn udev_rule_from_the_package_dir_and_stored_once() {
    // the script resolves --udev-rule against the current directory (so from extensions/ it is
    // silently skipped) and stores a file named twice twice; spxpack looks in the package
    // directory and stores it once
    let s = Scratch::new();
    sdk_tree(&s, "gps-leica_ga03", "python/examples/gps_service/extensions/leica_ga03");
    let cwd = "python/examples/extensions";
    let pkg = "../gps_service/extensions/leica_ga03/";
    let r = run(
        &s,
        cwd,
        &[
            "--extra-image-tags",
            "gps_listener_image_arm64:latest",
            "--image-archive",
            "gps_listener_image_arm64.tgz",
            "--udev-rule",
            "99-leica_gps_rules.rules",
            "--additional-files",
            "99-leica_gps_rules.rules",
            "--package-dir",
            pkg,
            "--spx",
            "leica_listener.spx",
        ],
    )
    .ok();
    check(
        &s,
        &Expect {
            cwd,
            package: pkg,
            spx: "leica_listener.spx",
            archive: "gps_listener_image_arm64.tgz",
            tag: "gps_listener_image_arm64:latest",
            entries: &[
                "manifest.json",
                "gps_listener_image_arm64.tgz",
                "docker-compose.yml",
                "99-leica_gps_rules.rules",
            ],
            added: &[],
            platform: None,
        },
        &r,
    );
}
