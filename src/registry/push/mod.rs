//! Pushing to a registry, as the OCI distribution spec 1.1 describes it: every blob is `HEAD`ed
//! first and skipped when the repository has it; a blob known to live in another repository of
//! the same registry is mounted (`POST …/blobs/uploads/?mount=<digest>&from=<repo>`; a `202`
//! answer is an ordinary upload session and the blob is uploaded into it); small blobs go up in
//! one `PUT`, larger ones as `PATCH` chunks (at least the registry's `OCI-Chunk-Min-Length`)
//! closed by a `PUT ?digest=`. After a broken connection, a 5xx or a 416 the upload asks the
//! registry how far it got (`GET` of the session, its `Range`) and goes on from there. Blobs
//! are pushed `jobs` at a time; manifests go last, children before the index, with their exact
//! bytes and media type, and the registry's `Docker-Content-Digest` is checked.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::client::{Payload, WriteRequest};
use super::{Client, Registry};
use crate::digest::Digest;
use crate::error::{Error, Kind, Result};
use crate::image::{BlobReader, BlobSource, Descriptor, Image, media};
use crate::reference::Reference;

mod upload;

pub use upload::UploadSizes;

/// How blobs are pushed.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Parallel blob uploads.
    pub jobs: usize,
    /// Upload sizes (one `PUT` up to a size, else `PATCH` chunks).
    pub sizes: UploadSizes,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions { jobs: 4, sizes: UploadSizes::default() }
    }
}

/// Where a blob's bytes come from.
#[derive(Clone)]
pub enum BlobBytes {
    /// Held in memory (configs).
    Inline(Arc<Vec<u8>>),
    /// Read from an image source (verified against the descriptor as it is read).
    Source(Arc<dyn BlobSource>),
}

impl BlobBytes {
    fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        match self {
            BlobBytes::Inline(b) => Ok(Box::new(std::io::Cursor::new(b.as_ref().clone()))),
            BlobBytes::Source(s) => s.open(desc),
        }
    }
}

/// One blob to push, and a repository of the same registry it may be mounted from.
#[derive(Clone)]
pub struct PlanBlob {
    pub desc: Descriptor,
    pub bytes: BlobBytes,
    pub mount_from: Option<String>,
}

/// A manifest or index, pushed with its exact bytes and media type.
#[derive(Debug, Clone)]
pub struct PlanManifest {
    pub raw: Vec<u8>,
    pub media_type: String,
}

impl PlanManifest {
    pub fn digest(&self) -> Digest {
        Digest::of(&self.raw)
    }
}

/// Everything one push sends: blobs (each once), then `children` by digest, then `root` under
/// the destination's tag.
pub struct PushPlan {
    /// The image, for messages (`docker-archive:app.tar@0`).
    pub what: String,
    pub blobs: Vec<PlanBlob>,
    pub children: Vec<PlanManifest>,
    pub root: PlanManifest,
}

impl PushPlan {
    /// The plan for one image: its config and layers, then its manifest.
    pub fn for_image(image: &Image) -> Self {
        let m = &image.manifest;
        let mut blobs = vec![PlanBlob {
            desc: m.config.clone(),
            bytes: BlobBytes::Inline(Arc::new(image.config_raw.clone())),
            mount_from: None,
        }];
        for l in &m.layers {
            if !blobs.iter().any(|b| b.desc.digest == l.digest) {
                blobs.push(PlanBlob {
                    desc: l.clone(),
                    bytes: BlobBytes::Source(image.source.clone()),
                    mount_from: None,
                });
            }
        }
        let media_type = m.media_type.clone().unwrap_or_else(|| {
            if m.config.media_type == media::DOCKER_CONFIG { media::DOCKER_MANIFEST } else { media::OCI_MANIFEST }
                .to_string()
        });
        PushPlan {
            what: image.origin.clone(),
            blobs,
            children: Vec::new(),
            root: PlanManifest { raw: image.manifest_raw.clone(), media_type },
        }
    }

