//! `RUN --mount=type=bind` on arm64 busybox: a file and a directory of the build context
//! (`.dockerignore` applies), an earlier stage, an image and a named context; read-only by
//! default, `rw` with the writes discarded; nothing of a mount in the image; the step's cache
//! key follows the bound content; bad input (one error line, exit 1, nothing written); the
//! userns and proot sandboxes as an unprivileged user.

use crate::run_basics::{build, build_as, ctx, run_in};
use crate::support::{Scratch, env, test_user, unique, user_scratch};

fn cached(v: &serde_json::Value) -> Vec<bool> {
    v["run"]["steps"].as_array().unwrap().iter().map(|s| s["cached"].as_bool().unwrap()).collect()
}

#[test]
fn run_bind_mounts_from_the_context_a_stage_an_image_and_a_named_context() {
    let s = Scratch::new();
    let df = "FROM @BB@ AS build\n\
              ARG V=1\n\
              RUN mkdir -p /out/sub && echo built$V > /out/x && chown 12:34 /out/x && ln -s ../x /out/sub/l\n\
              FROM @BB@\n\
              WORKDIR /w\n\
              ARG REQ=req.txt\n\
              RUN --mount=type=bind,source=$REQ,target=${REQ} cat /w/req.txt > /req-copy\n\
              RUN --mount=target=/mnt/ctx/dir,source=dir find /mnt/ctx/dir | sort > /dir-list && cat /mnt/ctx/dir/sub/b >> /dir-list && stat -c %a /mnt/ctx/dir /mnt/ctx/dir/sub >> /dir-list\n\
              RUN --mount=from=build,source=/out,target=/o stat -c '%u:%g %a' /o/x > /from-stage && readlink /o/sub/l >> /from-stage && cat /o/sub/l >> /from-stage\n\
              RUN --mount=type=bind,from=@IMG@,source=/bin/busybox,target=/bb cmp /bb /bin/busybox && echo same > /from-image\n\
              RUN --mount=type=bind,source=dir,target=/rw,rw echo changed > /rw/a && touch /rw/new && cat /rw/a > /rw-seen\n\
              RUN --mount=type=bind,source=dir,target=/ro (echo x > /ro/a) 2> /ro-err; cat /ro/a > /ro-seen\n\
              RUN --mount=type=bind,source=dir,target=/rw cat /rw/a > /rw-after; ls /rw > /rw-ls\n\
              RUN --mount=type=bind,from=tools,source=tool.txt,target=/t cat /t > /from-named\n"
        .replace("@IMG@", &format!("{}/busybox:arm64", env().plain));
    let c = ctx(
        &s,
        &df,
        &[
            ("req.txt", "six==1.16.0\n"),
            ("dir/a", "a\n"),
            ("dir/sub/b", "b\n"),
            ("dir/skip.key", "k\n"),
            (".dockerignore", "**/*.key\n"),
        ],
    );
    // modes are the context's, the mounted directory's own included
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(c.join("dir"), std::fs::Permissions::from_mode(0o751)).unwrap();
    std::fs::set_permissions(c.join("dir/sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let tools = s.path("tools");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::write(tools.join("tool.txt"), "tool v1\n").unwrap();
    let named = format!("tools={}", tools.display());
    let tag = format!("{}:t", unique("spxpack-it-run-bind"));
    let args = ["--isolation", "root", "--build-context", &named];
    let (r, v) = build(&s, &c, &tag, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(v["run"]["sandbox"], "root", "{v}");
    assert_eq!(
        run_in(
            &tag,
            "cat /req-copy /dir-list /from-stage /from-image /rw-seen /ro-err /ro-seen /rw-after /rw-ls /from-named; \
             for p in /w/req.txt /mnt /o /bb /rw /ro /t; do test -e $p && echo leaked $p; done; ls /w | wc -l"
        ),
        "six==1.16.0\n\
         /mnt/ctx/dir\n/mnt/ctx/dir/a\n/mnt/ctx/dir/sub\n/mnt/ctx/dir/sub/b\nb\n751\n750\n\
         12:34 644\n../x\nbuilt1\n\
         same\n\
         changed\n\
         /bin/sh: can't create /ro/a: Read-only file system\na\n\
         a\na\nsub\n\
         tool v1\n\
         0\n"
    );
    // the step's layer holds only what the command wrote
    let steps = v["run"]["steps"].as_array().unwrap();
    let entries: Vec<u64> = steps.iter().map(|s| s["layer"]["entries"].as_u64().unwrap()).collect();
    assert_eq!(entries, vec![4, 2, 1, 1, 1, 1, 2, 2, 1], "{v}");
    // rw wrote into a private copy: the context is untouched
    assert_eq!(std::fs::read_to_string(c.join("dir/a")).unwrap(), "a\n");
    assert!(!c.join("dir/new").exists());

    // no change: every step from the cache
    let (r, v) = build(&s, &c, &tag, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(cached(&v).iter().all(|c| *c), "{v}");
    // an ignored file is not part of what the mount shows
    std::fs::write(c.join("dir/skip.key"), "changed\n").unwrap();
    let (_, v) = build(&s, &c, &tag, &args);
    assert!(cached(&v).iter().all(|c| *c), "{v}");
    // the named context's file changed: only the step that binds it (the last) runs again
    std::fs::write(tools.join("tool.txt"), "tool v2\n").unwrap();
    let (_, v) = build(&s, &c, &tag, &args);
    assert_eq!(cached(&v), vec![true, true, true, true, true, true, true, true, false], "{v}");
    assert_eq!(run_in(&tag, "cat /from-named"), "tool v2\n");
    // the stage the mount reads changed: that step and those after it run again
    let mut with_v = args.to_vec();
    with_v.extend(["--build-arg", "V=2"]);
    let (_, v) = build(&s, &c, &tag, &with_v);
    assert_eq!(cached(&v), vec![false, true, true, false, false, false, false, false, false], "{v}");
    assert_eq!(run_in(&tag, "tail -n 1 /from-stage"), "built2\n");
    // a bound context file changed
    std::fs::write(c.join("req.txt"), "six==1.17.0\n").unwrap();
    let (_, v) = build(&s, &c, &tag, &with_v);
    assert_eq!(cached(&v)[..3], [true, false, false], "{v}");
    assert_eq!(run_in(&tag, "cat /req-copy"), "six==1.17.0\n");
}

#[test]
fn run_bind_mount_bad_input_is_one_error_line_and_nothing_written() {
    let s = Scratch::new();
    let files = [("req.txt", "r\n"), ("secret.key", "k\n"), (".dockerignore", "*.key\n")];
    for (run, want, hint) in [
        (
            "--mount=type=bind,source=nope.txt,target=/n",
            "RUN --mount=type=bind source nope.txt not found in the build context",
            "relative to the context",
        ),
        (
            "--mount=type=bind,source=leak,target=/n",
            "RUN --mount=type=bind source leak leads outside the build context",
            "inside the context",
        ),
        (
            "--mount=type=bind,source=secret.key,target=/n",
            "RUN --mount=type=bind source secret.key is excluded by .dockerignore (.dockerignore:1: *.key)",
            "!secret.key",
        ),
        (
            "--mount=type=bind,from=biuld,target=/n",
            "RUN --mount from=biuld: no stage named \"biuld\" before this one",
            "did you mean from=build?",
        ),
        (
            "--mount=type=bind,from=later,target=/n",
            "cannot mount from stage \"later\", it needs to be defined before the current stage",
            "reference",
        ),
        ("--mount=type=bind,source=req.txt", "RUN --mount=type=bind needs target=PATH", "target=/tmp/requirements.txt"),
        ("--mount=type=bind,source=req.txt,target=/", "RUN --mount: cannot mount over /", "below the root"),
        (
            "--mount=type=bind,source=req.txt,target=/n,uid=1000",
            "RUN --mount=type=bind: uid= is not allowed for bind mounts",
            "type=cache",
        ),
    ] {
        let df = format!("FROM @BB@ AS build\nRUN {run} true\nFROM @BB@ AS later\nFROM build\n");
        let c = ctx(&s, &df, &files);
        let _ = std::fs::remove_file(c.join("leak"));
        std::os::unix::fs::symlink("/etc/shadow", c.join("leak")).unwrap();
        let out = s.path("o.tar");
        let r = s.spx(&["image", "build", "-q", "-o", out.to_str().unwrap(), c.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{run}: {}", r.stderr);
        let line = r.error_line();
        assert!(line.starts_with(&format!("error: {}/Dockerfile:2:1: {want}", c.display())), "{run}: {}", r.stderr);
        assert!(r.stderr.contains("\nhint: ") && r.stderr.contains(hint), "{run}: {}", r.stderr);
        assert_eq!(r.stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", r.stderr);
        assert!(!out.exists(), "{run}");
    }
}

#[test]
fn run_bind_mounts_in_the_userns_and_proot_sandboxes_as_an_unprivileged_user() {
    let user = test_user();
    for iso in ["userns", "proot"] {
        let s = Scratch { dir: user_scratch(user) };
        let c = ctx(
            &s,
            "FROM @BB@ AS build\n\
             RUN mkdir /out && echo built > /out/x\n\
             FROM @BB@\n\
             RUN --mount=type=bind,source=req.txt,target=/tmp/req.txt cat /tmp/req.txt > /req-copy\n\
             RUN --mount=target=/src find /src/dir | sort > /dir-list\n\
             RUN --mount=from=build,source=/out/x,target=/x cat /x > /from-stage\n\
             RUN --mount=source=dir,target=/rw,rw echo changed > /rw/a && cat /rw/a > /rw-seen\n\
             RUN --mount=source=dir,target=/rw cat /rw/a > /rw-after\n",
            &[("req.txt", "r\n"), ("dir/a", "a\n"), ("dir/sub/b", "b\n")],
        );
        let tag = format!("{}:{iso}", unique("spxpack-it-run-bind"));
        let (r, v) = build_as(user, &s, &c, &tag, &["--isolation", iso]);
        assert_eq!(r.code, 0, "{iso}: {}", r.stderr);
        assert_eq!(v["run"]["sandbox"], iso, "{v}");
        assert_eq!(
            run_in(
                &tag,
                "cat /req-copy /dir-list /from-stage /rw-seen /rw-after; \
                 for p in /tmp/req.txt /src /x /rw; do test -e $p && echo leaked $p; done; true"
            ),
            "r\n/src/dir\n/src/dir/a\n/src/dir/sub\n/src/dir/sub/b\nbuilt\nchanged\na\n",
            "{iso}"
        );
        assert_eq!(std::fs::read_to_string(c.join("dir/a")).unwrap(), "a\n");
        let (r, v) = build_as(user, &s, &c, &tag, &["--isolation", iso]);
        assert_eq!(r.code, 0, "{iso}: {}", r.stderr);
        assert!(cached(&v).iter().all(|c| *c), "{iso}: {v}");
    }
}
