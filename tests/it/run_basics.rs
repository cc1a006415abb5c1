//! RUN steps through `spxpack image build` on arm64 busybox: the Docker 20.10 classic-builder
//! oracle (shell and exec form, ARG/ENV/WORKDIR/SHELL/USER, whiteouts, links, setuid, chown),
//! the same Dockerfile in a user namespace (ownership as documented), heredocs, `--mount`
//! (cache, secret, tmpfs), `--network=none`, multi-stage builds, the build cache, and a failing
//! step's error (file:line, exit code, last output lines).

use std::path::{Path, PathBuf};

use crate::build_util::{compare, export_fs, fixture, fs_diff};
use crate::support::{Run, Scratch, docker, env, run_as, sandbox_bin, test_user, unique, user_scratch};

pub fn busybox() -> String {
    format!("oci:{}:arm64", env().busybox_oci.display())
}

/// A context with this Dockerfile (and files, in subdirectories too), readable by every user.
pub fn ctx(s: &Scratch, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let c = s.path("ctx");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("Dockerfile"), dockerfile.replace("@BB@", &busybox())).unwrap();
    for (n, t) in files {
        std::fs::create_dir_all(c.join(n).parent().unwrap()).unwrap();
        std::fs::write(c.join(n), t).unwrap();
    }
    crate::support::run("chmod", &["-R", "a+rX", s.dir.path().to_str().unwrap()], &[]).ok();
    c
}

/// `spxpack image build --json -t TAG EXTRA… CONTEXT` with the scratch's cache; the archive is
/// loaded into the test daemon when the build succeeds.
pub fn build(s: &Scratch, c: &Path, tag: &str, extra: &[&str]) -> (Run, serde_json::Value) {
    build_with(s, c, tag, extra, &|args| s.spx(args))
}

/// [`build`] as `user` (a scratch from [`user_scratch`]).
pub fn build_as(user: &str, s: &Scratch, c: &Path, tag: &str, extra: &[&str]) -> (Run, serde_json::Value) {
    let (cache, home) = (s.cache(), s.path("home"));
    build_with(s, c, tag, extra, &|args| {
        let mut argv = vec![sandbox_bin().to_str().unwrap()];
        argv.extend_from_slice(args);
        run_as(user, &argv, &[("SPXPACK_CACHE_DIR", cache.to_str().unwrap()), ("HOME", home.to_str().unwrap())])
    })
}

