//! Network timeouts of every HTTP request (issue "Hardening", item 14): a server that accepts a
//! connection and never answers, or that sends a body at one byte a second, must not hold a
//! run forever. ureq's timeouts cover connecting, sending the request, waiting for the
//! response head and each single read; [`StallGuard`] adds the slow trickle, which a per-read
//! timeout never sees: a body that delivers less than [`MIN_PROGRESS`] bytes in a whole read
//! timeout counts as a broken connection (a registry blob then resumes with `Range`).

use std::io::Read;
use std::time::{Duration, Instant};

/// Bytes a body must deliver per read timeout to count as moving.
pub const MIN_PROGRESS: u64 = 1024;

/// Connect and read timeouts (`--connect-timeout`, `--read-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP connection and the TLS handshake.
    pub connect: Duration,
    /// Waiting for the response head, for any one read, and for [`MIN_PROGRESS`] bytes of a body.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(30), read: Duration::from_secs(60) }
    }
}

impl Timeouts {
    /// Applies the timeouts to an agent configuration.
    pub(super) fn apply(self, c: super::ConfigBuilder) -> super::ConfigBuilder {
        c.timeout_resolve(Some(self.connect))
            .timeout_connect(Some(self.connect))
            .timeout_send_request(Some(self.read))
            .timeout_per_write(Some(self.read))
            .timeout_recv_response(Some(self.read))
            .timeout_per_read(Some(self.read))
    }

    /// `body` with the trickle rule of [`StallGuard`].
    pub fn guard<R: Read>(self, body: R) -> StallGuard<R> {
        StallGuard { inner: body, window: self.read, started: Instant::now(), got: 0 }
    }
}

/// A body reader that fails with [`std::io::ErrorKind::TimedOut`] when a whole read timeout
/// passes with less than [`MIN_PROGRESS`] bytes received.
pub struct StallGuard<R> {
    inner: R,
    window: Duration,
    started: Instant,
    got: u64,
}

impl<R: Read> Read for StallGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.got += n as u64;
        if self.got >= MIN_PROGRESS {
            (self.started, self.got) = (Instant::now(), 0);
        } else if n > 0 && self.started.elapsed() >= self.window {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("stalled: less than {MIN_PROGRESS} bytes in {} s (--read-timeout)", self.window.as_secs_f32()),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `step` bytes per read, sleeping `pause` before each.
    struct Slow {
        left: usize,
        step: usize,
        pause: Duration,
    }

    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.pause);
            let n = self.step.min(self.left).min(buf.len());
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_trickle_is_a_stall_and_a_steady_body_is_not() {
        let t = Timeouts { connect: Duration::from_secs(1), read: Duration::from_millis(50) };
        let mut trickle = t.guard(Slow { left: 100_000, step: 1, pause: Duration::from_millis(5) });
        let e = std::io::copy(&mut trickle, &mut std::io::sink()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("stalled"), "{e}");
        let mut steady = t.guard(Slow { left: 100_000, step: 4096, pause: Duration::from_millis(5) });
        assert_eq!(std::io::copy(&mut steady, &mut std::io::sink()).unwrap(), 100_000);
        // a short body ends before its window does
        let mut short = t.guard(Slow { left: 10, step: 1, pause: Duration::from_millis(1) });
        assert_eq!(std::io::copy(&mut short, &mut std::io::sink()).unwrap(), 10);
    }
}
