//! The bundled example (`examples/hello-extension`): its committed image and icon are exactly what
//! the generator makes, the program runs on arm64 (qemu) and prints its message, and the README's
//! first command packages it with no network and no Docker daemon into an SPX that verifies,
//! loads on Docker 20.10, runs, passes `docker-compose config` and is reproducible.

use std::path::{Path, PathBuf};

use crate::support::{Scratch, docker, env, hello, run, spx};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension")
}

#[test]
fn committed_example_matches_its_generator() {
    let dir = example();
    let files = hello::layout_files();
    if std::env::var("SPXPACK_REGENERATE_EXAMPLE").as_deref() == Ok("1") {
        let _ = std::fs::remove_dir_all(dir.join("image"));
        hello::write_layout(&dir.join("image"));
        std::fs::write(dir.join("icon.png"), hello::icon_png()).unwrap();
    }
    let mut on_disk = Vec::new();
    let mut stack = vec![dir.join("image")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                on_disk.push(p.strip_prefix(dir.join("image")).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    on_disk.sort();
    assert_eq!(on_disk, files.keys().cloned().collect::<Vec<_>>(), "files of examples/hello-extension/image");
    for (p, want) in &files {
        assert!(std::fs::read(dir.join("image").join(p)).unwrap() == *want, "image/{p} differs from the generator");
    }
    assert!(std::fs::read(dir.join("icon.png")).unwrap() == hello::icon_png(), "icon.png differs from the generator");
    assert_eq!(hello::elf().len(), 201, "the README says the program is 201 bytes");
}

#[test]
fn generated_program_prints_its_message_on_arm64() {
    assert_eq!(std::env::var("SPXPACK_TEST_BINFMT_AARCH64").as_deref(), Ok("1"), "needs qemu-aarch64 binfmt");
    let s = Scratch::new();
    let prog = s.path("hello");
    std::fs::write(&prog, hello::elf()).unwrap();
    std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = run(prog.to_str().unwrap(), &[], &[]).ok();
    assert_eq!(r.stdout, hello::MESSAGE);
}

/// The README's first command, run where neither Docker nor a network is reachable.
fn build_offline(s: &Scratch, cwd: &Path) -> crate::support::Run {
    let empty = s.path("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(cwd).unwrap();
    s.spx_in(
        Some(cwd),
        &["build", example().to_str().unwrap()],
        &[
            ("PATH", empty.to_str().unwrap()),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
            ("HTTPS_PROXY", "http://127.0.0.1:9"),
            ("HTTP_PROXY", "http://127.0.0.1:9"),
            ("SOURCE_DATE_EPOCH", ""),
        ],
    )
}

#[test]
fn readme_command_packages_the_example_without_network_or_daemon() {
    let s = Scratch::new();
    let out_dir = s.path("work");
    let r = build_offline(&s, &out_dir).ok();
    let spx_path = out_dir.join("hello_extension.spx");
    assert!(r.stdout.contains(&format!("wrote {}", spx_path.display())), "stdout: {}", r.stdout);
    assert_eq!(
        spx::entries(&spx_path).iter().map(|(n, m, _)| (n.as_str(), *m)).collect::<Vec<_>>(),
        [
            ("manifest.json", 0o644),
            ("hello_extension.tar.gz", 0o644),
            ("docker-compose.yml", 0o644),
            ("icon.png", 0o644)
        ]
    );
    assert_eq!(
        String::from_utf8(spx::member(&spx_path, "manifest.json")).unwrap(),
        r#"{"extension_name": "hello_extension", "description": "Prints a greeting: the example extension bundled with spxpack", "version": "1.0.0", "icon": "icon.png", "images": ["hello_extension.tar.gz"], "installation_target": "spot", "date": "1970-01-01T00:00:00"}"#
    );
    assert_eq!(
        spx::member(&spx_path, "docker-compose.yml"),
        std::fs::read(example().join("docker-compose.yml")).unwrap()
    );

    // reproducible: another run, another cache, another directory
    let s2 = Scratch::new();
    let out2 = s2.path("elsewhere");
    build_offline(&s2, &out2).ok();
    assert!(
        std::fs::read(&spx_path).unwrap() == std::fs::read(out2.join("hello_extension.spx")).unwrap(),
        "two builds differ"
    );

    // verify, then the real consumers
    let v = s.spx(&["verify", spx_path.to_str().unwrap()]).ok();
    assert!(v.stdout.starts_with("ok: "), "{}", v.stdout);
    let x = s.path("x");
    spx::extract(&spx_path, &x);
    let _ = env();
    assert_eq!(spx::docker_load(&x.join("hello_extension.tar.gz")), ["hello_extension:1.0.0"]);
    let out = docker(&["run", "--rm", "--platform", "linux/arm64", "hello_extension:1.0.0"]).ok();
    assert_eq!(out.stdout, hello::MESSAGE);
    spx::compose_config(&x.join("docker-compose.yml")).ok();
}
