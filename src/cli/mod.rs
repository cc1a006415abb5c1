//! The command line: clap types, settings from flags and environment, and printing. Nothing
//! below this module knows about clap.

mod image;
mod output;
mod push;
mod sandbox_cmd;
mod spx;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use output::Term;
use spxpack::error::{Error, Result};
use spxpack::platform::Platform;
use spxpack::registry::ClientOptions;
use spxpack::registry::auth::CredentialOptions;
use spxpack::source::{Resolver, Source};

#[derive(Debug, Parser)]
#[command(
    name = "spxpack",
    version,
    about = "Build Spot Extensions (.spx) and docker-save archives without a Docker daemon"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Print only errors and the final result.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull images (registry, OCI layout or archive) and write one docker-save archive.
    ///
    /// The daemonless equivalent of `docker pull --platform linux/arm64 A B && docker save A B | gzip`.
    /// Sources: NAME[:TAG][@DIGEST], docker://REF, oci:DIR[:TAG], oci-archive:FILE[:TAG],
    /// docker-archive:FILE[:TAG|@N]. The output suffix decides: .tar.gz/.tgz is gzipped, anything else plain tar.
    Pull(PullArgs),
    /// Push an image (archive, OCI layout or registry image) to a registry, byte for byte.
    ///
    /// Layers, config and manifest keep their exact bytes, so the registry's digest is the
    /// source's manifest digest. Blobs the repository has are skipped, blobs another repository
    /// of the registry has are mounted, the rest are uploaded (-j at a time). With --all a
    /// registry index is copied whole (registry → registry mirroring).
    Push(push::PushArgs),
    /// Show tags, platform, image ID and layers of an archive, OCI layout or registry image, or
    /// what an .spx holds (entries, manifest, images, compose services).
    Inspect(InspectArgs),
    /// Build a Spot Extension (.spx) from an extension directory.
    ///
    /// Reads manifest.json and docker-compose.yml, pulls every service's image for the target
    /// platform (linux/arm64 for CORE I/O; linux/amd64 for installation_target orbit), and writes
    /// the SPX with the images saved under their compose image: names. The flags of the SDK's
    /// build_extension.py are accepted with the same meaning (see docs/build-flags.md).
    Build(Box<spx::PackArgs>),
    /// Create manifest.json and docker-compose.yml for an image.
    Init(spx::InitArgs),
    /// Check an existing .spx offline: manifest rules, compose file, and every image archive
    /// replayed through docker load's checks (layer diff_ids, tags, platform, compression).
    Verify(spx::VerifyArgs),
    /// Run shell steps on an image in the RUN sandbox (development tool).
    #[command(hide = true)]
    SandboxRun(sandbox_cmd::SandboxRunArgs),
    /// Build images from Dockerfiles without a Docker daemon.
    #[command(subcommand)]
    Image(image::ImageCommand),
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Credentials for registries: USER:PASS (all registries) or REGISTRY=USER:PASS. Repeatable.
    /// Prefer $SPXPACK_CREDS in CI so the secret stays out of the process list.
    #[arg(long, value_name = "[REGISTRY=]USER:PASS", env = "SPXPACK_CREDS", hide_env_values = true)]
    pub creds: Vec<String>,
    /// Credentials file in docker config.json / podman auth.json format.
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
    /// Never send credentials.
    #[arg(long)]
    pub no_creds: bool,
    /// Allow plain HTTP and unverified TLS for this registry host[:port]. Repeatable.
    /// Loopback registries (127.0.0.1, localhost) may always use HTTP.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Also trust the CA certificates in this PEM file. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,
    /// Also trust every *.crt in this directory (or DIR/HOST:PORT/*.crt, the certs.d layout).
    /// /etc/docker/certs.d and /etc/containers/certs.d are always used.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Vec<PathBuf>,
    /// Retries per request on HTTP 429/5xx and connection errors.
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// The longest wait between retries, in seconds (waits double from 0.3 s up to this, with
    /// random jitter).
    #[arg(long, value_name = "SECS", default_value_t = 8.0)]
    pub retry_max_delay: f64,
    /// Seconds to wait for a connection (and the TLS handshake) to a registry or an ADD URL.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,
    /// Seconds a server may keep spxpack waiting: for its answer, for any read, or for each
    /// 1 KiB of a body. A stalled blob download resumes with a Range request, as a broken one.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub read_timeout: u64,
    /// Blob cache directory [default: $XDG_CACHE_HOME/spxpack or ~/.cache/spxpack].
    #[arg(long, value_name = "DIR", env = "SPXPACK_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Never touch the network: use only cached manifests and blobs.
    #[arg(long)]
    pub offline: bool,
    /// Pull images of REGISTRY from a mirror instead (e.g. docker.io=registry.local:5000), also
    /// for Dockerfile FROM lines; image names, saved tags and the compose file keep the original
    /// registry. Repeatable, or comma-separated in the environment.
    #[arg(long, value_name = "REGISTRY=HOST[/PREFIX]", env = "SPXPACK_REGISTRY_MIRROR", value_delimiter = ',')]
    pub registry_mirror: Vec<String>,
}

