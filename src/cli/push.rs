//! `spxpack push SOURCE DEST`, and the upload flags `image build --push` and
//! `build --push-images` share.

use clap::Args;

use super::RegistryArgs;
use super::output::Term;
use spxpack::error::Result;
use spxpack::ops::push::{PushOptions, PushSummary, UploadOptions, UploadSizes};
use spxpack::platform::Platform;
use spxpack::progress::{Reporter, human_size};
use spxpack::source::Source;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image: an archive (FILE, FILE:TAG, FILE@N or docker-archive:FILE[:TAG|@N]),
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], or a registry reference.
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// Where to push: REGISTRY/REPOSITORY:TAG.
    #[arg(value_name = "DEST")]
    pub dest: String,
    /// Which image of a multi-platform source to push.
    #[arg(long, default_value = "linux/arm64", env = "SPXPACK_PLATFORM")]
    pub platform: String,
    /// Copy a registry index whole (every platform and its manifests byte for byte, so the
    /// index digest stays the same).
    #[arg(long)]
    pub all: bool,
    /// Parallel blob uploads.
    #[arg(short, long, default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub upload: UploadArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How blobs are uploaded.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Blobs up to this size are uploaded in one request; larger ones in chunks.
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = super::spx::parse_size, help_heading = "Push")]
    pub monolithic_max: u64,
    /// The chunk size of larger uploads (raised to the registry's OCI-Chunk-Min-Length); e.g. 4M
    /// for a registry or proxy that limits request sizes.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = super::spx::parse_size, help_heading = "Push")]
    pub chunk_size: u64,
}

impl UploadArgs {
    pub(crate) fn options(&self, jobs: usize) -> UploadOptions {
        UploadOptions { jobs, sizes: UploadSizes { monolithic_max: self.monolithic_max, chunk: self.chunk_size } }
    }
}

pub fn push(a: PushArgs, term: &Term) -> Result<()> {
    let started = std::time::Instant::now();
    let source = Source::parse_path_or_ref(&a.source)?;
    let opts = PushOptions {
        platform: Platform::parse(&a.platform)?,
        all: a.all,
        cache_dir: a.registry.cache_dir(),
        client: a.registry.client_options()?,
        upload: a.upload.options(a.jobs),
    };
    if a.registry.offline {
        return Err(spxpack::error::Error::input("push needs the network; --offline cannot be used with it"));
    }
    let s = spxpack::ops::push::push(&source, &a.dest, &opts, term)?;
    report(&s, a.json, started, term);
    Ok(())
}

/// Prints a push's result: JSON (`schema_version` 1) or one line.
pub(crate) fn report(s: &PushSummary, json: bool, started: std::time::Instant, term: &Term) {
    if json {
        println!("{}", serde_json::to_string_pretty(&summary_json(s)).expect("json"));
    } else {
        term.done(&format!(
            "pushed {} → {}@{} ({} uploaded, {} mounted, {} existing; {} sent) in {:.1}s",
            s.source,
            s.dest,
            s.digest,
            s.stats.uploaded,
            s.stats.mounted,
            s.stats.existing,
            human_size(s.stats.bytes_uploaded),
            started.elapsed().as_secs_f32()
        ));
    }
}

/// The JSON of one push.
pub(crate) fn summary_json(s: &PushSummary) -> serde_json::Value {
    serde_json::json!({
        "schema_version": 1,
        "source": s.source,
        "dest": s.dest,
        "digest": s.digest.to_string(),
        "blobs": { "uploaded": s.stats.uploaded, "mounted": s.stats.mounted, "existing": s.stats.existing },
        "bytes_uploaded": s.stats.bytes_uploaded,
    })
}

/// Reports a push's progress line (not with --json or --quiet).
pub(crate) fn pushed_line(s: &PushSummary, term: &Term) {
    term.message(&format!(
        "pushed {}@{} ({} uploaded, {} mounted, {} existing)",
        s.dest, s.digest, s.stats.uploaded, s.stats.mounted, s.stats.existing
    ));
}
