//! Every extension directory of the Spot SDK (`../shared/spot-sdk-examples`, read in place, not
//! committed) built with `spxpack build DIR` and the compose files untouched: their images are
//! served by the test registry through `--registry-mirror docker.io=…` (fixture images pushed
//! under the same names). Each build succeeds — then the SPX verifies, its archives load on
//! Docker 20.10 under the compose `image:` names, `docker-compose config -q` accepts the packaged
//! compose file and a second build is byte-identical — or fails with the rule the example breaks.

use std::path::{Path, PathBuf};

use crate::support::{Scratch, hello, spx};

/// Copies the example into a scratch directory, adding the icons the SDK ships but the shared copy
/// does not (NOTICE.md: "tests supply their own").
fn prepare(s: &Scratch, example: &str) -> PathBuf {
    let dir = s.path(example);
    spx::copy_dir(&spx::sdk_examples().join(example), &dir);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    if let Some(icon) = m["icon"].as_str() {
        std::fs::write(dir.join(icon), hello::icon_png()).unwrap();
    }
    dir
}

fn build(s: &Scratch, dir: &Path, out_dir: &Path, extra: &[&str]) -> crate::support::Run {
    std::fs::create_dir_all(out_dir).unwrap();
    let mirror = spx::sdk_mirror();
    let mut args = vec!["build", dir.to_str().unwrap(), "--registry-mirror", &mirror];
    args.extend_from_slice(extra);
    s.spx_in(Some(out_dir), &args, &[("SOURCE_DATE_EPOCH", "1700000000")])
}

/// Builds, then checks the SPX with every consumer; returns its path.
fn builds(example: &str, extra: &[&str], output: &str) -> (Scratch, PathBuf) {
    let s = Scratch::new();
    let dir = prepare(&s, example);
    let out = s.path("out");
    let r = build(&s, &dir, &out, extra).ok();
    let spx_path = out.join(output);
    assert!(r.stdout.starts_with("wrote ") && spx_path.is_file(), "{}\n{}", r.stdout, r.stderr);

    let v = s.spx(&["verify", spx_path.to_str().unwrap()]).ok();
    assert!(v.stdout.starts_with("ok: "), "{}", v.stdout);

    let x = s.path("extracted");
    spx::extract(&spx_path, &x);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let compose = std::fs::read(x.join("docker-compose.yml")).unwrap();
    assert_eq!(compose, std::fs::read(dir.join("docker-compose.yml")).unwrap(), "compose not copied byte for byte");
    let mut loaded = Vec::new();
    for a in m["images"].as_array().unwrap() {
        let archive = x.join(a.as_str().unwrap());
        loaded.extend(spx::docker_load(&archive));
        assert!(spx::loaded_architectures(&archive).iter().all(|a| a == "arm64"), "{archive:?} is not arm64");
    }
    let text = String::from_utf8(compose).unwrap();
    for line in text.lines() {
        if let Some(img) = line.trim().strip_prefix("image:") {
            let img = img.trim().trim_matches('"');
            let want = if img.contains(':') { img.to_string() } else { format!("{img}:latest") };
            assert!(loaded.contains(&want), "{want} not loaded by docker load (loaded: {loaded:?})");
        }
    }
    spx::compose_config(&x.join("docker-compose.yml")).ok();

    // byte-identical from another cache and directory
    let s2 = Scratch::new();
    let dir2 = prepare(&s2, example);
    let out2 = s2.path("again");
    build(&s2, &dir2, &out2, extra).ok();
    assert!(std::fs::read(&spx_path).unwrap() == std::fs::read(out2.join(output)).unwrap(), "second build differs");
    (s, spx_path)
}

/// Fails with exit code 1, exactly these `error:` lines (each contains its fragment), no SPX.
fn fails(example: &str, extra: &[&str], errors: &[&str]) {
    let s = Scratch::new();
    let dir = prepare(&s, example);
    let out = s.path("out");
    let r = build(&s, &dir, &out, extra);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let got = crate::support::error_chains(&r.stderr);
    assert_eq!(got.len(), errors.len(), "{}", r.stderr);
    for (line, want) in got.iter().zip(errors) {
        assert!(line.contains(want), "{line:?} does not contain {want:?}\n{}", r.stderr);
    }
    assert!(r.stderr.lines().any(|l| l.starts_with("hint: ")), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "something was written");
}