fn build_with(
    s: &Scratch,
    c: &Path,
    tag: &str,
    extra: &[&str],
    spx: &dyn Fn(&[&str]) -> Run,
) -> (Run, serde_json::Value) {
    let out = s.path(&format!("{}.tar", tag.replace(['/', ':'], "_")));
    let mut args = vec!["image", "build", "--json", "-t", tag, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(c.to_str().unwrap());
    let r = spx(&args);
    let v = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
    if r.code == 0 {
        docker(&["load", "-q", "-i", out.to_str().unwrap()]).ok();
    }
    (r, v)
}

pub fn run_in(tag: &str, script: &str) -> String {
    let r = crate::support::docker_run_arm64(tag, &["sh", "-c", script]);
    r.stdout
}

#[test]
fn run_oracle_docker_classic_builder() {
    let s = Scratch::new();
    let c = fixture(&s, "run", &[]);
    let cmp = compare(&s, &c, "run", "Dockerfile", &[], &[]);
    assert_eq!(
        run_in(
            &cmp.spx_tag,
            "cat /w/shell /w/exec /w/shell2 /tmp/user /tmp/apphome; stat -c '%a %u:%g %n' /w/shell2 /w/d /home/u /tmp/apphome"
        ),
        "from-arg from-env /w 0 /root\nexec from-env\nshell\n/ 1000:1000\n/home/app\n4755 0:0 /w/shell2\n755 1000:1000 /w/d\n\
         700 1000:50 /home/u\n644 1001:1001 /tmp/apphome\n"
    );
}

/// The oracle's Dockerfile as an unprivileged user: the steps run as root of a single-uid user
/// namespace, so `chown` to other ids is faked and those paths stay root's; what the step ran
/// as `USER 1000` is attributed to 1000.
#[test]
fn run_oracle_in_a_user_namespace_differs_only_in_faked_chowns() {
    let user = test_user();
    let s = Scratch { dir: user_scratch(user) };
    let c = fixture(&s, "run", &[]);
    crate::support::run("chmod", &["-R", "a+rX", s.dir.path().to_str().unwrap()], &[]).ok();
    let tag = unique("spxpack-it-run-userns");
    let (docker_tag, spx_tag) = (format!("{tag}:docker"), format!("{tag}:spx"));
    let d = crate::build_util::docker_build(&c, "Dockerfile", &docker_tag, &[]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    let (r, v) = build_as(user, &s, &c, &spx_tag, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["run"]["sandbox"], "userns");
    let diff = fs_diff(&export_fs(&docker_tag), &export_fs(&spx_tag), &[]);
    let paths: Vec<&str> = diff.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(paths, vec!["/home/u", "/tmp/user", "/w/d"], "{}", diff.join("\n"));
    for l in [&diff[0], &diff[2]] {
        assert!(l.contains("uid: 1000") && l.ends_with("uid: 0, gid: 0, size: 0, sha256: \"\", link: \"\" }"), "{l}");
    }
    // USER 1000 cannot be switched to: the step runs as root (`id` says so), and what it
    // makes belongs to 1000
    assert_eq!(
        run_in(&spx_tag, "cat /tmp/user; stat -c '%u:%g' /tmp/user /tmp/made-by-user"),
        "/ 0:0\n1000:1000\n1000:1000\n"
    );
}

#[test]
fn run_heredocs_mounts_network_and_multistage() {
    let s = Scratch::new();
    let secret = s.path("token");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let c = ctx(
        &s,
        "FROM @BB@ AS tools\n\
         RUN echo built-in-tools > /tool\n\
         FROM @BB@\n\
         ENV E=env\n\
         RUN <<EOF\necho \"lone $E\" > /lone\nEOF\n\
         RUN <<EOF sh\necho \"piped $E\" > /piped\nEOF\n\
         RUN <<'EOF'\n#!/bin/sh\necho \"script $0 $E\" > /script\nEOF\n\
         RUN --mount=type=cache,target=/var/cache/x echo run >> /var/cache/x/runs && wc -l < /var/cache/x/runs > /runs\n\
         RUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok > /secret-copy && stat -c %a /run/secrets/tok > /secret-mode\n\
         RUN --mount=type=secret,id=tok,env=TOK echo \"$TOK\" > /secret-env\n\
         RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && grep -c ' /scratch ' /proc/mounts > /tmpfs\n\
         RUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /net-none\n\
         COPY --from=tools /tool /tool\n\
         RUN cat /tool > /tool-copy\n",
        &[],
    );
    let tag = format!("{}:t", unique("spxpack-it-run-features"));
    let tok = format!("id=tok,src={}", secret.display());
    let (r, v) = build(&s, &c, &tag, &["--secret", &tok]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = run_in(
        &tag,
        "cat /lone /piped /script /runs /secret-copy; echo; cat /secret-mode /secret-env /tmpfs /net-none /tool-copy; \
         ls -d /run /scratch /var/cache/x 2>&1 | wc -l; test -e /var || echo no-var",
    );
    assert_eq!(
        got,
        "lone env\npiped env\nscript /dev/pipes/EOF env\n1\ns3cr3t\n400\ns3cr3t\n1\nlo\nbuilt-in-tools\n3\nno-var\n"
    );
    let hist = docker(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]).ok().stdout;
    assert!(hist.contains("RUN /bin/sh -c echo \"lone $E\" > /lone\n"), "{hist}");
    assert!(!hist.contains("s3cr3t"), "{hist}");
    assert!(v["run"]["steps"].as_array().unwrap().iter().all(|s| s["cached"] == false), "{v}");

    // the cache mount outlives the build; --no-cache runs every step again
    let (r, _) = build(&s, &c, &tag, &["--secret", &tok, "--no-cache"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(run_in(&tag, "cat /runs"), "2\n");
    // a required secret the build does not have
    let (r, _) = build(&s, &c, &tag, &["--no-cache"]);
    assert_eq!(r.code, 1);
    assert!(
        r.error_line().ends_with("/Dockerfile:16:1: RUN --mount=type=secret,id=tok: no secret tok was given"),
        "{}",
        r.stderr
    );
}

#[test]
fn run_failing_step_names_the_line_exit_code_and_last_output() {
    let s = Scratch::new();
    let c = ctx(
        &s,
        "FROM @BB@\nRUN echo fine > /fine\nRUN for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3\n",
        &[],
    );
    let out = s.path("o.tar");
    let r = s.spx(&["image", "build", "-q", "-o", out.to_str().unwrap(), c.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("error:")).unwrap();
    assert_eq!(
        lines[at],
        format!(
            "error: {}/Dockerfile:3:1: RUN for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3 failed with exit code 3",
            c.display()
        )
    );
    assert_eq!(lines[at + 1], "hint: the last lines of its output:");
    assert_eq!(&lines[lines.len() - 2..], ["  | line 30", "  | oops"]);
    assert!(!out.exists());
    let work: Vec<_> = std::fs::read_dir(s.cache().join("rootfs/work")).unwrap().collect();
    assert!(work.is_empty(), "{work:?}");
    // the step before the failure is cached; the failing one runs again
    std::fs::write(
        c.join("Dockerfile"),
        "FROM @BB@\nRUN echo fine > /fine\nRUN cat /fine\n".replace("@BB@", &busybox()),
    )
    .unwrap();
    let (r, v) = build(&s, &c, "fixed:t", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = v["run"]["steps"].as_array().unwrap();
    assert_eq!((st[0]["cached"].as_bool(), st[1]["cached"].as_bool()), (Some(true), Some(false)), "{v}");
    assert_eq!(st[1]["output"], serde_json::json!(["fine"]));
}

#[test]
fn run_unsupported_flags_are_errors_that_name_the_line() {
    let s = Scratch::new();
    for (flag, want) in [
        ("--mount=type=ssh", "RUN --mount=type=ssh is not supported by spxpack"),
        ("--device=/dev/kvm", "RUN --device is not supported by spxpack"),
        ("--security=insecure", "RUN --security=insecure is not supported by spxpack"),
        ("--network=bridge", "RUN --network=bridge: unknown network mode"),
    ] {
        let c = ctx(&s, &format!("FROM @BB@\nRUN {flag} true\n"), &[]);
        let r = s.spx(&["image", "build", "-q", "-o", s.path("o.tar").to_str().unwrap(), c.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{flag}");
        assert_eq!(r.error_line(), format!("error: {}/Dockerfile:2:1: {want}", c.display()), "{flag}");
        assert!(r.stderr.contains("\nhint: "), "{flag}: {}", r.stderr);
    }
}
