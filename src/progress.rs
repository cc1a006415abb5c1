//! Progress reporting without printing: the library calls a [`Reporter`]; the CLI decides how
//! (and whether) to show it.

/// Receives progress from long operations.
pub trait Reporter: Send + Sync {
    /// A step finished or started ("resolved busybox:arm64 (3 layers, 2.1 MB)").
    fn message(&self, msg: &str);
    /// `n` more bytes of blob data were written or fetched.
    fn bytes(&self, _n: u64) {}
    /// A warning the user should see even with `--quiet`.
    fn warn(&self, msg: &str) {
        self.message(msg);
    }
}

/// Discards everything.
pub struct Silent;

impl Reporter for Silent {
    fn message(&self, _msg: &str) {}
    fn warn(&self, _msg: &str) {}
}

/// `1.2 MB`-style sizes (decimal units, as Docker prints them).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
