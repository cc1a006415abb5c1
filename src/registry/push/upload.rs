//! One blob upload into an open session: a single `PUT ?digest=` with the whole blob when it
//! is small, else `PATCH` chunks (`Content-Range: start-end`, at least the registry's
//! `OCI-Chunk-Min-Length`) and a closing `PUT ?digest=`. Every answer carries the session's next
//! `Location` (distribution encodes its state in it), which the next request uses. A broken
//! connection, a 5xx, 408, 429 or 416 is a failure to recover from: wait, ask the session how
//! many bytes the registry has (`GET`, its `Range: 0-<last>`), reopen the source there and go on;
//! a session the registry forgot (404) is started again, unless the blob arrived after all.

use std::io::Read;

use super::{PlanBlob, Pusher, check_digest, read_exact_at_end};
use crate::error::{Error, Kind, Result};
use crate::image::BlobReader;
use crate::registry::client::{Payload, WriteRequest};

/// When to upload in one request and how big the chunks are otherwise.
#[derive(Debug, Clone)]
pub struct UploadSizes {
    /// Blobs up to this size go up in one `PUT`.
    pub monolithic_max: u64,
    /// Larger blobs go up in `PATCH` chunks of this size (raised to the registry's
    /// `OCI-Chunk-Min-Length`).
    pub chunk: u64,
}

impl Default for UploadSizes {
    fn default() -> Self {
        UploadSizes { monolithic_max: 16 << 20, chunk: 64 << 20 }
    }
}

/// An open upload session: where to send the next request and how many bytes the registry has.
pub(in crate::registry) struct Session {
    location: String,
    offset: u64,
    min_chunk: u64,
}

impl Session {
    /// The session a `202` answer (to `POST …/uploads/`, or a mount that did not happen) opened.
    pub(super) fn from_response(p: &Pusher, url: &str, resp: &ureq::http::Response<ureq::Body>) -> Result<Self> {
        let min_chunk = header(resp, "oci-chunk-min-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Session { location: p.client.upload_location(p.dest, url, resp)?, offset: 0, min_chunk })
    }
}

fn header<'r>(resp: &'r ureq::http::Response<ureq::Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The number of bytes a `Range: 0-<last>` header says the registry has (`0-0` is read as
/// none: distribution sends it for an empty session).
fn received(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = header(resp, "range")?;
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (_, last) = v.split_once('-')?;
    let last: u64 = last.trim().parse().ok()?;
    Some(if last == 0 { 0 } else { last + 1 })
}

enum Step {
    More,
    Done,
}

/// Why a request did not move the upload on.
enum Failure {
    /// Worth resuming: the connection broke, or the registry answered 5xx/408/429/416/404.
    Retry(String),
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Fatal(e)
    }
}

pub(super) struct Upload<'a> {
    pub pusher: &'a Pusher<'a>,
    pub blob: &'a PlanBlob,
    pub what: &'a str,
}

