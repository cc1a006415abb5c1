//! Pulling from registries: resolve a reference to a single-platform [`Image`] (index →
//! platform → manifest → config), and fetch layer blobs into the blob cache with streaming
//! verification and `Range` resume. Manifests and configs are cached by digest and tags are
//! remembered, so a repeated pull only sends `HEAD` requests and `--offline` needs no network.

pub mod auth;
#[cfg(test)]
mod auth_tests;
pub mod client;
pub mod mirror;
pub mod push;
#[cfg(test)]
mod resolve_tests;

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

pub use client::{Client, ClientOptions};
pub use mirror::Mirror;

use crate::blob_cache::BlobCache;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Kind, Result};
use crate::image::resolve::{self, Document};
use crate::image::{BlobReader, BlobSource, Descriptor, Image, media};
use crate::platform::Platform;
use crate::reference::Reference;

/// Configs larger than this are refused.
const MAX_CONFIG: u64 = 16 << 20;
const MAX_MANIFEST: u64 = 8 << 20;

/// Registry access plus the cache; `None` client means offline.
pub struct Registry {
    client: Option<Arc<Client>>,
    cache: Arc<BlobCache>,
}

impl Registry {
    pub fn new(client: Option<Arc<Client>>, cache: Arc<BlobCache>) -> Self {
        Registry { client, cache }
    }

    fn client(&self, what: &str, digest: Option<&Digest>) -> Result<&Client> {
        match &self.client {
            Some(c) if !self.cache.offline() => Ok(c),
            _ => Err(match digest {
                Some(d) => self.cache.offline_error(what, d),
                None => Error::new(
                    Kind::Offline,
                    format!("--offline: {what} has never been pulled, so its tag cannot be resolved"),
                )
                .with_hint("run the same command once without --offline to fill the cache"),
            }),
        }
    }

