//! Terminal output for the CLI: progress messages on stderr (suppressed by `--quiet`), a
//! transient byte counter when stderr is a terminal, and the final result line on stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use spxpack::progress::{Reporter, human_size};

pub struct Term {
    quiet: bool,
    tty: bool,
    bytes: AtomicU64,
    last_draw: Mutex<std::time::Instant>,
}

impl Term {
    pub fn new(quiet: bool) -> Self {
        Term {
            quiet,
            tty: std::io::stderr().is_terminal(),
            bytes: AtomicU64::new(0),
            last_draw: Mutex::new(std::time::Instant::now()),
        }
    }

    /// The final line of a successful command.
    pub fn done(&self, msg: &str) {
        self.clear();
        println!("{msg}");
    }

    fn clear(&self) {
        if self.tty && !self.quiet {
            eprint!("\r\x1b[2K");
        }
    }
}

impl Reporter for Term {
    fn message(&self, msg: &str) {
        if self.quiet {
            return;
        }
        self.clear();
        eprintln!("{msg}");
    }
    fn warn(&self, msg: &str) {
        self.clear();
        eprintln!("{msg}");
    }
    fn bytes(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if self.quiet || !self.tty {
            return;
        }
        let mut last = self.last_draw.lock().expect("poisoned");
        if last.elapsed().as_millis() >= 100 {
            *last = std::time::Instant::now();
            eprint!("\r\x1b[2Kwriting… {}", human_size(total));
            let _ = std::io::stderr().flush();
        }
    }
}