impl Upload<'_> {
    /// Uploads the blob into `s`, resuming after failures (at most `retries` in a row).
    pub fn run(&self, mut s: Session) -> Result<()> {
        let mut feed = Feed { blob: self.blob, reader: None, pos: 0 };
        let mut failures = 0u32;
        let client = self.pusher.client;
        loop {
            match self.step(&mut s, &mut feed) {
                Ok(Step::Done) => return Ok(()),
                Ok(Step::More) => failures = 0,
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(why)) => {
                    failures += 1;
                    if failures > client.options().retries {
                        return Err(Error::network(format!(
                            "{}: upload to {} stopped at byte {} of {}: {why}",
                            self.what,
                            self.pusher.dest.full_name(),
                            s.offset,
                            self.blob.desc.size
                        ))
                        .with_hint(
                            "the network or registry is unstable; run the push again (blobs it has are skipped)",
                        ));
                    }
                    let wait = client.backoff(failures - 1);
                    tracing::warn!("{}: {why}; resuming in {:.1}s", self.what, wait.as_secs_f32());
                    std::thread::sleep(wait);
                    feed.reader = None;
                    match self.status(&s)? {
                        Some((location, offset)) => {
                            tracing::info!("{}: the registry has {offset} bytes; resuming there", self.what);
                            s.location = location;
                            s.offset = offset;
                        }
                        None if self.pusher.exists(&self.blob.desc.digest, self.what)? => return Ok(()),
                        None => s = self.pusher.start(self.what)?,
                    }
                }
            }
        }
    }

    fn req<'r>(
        &'r self,
        method: &'r str,
        url: &'r str,
        headers: &'r [(&'r str, String)],
        scope: &'r str,
    ) -> WriteRequest<'r> {
        WriteRequest { method, url, headers, scope, what: self.what }
    }

    /// One request: a `PATCH` chunk, or the closing `PUT`.
    fn step(&self, s: &mut Session, feed: &mut Feed) -> std::result::Result<Step, Failure> {
        let size = self.blob.desc.size;
        let sizes = &self.pusher.opts.sizes;
        if s.offset > size {
            return Err(Failure::Fatal(Error::network(format!(
                "{}: the registry claims {} bytes of a {size}-byte blob",
                self.what, s.offset
            ))));
        }
        if (s.offset == 0 && size <= sizes.monolithic_max) || s.offset == size {
            return self.finish(s, feed);
        }
        let n = sizes.chunk.max(s.min_chunk).max(1).min(size - s.offset);
        let (start, end) = (s.offset, s.offset + n - 1);
        let headers =
            [("Content-Type", "application/octet-stream".to_string()), ("Content-Range", format!("{start}-{end}"))];
        let scope = self.pusher.scope();
        let location = s.location.clone();
        let last = start + n == size;
        let resp = self.send(&self.req("PATCH", &location, &headers, &scope), feed, start, n, last)?;
        match resp.status().as_u16() {
            202 => {
                s.location = self.pusher.client.upload_location(self.pusher.dest, &location, &resp)?;
                s.offset = received(&resp).unwrap_or(start + n);
                Ok(Step::More)
            }
            status => self.failed(status, resp, "chunk"),
        }
    }

    /// The closing `PUT ?digest=`, with whatever the registry does not have yet as its body.
    fn finish(&self, s: &Session, feed: &mut Feed) -> std::result::Result<Step, Failure> {
        let desc = &self.blob.desc;
        let left = desc.size - s.offset;
        let sep = if s.location.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}digest={}", s.location, desc.digest);
        let mut headers = vec![("Content-Type", "application/octet-stream".to_string())];
        if s.offset > 0 && left > 0 {
            headers.push(("Content-Range", format!("{}-{}", s.offset, desc.size - 1)));
        }
        let scope = self.pusher.scope();
        let req = self.req("PUT", &url, &headers, &scope);
        let resp = if left == 0 {
            self.pusher.client.write(self.pusher.dest, &req, Payload::Empty).map_err(retry_network)?
        } else {
            self.send(&req, feed, s.offset, left, true)?
        };
        match resp.status().as_u16() {
            201 | 204 => {
                check_digest(&resp, &desc.digest, self.what)?;
                Ok(Step::Done)
            }
            status => self.failed(status, resp, "upload"),
        }
    }

    /// Sends `n` bytes of the blob from `start` as the body of `req`.
    fn send(
        &self,
        req: &WriteRequest,
        feed: &mut Feed,
        start: u64,
        n: u64,
        last: bool,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, Failure> {
        let progress = self.pusher.progress;
        let reader = feed.at(start)?;
        let mut body = Chunk { reader, left: n, last, failed: None, sent: 0, progress };
        let result = self.pusher.client.write(self.pusher.dest, req, Payload::Stream { reader: &mut body, len: n });
        let (sent, failed) = (body.sent, body.failed.take());
        feed.pos = start + sent;
        if let Some(e) = failed {
            return Err(Failure::Fatal(e));
        }
        if result.is_err() || sent < n {
            feed.reader = None;
        }
        result.map_err(retry_network)
    }

    /// A status other than success: resume, or give up with the registry's reason.
    fn failed(
        &self,
        status: u16,
        mut resp: ureq::http::Response<ureq::Body>,
        doing: &str,
    ) -> std::result::Result<Step, Failure> {
        match status {
            404 | 408 | 416 | 429 | 500..=599 => {
                let detail = crate::registry::client::error_detail(&mut resp);
                let d = if detail.is_empty() { String::new() } else { format!(": {detail}") };
                Err(Failure::Retry(format!("the registry answered the {doing} with HTTP {status}{d}")))
            }
            _ => Err(Failure::Fatal(self.pusher.refused(
                self.what,
                &format!("the registry refused the {doing}"),
                status,
                &mut resp,
            ))),
        }
    }

    /// How many bytes the session holds (and its next `Location`); `None` when the registry
    /// no longer knows the session.
    fn status(&self, s: &Session) -> Result<Option<(String, u64)>> {
        let scope = self.pusher.scope();
        let req = self.req("GET", &s.location, &[], &scope);
        let resp = self.pusher.client.write(self.pusher.dest, &req, Payload::Empty)?;
        match resp.status().as_u16() {
            200..=299 => {
                let location = match header(&resp, "location") {
                    Some(_) => self.pusher.client.upload_location(self.pusher.dest, &s.location, &resp)?,
                    None => s.location.clone(),
                };
                Ok(Some((location, received(&resp).unwrap_or(0))))
            }
            _ => Ok(None),
        }
    }
}