/// Decompression-bomb guards for compressed inputs: `docker-archive:`/`oci-archive:` files,
/// archives that `ADD` unpacks, and (in `verify`) the SPX, its image archives and layers.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Decompression-bomb guard: the most bytes one compressed input stream (an input archive,
    /// an SPX, an image archive, a layer) may expand to. Suffixes K, M, G, T (powers of 1024).
    #[arg(long, value_name = "SIZE", default_value = "64G", value_parser = spx::parse_size)]
    pub max_decompressed: u64,
    /// Decompression-bomb guard: the most a compressed stream may expand (decompressed ÷
    /// compressed bytes), checked once 64 MiB came out.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_ratio: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> spxpack::compress::Limits {
        spxpack::compress::Limits { max_bytes: self.max_decompressed, max_ratio: self.max_ratio }
    }
}

/// How RUN steps are executed (`image build` and `build`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Sandbox for RUN steps: auto (try root, then a user namespace, then proot), root,
    /// userns or proot.
    #[arg(long, default_value = "auto", env = "SPXPACK_ISOLATION", value_name = "MODE", help_heading = "RUN steps")]
    pub isolation: String,
    /// qemu-user for RUN steps of a foreign architecture, e.g. /usr/bin/qemu-aarch64-static
    /// [default: qemu-ARCH-static or qemu-ARCH on PATH; the kernel's binfmt handler first].
    #[arg(long, value_name = "PATH", env = "SPXPACK_QEMU", help_heading = "RUN steps")]
    pub qemu: Option<PathBuf>,
    /// proot 5.3 or later for the proot sandbox [default: proot on PATH].
    #[arg(long, value_name = "PATH", env = "SPXPACK_PROOT", help_heading = "RUN steps")]
    pub proot: Option<PathBuf>,
    /// Extra CA certificates (PEM) that RUN steps trust (pip, curl, apt, git, node…), e.g. a
    /// TLS-intercepting proxy's CA or /etc/ssl/certs/ca-certificates.crt. Never written into
    /// the image.
    #[arg(long, value_name = "FILE", env = "SPXPACK_CA_BUNDLE", help_heading = "RUN steps")]
    pub ca_bundle: Option<PathBuf>,
    /// A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR. Repeatable.
    #[arg(long, value_name = "id=ID,src=FILE", help_heading = "RUN steps")]
    pub secret: Vec<String>,
}

impl RunArgs {
    pub(crate) fn options(&self) -> Result<spxpack::dockerfile::run::RunOptions> {
        if let Some(c) = &self.ca_bundle
            && !spxpack::input::names_a_file(c)
        {
            return Err(Error::not_found(format!("--ca-bundle {}: no such file", c.display()))
                .with_hint("pass a PEM file, e.g. /etc/ssl/certs/ca-certificates.crt"));
        }
        Ok(spxpack::dockerfile::run::RunOptions {
            isolation: spxpack::sandbox::Isolation::parse(&self.isolation)?,
            qemu: self.qemu.clone(),
            proot: self.proot.clone(),
            helper: None,
            ca_bundle: self.ca_bundle.clone(),
            secrets: self.secret.iter().map(|s| spxpack::dockerfile::run::Secret::parse(s)).collect::<Result<_>>()?,
            env: host_env(),
        })
    }
}

/// The process environment: the one place spxpack reads it (clippy.toml forbids it elsewhere);
/// the library only sees it as data.
#[allow(clippy::disallowed_methods)]
pub(crate) fn host_env() -> spxpack::host_env::HostEnv {
    spxpack::host_env::HostEnv::from_vars(std::env::vars_os())
}