    /// Fetches manifest bytes for `r` at `reference` (a tag or digest), verified.
    fn manifest_bytes(&self, r: &Reference, reference: &str, what: &str) -> Result<(Vec<u8>, Digest, Option<String>)> {
        let pinned = reference.starts_with("sha256:").then(|| Digest::parse(reference)).transpose()?;
        if let Some(d) = &pinned
            && let Some(b) = self.cache.read_small(d, MAX_MANIFEST)?
        {
            return Ok((b, d.clone(), None));
        }
        if self.cache.offline() {
            if let Some(d) = self.cache.get_ref(&r.registry, &r.repository, reference)
                && let Some(b) = self.cache.read_small(&d, MAX_MANIFEST)?
            {
                return Ok((b, d, None));
            }
            self.client(what, pinned.as_ref())?;
        }
        let client = self.client(what, pinned.as_ref())?;
        let accept = [("Accept", media::MANIFEST_ACCEPT.to_string())];
        let path = format!("manifests/{reference}");
        // a HEAD tells the digest; if that manifest is cached, nothing is downloaded
        if pinned.is_none()
            && let Ok(resp) = client.request(r, &path, &accept, true, what)
            && let Some(d) = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Digest::parse(v).ok())
            && let Some(b) = self.cache.read_small(&d, MAX_MANIFEST)?
        {
            self.cache.set_ref(&r.registry, &r.repository, reference, &d)?;
            return Ok((b, d, None));
        }
        let mut resp = client.request(r, &path, &accept, false, what)?;
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
        let header_digest =
            resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut body = Vec::new();
        client
            .options()
            .timeouts
            .guard(resp.body_mut().with_config().limit(MAX_MANIFEST).reader())
            .read_to_end(&mut body)
            .map_err(|e| Error::network(format!("{what}: cannot read manifest: {e}")))?;
        let got = Digest::of(&body);
        if let Some(want) = &pinned
            && *want != got
        {
            return Err(Error::integrity(format!(
                "{what}: registry served a manifest with digest {got}, not the requested {want}"
            )));
        }
        if let Some(h) = header_digest
            && let Ok(hd) = Digest::parse(&h)
            && hd != got
        {
            return Err(Error::integrity(format!(
                "{what}: manifest digest {got} does not match the registry's Docker-Content-Digest {hd}"
            )));
        }
        self.cache.insert_bytes(&body)?;
        if pinned.is_none() {
            self.cache.set_ref(&r.registry, &r.repository, reference, &got)?;
        }
        Ok((body, got, ctype))
    }

    /// Resolves `r` to the image for `platform`.
    pub fn resolve(&self, r: &Reference, platform: &Platform) -> Result<Image> {
        let what = r.to_string();
        let (bytes, digest, media_type) = self.manifest_bytes(r, &r.api_reference(), &what)?;
        let docs = RegistryDocs { registry: self, reference: r, what: &what };
        let resolved = resolve::resolve(Document { bytes, digest, media_type }, platform, &what, &docs)?;
        let source = self.blob_source(r);
        Image::new(resolved, source, what.clone(), r.familiar_tagged().into_iter().collect())
    }

    /// The exact bytes, digest and content type of the manifest or index `reference` (a tag or
    /// digest) of `r`'s repository, verified and cached like every manifest.
    pub fn document(&self, r: &Reference, reference: &str, what: &str) -> Result<(Vec<u8>, Digest, Option<String>)> {
        self.manifest_bytes(r, reference, what)
    }

    /// The blobs of `r`'s repository, fetched into the cache on demand.
    pub fn blob_source(&self, r: &Reference) -> Arc<dyn BlobSource> {
        Arc::new(RegistryBlobs { reference: r.clone(), registry: self.clone_handle() })
    }

    fn clone_handle(&self) -> Registry {
        Registry { client: self.client.clone(), cache: self.cache.clone() }
    }

    fn small_blob(&self, r: &Reference, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
        if desc.size > MAX_CONFIG {
            return Err(Error::input(format!("{what} is {} bytes, more than the {MAX_CONFIG} byte limit", desc.size)));
        }
        if let Some(b) = self.cache.read_small(&desc.digest, MAX_CONFIG)? {
            return Ok(b);
        }
        self.fetch_blob(r, desc, what)?;
        self.cache
            .read_small(&desc.digest, MAX_CONFIG)?
            .ok_or_else(|| Error::internal(format!("{what} vanished from the cache")))
    }

    /// Downloads a blob into the cache (verified), resuming with `Range` after a broken
    /// connection. Does nothing when it is cached already.
    pub fn fetch_blob(&self, r: &Reference, desc: &Descriptor, what: &str) -> Result<()> {
        if self.cache.contains(desc) {
            return Ok(());
        }
        if desc.urls.as_ref().is_some_and(|u| !u.is_empty()) && media::is_foreign_layer(&desc.media_type) {
            return Err(Error::unsupported(format!(
                "{what} is a foreign layer hosted outside the registry; spxpack does not download those"
            )));
        }
        let client = self.client(what, Some(&desc.digest))?;
        let mut dl = Download {
            tmp: self.cache.new_temp()?,
            hasher: Hasher::new(),
            diff: DiffTee::Start(Vec::new()),
            got: 0,
            what,
            size: desc.size,
        };
        let mut attempts = 0u32;
        loop {
            let mut resp = self.request_blob(client, r, desc, dl.got, what)?;
            if dl.got > 0 && !resumed_at(&resp, dl.got) {
                // the server ignored or botched the range: start over
                dl.restart()?;
                if resp.status().as_u16() == 206 {
                    attempts += 1;
                    if attempts > client.options().retries {
                        return Err(Error::network(format!(
                            "{what}: registry sent a wrong Content-Range when resuming"
                        )));
                    }
                    continue;
                }
            }
            let broken = dl.append(&mut resp, client.options().timeouts)?;
            if dl.got == desc.size {
                break;
            }
            attempts += 1;
            if attempts > client.options().retries {
                let why = broken.unwrap_or_else(|| "connection closed early".into());
                return Err(Error::network(format!(
                    "{what}: download stopped at {} of {} bytes: {why}",
                    dl.got, desc.size
                ))
                .with_hint("the network or registry is unstable; run the command again (finished blobs are cached)"));
            }
            let wait = client.backoff(attempts - 1);
            tracing::warn!(
                "{what}: download interrupted at {}/{} bytes, resuming in {:.1}s",
                dl.got,
                desc.size,
                wait.as_secs_f32()
            );
            std::thread::sleep(wait);
        }
        let digest = dl.hasher.finish();
        if digest != desc.digest {
            return Err(Error::integrity(format!(
                "digest mismatch for {what}: expected {}, registry sent {digest}",
                desc.digest
            ))
            .with_hint("the registry's copy is corrupt or was altered; re-push the image"));
        }
        let diff_id = dl.diff.finish(&digest);
        self.cache.commit(dl.tmp, &desc.digest)?;
        // a later push to another repository of this registry can mount it from here
        self.cache.note_blob_home(&r.registry, &r.repository, &desc.digest);
        if let Some(d) = diff_id {
            self.cache.record_diff_id(&desc.digest, &d);
        }
        Ok(())
    }

    /// `GET` of a blob, from byte `from` on (a `Range` request when resuming).
    fn request_blob(
        &self,
        client: &Client,
        r: &Reference,
        desc: &Descriptor,
        from: u64,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut headers = Vec::new();
        if from > 0 {
            headers.push(("Range", format!("bytes={from}-")));
        }
        client.request(r, &format!("blobs/{}", desc.digest), &headers, false, what).map_err(|e| {
            if e.kind() == Kind::NotFound {
                Error::not_found(format!("{what}: blob {} is missing from {}", desc.digest, r.full_name()))
                    .with_hint("the registry lost this blob; re-push the image")
            } else {
                e
            }
        })
    }
}