    /// The plan for everything `r` names in its registry: an index with every child manifest
    /// (nested indexes too) and all their blobs, whatever their media types (attestations,
    /// artifacts), or a single manifest.
    pub fn for_registry_tree(registry: &Registry, r: &Reference) -> Result<Self> {
        let what = r.to_string();
        let (raw, _, ctype) = registry.document(r, &r.api_reference(), &what)?;
        let mut plan = PushPlan {
            what: what.clone(),
            blobs: Vec::new(),
            children: Vec::new(),
            root: PlanManifest { raw: Vec::new(), media_type: String::new() },
        };
        let source = registry.blob_source(r);
        plan.root = plan.walk(registry, r, raw, ctype, &source, 0)?;
        Ok(plan)
    }

    /// Adds the blobs and children of one document; returns the document itself.
    fn walk(
        &mut self,
        registry: &Registry,
        r: &Reference,
        raw: Vec<u8>,
        ctype: Option<String>,
        source: &Arc<dyn BlobSource>,
        depth: usize,
    ) -> Result<PlanManifest> {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(default)]
            manifests: Vec<Descriptor>,
            #[serde(default)]
            config: Option<Descriptor>,
            #[serde(default)]
            layers: Vec<Descriptor>,
        }
        let what = format!("{} of {}", Digest::of(&raw), self.what);
        let media_type = crate::image::model::sniff_manifest_kind(&raw, ctype.as_deref())
            .ok_or_else(|| Error::input(format!("{what} is neither a manifest nor an index")))?;
        if depth > 4 {
            return Err(Error::input(format!("{}: indexes nested more than 4 deep", self.what)));
        }
        let doc: Doc = crate::image::parse_json(&raw, &what)?;
        for child in &doc.manifests {
            let (bytes, _, ct) = registry.document(r, &child.digest.to_string(), &self.what)?;
            let ct = ct.or_else(|| Some(child.media_type.clone()));
            let m = self.walk(registry, r, bytes, ct, source, depth + 1)?;
            if !self.children.iter().any(|c| c.raw == m.raw) {
                self.children.push(m);
            }
        }
        for d in doc.config.iter().chain(&doc.layers) {
            if !self.blobs.iter().any(|b| b.desc.digest == d.digest) {
                self.blobs.push(PlanBlob {
                    desc: d.clone(),
                    bytes: BlobBytes::Source(source.clone()),
                    mount_from: None,
                });
            }
        }
        Ok(PlanManifest { raw, media_type })
    }
}

/// What a push did with the blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushStats {
    pub uploaded: usize,
    pub mounted: usize,
    pub existing: usize,
    /// Bytes of the uploaded blobs.
    pub bytes_uploaded: u64,
}

/// What happened to one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    Existing,
    Mounted,
    Uploaded,
}

/// Pushes plans to one destination.
pub struct Pusher<'a> {
    pub client: &'a Client,
    pub dest: &'a Reference,
    pub opts: &'a PushOptions,
    /// Called with the bytes sent.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// Called once per finished blob.
    pub on_blob: &'a (dyn Fn(&Descriptor, &BlobOutcome) + Sync),
}

