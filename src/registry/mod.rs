//! Pulling from registries: resolve a reference to a single-platform [`Image`] (index →
//! platform → manifest → config), and fetch layer blobs into the blob cache with streaming
//! verification and `Range` resume. Manifests and configs are cached by digest and tags are
//! remembered, so a repeated pull only sends `HEAD` requests and `--offline` needs no network.

pub mod auth;
#[cfg(test)]
mod auth_tests;
pub mod client;
pub mod mirror;
#[cfg(test)]
mod resolve_tests;

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

pub use client::{Client, ClientOptions};
pub use mirror::Mirror;

use crate::blob_cache::BlobCache;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Kind, Result};
use crate::image::model::sniff_manifest_kind;
use crate::image::{BlobReader, BlobSource, ConfigView, Descriptor, Image, Index, Manifest, media, parse_json};
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
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
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
        let (mut bytes, mut digest, mut ctype) = self.manifest_bytes(r, &r.api_reference(), &what)?;
        let mut index_digest = None;
        for _depth in 0..4 {
            let kind = sniff_manifest_kind(&bytes, ctype.as_deref()).ok_or_else(|| {
                Error::input(format!(
                    "{what}: the registry returned a document that is neither a manifest nor an index"
                ))
            })?;
            if kind == media::DOCKER_MANIFEST_V1 || kind == media::DOCKER_MANIFEST_V1_SIGNED {
                return Err(Error::unsupported(format!(
                    "{what} is a Docker schema 1 manifest, which spxpack does not read"
                ))
                .with_hint("re-push the image with a current docker or skopeo to convert it to schema 2"));
            }
            if media::is_index(&kind) {
                let idx = Index::parse(&bytes, &format!("index of {what}"))?;
                let child = select_platform(&idx.manifests, platform, &what)?;
                index_digest.get_or_insert(digest.clone());
                let (b, d, c) = self.manifest_bytes(r, &child.digest.to_string(), &what)?;
                (bytes, digest, ctype) = (b, d, c);
                continue;
            }
            if !media::is_manifest(&kind) {
                return Err(Error::unsupported(format!("{what} has unsupported manifest type {kind:?}")));
            }
            let manifest = Manifest::parse(&bytes, &format!("manifest of {what}"))?;
            let config_raw = self.small_blob(r, &manifest.config, &format!("config of {what}"))?;
            let config: ConfigView = parse_json(&config_raw, &format!("config of {what}"))?;
            let _ = digest;
            let mut suggested = Vec::new();
            if let Some(t) = r.familiar_tagged() {
                suggested.push(t);
            }
            return Ok(Image {
                manifest_raw: bytes,
                manifest,
                config_raw,
                config,
                source: Arc::new(RegistryBlobs { reference: r.clone(), registry: self.clone_handle() }),
                origin: what,
                suggested_tags: suggested,
                index_digest,
            });
        }
        Err(Error::input(format!("{what}: indexes nested more than 4 levels deep")))
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
        let mut tmp = self.cache.new_temp()?;
        let mut hasher = Hasher::new();
        let mut got: u64 = 0;
        let mut attempts = 0u32;
        let path = format!("blobs/{}", desc.digest);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let mut headers = Vec::new();
            if got > 0 {
                headers.push(("Range", format!("bytes={got}-")));
            }
            let resp = client.request(r, &path, &headers, false, what);
            let mut resp = match resp {
                Ok(x) => x,
                Err(e) if e.kind() == Kind::NotFound => {
                    return Err(Error::not_found(format!(
                        "{what}: blob {} is missing from {}",
                        desc.digest,
                        r.full_name()
                    ))
                    .with_hint("the registry lost this blob; re-push the image"));
                }
                Err(e) => return Err(e),
            };
            let status = resp.status().as_u16();
            if got > 0 {
                let range_ok = status == 206
                    && resp
                        .headers()
                        .get("content-range")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split('-').next())
                        .and_then(|v| v.parse::<u64>().ok())
                        == Some(got);
                if !range_ok {
                    // the server ignored or botched the range: start over
                    got = 0;
                    hasher = Hasher::new();
                    tmp.as_file_mut().set_len(0).map_err(|e| Error::io("cannot truncate", tmp.path(), e))?;
                    tmp.as_file_mut().seek(SeekFrom::Start(0)).map_err(|e| Error::io("cannot seek", tmp.path(), e))?;
                    if status == 206 {
                        attempts += 1;
                        if attempts > client.options().retries {
                            return Err(Error::network(format!(
                                "{what}: registry sent a wrong Content-Range when resuming"
                            )));
                        }
                        continue;
                    }
                }
            }
            let mut body =
                resp.body_mut().with_config().limit(desc.size.saturating_add(1) - got.min(desc.size)).reader();
            let mut broken: Option<String> = None;
            loop {
                match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        got += n as u64;
                        if got > desc.size {
                            return Err(Error::integrity(format!(
                                "{what}: registry sent more than the {} bytes the descriptor declares",
                                desc.size
                            )));
                        }
                        hasher.update(&buf[..n]);
                        tmp.as_file_mut().write_all(&buf[..n]).map_err(|e| Error::io("cannot write", tmp.path(), e))?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        broken = Some(e.to_string());
                        break;
                    }
                }
            }
            drop(body);
            if got == desc.size {
                break;
            }
            attempts += 1;
            if attempts > client.options().retries {
                let why = broken.unwrap_or_else(|| "connection closed early".into());
                return Err(Error::network(format!("{what}: download stopped at {got} of {} bytes: {why}", desc.size))
                    .with_hint(
                        "the network or registry is unstable; run the command again (finished blobs are cached)",
                    ));
            }
            let wait = client.backoff(attempts - 1);
            tracing::warn!(
                "{what}: download interrupted at {got}/{} bytes, resuming in {:.1}s",
                desc.size,
                wait.as_secs_f32()
            );
            std::thread::sleep(wait);
        }
        let digest = hasher.finish();
        if digest != desc.digest {
            return Err(Error::integrity(format!(
                "digest mismatch for {what}: expected {}, registry sent {digest}",
                desc.digest
            ))
            .with_hint("the registry's copy is corrupt or was altered; re-push the image"));
        }
        self.cache.commit(tmp, &desc.digest)
    }
}

/// Picks the entry for `want` from an index; the error lists what the index has.
pub fn select_platform<'a>(entries: &'a [Descriptor], want: &Platform, what: &str) -> Result<&'a Descriptor> {
    let candidates: Vec<&Descriptor> =
        entries.iter().filter(|e| e.platform.as_ref().is_some_and(|p| p.satisfies(want))).collect();
    if let Some(first) = candidates.first() {
        return Ok(first);
    }
    let have: Vec<String> = entries
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(|p| p.normalized().to_string())
        .collect();
    let have = if have.is_empty() { "no platforms".to_string() } else { have.join(", ") };
    Err(Error::not_found(format!("{what} has no image for {}; the index has: {have}", want.normalized()))
        .with_hint("pick one of those with --platform, or use an image built for the robot's platform"))
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
    fn is_local(&self) -> bool {
        false
    }
}