/// Whether `resp` continues a download at byte `at` (`206` with a matching `Content-Range`).
fn resumed_at(resp: &ureq::http::Response<ureq::Body>, at: u64) -> bool {
    resp.status().as_u16() == 206
        && resp.headers().get("content-range").and_then(|v| v.to_str().ok()).and_then(content_range_start) == Some(at)
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/LENGTH` header value.
pub(crate) fn content_range_start(v: &str) -> Option<u64> {
    v.strip_prefix("bytes ")?.split('-').next()?.parse::<u64>().ok()
}

/// A blob download in progress: the staged bytes, their running hash and count.
struct Download<'a> {
    tmp: tempfile::NamedTempFile,
    hasher: Hasher,
    /// The diff_id, computed in the same pass.
    diff: DiffTee,
    got: u64,
    what: &'a str,
    size: u64,
}

impl Download<'_> {
    /// Drops what was received so far.
    fn restart(&mut self) -> Result<()> {
        self.got = 0;
        self.hasher = Hasher::new();
        self.diff = DiffTee::Start(Vec::new());
        self.tmp.as_file_mut().set_len(0).map_err(|e| Error::io("cannot truncate", self.tmp.path(), e))?;
        self.tmp.as_file_mut().seek(SeekFrom::Start(0)).map_err(|e| Error::io("cannot seek", self.tmp.path(), e))?;
        Ok(())
    }

    /// Appends the response body; returns why it broke off, if it did. More bytes than the
    /// descriptor declares is an integrity error.
    /// A body that stalls ([`crate::http::Timeouts`]) is broken too.
    fn append(
        &mut self,
        resp: &mut ureq::http::Response<ureq::Body>,
        timeouts: crate::http::Timeouts,
    ) -> Result<Option<String>> {
        let mut buf = vec![0u8; 1 << 20];
        let limit = self.size.saturating_add(1) - self.got.min(self.size);
        let mut body = timeouts.guard(resp.body_mut().with_config().limit(limit).reader());
        loop {
            match body.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    self.got += n as u64;
                    if self.got > self.size {
                        return Err(Error::integrity(format!(
                            "{}: registry sent more than the {} bytes the descriptor declares",
                            self.what, self.size
                        )));
                    }
                    self.hasher.update(&buf[..n]);
                    self.diff.update(&buf[..n]);
                    self.tmp
                        .as_file_mut()
                        .write_all(&buf[..n])
                        .map_err(|e| Error::io("cannot write", self.tmp.path(), e))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(Some(e.to_string())),
            }
        }
    }
}

/// The sha256 of a blob's uncompressed content, computed as its bytes arrive (so a layer's
/// diff_id costs no second read): a gzip stream is decompressed into a hasher, an uncompressed
/// blob's diff_id is its digest. Other formats (and a stream that does not decompress) are left
/// to [`crate::blob_cache::BlobCache::layer_diff_id`], which reads the cached blob once.
enum DiffTee {
    /// The first bytes, until there are enough to tell the format.
    Start(Vec<u8>),
    Gzip(Box<flate2::write::MultiGzDecoder<Hasher>>),
    Plain,
    Unknown,
}

impl DiffTee {
    fn update(&mut self, data: &[u8]) {
        if let DiffTee::Start(head) = self {
            head.extend_from_slice(data);
            if head.len() >= 8 {
                let head = std::mem::take(head);
                self.begin(&head);
            }
            return;
        }
        self.feed(data);
    }

    /// Chooses the format from the first bytes and feeds them.
    fn begin(&mut self, head: &[u8]) {
        *self = match crate::compress::sniff(head) {
            crate::compress::Compression::Gzip => {
                DiffTee::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Hasher::new())))
            }
            crate::compress::Compression::None => DiffTee::Plain,
            _ => DiffTee::Unknown,
        };
        self.feed(head);
    }

    fn feed(&mut self, data: &[u8]) {
        if let DiffTee::Gzip(d) = self
            && d.write_all(data).is_err()
        {
            *self = DiffTee::Unknown;
        }
    }

    /// The diff_id, given the blob's digest; `None` when it was not computed.
    fn finish(mut self, digest: &Digest) -> Option<Digest> {
        if let DiffTee::Start(head) = &mut self {
            let head = std::mem::take(head);
            self.begin(&head);
        }
        match self {
            DiffTee::Gzip(d) => d.finish().ok().map(Hasher::finish),
            DiffTee::Plain => Some(digest.clone()),
            DiffTee::Start(_) | DiffTee::Unknown => None,
        }
    }
}

/// The registry's side of [`resolve::resolve`]: children of an index by digest (through the
/// cache), configs as small blobs.
struct RegistryDocs<'a> {
    registry: &'a Registry,
    reference: &'a Reference,
    what: &'a str,
}

impl resolve::Documents for RegistryDocs<'_> {
    fn child(&self, desc: &Descriptor) -> Result<Document> {
        let (bytes, digest, media_type) =
            self.registry.manifest_bytes(self.reference, &desc.digest.to_string(), self.what)?;
        Ok(Document { bytes, digest, media_type })
    }
    fn config(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        self.registry.small_blob(self.reference, desc, &format!("config of {}", self.what))
    }
}

/// Layer bytes of a registry image: from the cache, fetched on demand.
struct RegistryBlobs {
    reference: Reference,
    registry: Registry,
}

impl BlobSource for RegistryBlobs {
    fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        let what = format!("blob {} of {}", desc.digest, self.reference);
        if let Some(r) = self.registry.cache.open_blob(desc, &what)? {
            return Ok(r);
        }
        self.registry.fetch_blob(&self.reference, desc, &what)?;
        self.registry
            .cache
            .open_blob(desc, &what)?
            .ok_or_else(|| Error::internal(format!("{what} vanished from the cache")))
    }
    fn prefetch(&self, desc: &Descriptor) -> Result<bool> {
        let what = format!("layer {} of {}", desc.digest, self.reference);
        if self.registry.cache.contains(desc) {
            return Ok(false);
        }
        self.registry.fetch_blob(&self.reference, desc, &what)?;
        Ok(true)
    }
    fn describe(&self) -> String {
        format!("registry {}", self.reference.registry)
    }
    fn diff_id(&self, desc: &Descriptor) -> Result<Option<Digest>> {
        let what = format!("layer {} of {}", desc.digest, self.reference);
        self.registry.cache.layer_diff_id(desc, &what)
    }
    fn is_local(&self) -> bool {
        false
    }
}
