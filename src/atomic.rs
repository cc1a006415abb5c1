//! Atomic outputs: a file is written under a temporary name next to its destination, fsynced,
//! then renamed into place. Until then it is registered for removal, so an error, a panic or a
//! signal (SIGINT, SIGTERM, SIGHUP) never leaves a partial file at — or next to — the
//! destination. Other modules register cleanup hooks the same way (the RUN sandbox kills its
//! process group and removes its work directories), run before the files are removed.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the process is being interrupted: the signal handler is cleaning up and will exit
/// with 130; other threads should stop and leave the cleanup to it.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

type Hook = Box<dyn Fn() + Send>;
static HOOKS: Mutex<Vec<(u64, Hook)>> = Mutex::new(Vec::new());
static NEXT_HOOK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Registers a cleanup action for interruption; returns its id for [`unregister_hook`].
/// Hooks run newest first, before the registered files are removed.
pub fn register_hook(f: impl Fn() + Send + 'static) -> u64 {
    let id = NEXT_HOOK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut v) = HOOKS.lock() {
        v.push((id, Box::new(f)));
    }
    id
}

/// Forgets a cleanup action (its work was done normally).
pub fn unregister_hook(id: u64) {
    if let Ok(mut v) = HOOKS.lock() {
        v.retain(|(i, _)| *i != id);
    }
}

/// Removes registered temporary files and exits with 130 on SIGINT/SIGTERM/SIGHUP.
/// Call once from `main`.
pub fn install_signal_cleanup() {
    let _ = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        remove_pending();
        eprintln!("spxpack: interrupted; removed partial output");
        std::process::exit(130);
    });
}

/// Removes every registered temporary file (signal handler and tests).
pub fn remove_pending() {
    let hooks: Vec<(u64, Hook)> = HOOKS.lock().map(|mut v| v.drain(..).collect()).unwrap_or_default();
    for (_, h) in hooks.iter().rev() {
        h();
    }
    if let Ok(mut v) = PENDING.lock() {
        for p in v.drain(..) {
            let _ = fs::remove_file(&p);
        }
    }
}

/// Registers a temporary file for removal on interruption.
pub fn register(p: &Path) {
    if let Ok(mut v) = PENDING.lock() {
        v.push(p.to_path_buf());
    }
}

/// Forgets a temporary file that was moved into place or removed.
pub fn unregister(p: &Path) {
    if let Ok(mut v) = PENDING.lock() {
        v.retain(|x| x != p);
    }
}

/// The directory a path is in (`.` for a bare file name).
fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What a file type is, for messages.
fn kind_of(ft: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// The output policy of every command, decided before any work: the path that is renamed over
/// when `dest` is written. An existing output must be a regular file (after following
/// symlinks): a directory, device, FIFO or socket (`-o /dev/stdout`, `-o /dev/null`) is refused,
/// never replaced. A symlink — to a regular file, or to a file that does not exist yet in an
/// existing directory — is written through: the result is its final target, so the temporary
/// file is created next to the target and the symlink stays a symlink. The target's directory
/// must exist. `what` names the output in messages (`output`, `the output`, `--image-archive`).
pub fn output_target(dest: &Path, what: &str) -> Result<PathBuf> {
    let shown = dest.display();
    let not_regular = |kind: &str| {
        Error::input(format!("{what} {shown}: is {kind}, not a regular file"))
            .with_hint("give a regular file path, e.g. -o images.tar.gz")
    };
    // follow the symlinks of the last component ourselves, to know where the file really is
    let mut target = dest.to_path_buf();
    let mut hops = 0;
    while let Ok(m) = fs::symlink_metadata(&target) {
        if !m.file_type().is_symlink() {
            break;
        }
        hops += 1;
        if hops > 40 {
            return Err(Error::input(format!("{what} {shown}: too many levels of symbolic links"))
                .with_hint("give a regular file path"));
        }
        let link = fs::read_link(&target).map_err(|e| Error::io("cannot read the symlink", &target, e))?;
        target = if link.is_absolute() { link } else { parent_dir(&target).join(link) };
    }
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() => {
            return Err(Error::input(format!("{what} {shown}: is a directory"))
                .with_hint("give a file name, e.g. -o images.tar.gz"));
        }
        Ok(m) if !m.is_file() => return Err(not_regular(kind_of(&m.file_type()))),
        Ok(m) => {
            // a regular file: the path found must be that file (not e.g. a /proc/*/fd link to a
            // deleted file or a pipe), or the rename would land somewhere else
            if !fs::symlink_metadata(&target).is_ok_and(|t| same_file(&t, &m)) {
                return Err(not_regular("a link spxpack cannot follow to a file path"));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
            // nothing there yet (or a dangling symlink): the file is created at `target`
        }
        Err(e) => return Err(Error::io("cannot write", dest, e)),
    }
    let dir = parent_dir(&target);
    if !dir.is_dir() {
        let msg = if target == dest {
            format!("{what} {shown}: the directory {} does not exist", dir.display())
        } else {
            format!("{what} {shown}: is a symlink into {}, which does not exist", dir.display())
        };
        return Err(Error::not_found(msg).with_hint("create it first, or choose another path"));
    }
    Ok(target)
}

/// How an [`Input`] is read.
#[derive(Debug, Clone)]
pub enum InputKind {
    /// One file.
    File,
    /// A directory read whole (an OCI layout, an additional-files directory, a named context).
    Tree,
    /// An OCI layout read whole; an `-o oci:` output may still update it in place (new blobs
    /// only, `index.json` replaced last).
    Layout,
    /// A build context: read whole except what its `.dockerignore` excludes.
    Context(Excludes),
}

/// Which paths (relative, `/`-separated) of a tree are not read (a `.dockerignore`).
#[derive(Clone)]
pub struct Excludes(std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl Excludes {
    pub fn new(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Excludes(std::sync::Arc::new(f))
    }
    pub fn excludes(&self, rel: &str) -> bool {
        (self.0)(rel)
    }
}

impl std::fmt::Debug for Excludes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Excludes(..)")
    }
}