impl Pusher<'_> {
    /// The token scope of writes to the destination.
    fn scope(&self) -> String {
        format!("repository:{}:pull,push", self.dest.repository)
    }

    /// Pushes `plan`: the blobs in parallel, then the manifests. Returns the root's digest.
    pub fn push(&self, plan: &PushPlan) -> Result<(Digest, PushStats)> {
        if let Some(want) = &self.dest.digest
            && *want != plan.root.digest()
        {
            return Err(Error::input(format!(
                "{}: the destination names digest {want}, but {} has digest {}",
                self.dest,
                plan.what,
                plan.root.digest()
            ))
            .with_hint("push to a tag (NAME:TAG), or give the image's own digest"));
        }
        let stats = self.push_blobs(plan)?;
        for child in &plan.children {
            self.put_manifest(child, &child.digest().to_string())?;
        }
        let digest = self.put_manifest(&plan.root, &self.dest.api_reference())?;
        Ok((digest, stats))
    }

    /// Pushes every blob, `jobs` at a time, biggest first; the first error stops the rest.
    fn push_blobs(&self, plan: &PushPlan) -> Result<PushStats> {
        let mut work: Vec<&PlanBlob> = plan.blobs.iter().collect();
        work.sort_by(|a, b| b.desc.size.cmp(&a.desc.size).then(a.desc.digest.cmp(&b.desc.digest)));
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        let stats = Mutex::new(PushStats::default());
        std::thread::scope(|s| {
            for _ in 0..self.opts.jobs.clamp(1, 16).min(work.len().max(1)) {
                s.spawn(|| {
                    loop {
                        if first_error.lock().expect("poisoned").is_some() {
                            return;
                        }
                        let Some(b) = work.get(next.fetch_add(1, Ordering::SeqCst)) else { return };
                        match self.push_blob(plan, b) {
                            Ok(outcome) => {
                                let mut st = stats.lock().expect("poisoned");
                                match outcome {
                                    BlobOutcome::Existing => st.existing += 1,
                                    BlobOutcome::Mounted => st.mounted += 1,
                                    BlobOutcome::Uploaded => {
                                        st.uploaded += 1;
                                        st.bytes_uploaded += b.desc.size;
                                    }
                                }
                                drop(st);
                                (self.on_blob)(&b.desc, &outcome);
                            }
                            Err(e) => {
                                first_error.lock().expect("poisoned").get_or_insert(e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        match first_error.into_inner().expect("poisoned") {
            Some(e) => Err(e),
            None => Ok(stats.into_inner().expect("poisoned")),
        }
    }

    /// One blob: `HEAD`, else mount, else upload.
    fn push_blob(&self, plan: &PushPlan, b: &PlanBlob) -> Result<BlobOutcome> {
        let what = format!("blob {} of {}", b.desc.digest, plan.what);
        if self.exists(&b.desc.digest, &what)? {
            return Ok(BlobOutcome::Existing);
        }
        let session = match b.mount_from.as_deref().filter(|f| *f != self.dest.repository) {
            Some(from) => match self.mount(&b.desc.digest, from, &what)? {
                None => return Ok(BlobOutcome::Mounted),
                Some(session) => session,
            },
            None => self.start(&what)?,
        };
        upload::Upload { pusher: self, blob: b, what: &what }.run(session)?;
        Ok(BlobOutcome::Uploaded)
    }

    /// Whether the destination repository has the blob (`HEAD`; a redirect to the storage
    /// behind the registry counts as yes).
    fn exists(&self, d: &Digest, what: &str) -> Result<bool> {
        let url = self.client.endpoint(self.dest, &format!("blobs/{d}"))?;
        let scope = self.scope();
        let req = WriteRequest { method: "HEAD", url: &url, headers: &[], scope: &scope, what };
        let mut resp = self.client.write(self.dest, &req, Payload::Empty)?;
        match resp.status().as_u16() {
            200..=399 => Ok(true),
            404 => Ok(false),
            s => Err(self.refused(what, "cannot check for the blob", s, &mut resp)),
        }
    }

    /// Tries a cross-repository mount: `None` when mounted, else the upload session the
    /// registry opened instead (`202`), or a new one.
    fn mount(&self, d: &Digest, from: &str, what: &str) -> Result<Option<upload::Session>> {
        let url = self.client.endpoint(self.dest, &format!("blobs/uploads/?mount={d}&from={from}"))?;
        let scope = format!("{} repository:{from}:pull", self.scope());
        let req = WriteRequest { method: "POST", url: &url, headers: &[], scope: &scope, what };
        let resp = match self.client.write(self.dest, &req, Payload::Empty) {
            Ok(resp) => resp,
            // a token server may refuse the pull right on the source repository as a whole
            Err(e) if e.kind() == Kind::Auth => {
                tracing::info!("{what}: no access to {from} for a mount ({e}); uploading");
                return Ok(Some(self.start(what)?));
            }
            Err(e) => return Err(e),
        };
        match resp.status().as_u16() {
            201 => {
                tracing::info!("{what}: mounted from {from}");
                Ok(None)
            }
            202 => {
                tracing::info!("{what}: the registry did not mount it from {from}; uploading");
                Ok(Some(upload::Session::from_response(self, &url, &resp)?))
            }
            s => {
                tracing::info!("{what}: mount from {from} answered HTTP {s}; uploading");
                Ok(Some(self.start(what)?))
            }
        }
    }

    /// Opens an upload session (`POST …/blobs/uploads/`).
    fn start(&self, what: &str) -> Result<upload::Session> {
        let url = self.client.endpoint(self.dest, "blobs/uploads/")?;
        let scope = self.scope();
        let req = WriteRequest { method: "POST", url: &url, headers: &[], scope: &scope, what };
        let mut resp = self.client.write(self.dest, &req, Payload::Empty)?;
        match resp.status().as_u16() {
            202 => upload::Session::from_response(self, &url, &resp),
            s => Err(self.refused(what, "cannot start an upload", s, &mut resp)),
        }
    }

    /// `PUT`s a manifest under `reference` (a tag or its digest); checks the digest the
    /// registry reports.
    fn put_manifest(&self, m: &PlanManifest, reference: &str) -> Result<Digest> {
        let url = self.client.endpoint(self.dest, &format!("manifests/{reference}"))?;
        let scope = self.scope();
        let what = format!("manifest {}", m.digest());
        let headers = [("Content-Type", m.media_type.clone())];
        let req = WriteRequest { method: "PUT", url: &url, headers: &headers, scope: &scope, what: &what };
        let mut resp = self.client.write(self.dest, &req, Payload::Bytes(&m.raw))?;
        let status = resp.status().as_u16();
        if status != 201 && status != 200 {
            let detail = super::client::error_detail(&mut resp);
            let d = if detail.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {detail}") };
            let e = format!("the registry rejected the manifest {} ({d})", m.digest());
            return Err(if status >= 500 { Error::network(e) } else { Error::input(e) }
                .with_hint("the registry may not accept this media type, or lost a blob; run the push again"));
        }
        let want = m.digest();
        check_digest(&resp, &want, &what)?;
        Ok(want)
    }

    /// The error for an unexpected status of a blob request.
    fn refused(&self, what: &str, doing: &str, status: u16, resp: &mut ureq::http::Response<ureq::Body>) -> Error {
        let detail = super::client::error_detail(resp);
        let d = if detail.is_empty() { String::new() } else { format!(": {detail}") };
        let msg = format!("{what}: {doing} in {} (HTTP {status}{d})", self.dest.full_name());
        if status >= 500 || status == 429 { Error::network(msg) } else { Error::input(msg) }
    }
}

/// Checks the registry's `Docker-Content-Digest` (when it sends one) against `want`.
fn check_digest(resp: &ureq::http::Response<ureq::Body>, want: &Digest, what: &str) -> Result<()> {
    let got = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok());
    match got {
        Some(g) if g.trim() != want.to_string() => {
            Err(Error::integrity(format!("{what}: the registry reports digest {}, not {want}", g.trim()))
                .with_hint("the registry changed the content; it must store blobs and manifests byte for byte"))
        }
        _ => Ok(()),
    }
}

/// A reader over a source blob that reads to the source's end after its last byte, so the
/// source's own verification (size and digest) runs before the registry is told the blob is
/// complete.
fn read_exact_at_end(r: &mut dyn Read) -> std::io::Result<()> {
    let mut one = [0u8; 1];
    match r.read(&mut one)? {
        0 => Ok(()),
        _ => Err(std::io::Error::other("the source has more bytes than its descriptor says")),
    }
}