#[test]
fn every_sdk_example_has_a_test() {
    let src = std::fs::read_to_string(file!()).unwrap();
    for e in std::fs::read_dir(spx::sdk_examples()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(src.contains(&format!("\"{name}\"")), "no test for the SDK example {name}");
        }
    }
}

#[test]
fn custom_parameter_image_server() {
    builds("custom_parameter_image_server", &[], "custom_parameter_image_server.spx");
}

#[test]
fn docs_inline_coreio_openvpn() {
    // no extension_name: the robot uses the file name, which must follow the name rules; the
    // default name (the directory's) contains "coreio", the docs' openvpn_client.spx is fine
    fails("docs-inline-coreio_openvpn", &[], &["\"docs-inline-coreio_openvpn\" contains the reserved word \"coreio\""]);
    builds("docs-inline-coreio_openvpn", &["-o", "openvpn_client.spx"], "openvpn_client.spx");
}

#[test]
fn docs_inline_daq_tutorial_as_published_breaks_compose() {
    fails(
        "docs-inline-daq_tutorial",
        &[],
        &[
            "docker-compose.yml: services.web_cam_image_service.volumes: must be a list, found a string",
            "docker-compose.yml: services.battery_service.volumes: must be a list, found a string",
        ],
    );
}

#[test]
fn docs_inline_daq_tutorial_fixed_two_archives_script_and_hidden_file() {
    let s = Scratch::new();
    let dir = prepare(&s, "docs-inline-daq_tutorial");
    let c = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    let c = c.replace(
        "volumes:\n      /creds/:/opt/payload_credentials/",
        "volumes:\n      - /creds/:/opt/payload_credentials/",
    );
    std::fs::write(dir.join("docker-compose.yml"), c).unwrap();
    std::fs::write(dir.join("setup_device_name.sh"), "#!/bin/sh\necho ok\n").unwrap();
    std::fs::set_permissions(dir.join("setup_device_name.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    std::fs::write(dir.join(".env.tpl"), "ORIG_VIDEO_DEV=/dev/video0\n").unwrap();
    let out = s.path("out");
    build(&s, &dir, &out, &["-o", "daq_tutorial.spx", "--additional-files", "setup_device_name.sh", ".env.tpl"]).ok();
    let p = out.join("daq_tutorial.spx");
    let e: Vec<(String, u32)> = spx::entries(&p).into_iter().map(|(n, m, _)| (n, m)).collect();
    assert_eq!(
        e,
        [
            ("manifest.json".into(), 0o644),
            ("web_cam_image_service.tgz".into(), 0o644),
            ("battery_service.tgz".into(), 0o644),
            ("docker-compose.yml".into(), 0o644),
            (".env.tpl".into(), 0o644),
            ("setup_device_name.sh".into(), 0o755),
            ("1-sdk.camera.rules".into(), 0o644),
        ]
    );
    let x = s.path("x");
    spx::extract(&p, &x);
    assert_eq!(spx::docker_load(&x.join("web_cam_image_service.tgz")), ["web_cam_image_service:latest"]);
    assert_eq!(spx::docker_load(&x.join("battery_service.tgz")), ["battery_service:latest"]);
    s.spx(&["verify", p.to_str().unwrap()]).ok();
}

#[test]
fn extensions_template_placeholders_are_rejected() {
    fails(
        "extensions-template",
        &["-o", "template.spx"],
        &[
            "manifest.json: $.installation_target: \"[spot] or [orbit]\" is not one of spot, orbit",
            "manifest.json: $.images[0]: \"path/to/image.tar.gz\" must be a plain file name",
            "docker-compose.yml: services.app.ports: must be a list, found null",
            "docker-compose.yml: services.app.volumes: must be a list, found null",
            "docker-compose.yml: services.app.image: invalid image reference \"{image}:latest\"",
        ],
    );
}

#[test]
fn fetch_tutorial_coreio_extension_with_data_directory() {
    let s = Scratch::new();
    let dir = prepare(&s, "fetch_tutorial-coreio_extension");
    std::fs::create_dir_all(dir.join("data/dogtoy-model/saved_model")).unwrap();
    std::fs::write(dir.join("data/dogtoy-model/saved_model/saved_model.pb"), vec![7u8; 3000]).unwrap();
    std::fs::write(dir.join("data/dogtoy-model/label_map.pbtxt"), "item { id: 1 name: 'dogtoy' }\n").unwrap();
    std::fs::write(dir.join("data/.keep"), "").unwrap();
    let out = s.path("out");
    build(&s, &dir, &out, &["--additional-files", "data"]).ok();
    let p = out.join("fetch_detector.spx");
    assert_eq!(
        spx::names(&p),
        [
            "manifest.json",
            "fetch_detector_image.tar.gz",
            "docker-compose.yml",
            "data",
            "data/.keep",
            "data/dogtoy-model",
            "data/dogtoy-model/label_map.pbtxt",
            "data/dogtoy-model/saved_model",
            "data/dogtoy-model/saved_model/saved_model.pb",
        ]
    );
    builds("fetch_tutorial-coreio_extension", &[], "fetch_detector.spx");
}

#[test]
fn fire_extinguisher_server() {
    builds("fire_extinguisher_server", &[], "fire_extinguisher_detector.spx");
}

#[test]
fn gps_bynav_c2_m2x() {
    // the SDK script rejects this one (version "1.0" is checked when extension_name is missing);
    // spxpack warns
    let (s, p) = builds("gps-bynav_c2_m2x", &[], "gps-bynav_c2_m2x.spx");
    let v = s.spx(&["verify", p.to_str().unwrap()]).ok();
    assert!(v.stderr.contains("warning: gps-bynav_c2_m2x.spx: manifest.json: $.version: \"1.0\" is not in X.Y.Z form"));
    assert!(spx::names(&p).contains(&"99-bynav_c2_m2x_rules.rules".to_string()));
}

#[test]
fn gps_leica_ga03() {
    let (_s, p) = builds("gps-leica_ga03", &[], "leica_listener.spx");
    assert_eq!(spx::names(&p).last().unwrap(), "99-leica_gps_rules.rules");
}

#[test]
fn gps_trimble_sps986() {
    builds("gps-trimble_sps986", &[], "trimble_listener.spx");
}

#[test]
fn gps_ublox_f9r() {
    builds("gps-ublox_f9r", &[], "ublox_listener.spx");
}

#[test]
fn historical_spot_detect_and_follow() {
    // no extension_name, and the directory name is not a valid extension name
    fails(
        "historical-spot_detect_and_follow-v4.0.1",
        &[],
        &[
            "$.extension_name: not set, so the robot names the extension after the file historical-spot_detect_and_follow-v4.0.1.spx, and \"historical-spot_detect_and_follow-v4.0.1\" contains '.'",
        ],
    );
    builds(
        "historical-spot_detect_and_follow-v4.0.1",
        &["-o", "spot_detect_and_follow.spx"],
        "spot_detect_and_follow.spx",
    );
}

#[test]
fn metrics_over_coreio() {
    builds("metrics_over_coreio", &[], "metrics_over_modem.spx");
}

#[test]
fn orbit_webhook_integration() {
    let s = Scratch::new();
    let dir = prepare(&s, "orbit-webhook_integration");
    let r = build(&s, &dir, &s.path("out"), &[]).ok();
    assert!(r.stderr.contains("services.web_hook_integration.ports: ignored with network_mode: host"), "{}", r.stderr);
    builds("orbit-webhook_integration", &[], "Webhook_listener_for_data_integration.spx");
}

#[test]
fn post_docking_callbacks() {
    builds("post_docking_callbacks", &[], "aws_docking_callback.spx");
}

#[test]
fn remote_mission_service_spot_check() {
    builds("remote_mission_service-spot_check", &[], "spot_check_rms.spx");
}

#[test]
fn signals_coreio_modem_plugin() {
    builds("signals_coreio_modem_plugin", &[], "signals_lte.spx");
}

#[test]
fn spot_cam() {
    let (_s, p) = builds("spot_cam", &[], "spotcam_video.spx");
    assert!(spx::names(&p).contains(&"video.jpg".to_string()));
}
