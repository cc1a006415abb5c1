//! Untrusted input files that are not regular files: FIFOs (which block a reader forever) and
//! symlinks to `/dev/zero` (which never ends, and whose size on disk is 0). Every input file
//! is opened through one helper (`spxpack::input`): a regular file only, read with a cap on the
//! bytes actually read. Each case must fail with exit 1, one `error:` line naming the file and
//! what it is, directly followed by a `hint:`, no output left behind — in bounded time (20 s)
//! and memory (256 MiB peak RSS), or the child is killed and the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::bounded::{one_error_with_hint, run_bounded, spx_command};
use crate::support::{Scratch, spx, unique, unique_layout};

const LIMIT: Duration = Duration::from_secs(20);
const MAX_RSS_MIB: u64 = 256;

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("mkfifo (coreutils) runs");
    assert!(st.success(), "mkfifo {}", p.display());
}

fn zero_link(p: &Path) {
    let _ = std::fs::remove_file(p);
    std::os::unix::fs::symlink("/dev/zero", p).unwrap();
}

/// Runs `spxpack ARGS` bounded; checks exit 1, one error line holding every `needles`, a
/// hint, that the run stayed small, and that `out` was not written.
#[track_caller]
fn refused(s: &Scratch, args: &[&str], needles: &[&str], out: &Path) {
    let b = run_bounded(spx_command(s, args), LIMIT, MAX_RSS_MIB);
    let r = &b.run;
    assert_eq!(r.code, 1, "{args:?}: exit code; stderr: {}", r.stderr);
    let (line, _hint) = one_error_with_hint(r);
    for n in needles {
        assert!(line.contains(n), "{args:?}: {line:?} lacks {n:?}");
    }
    assert!(!line.contains("does not exist") && !line.contains("is empty"), "{line}");
    assert!(b.peak_rss_kib < MAX_RSS_MIB * 1024, "peak RSS {} KiB", b.peak_rss_kib);
    assert!(!out.exists(), "{} was left behind", out.display());
}

/// An extension directory (the bundled example) whose `manifest.json` is replaced by `make`.
fn extension_with_manifest(s: &Scratch, make: fn(&Path)) -> PathBuf {
    let dir = s.path("ext");
    spx::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-extension"), &dir);
    let m = dir.join("manifest.json");
    std::fs::remove_file(&m).unwrap();
    make(&m);
    dir
}

fn context_with_dockerfile(s: &Scratch) -> PathBuf {
    let ctx = s.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY a /a\n").unwrap();
    std::fs::write(ctx.join("a"), "a").unwrap();
    ctx
}

#[test]
fn fifo_inputs_are_refused_without_blocking() {
    // docker-archive:FIFO
    let s = Scratch::new();
    let fifo = s.path("saved.tar");
    mkfifo(&fifo);
    let out = s.path("out.tar");
    let src = format!("docker-archive:{}", fifo.display());
    refused(&s, &["pull", &src, "-o", out.to_str().unwrap()], &["saved.tar", "a FIFO"], &out);

    // an OCI layout whose layer blob is a FIFO
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("fifo-blob"));
    let layer = crate::support::layout_layer_hex(&layout);
    let blob = layout.join("blobs/sha256").join(&layer);
    std::fs::remove_file(&blob).unwrap();
    mkfifo(&blob);
    let out = s.path("out.tar");
    let src = format!("oci:{}:t", layout.display());
    refused(&s, &["pull", &src, "-o", out.to_str().unwrap()], &[&layer, "a FIFO"], &out);

    // an extension's manifest.json
    let s = Scratch::new();
    let dir = extension_with_manifest(&s, mkfifo);
    let out = s.path("ext.spx");
    refused(&s, &["build", dir.to_str().unwrap(), "-o", out.to_str().unwrap()], &["manifest.json", "a FIFO"], &out);

    // image build -f FIFO
    let s = Scratch::new();
    let ctx = context_with_dockerfile(&s);
    let df = s.path("Dockerfile.fifo");
    mkfifo(&df);
    let out = s.path("out.tar");
    refused(
        &s,
        &["image", "build", "-f", df.to_str().unwrap(), "-o", out.to_str().unwrap(), ctx.to_str().unwrap()],
        &["Dockerfile.fifo", "a FIFO"],
        &out,
    );

    // verify FIFO
    let s = Scratch::new();
    let fifo = s.path("x.spx");
    mkfifo(&fifo);
    let b = run_bounded(spx_command(&s, &["verify", fifo.to_str().unwrap()]), LIMIT, MAX_RSS_MIB);
    assert_eq!(b.run.code, 1, "{}", b.run.stderr);
    let (line, _) = one_error_with_hint(&b.run);
    assert!(line.contains("x.spx") && line.contains("a FIFO"), "{line}");
}

#[test]
fn dev_zero_inputs_are_refused_and_reads_are_bounded_by_bytes_read() {
    // oci: layout whose index.json is a symlink to /dev/zero
    let s = Scratch::new();
    let layout = unique_layout(s.dir.path(), &unique("zero-index"));
    zero_link(&layout.join("index.json"));
    let out = s.path("out.tar");
    let src = format!("oci:{}:t", layout.display());
    refused(&s, &["pull", &src, "-o", out.to_str().unwrap()], &["index.json", "a character device"], &out);

    // docker-archive: naming a symlink to /dev/zero
    let s = Scratch::new();
    let link = s.path("saved.tar");
    zero_link(&link);
    let out = s.path("out.tar");
    let src = format!("docker-archive:{}", link.display());
    refused(&s, &["pull", &src, "-o", out.to_str().unwrap()], &["saved.tar", "a character device"], &out);

    // .dockerignore -> /dev/zero
    let s = Scratch::new();
    let ctx = context_with_dockerfile(&s);
    zero_link(&ctx.join(".dockerignore"));
    let df = ctx.join("Dockerfile");
    let out = s.path("out.tar");
    refused(
        &s,
        &["image", "build", "-f", df.to_str().unwrap(), "-o", out.to_str().unwrap(), ctx.to_str().unwrap()],
        &[".dockerignore", "a character device"],
        &out,
    );

    // image build -f /dev/zero
    let s = Scratch::new();
    let ctx = context_with_dockerfile(&s);
    let out = s.path("out.tar");
    refused(
        &s,
        &["image", "build", "-f", "/dev/zero", "-o", out.to_str().unwrap(), ctx.to_str().unwrap()],
        &["/dev/zero", "a character device"],
        &out,
    );

    // an extension's manifest.json -> /dev/zero: a link out of the extension directory is
    // refused before the file type is even looked at (one rule for every packaged file)
    let s = Scratch::new();
    let dir = extension_with_manifest(&s, zero_link);
    let out = s.path("ext.spx");
    refused(
        &s,
        &["build", dir.to_str().unwrap(), "-o", out.to_str().unwrap()],
        &["manifest.json", "symlink to /dev/zero"],
        &out,
    );

    // a regular but sparse 17 MiB Dockerfile: capped by the bytes read, not loaded whole
    let s = Scratch::new();
    let ctx = context_with_dockerfile(&s);
    let df = ctx.join("Dockerfile");
    std::fs::OpenOptions::new().write(true).open(&df).unwrap().set_len(17 << 20).unwrap();
    let out = s.path("out.tar");
    refused(
        &s,
        &["image", "build", "-f", df.to_str().unwrap(), "-o", out.to_str().unwrap(), ctx.to_str().unwrap()],
        &["Dockerfile", "larger than"],
        &out,
    );
}
