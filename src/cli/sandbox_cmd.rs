//! `spxpack sandbox-run` (hidden): runs shell steps on an image with the RUN sandbox and writes
//! the result as a docker-save archive. A development and test tool for the sandbox until the
//! Dockerfile builder drives it.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::output::Term;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::sandbox::{self, Isolation, Network, Rootfs, RootfsCache, RunSpec, Snapshot};
use crate::source::{Resolver, Source};

#[derive(Debug, Args)]
pub struct SandboxRunArgs {
    /// Base image (same forms as `pull`).
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// A shell step (`/bin/sh -c CMD`). Repeatable; each makes a layer.
    #[arg(long = "run", value_name = "CMD")]
    pub steps: Vec<String>,
    #[arg(long, default_value = "linux/arm64", env = "SPXPACK_PLATFORM")]
    pub platform: String,
    /// auto, root, userns or proot.
    #[arg(long, default_value = "auto", env = "SPXPACK_ISOLATION")]
    pub isolation: String,
    /// host or none.
    #[arg(long, default_value = "host")]
    pub network: String,
    /// Extra CA certificates (PEM) trusted during the steps only.
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// qemu-user for the target architecture.
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    /// proot executable.
    #[arg(long, value_name = "PATH")]
    pub proot: Option<PathBuf>,
    /// USER for the steps (name, uid, name:group or uid:gid).
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long, default_value = "/")]
    pub workdir: String,
    /// Environment for the steps (KEY=VALUE). Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Output archive (.tar or .tar.gz).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// RepoTag for the output image.
    #[arg(long, default_value = "spxpack-sandbox:latest")]
    pub tag: String,
    /// Only detect and print what would be used.
    #[arg(long)]
    pub detect_only: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_name = "DIR", env = "SPXPACK_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[arg(long)]
    pub offline: bool,
}

pub fn run(a: SandboxRunArgs, term: &Term) -> Result<()> {
    let platform = Platform::parse(&a.platform)?;
    let network = match a.network.as_str() {
        "host" => Network::Host,
        "none" => Network::None,
        n => return Err(Error::input(format!("invalid network {n:?}")).with_hint("use host or none")),
    };
    let opts = sandbox::Options {
        isolation: Isolation::parse(&a.isolation)?,
        qemu: a.qemu.clone(),
        proot: a.proot.clone(),
        ..Default::default()
    };
    let t = Instant::now();
    let runner = sandbox::detect(&platform, &opts).map_err(|r| r.to_error())?;
    let detect_s = t.elapsed().as_secs_f64();
    tracing::info!("RUN sandbox: {} (detected in {detect_s:.2}s)\n{}", runner.describe(), runner.report);
    for w in &runner.warnings {
        eprintln!("warning: {w}");
    }
    if a.detect_only {
        if a.json {
            println!(
                "{}",
                serde_json::json!({"sandbox": runner.sandbox, "emulation": runner.emulation, "detect_s": detect_s})
            );
        } else {
            term.done(&format!("{}\n{}", runner.describe(), runner.report));
        }
        return Ok(());
    }
    let cache = crate::blob_cache::BlobCache::open(a.cache_dir.clone(), a.offline)?;
    let resolver = Resolver::new(cache.clone(), crate::registry::ClientOptions::default());
    let src = Source::parse(&a.source)?;
    let image = resolver.resolve(&src, &platform)?;
    let rcache = RootfsCache::in_blob_cache(&cache)?;
    let t = Instant::now();
    let rootfs = Rootfs::extract(&image, &runner, &rcache)?;
    let extract_s = t.elapsed().as_secs_f64();
    if !rootfs.skipped().is_empty() {
        eprintln!(
            "warning: {} base entries not extracted: {}",
            rootfs.skipped().len(),
            sandbox::extract::summarize_skipped(rootfs.skipped())
        );
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for e in &a.env {
        let (k, v) = e.split_once('=').ok_or_else(|| Error::input(format!("--env {e:?}: expected KEY=VALUE")))?;
        env.push((k.into(), v.into()));
    }
    let user = match &a.user {
        Some(u) => sandbox::resolve_user(rootfs.path(), u)?,
        None => (0, 0),
    };
    let epoch = crate::docker_archive::write::source_date_epoch();
    let layer_dir = rootfs.work_dir().join("layers");
    let mut layers = Vec::new();
    let mut steps_json = Vec::new();
    for cmd in &a.steps {
        let spec = RunSpec {
            env: env.clone(),
            workdir: a.workdir.clone(),
            user,
            network,
            ca_bundle: a.ca_bundle.clone(),
            ..RunSpec::shell(cmd)
        };
        let snap = Snapshot::take(&rootfs)?;
        let quiet = a.json;
        let out = runner.run(&rootfs, &spec, &mut |b| {
            if !quiet {
                let _ = std::io::stderr().write_all(b);
            }
        })?;
        if quiet && out.code != 0 {
            println!("{}", serde_json::json!({"run": cmd, "code": out.code, "output": out.tail}));
        }
        out.check()?;
        let layer = sandbox::diff::layer(&snap, &rootfs, &runner.layer_options(&spec, Some(epoch), &layer_dir))?;
        steps_json.push(serde_json::json!({
            "run": cmd, "code": out.code, "elapsed_s": out.elapsed.as_secs_f64(),
            "notes": out.notes, "user_emulated": out.user_emulated, "output": out.tail,
            "layer": {"digest": layer.digest.to_string(), "diff_id": layer.diff_id.to_string(), "size": layer.size,
                      "entries": layer.entries, "whiteouts": layer.whiteouts},
        }));
        layers.push((layer, format!("RUN /bin/sh -c {cmd} # spxpack")));
    }
    if let Some(outp) = &a.output {
        let built = sandbox::append::append_layers(&image, &layers, &sandbox::append::rfc3339(epoch))?;
        let opts = crate::docker_archive::WriteOptions::for_path(outp);
        crate::docker_archive::write_file(
            outp,
            &[crate::docker_archive::ArchiveImage { image: &built, tags: vec![a.tag.clone()] }],
            &opts,
            &|_| {},
        )?;
    }
    if a.json {
        let v = serde_json::json!({
            "sandbox": runner.sandbox, "emulation": runner.emulation, "detect_s": detect_s,
            "extract_s": extract_s, "rootfs_from_cache": rootfs.from_cache(),
            "skipped": rootfs.skipped(), "steps": steps_json,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        term.done(&format!(
            "ran {} step(s) with {}{}",
            a.steps.len(),
            runner.describe(),
            a.output.as_ref().map(|o| format!("; wrote {}", o.display())).unwrap_or_default()
        ));
    }
    Ok(())
}