/// Something a command reads, which its outputs must never overwrite.
#[derive(Debug, Clone)]
pub struct Input {
    /// What it is, for messages: `the Dockerfile`, `the source`, `the build context`.
    pub label: String,
    pub path: PathBuf,
    pub kind: InputKind,
}

impl Input {
    pub fn file(label: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Input { label: label.into(), path: path.into(), kind: InputKind::File }
    }
    pub fn tree(label: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Input { label: label.into(), path: path.into(), kind: InputKind::Tree }
    }
    /// An OCI layout directory: files inside it are inputs, but the layout itself may be
    /// updated (blobs added, `index.json` replaced last).
    pub fn layout(label: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Input { label: label.into(), path: path.into(), kind: InputKind::Layout }
    }
}

/// Refuses an output that would overwrite an input: `target` (from [`output_target`]) is the
/// same file as an input file (device and inode, so symlinks, hard links and `..` are seen
/// through), or lies inside an input tree (compared by device and inode of its directories,
/// so bind mounts and symlinked parents are seen through too; for a build context, unless
/// its `.dockerignore` excludes it). An output inside a directory that is not read whole — the
/// extension directory — is fine.
pub fn refuse_inputs(dest: &Path, target: &Path, what: &str, inputs: &[Input]) -> Result<()> {
    let shown = dest.display();
    let out_meta = fs::metadata(target).ok();
    // the output's directory chain, nearest first, with the output's path below each; the
    // directories that do not exist yet (e.g. a new OCI layout) are taken by name
    let mut chain: Vec<(fs::Metadata, String)> = Vec::new();
    let mut rel: Vec<String> = target.file_name().map(|n| n.to_string_lossy().into_owned()).into_iter().collect();
    let mut dir = parent_dir(target);
    let existing = loop {
        match fs::canonicalize(&dir) {
            Ok(c) => break Some(c),
            Err(_) => match dir.file_name() {
                Some(n) => {
                    rel.push(n.to_string_lossy().into_owned());
                    dir = parent_dir(&dir);
                }
                None => break None,
            },
        }
    };
    let mut cur = existing.as_deref();
    while let Some(d) = cur {
        if let Ok(m) = fs::metadata(d) {
            chain.push((m, rel.iter().rev().cloned().collect::<Vec<_>>().join("/")));
        }
        if let Some(n) = d.file_name() {
            rel.push(n.to_string_lossy().into_owned());
        }
        cur = d.parent();
    }
    for i in inputs {
        let Ok(im) = fs::metadata(&i.path) else { continue };
        match &i.kind {
            InputKind::File => {
                if out_meta.as_ref().is_some_and(|o| same_file(o, &im)) {
                    return Err(Error::input(format!(
                        "{what} {shown}: would overwrite {} {}",
                        i.label,
                        i.path.display()
                    ))
                    .with_hint("choose another output path; spxpack never replaces its inputs"));
                }
            }
            InputKind::Tree | InputKind::Layout | InputKind::Context(_) => {
                let Some((_, rel)) = chain.iter().find(|(m, _)| same_file(m, &im)) else { continue };
                if let InputKind::Context(ignore) = &i.kind {
                    if ignore.excludes(rel) {
                        continue;
                    }
                    return Err(Error::input(format!(
                        "{what} {shown}: is inside {} {}, which the build reads",
                        i.label,
                        i.path.display()
                    ))
                    .with_hint(format!("choose an output path outside it, or exclude {rel} in its .dockerignore")));
                }
                return Err(Error::input(format!(
                    "{what} {shown}: is inside {} {}, which is read whole",
                    i.label,
                    i.path.display()
                ))
                .with_hint("choose an output path outside it"));
            }
        }
    }
    Ok(())
}