impl RegistryArgs {
    /// `--cache-dir`, else the default location for this user's environment.
    pub(crate) fn cache_dir(&self) -> Option<PathBuf> {
        Some(self.cache_dir.clone().unwrap_or_else(|| spxpack::blob_cache::default_dir(&host_env())))
    }
    pub(crate) fn client_options(&self) -> Result<ClientOptions> {
        let mut creds =
            CredentialOptions { authfile: self.authfile.clone(), anonymous: self.no_creds, ..Default::default() };
        for c in &self.creds {
            creds.add_creds(c)?;
        }
        Ok(ClientOptions {
            insecure_registries: self.insecure_registry.clone(),
            ca_certs: self.ca_cert.clone(),
            cert_dirs: self.cert_dir.clone(),
            creds,
            retries: self.retries,
            retry_max_delay: std::time::Duration::try_from_secs_f64(self.retry_max_delay).map_err(|_| {
                Error::input(format!("--retry-max-delay {}: not a number of seconds", self.retry_max_delay))
                    .with_hint("give seconds, e.g. --retry-max-delay 30")
            })?,
            timeouts: spxpack::http::Timeouts {
                connect: std::time::Duration::from_secs(self.connect_timeout),
                read: std::time::Duration::from_secs(self.read_timeout),
            },
            mirrors: spxpack::registry::Mirror::parse_all(&self.registry_mirror)?,
            env: host_env(),
            ..Default::default()
        })
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Images to pull.
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Output archive (.tar, .tar.gz or .tgz).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Target platform: linux/arm64 (CORE I/O) or linux/amd64 (Orbit).
    #[arg(long, default_value = "linux/arm64", env = "SPXPACK_PLATFORM")]
    pub platform: String,
    /// Parallel layer downloads.
    #[arg(short, long, default_value_t = 4)]
    pub jobs: usize,
    /// Gzip level for content that is not already compressed (1-9), with a .gz output.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub compression_level: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Warnings about image content (ELF executables for another architecture) are errors.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An archive file, OCI layout directory, or image reference (same forms as `pull`).
    #[arg(value_name = "ARCHIVE_OR_REF")]
    pub source: String,
    /// Which image of a multi-platform index.
    #[arg(long, default_value = "linux/arm64", env = "SPXPACK_PLATFORM")]
    pub platform: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let term = Term::new(cli.quiet);
    match cli.command {
        Command::Pull(a) => pull(a, &term),
        Command::Push(a) => push::push(a, &term),
        Command::Inspect(a) => inspect(a, &term),
        Command::Build(a) => spx::build(*a, &term),
        Command::Init(a) => spx::init(a, &term),
        Command::Verify(a) => spx::verify(a, &term),
        Command::SandboxRun(a) => sandbox_cmd::run(a, &term),
        Command::Image(image::ImageCommand::Build(a)) => image::build(*a, &term),
    }
}

/// `SOURCE_DATE_EPOCH` of this process, else 0: the time written into images and archives.
pub(crate) fn source_date_epoch() -> u64 {
    host_env().source_date_epoch().unwrap_or(0)
}

fn pull(a: PullArgs, term: &Term) -> Result<()> {
    let platform = Platform::parse(&a.platform)?;
    let sources = a.sources.iter().map(|s| Source::parse(s)).collect::<Result<Vec<_>>>()?;
    let mut write = spxpack::docker_archive::WriteOptions::for_path(&a.output, source_date_epoch());
    write.level = a.compression_level;
    let opts = spxpack::ops::pull::PullOptions {
        platform,
        output: a.output.clone(),
        cache_dir: a.registry.cache_dir(),
        offline: a.registry.offline,
        client: a.registry.client_options()?,
        jobs: a.jobs,
        write: Some(write),
        limits: a.limits.limits(),
        strict: a.strict,
    };
    let started = std::time::Instant::now();
    let s = spxpack::ops::pull::pull(&sources, &opts, term)?;
    if a.json {
        let v = serde_json::json!({
            "output": s.output,
            "images": s.images.iter().map(|i| serde_json::json!({
                "source": i.origin, "tags": i.tags, "id": i.id, "layers": i.layers, "size": i.size,
            })).collect::<Vec<_>>(),
            "blobs": s.archive.blobs,
            "tar_bytes": s.archive.tar_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        let size = std::fs::metadata(&s.output).map(|m| m.len()).unwrap_or(0);
        term.done(&format!(
            "wrote {} ({} image{}, {} blobs, {}) in {:.1}s",
            s.output.display(),
            s.images.len(),
            if s.images.len() == 1 { "" } else { "s" },
            s.archive.blobs,
            spxpack::progress::human_size(size),
            started.elapsed().as_secs_f32()
        ));
    }
    Ok(())
}

fn inspect(a: InspectArgs, term: &Term) -> Result<()> {
    let path = std::path::Path::new(&a.source);
    if a.source.to_ascii_lowercase().ends_with(".spx") && !path.exists() {
        return Err(Error::not_found(format!("{}: no such file", a.source)));
    }
    if path.is_file() && spxpack::ops::inspect_spx::looks_like_spx(path) {
        return spx::inspect_spx(path, a.json, term);
    }
    let platform = Platform::parse(&a.platform)?;
    let src = Source::parse_path_or_ref(&a.source)?;
    let cache = spxpack::blob_cache::BlobCache::open(a.registry.cache_dir(), a.registry.offline)?;
    let resolver = Resolver::new(cache, a.registry.client_options()?).with_limits(a.limits.limits());
    let report = match spxpack::ops::inspect::inspect(&resolver, &src, &platform) {
        Ok(r) => r,
        // an SPX with its manifest.json further in (e.g. made with `tar czf x *`)
        Err(e) if path.is_file() && spxpack::ops::inspect_spx::has_extension_manifest(path) => {
            drop(e);
            return spx::inspect_spx(path, a.json, term);
        }
        Err(e) => return Err(e),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| Error::internal(e.to_string()))?);
    } else {
        print!("{}", spxpack::ops::inspect::render(&report));
    }
    Ok(())
}
