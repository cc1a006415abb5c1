//! Where outputs may go, for every command that writes one (`build`, `pull`, `image build`):
//! never over an input — the same file by any path (symlink, hard link, `..`) or a file inside
//! a tree the command reads whole — and never over something that is not a regular file
//! (`/dev/stdout`, `/dev/null`, a FIFO). Each refusal is one `error:` line naming the output and
//! the input, directly followed by a `hint:`, exit code 1, found before any work, and the input
//! keeps its bytes. A symlink to a regular file is written through and stays a symlink.
//! Offline: the bundled example's OCI layout is the only image.

use std::path::{Path, PathBuf};

use crate::support::{Run, Scratch, spx};

fn ext(s: &Scratch) -> PathBuf {
    let dir = s.path("ext");
    spx::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension"), &dir);
    dir
}

/// Exit 1, exactly one `error:` line holding every fragment, the next line a `hint:`.
#[track_caller]
fn refused(r: &Run, frags: &[&str]) {
    assert_eq!(r.code, 1, "exit code; stderr: {}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    let errors: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {}", r.stderr);
    for f in frags {
        assert!(lines[errors[0]].contains(f), "{:?} lacks {f:?}", lines[errors[0]]);
    }
    assert!(lines.get(errors[0] + 1).is_some_and(|l| l.starts_with("hint: ")), "no hint after: {}", r.stderr);
    assert!(!r.stderr.contains("resolved "), "work started before the check: {}", r.stderr);
}

/// Runs `args` in `cwd` and checks the refusal and that `kept` still has its bytes.
#[track_caller]
fn refuses_and_keeps(s: &Scratch, cwd: &Path, args: &[&str], kept: &Path, frags: &[&str]) {
    let before = std::fs::read(kept).unwrap();
    let r = s.spx_in(Some(cwd), args, &[]);
    refused(&r, frags);
    assert!(std::fs::read(kept).unwrap() == before, "{} was changed", kept.display());
    let partial: Vec<_> =
        walk(s.dir.path()).into_iter().filter(|p| p.to_string_lossy().ends_with(".partial")).collect();
    assert!(partial.is_empty(), "left behind: {partial:?}");
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}

