//! The SPX commands: `build` (compose-driven, or with the SDK script's flags), `init`, `verify`,
//! and `inspect` of an `.spx` file.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::output::Term;
use super::{LimitArgs, RegistryArgs, RunArgs};
use spxpack::compress::Limits;
use spxpack::error::{Error, Result};
use spxpack::host_env::HostEnv;
use spxpack::ops::pack::{self, PackOptions, VerifyLevel};
use spxpack::ops::verify::{VerifyOptions, verify_file};
use spxpack::ops::{init, inspect_spx as inspect};
use spxpack::platform::Platform;
use spxpack::problem::{Severity, warning_line};
use spxpack::progress::{Reporter, human_size};
use spxpack::spx::Target;

const SDK: &str = "Flags of the SDK's build_extension.py (same meaning; see docs/build-flags.md)";

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The extension directory holding manifest.json and docker-compose.yml (or compose.yaml)
    /// [default: --package-dir, else the current directory].
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The SPX to write [default: ./<extension_name>.spx].
    #[arg(short, long, visible_alias = "spx", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Target platform [default: linux/arm64 for CORE I/O, linux/amd64 when the manifest says
    /// installation_target: orbit].
    #[arg(long, value_name = "OS/ARCH", conflicts_with = "amd64")]
    pub platform: Option<String>,
    /// An image the robot already has (or pulls itself): not bundled, but allowed in the compose
    /// file. Same as `x-spxpack: {provided: true}` on the service. Repeatable.
    #[arg(long, value_name = "IMAGE")]
    pub provided: Vec<String>,
    /// Re-check the finished SPX before moving it into place: quick (structure, tags, configs),
    /// full (also every layer's diff_id), off.
    #[arg(long, value_enum, default_value = "quick")]
    pub verify: VerifyArg,
    /// Parallel layer downloads.
    #[arg(short, long, default_value_t = 4)]
    pub jobs: usize,
    /// Gzip level for content that is not compressed already (1-9).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub compression_level: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// After writing the SPX, push every bundled image whose compose image: name names a
    /// registry (REGISTRY/NAME:TAG) under that name, byte for byte.
    #[arg(long, help_heading = "Push")]
    pub push_images: bool,
    #[command(flatten)]
    pub upload: super::push::UploadArgs,

    /// The package directory (same as DIR).
    #[arg(short = 'm', long, value_name = "DIR", help_heading = SDK, conflicts_with = "dir")]
    pub package_dir: Option<PathBuf>,
    /// Take the images from --extra-image-tags (not from the compose file) and save them in this
    /// archive, which is also written at this path. Its name must be in manifest.json images.
    #[arg(short = 'i', long, value_name = "FILE", help_heading = SDK)]
    pub image_archive: Option<PathBuf>,
    /// Dockerfiles to build (context: each file's directory), one per --build-image-tags.
    #[arg(short = 'f', long, num_args = 1.., value_name = "DOCKERFILE", help_heading = SDK)]
    pub dockerfile_paths: Vec<PathBuf>,
    /// Tags for the --dockerfile-paths images.
    #[arg(short = 't', long, num_args = 1.., value_name = "TAG", help_heading = SDK)]
    pub build_image_tags: Vec<String>,
    /// Images pulled for the target platform (not the host's) and saved into the archive.
    #[arg(long, num_args = 1.., value_name = "IMAGE", help_heading = SDK)]
    pub extra_image_tags: Vec<String>,
    /// Build for linux/amd64 (Orbit).
    #[arg(long, help_heading = SDK)]
    pub amd64: bool,
    /// The icon, looked up in the package directory, then the current one; stored under its
    /// base name [default: icon.png when the package directory has one].
    #[arg(long, value_name = "FILE", help_heading = SDK)]
    pub icon: Option<PathBuf>,
    /// The udev rules file, looked up in the package directory, then the current one.
    #[arg(long, value_name = "FILE", help_heading = SDK)]
    pub udev_rule: Option<PathBuf>,
    /// Files or directories of the package directory stored (recursively) under their base name.
    #[arg(long, num_args = 1.., value_name = "PATH", help_heading = SDK)]
    pub additional_files: Vec<PathBuf>,
    /// Compose problems become warnings.
    #[arg(long, help_heading = SDK)]
    pub skip_docker_compose_validation: bool,

    /// Warnings about image content (ELF executables for another architecture) are errors.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyArg {
    Off,
    Quick,
    Full,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The directory to scaffold (created when missing).
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// The image: NAME:TAG (pulled at build time), a docker save archive, an OCI layout
    /// directory, or oci:DIR:TAG / oci-archive:FILE:TAG / docker-archive:FILE[:TAG].
    #[arg(long, value_name = "REF|ARCHIVE")]
    pub image: String,
    /// The extension name [default: the directory name].
    #[arg(long)]
    pub name: Option<String>,
    /// Reserve the CORE I/O GPU for the container.
    #[arg(long)]
    pub gpu: bool,
    /// An Orbit extension (installation_target orbit, linux/amd64).
    #[arg(long)]
    pub orbit: bool,
    /// Overwrite an existing manifest.json and docker-compose.yml.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The SPX file.
    #[arg(value_name = "FILE.spx")]
    pub file: PathBuf,
    /// Skip recomputing layer diff_ids (structure, manifest, compose and tags only).
    #[arg(long)]
    pub quick: bool,
    /// Check the images against this platform instead of the one installation_target implies.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Warnings fail too.
    #[arg(long)]
    pub strict: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub fn build(a: PackArgs, term: &Term) -> Result<()> {
    let opts = pack_options(&a, super::host_env())?;
    let started = std::time::Instant::now();
    let s = pack::pack(&opts, term)?;
    if a.json {
        return print_json(&s);
    }
    if let Some(p) = &s.image_archive {
        term.message(&format!("wrote the image archive {}", p.display()));
    }
    let images: usize = s.archives.iter().map(|a| a.tags.len()).sum();
    term.done(&format!(
        "wrote {} (extension {} for {}, {}: {} entries, {} image{}, {}) in {:.1}s",
        s.output.display(),
        s.extension_name,
        s.target.as_str(),
        s.platform,
        s.entries.len(),
        images,
        if images == 1 { "" } else { "s" },
        human_size(s.size),
        started.elapsed().as_secs_f32()
    ));
    Ok(())
}