/// Refuses, before any download, an output of about `need` bytes that the filesystem of
/// `dest` clearly cannot hold (its free space for unprivileged users, `statvfs`). Whatever the
/// estimate misses still ends in the ordinary "no space left on device" error, with nothing left
/// behind.
pub fn require_space(dest: &Path, need: u64) -> Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(st) = rustix::fs::statvfs(dir) else { return Ok(()) };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free >= need {
        return Ok(());
    }
    let mib = |n: u64| format!("{:.1} MiB", n as f64 / (1 << 20) as f64);
    Err(Error::new(
        crate::error::Kind::Io,
        format!(
            "cannot write {}: no space left on device (it needs about {}, {} has {} free)",
            dest.display(),
            mib(need),
            dir.display(),
            mib(free)
        ),
    )
    .with_hint("the disk is full; free space or point -o at a larger filesystem"))
}

/// [`output_target`] and [`refuse_inputs`] together: the check every command runs on each
/// output before any work. Returns the path that will be renamed over.
pub fn check_output(dest: &Path, what: &str, inputs: &[Input]) -> Result<PathBuf> {
    let target = output_target(dest, what)?;
    refuse_inputs(dest, &target, what, inputs)?;
    Ok(target)
}

/// A file being written atomically.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    /// The path as given, for messages.
    dest: PathBuf,
    /// What is renamed over: `dest` with its symlinks followed.
    target: PathBuf,
}

impl AtomicFile {
    /// Starts writing `dest` under the policy of [`output_target`]: a symlink is written
    /// through (the temporary file goes next to its target and is renamed over the target), and
    /// anything that is not a regular file is refused.
    pub fn create(dest: &Path) -> Result<Self> {
        let target = output_target(dest, "output")?;
        let dir = parent_dir(&target);
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let t = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(&dir)
            .map_err(|e| Error::io("cannot create a temporary file in", &dir, e))?;
        let (file, path) = t.keep().map_err(|e| Error::io("cannot create a temporary file in", &dir, e.error))?;
        register(&path);
        Ok(AtomicFile { file: Some(file), tmp: path, dest: dest.to_path_buf(), target })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file present until commit")
    }

    /// Takes the file out for writers that need ownership; give it back with `commit_file`.
    pub fn take_file(&mut self) -> File {
        self.file.take().expect("file present until commit")
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// fsyncs and renames into place.
    pub fn commit(mut self) -> Result<()> {
        let f = self.file.take().expect("file present until commit");
        self.commit_file(f)
    }

    /// Like `commit`, with the file given back after `take_file`.
    pub fn commit_file(mut self, f: File) -> Result<()> {
        let t = std::time::Instant::now();
        f.sync_all().map_err(|e| Error::io("cannot write", &self.dest, e))?;
        tracing::info!("fsync {}: {:.2}s", self.dest.display(), t.elapsed().as_secs_f64());
        drop(f);
        fs::rename(&self.tmp, &self.target)
            .map_err(|e| Error::io("cannot move the output into place at", &self.dest, e))?;
        unregister(&self.tmp);
        if let Ok(d) = File::open(parent_dir(&self.target)) {
            let _ = d.sync_all();
        }
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
            unregister(&self.tmp);
        }
    }
}

