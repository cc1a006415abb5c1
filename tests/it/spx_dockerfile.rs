//! `spxpack build` with images built from Dockerfiles by spxpack's builder: compose `build:`
//! sections and the SDK script's `--dockerfile-paths/--build-image-tags`. The SPX's image loads
//! into Docker 20.10 and runs under qemu.

use std::path::{Path, PathBuf};

use crate::support::{Scratch, env, spx};

/// An extension whose one service is built from `app/Dockerfile` (FROM the test registry's busybox).
pub(crate) fn ext(s: &Scratch, tag: &str, compose_build: &str) -> PathBuf {
    let dir = s.path("ext");
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"extension_name": "built_ext", "description": "d", "version": "1.0.0", "images": ["built.tar.gz"]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!(
            "services:\n  app:\n    image: \"{tag}\"\n{compose_build}    restart: unless-stopped\n    network_mode: host\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("app/Dockerfile"),
        format!(
            "ARG BASE={}/busybox:multi\nFROM $BASE\nARG GREETING=hello\nENV GREETING=$GREETING\nCOPY greet.sh /usr/local/bin/\nCMD [\"/bin/sh\", \"/usr/local/bin/greet.sh\"]\n",
            env().plain
        ),
    )
    .unwrap();
    std::fs::write(dir.join("app/greet.sh"), "echo \"$GREETING from $(uname -m)\"\n").unwrap();
    dir
}

fn load_and_run(spx_path: &Path, s: &Scratch, tag: &str) -> String {
    let x = s.path("x");
    spx::extract(spx_path, &x);
    assert_eq!(spx::docker_load(&x.join("built.tar.gz")), [tag]);
    crate::support::docker_run_arm64(tag, &[]).stdout
}

#[test]
fn compose_build_sections_are_built_for_the_target_platform() {
    let s = Scratch::new();
    let dir = ext(&s, "built_compose:1.0", "    build:\n      context: app\n      args:\n        GREETING: bonjour\n");
    let out = s.path("built_ext.spx");
    s.spx(&["build", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]).ok();
    s.spx(&["verify", out.to_str().unwrap()]).ok();
    assert_eq!(load_and_run(&out, &s, "built_compose:1.0").trim(), "bonjour from aarch64");
    // reproducible: a rebuild (build cache warm) gives the same bytes
    let again = s.path("again.spx");
    s.spx(&["build", dir.to_str().unwrap(), "-o", again.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn sdk_dockerfile_flags_build_the_image_into_the_image_archive() {
    let s = Scratch::new();
    let dir = ext(&s, "built_sdk:1.0", "");
    let r = s.spx_in(
        Some(&dir),
        &[
            "build",
            "--dockerfile-paths",
            "app/Dockerfile",
            "--build-image-tags",
            "built_sdk:1.0",
            "--image-archive",
            "built.tar.gz",
            "--package-dir",
            ".",
            "--spx",
            "built_ext.spx",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = dir.join("built_ext.spx");
    assert!(dir.join("built.tar.gz").is_file(), "the -i archive is written too, as the SDK script does");
    assert_eq!(load_and_run(&out, &s, "built_sdk:1.0").trim(), "hello from aarch64");
}

#[test]
fn run_steps_run_in_the_sandbox_and_a_failing_one_names_its_line() {
    let s = Scratch::new();
    let dir = ext(&s, "built_run:1.0", "    build: app\n");
    let df = dir.join("app/Dockerfile");
    let text = std::fs::read_to_string(&df).unwrap();
    std::fs::write(
        &df,
        text.replace("COPY greet.sh", "RUN echo \"$GREETING from RUN on $(uname -m)\" > /ran\nCOPY greet.sh"),
    )
    .unwrap();
    std::fs::write(dir.join("app/greet.sh"), "cat /ran\n").unwrap();
    let out = s.path("built_ext.spx");
    s.spx(&["build", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]).ok();
    assert_eq!(load_and_run(&out, &s, "built_run:1.0").trim(), "hello from RUN on aarch64");
    // a failing step: its Dockerfile line, nothing written
    std::fs::write(&df, text.replace("COPY greet.sh", "RUN echo hi; exit 4\nCOPY greet.sh")).unwrap();
    let out = s.path("failed.spx");
    let r = s.spx(&["build", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.error_line().contains("app/Dockerfile:5:1: RUN echo hi; exit 4 failed with exit code 4"), "{}", r.stderr);
    assert!(r.stderr.contains("\n  | hi\n"), "{}", r.stderr);
    assert!(!out.exists());
}