/// The flags of `build` as [`PackOptions`]; `env` is the process environment.
fn pack_options(a: &PackArgs, env: HostEnv) -> Result<PackOptions> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("cannot read", Path::new("."), e))?;
    let dir = a.dir.clone().or(a.package_dir.clone()).unwrap_or_else(|| PathBuf::from("."));
    let mut opts = PackOptions::new(dir, cwd);
    opts.limits = a.limits.limits();
    opts.strict = a.strict;
    opts.platform = match (&a.platform, a.amd64) {
        (Some(p), _) => Some(Platform::parse(p)?),
        (None, true) => Some(Platform::linux_amd64()),
        (None, false) => None,
    };
    opts.output = a.output.clone();
    opts.provided = a.provided.clone();
    opts.image_archive = a.image_archive.clone();
    opts.dockerfiles = a.dockerfile_paths.clone();
    opts.build_tags = a.build_image_tags.clone();
    opts.extra_images = a.extra_image_tags.clone();
    opts.icon = a.icon.clone();
    opts.udev_rule = a.udev_rule.clone();
    opts.additional_files = a.additional_files.clone();
    opts.skip_compose_validation = a.skip_docker_compose_validation;
    opts.cache_dir = a.registry.cache_dir();
    opts.offline = a.registry.offline;
    opts.client = a.registry.client_options()?;
    opts.jobs = a.jobs;
    opts.level = a.compression_level;
    opts.verify = match a.verify {
        VerifyArg::Off => VerifyLevel::Off,
        VerifyArg::Quick => VerifyLevel::Quick,
        VerifyArg::Full => VerifyLevel::Full,
    };
    opts.epoch = env.source_date_epoch().unwrap_or(0);
    opts.run = a.run.options()?;
    opts.env = env;
    if a.push_images {
        if a.registry.offline {
            return Err(Error::input("--push-images needs the network; --offline cannot be used with it"));
        }
        opts.push_images = Some(a.upload.options(a.jobs));
    }
    Ok(opts)
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value).map_err(|e| Error::internal(e.to_string()))?);
    Ok(())
}

