//! Bad Dockerfiles and contexts: one `error:` line that names `file:line:col`, a `hint:`,
//! exit code 1, and no output file.

use std::path::PathBuf;

use crate::support::{Scratch, env};

/// Writes a context with a Dockerfile and files (`name` → content; content `->target` makes
/// a symlink).
fn context(s: &Scratch, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile.replace("@BASE@", &format!("{}/busybox:multi", env().plain)))
        .unwrap();
    for (name, content) in files {
        let p = ctx.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        match content.strip_prefix("->") {
            Some(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
            None => std::fs::write(&p, content).unwrap(),
        }
    }
    ctx
}

/// Runs the build, checks exit 1, the `error:` line (all `needles` in it), a `hint:` line
/// and that no output was written. Returns the error line.
#[track_caller]
fn fails(dockerfile: &str, files: &[(&str, &str)], extra: &[&str], needles: &[&str]) -> String {
    let s = Scratch::new();
    let ctx = context(&s, dockerfile, files);
    let out = s.path("out.tar");
    let df = ctx.join("Dockerfile");
    let mut args = vec!["image", "build", "-f", df.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = s.spx(&args);
    assert_eq!(r.code, 1, "expected exit 1, got {}: {}", r.code, r.stderr);
    let line = r.error_line();
    for n in needles {
        let n = n.replace("@DF@", df.to_str().unwrap());
        assert!(line.contains(&n), "{n:?} not in {line:?}");
    }
    assert_eq!(r.stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", r.stderr);
    assert!(r.stderr.lines().any(|l| l.starts_with("hint: ")), "no hint in {:?}", r.stderr);
    assert!(!out.exists(), "an output file was left behind");
    let left: Vec<_> = std::fs::read_dir(s.dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.iter().all(|n| !n.to_string_lossy().contains("out.tar")), "partial output left: {left:?}");
    line
}

#[test]
fn build_errors_unknown_instruction_and_bad_flags() {
    fails("FROM @BASE@\nCOPY a /a\nFOOBAR x\n", &[("a", "a")], &[], &["@DF@:3:1: unknown instruction FOOBAR"]);
    let l = fails("FROM @BASE@\nCOPY a /a\nCOPPY a /b\n", &[("a", "a")], &[], &["@DF@:3:1: unknown instruction COPPY"]);
    assert!(!l.contains("hint"), "the hint goes on its own line");
    fails("FROM @BASE@\nCOPY --chmown=1 a /a\n", &[("a", "a")], &[], &["@DF@:2:6: unknown flag --chmown for COPY"]);
    fails("FROM @BASE@\nCOPY --chmod=999 a /a\n", &[("a", "a")], &[], &["@DF@:2:6: invalid chmod parameter \"999\""]);
    fails("FROM @BASE@\nEXPOSE 80/xtp\n", &[], &[], &["@DF@:2:1: invalid port \"80/xtp\""]);
    fails("FROM @BASE@\nSTOPSIGNAL SIGNOPE\n", &[], &[], &["@DF@:2:1: invalid signal: SIGNOPE"]);
}

#[test]
fn build_errors_missing_sources_and_stages() {
    fails(
        "FROM @BASE@\nCOPY here.txt missing.txt /app/\n",
        &[("here.txt", "x")],
        &[],
        &["@DF@:2:1: COPY source missing.txt not found in the build context"],
    );
    fails("FROM @BASE@\nCOPY *.nope /app/\n", &[], &[], &["@DF@:2:1: COPY: no source files were specified"]);
    fails(
        "FROM @BASE@ AS build\nCOPY a /a\nFROM @BASE@\nCOPY --from=biuld /a /b\n",
        &[("a", "a")],
        &[],
        &["@DF@:4:6: COPY --from=biuld: no stage named \"biuld\""],
    );
    fails(
        "FROM @BASE@ AS one\nCOPY --from=two /a /b\nFROM @BASE@ AS two\n",
        &[],
        &["--target", "one"],
        &["@DF@:2:6: cannot copy from stage \"two\", it needs to be defined before the current stage"],
    );
    fails("FROM @BASE@ AS a\n", &[], &["--target", "b"], &["target stage \"b\" could not be found"]);
}

#[test]
fn build_errors_args_used_before_definition() {
    fails("FROM ${BASE}\nARG BASE=@BASE@\n", &[], &[], &["@DF@:1:1: base name (${BASE}) should not be blank"]);
    fails("ARG V\nFROM @BASE@\nARG V\nENV X=${V:?required}\n", &[], &[], &["@DF@:4:1:", "V: required"]);
}

#[test]
fn build_errors_dockerignore_and_symlink_escape() {
    fails(
        "FROM @BASE@\nCOPY app.py /app/\n",
        &[("app.py", "print()"), (".dockerignore", "# python\n*.py\n")],
        &[],
        &["@DF@:2:1: COPY source app.py is excluded by .dockerignore (.dockerignore:2: *.py)"],
    );
    fails(
        "FROM @BASE@\nCOPY up/passwd /x\n",
        &[("up", "->../../../../../../etc")],
        &[],
        &["@DF@:2:1: COPY source up/passwd leads outside the build context", "up -> ../../../../../../etc"],
    );
}

#[test]
fn build_errors_run_names_its_line() {
    let l = fails(
        "FROM @BASE@\nCOPY a /a\nRUN --device=/dev/kvm echo hi\n",
        &[("a", "a")],
        &[],
        &["@DF@:3:1: RUN --device is not supported by spxpack"],
    );
    assert!(!l.contains("COPY"), "{l}");
}