impl io::Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_clearly_too_large_output_is_refused_before_writing() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("big.tar");
        require_space(&out, 1).unwrap();
        let e = require_space(&out, u64::MAX / 2).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.message().contains("no space left on device"), "{e}");
        assert!(e.hint().unwrap().starts_with("the disk is full"));
        assert!(!out.exists());
    }

    #[test]
    fn outputs_that_are_not_regular_files_are_refused_and_symlinks_are_written_through() {
        let d = tempfile::tempdir().unwrap();
        // devices and FIFOs are refused before anything is created; the symlink to one stays
        let link = d.path().join("stdout");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        for p in [Path::new("/dev/null"), link.as_path()] {
            let e = AtomicFile::create(p).err().expect("refused");
            assert_eq!(e.kind(), crate::error::Kind::Input);
            assert!(e.message().contains("is a character device, not a regular file"), "{}", e.message());
            assert!(e.hint().unwrap().contains("give a regular file path"));
        }
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(AtomicFile::create(d.path()).err().unwrap().message().ends_with("is a directory"));
        // a symlink to a file, and a dangling one into an existing directory: written through
        fs::create_dir(d.path().join("real")).unwrap();
        fs::write(d.path().join("real/a.tar"), "old").unwrap();
        std::os::unix::fs::symlink("real/a.tar", d.path().join("a.tar")).unwrap();
        std::os::unix::fs::symlink("real/b.tar", d.path().join("b.tar")).unwrap();
        for n in ["a.tar", "b.tar"] {
            let mut a = AtomicFile::create(&d.path().join(n)).unwrap();
            a.write_all(b"new").unwrap();
            a.commit().unwrap();
            assert!(fs::symlink_metadata(d.path().join(n)).unwrap().file_type().is_symlink(), "{n}");
            assert_eq!(fs::read(d.path().join("real").join(n)).unwrap(), b"new");
        }
        assert_eq!(fs::read_dir(d.path().join("real")).unwrap().count(), 2, "no temporary file left");
        // a dangling symlink into a missing directory
        std::os::unix::fs::symlink("nowhere/c.tar", d.path().join("c.tar")).unwrap();
        assert_eq!(AtomicFile::create(&d.path().join("c.tar")).err().unwrap().kind(), crate::error::Kind::NotFound);
    }

    #[test]
    fn outputs_that_are_inputs_or_inside_input_trees_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        fs::create_dir_all(p("ctx/sub")).unwrap();
        fs::create_dir_all(p("layout")).unwrap();
        fs::write(p("in.tar"), "input").unwrap();
        fs::hard_link(p("in.tar"), p("hard.tar")).unwrap();
        std::os::unix::fs::symlink("in.tar", p("soft.tar")).unwrap();
        let ignore = crate::dockerfile::dockerignore::Matcher::parse("sub/*.tar\n", ".dockerignore").unwrap();
        let inputs = [
            Input::file("the source", p("in.tar")),
            Input {
                label: "the build context".into(),
                path: p("ctx"),
                kind: InputKind::Context(Excludes::new(move |rel| ignore.excludes(rel))),
            },
            Input::tree("the additional files directory", p("layout")),
        ];
        let refused = |out: PathBuf| check_output(&out, "output", &inputs).err().map(|e| e.message().to_string());
        for same in ["in.tar", "hard.tar", "soft.tar", "ctx/../in.tar"] {
            let m = refused(p(same)).unwrap_or_else(|| panic!("{same} allowed"));
            assert!(m.contains("would overwrite the source") && m.contains("in.tar"), "{m}");
        }
        let m = refused(p("ctx/sub/out.tgz")).expect("inside the context");
        assert!(m.contains("is inside the build context"), "{m}");
        assert!(refused(p("layout/x.tar")).unwrap().contains("which is read whole"));
        // excluded by the context's .dockerignore, or next to the inputs: allowed
        assert_eq!(refused(p("ctx/sub/out.tar")), None);
        assert_eq!(refused(p("out.tar")), None);
        // an input tree reached through a symlinked parent is still seen
        std::os::unix::fs::symlink(p("layout"), p("alias")).unwrap();
        assert!(refused(p("alias/x.tar")).is_some());
        assert_eq!(fs::read(p("in.tar")).unwrap(), b"input");
    }

    #[test]
    fn commit_or_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("x.tar");
        {
            let mut a = AtomicFile::create(&dest).unwrap();
            a.write_all(b"partial").unwrap();
        } // dropped without commit
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        let mut a = AtomicFile::create(&dest).unwrap();
        a.write_all(b"whole").unwrap();
        a.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"whole");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(AtomicFile::create(&d.path().join("missing/x.tar")).is_err());
    }
}