pub fn init(a: InitArgs, term: &Term) -> Result<()> {
    let opts = init::InitOptions {
        dir: a.dir.clone(),
        image: a.image.clone(),
        name: a.name.clone(),
        target: if a.orbit { Target::Orbit } else { Target::Spot },
        gpu: a.gpu,
        force: a.force,
    };
    let s = init::init(&opts)?;
    for (svc, image, source) in &s.services {
        match source {
            Some(src) => term.message(&format!("service {svc}: image {image} (taken from {src})")),
            None => term.message(&format!("service {svc}: image {image}")),
        }
    }
    let files: Vec<String> = s.files.iter().map(|p| p.display().to_string()).collect();
    term.done(&format!("wrote {}; next: spxpack build {}", files.join(" and "), a.dir.display()));
    Ok(())
}

pub fn verify(a: VerifyArgs, term: &Term) -> Result<()> {
    let platform = a.platform.as_deref().map(Platform::parse).transpose()?;
    let limits = a.limits.limits();
    let report = verify_file(&a.file, &VerifyOptions { full: !a.quick, platform, limits })?;
    let failed = report.findings.has_errors() || (a.strict && report.findings.warnings().next().is_some());
    if a.json {
        print_json(&report)?;
    } else {
        for f in &report.findings.0 {
            match f.severity {
                Severity::Warning => term.warn(&warning_line(f)),
                Severity::Error => {
                    term.warn(&format!("error: {}", f.message));
                    if let Some(h) = &f.hint {
                        term.warn(&format!("  hint: {h}"));
                    }
                }
            }
        }
    }
    if failed {
        return Err(Error::input(format!("{} failed verification ({})", a.file.display(), inspect::counts(&report)))
            .with_hint("fix the problems listed above and build the SPX again"));
    }
    if !a.json {
        let images: usize = report.archives.iter().map(|x| x.info.images.len()).sum();
        term.done(&format!(
            "ok: {} ({} for {}, {} image{} in {} archive{}, {} entries{}; {})",
            a.file.display(),
            report.extension_name.as_deref().unwrap_or("-"),
            report.platform,
            images,
            if images == 1 { "" } else { "s" },
            report.archives.len(),
            if report.archives.len() == 1 { "" } else { "s" },
            report.entries.len(),
            if a.quick { "" } else { ", layer diff_ids verified" },
            inspect::counts(&report)
        ));
    }
    Ok(())
}

/// `inspect` of an SPX: the report without layer hashing.
pub fn inspect_spx(path: &Path, json: bool, term: &Term) -> Result<()> {
    let report = verify_file(path, &VerifyOptions { full: false, platform: None, limits: Limits::default() })?;
    if json {
        return print_json(&report);
    }
    print!("{}", inspect::render(&report));
    if !report.findings.0.is_empty() {
        term.warn(&format!("note: {}; run spxpack verify {} for details", inspect::counts(&report), path.display()));
    }
    Ok(())
}

/// `123`, `64K`, `500M`, `64G`, `1T` (powers of 1024; a trailing `B`/`iB` is fine).
pub(crate) fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let bad = || Error::input(format!("{s:?} is not a size like 500M or 64G"));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).filter(|v| *v > 0).ok_or_else(|| Error::input(format!("{s:?} is zero or too large")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_sizes() {
        use super::parse_size;
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64G").unwrap(), 64 << 30);
        assert_eq!(parse_size("500MiB").unwrap(), 500 << 20);
        assert_eq!(parse_size("2k").unwrap(), 2048);
        assert_eq!(parse_size("1X").unwrap_err().message(), "\"1X\" is not a size like 500M or 64G");
        assert!(parse_size("0").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("lots").is_err());
    }
}
