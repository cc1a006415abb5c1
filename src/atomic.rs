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

/// A file being written atomically.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(Error::not_found(format!("output directory {} does not exist", dir.display()))
                .with_hint("create it first, or choose another -o path"));
        }
        if dest.is_dir() {
            return Err(Error::input(format!("output {} is a directory", dest.display()))
                .with_hint("give a file name, e.g. -o images.tar.gz"));
        }
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let t = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(&dir)
            .map_err(|e| Error::io("cannot create a temporary file in", &dir, e))?;
        let (file, path) = t.keep().map_err(|e| Error::io("cannot create a temporary file in", &dir, e.error))?;
        register(&path);
        Ok(AtomicFile { file: Some(file), tmp: path, dest: dest.to_path_buf() })
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
        fs::rename(&self.tmp, &self.dest)
            .map_err(|e| Error::io("cannot move the output into place at", &self.dest, e))?;
        unregister(&self.tmp);
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
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