/// A network error is worth a resume; anything else is not.
fn retry_network(e: Error) -> Failure {
    if e.kind() == Kind::Network { Failure::Retry(e.message().to_string()) } else { Failure::Fatal(e) }
}

/// The source blob, open at `pos`.
struct Feed<'a> {
    blob: &'a PlanBlob,
    reader: Option<BlobReader>,
    pos: u64,
}

impl Feed<'_> {
    /// The source, positioned at `offset` (reopened and skipped forward when it is elsewhere).
    fn at(&mut self, offset: u64) -> Result<&mut BlobReader> {
        if self.reader.is_none() || self.pos != offset {
            let mut r = self.blob.bytes.open(&self.blob.desc)?;
            let skipped = std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())
                .map_err(|e| Error::from_io("cannot read", &self.blob.desc.digest.to_string(), e))?;
            if skipped != offset {
                return Err(Error::integrity(format!("blob {} is shorter than {offset} bytes", self.blob.desc.digest)));
            }
            self.reader = Some(r);
            self.pos = offset;
        }
        Ok(self.reader.as_mut().expect("just opened"))
    }
}

/// `left` bytes of the source as a request body. A read error of the source is kept in
/// `failed` (it is the source's fault, not the network's); after the blob's last byte the
/// source is read to its end so that its size and digest check runs.
struct Chunk<'a> {
    reader: &'a mut BlobReader,
    left: u64,
    last: bool,
    failed: Option<Error>,
    sent: u64,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl Read for Chunk<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let k = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.reader.read(&mut buf[..k]) {
            Ok(0) => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the source blob ended early")),
            Ok(n) => Ok(n),
            Err(e) => Err(e),
        }
        .and_then(|n| {
            if self.left == n as u64 && self.last {
                read_exact_at_end(self.reader)?;
            }
            Ok(n)
        });
        match n {
            Ok(n) => {
                self.left -= n as u64;
                self.sent += n as u64;
                (self.progress)(n as u64);
                Ok(n)
            }
            Err(e) => {
                let msg = e.to_string();
                self.failed = Some(Error::from_io("cannot read", "the blob to push", e));
                Err(std::io::Error::other(msg))
            }
        }
    }
}