#[test]
fn build_outputs_that_are_inputs_are_refused_and_the_inputs_kept() {
    let s = Scratch::new();
    let dir = ext(&s);
    let root = s.dir.path();
    // the manifest and the compose file, by plain path, through `..`, a symlink and a hard link
    refuses_and_keeps(
        &s,
        root,
        &["build", "ext", "-o", "ext/manifest.json"],
        &dir.join("manifest.json"),
        &["the output ext/manifest.json: would overwrite the manifest"],
    );
    refuses_and_keeps(
        &s,
        root,
        &["build", "ext", "-o", "ext/image/../docker-compose.yml"],
        &dir.join("docker-compose.yml"),
        &["the output ext/image/../docker-compose.yml: would overwrite the compose file", "docker-compose.yml"],
    );
    std::os::unix::fs::symlink("ext/manifest.json", s.path("link.spx")).unwrap();
    refuses_and_keeps(
        &s,
        root,
        &["build", "ext", "-o", "link.spx"],
        &dir.join("manifest.json"),
        &["the output link.spx: would overwrite the manifest"],
    );
    std::fs::hard_link(dir.join("icon.png"), s.path("hard.spx")).unwrap();
    refuses_and_keeps(
        &s,
        root,
        &["build", "ext", "-o", "hard.spx"],
        &dir.join("icon.png"),
        &["the output hard.spx: would overwrite the packaged file", "icon.png"],
    );
    // inside a tree read whole: the OCI layout of x-spxpack.source
    let index = dir.join("image/index.json");
    refuses_and_keeps(
        &s,
        root,
        &["build", "ext", "-o", "ext/image/x.spx"],
        &index,
        &["the output ext/image/x.spx: is inside the image source", "which is read whole"],
    );
    // an additional-files directory
    std::fs::create_dir(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/a.txt"), "a").unwrap();
    refuses_and_keeps(
        &s,
        root,
        &["build", "ext", "--additional-files", "data", "-o", "ext/data/x.spx"],
        &dir.join("data/a.txt"),
        &["is inside the additional files directory", "ext/data"],
    );
    assert!(!dir.join("data/x.spx").exists());
}

#[test]
fn build_outputs_inside_a_compose_build_context_are_refused_unless_dockerignored() {
    let s = Scratch::new();
    let dir = ext(&s);
    std::fs::write(
        dir.join("docker-compose.yml"),
        "services:\n  hello:\n    image: \"hello_extension:1.0.0\"\n    build: .\n",
    )
    .unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM oci:image:1.0.0\n").unwrap();
    let r = s.spx_in(Some(&dir), &["build", ".", "-o", "hello_extension.spx"], &[]);
    refused(&r, &["the output hello_extension.spx: is inside the build context", "which the build reads"]);
    assert!(
        r.stderr
            .contains("hint: choose an output path outside it, or exclude hello_extension.spx in its .dockerignore")
    );
    assert!(!dir.join("hello_extension.spx").exists());
    std::fs::write(dir.join(".dockerignore"), "*.spx\n").unwrap();
    let r = s.spx_in(Some(&dir), &["build", ".", "-o", "hello_extension.spx"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(dir.join("hello_extension.spx").is_file());
}

#[test]
fn build_outputs_in_the_extension_directory_that_are_no_input_are_allowed() {
    let s = Scratch::new();
    let dir = ext(&s);
    s.spx_in(Some(&dir), &["build", "."], &[]).ok();
    assert!(dir.join("hello_extension.spx").is_file());
    // a second run replaces its own earlier output
    s.spx_in(Some(&dir), &["build", "."], &[]).ok();
}

#[test]
fn pull_outputs_that_are_inputs_are_refused_and_the_inputs_kept() {
    let s = Scratch::new();
    let dir = ext(&s);
    let root = s.dir.path();
    s.spx_in(Some(root), &["pull", "oci:ext/image:1.0.0", "-o", "x.tar"], &[]).ok();
    let x = s.path("x.tar");
    refuses_and_keeps(
        &s,
        root,
        &["pull", "docker-archive:x.tar", "-o", "x.tar"],
        &x,
        &["output x.tar: would overwrite the image source x.tar"],
    );
    std::fs::create_dir(s.path("sub")).unwrap();
    refuses_and_keeps(
        &s,
        root,
        &["pull", "docker-archive:./sub/../x.tar", "-o", "x.tar"],
        &x,
        &["would overwrite the image source"],
    );
    std::fs::hard_link(&x, s.path("y.tar")).unwrap();
    refuses_and_keeps(
        &s,
        root,
        &["pull", "docker-archive:x.tar", "-o", "y.tar"],
        &x,
        &["output y.tar: would overwrite"],
    );
    refuses_and_keeps(
        &s,
        root,
        &["pull", "oci:ext/image:1.0.0", "-o", "ext/image/blobs/x.tar"],
        &dir.join("image/index.json"),
        &["output ext/image/blobs/x.tar: is inside the image source ext/image"],
    );
}

#[test]
fn image_build_outputs_that_are_inputs_are_refused_and_the_inputs_kept() {
    let s = Scratch::new();
    ext(&s);
    let root = s.dir.path();
    let ctx = s.path("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM oci:ext/image:1.0.0\nCOPY a.txt /a.txt\n").unwrap();
    std::fs::write(ctx.join("a.txt"), "a").unwrap();
    let df = ctx.join("Dockerfile");
    refuses_and_keeps(
        &s,
        root,
        &["image", "build", "ctx", "-o", "ctx/Dockerfile"],
        &df,
        &["output ctx/Dockerfile: would overwrite the Dockerfile"],
    );
    refuses_and_keeps(
        &s,
        root,
        &["image", "build", "ctx", "-o", "ctx/a.txt"],
        &ctx.join("a.txt"),
        &["output ctx/a.txt: is inside the build context ctx"],
    );
    refuses_and_keeps(
        &s,
        root,
        &["image", "build", "ctx", "-o", "oci:ctx/layout"],
        &df,
        &["output oci:ctx/layout: is inside the build context ctx"],
    );
    refuses_and_keeps(
        &s,
        root,
        &["image", "build", "ctx", "-o", "ext/image/x.tar"],
        &s.path("ext/image/index.json"),
        &["output ext/image/x.tar: is inside the FROM image source ext/image"],
    );
    std::fs::create_dir(s.path("named")).unwrap();
    std::fs::write(s.path("named/n.txt"), "n").unwrap();
    refuses_and_keeps(
        &s,
        root,
        &["image", "build", "ctx", "--build-context", "n=named", "-o", "named/x.tar"],
        &s.path("named/n.txt"),
        &["output named/x.tar: is inside --build-context n named"],
    );
    // next to the context is fine, and so is a new tag in the layout FROM reads
    s.spx_in(Some(root), &["image", "build", "ctx", "-o", "out.tar"], &[]).ok();
    s.spx_in(Some(root), &["image", "build", "ctx", "-o", "oci:ext/image:2"], &[]).ok();
}

#[test]
fn outputs_that_are_not_regular_files_are_refused_never_replaced() {
    let s = Scratch::new();
    ext(&s);
    let root = s.dir.path();
    let fifo = s.path("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    std::os::unix::fs::symlink("/dev/null", s.path("null.spx")).unwrap();
    for (out, kind) in [("/dev/null", "a character device"), ("null.spx", "a character device"), ("fifo", "a FIFO")] {
        for args in [
            vec!["build", "ext", "-o", out],
            vec!["pull", "oci:ext/image:1.0.0", "-o", out],
            vec!["image", "build", "ext", "-f", "ext/README.md", "-o", out],
        ] {
            let r = s.spx_in(Some(root), &args, &[]);
            refused(&r, &[&format!("output {out}: is {kind}, not a regular file")]);
            assert!(r.stderr.contains("hint: give a regular file path"), "{}", r.stderr);
        }
    }
    assert!(std::fs::symlink_metadata(s.path("null.spx")).unwrap().file_type().is_symlink());
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(std::fs::symlink_metadata("/dev/null").unwrap().file_type().is_char_device());
    let left: Vec<_> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn symlinked_outputs_are_written_through_and_stay_symlinks() {
    let s = Scratch::new();
    ext(&s);
    let root = s.dir.path();
    std::fs::create_dir(s.path("real")).unwrap();
    std::fs::write(s.path("real/old.spx"), "old").unwrap();
    std::os::unix::fs::symlink("real/old.spx", s.path("a.spx")).unwrap();
    std::os::unix::fs::symlink("real/new.tar", s.path("b.tar")).unwrap();
    s.spx_in(Some(root), &["build", "ext", "-o", "a.spx"], &[]).ok();
    s.spx_in(Some(root), &["pull", "oci:ext/image:1.0.0", "-o", "b.tar"], &[]).ok();
    for (link, target) in [("a.spx", "real/old.spx"), ("b.tar", "real/new.tar")] {
        assert!(std::fs::symlink_metadata(s.path(link)).unwrap().file_type().is_symlink(), "{link}");
        assert!(std::fs::metadata(s.path(target)).unwrap().len() > 1000, "{target} not written");
    }
    s.spx(&["verify", s.path("real/old.spx").to_str().unwrap()]).ok();
    let mut names: Vec<_> = std::fs::read_dir(s.path("real")).unwrap().flatten().map(|e| e.file_name()).collect();
    names.sort();
    assert_eq!(names, ["new.tar", "old.spx"]);
}
