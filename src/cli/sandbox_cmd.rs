//! `spxpack sandbox-run` (hidden): runs shell steps on an image in the RUN sandbox and writes
//! the result as a docker-save archive — a development and test tool. It is a thin front end
//! to the Dockerfile builder: the flags become `FROM SOURCE`, `ENV`, `USER`, `WORKDIR` and one
//! `RUN ["/bin/sh", "-c", CMD]` per `--run`, built like `spxpack image build` would.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;

use super::output::Term;
use spxpack::dockerfile::run::{RunOptions, SandboxExecutor};
use spxpack::dockerfile::{self, BuildOptions};
use spxpack::error::{Error, Result};
use spxpack::platform::Platform;
use spxpack::sandbox::{self, Isolation};
use spxpack::source::Resolver;

#[derive(Debug, Args)]
pub struct SandboxRunArgs {
    /// Base image (the forms FROM accepts: NAME[:TAG], oci:DIR[:TAG], docker-archive:FILE…).
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

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("json")
}

/// The Dockerfile the flags describe.
fn dockerfile(a: &SandboxRunArgs) -> Result<String> {
    let network = match a.network.as_str() {
        "host" => "",
        "none" => "--network=none ",
        n => return Err(Error::input(format!("invalid network {n:?}")).with_hint("use host or none")),
    };
    let mut df = format!("FROM {}\n", a.source);
    for e in &a.env {
        let (k, v) = e.split_once('=').ok_or_else(|| Error::input(format!("--env {e:?}: expected KEY=VALUE")))?;
        df.push_str(&format!("ENV {k}={}\n", json_str(v)));
    }
    if let Some(u) = &a.user {
        df.push_str(&format!("USER {u}\n"));
    }
    if a.workdir != "/" {
        df.push_str(&format!("WORKDIR {}\n", a.workdir));
    }
    for cmd in &a.steps {
        df.push_str(&format!("RUN {network}[\"/bin/sh\", \"-c\", {}]\n", json_str(cmd)));
    }
    Ok(df)
}

pub fn run(a: SandboxRunArgs, term: &Term) -> Result<()> {
    let platform = Platform::parse(&a.platform)?;
    let run_opts = RunOptions {
        isolation: Isolation::parse(&a.isolation)?,
        qemu: a.qemu.clone(),
        proot: a.proot.clone(),
        helper: None,
        ca_bundle: a.ca_bundle.clone(),
        secrets: Vec::new(),
        env: super::host_env(),
    };
    if a.detect_only {
        let opts = sandbox::Options {
            isolation: run_opts.isolation,
            qemu: a.qemu.clone(),
            proot: a.proot.clone(),
            env: run_opts.env.clone(),
            ..Default::default()
        };
        let t = Instant::now();
        let runner = sandbox::detect(&platform, &opts).map_err(|r| r.to_error())?;
        let detect_s = t.elapsed().as_secs_f64();
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
    let dir = tempfile::Builder::new()
        .prefix("spxpack-sandbox-run-")
        .tempdir()
        .map_err(|e| Error::io("cannot create a temporary directory in", &std::env::temp_dir(), e))?;
    let df_path = dir.path().join("Dockerfile");
    std::fs::write(&df_path, dockerfile(&a)?).map_err(|e| Error::io("cannot write", &df_path, e))?;
    let mut opts = BuildOptions::new(&df_path, dir.path());
    opts.platform = platform;
    opts.epoch = super::source_date_epoch();
    opts.no_cache = true; // a sandbox tool: always run the steps
    let executor = Arc::new(SandboxExecutor::new(run_opts));
    opts.executor = Some(executor.clone());
    let cache = spxpack::blob_cache::BlobCache::open(
        Some(a.cache_dir.clone().unwrap_or_else(|| spxpack::blob_cache::default_dir(&super::host_env()))),
        a.offline,
    )?;
    let resolver =
        Resolver::new(cache, spxpack::registry::ClientOptions { env: super::host_env(), ..Default::default() });
    let quiet = Term::new(true); // warnings only
    let reporter: &dyn spxpack::progress::Reporter = if a.json { &quiet } else { term };
    let built = dockerfile::build(&opts, &resolver, reporter);
    let steps = executor.steps();
    let steps_json: Vec<serde_json::Value> = steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "run": s.argv.last(), "code": s.code, "elapsed_s": s.elapsed_s, "cached": s.cached,
                "notes": s.notes, "user_emulated": s.user_emulated, "output": s.output, "layer": s.layer,
            })
        })
        .collect();
    if let Err(e) = built {
        if a.json
            && let Some(s) = steps_json.last().filter(|s| s["code"].as_i64().is_some_and(|c| c != 0))
        {
            println!("{s}");
        }
        return Err(e);
    }
    let built = built?;
    if let Some(outp) = &a.output {
        let w = spxpack::docker_archive::WriteOptions::for_path(outp, opts.epoch);
        spxpack::docker_archive::write_file(
            outp,
            &[spxpack::docker_archive::ArchiveImage { image: &built.image, tags: vec![a.tag.clone()] }],
            &w,
            &|_| {},
        )?;
    }
    let runner = executor.runner();
    if a.json {
        let v = serde_json::json!({
            "sandbox": runner.as_ref().map(|r| r.sandbox),
            "emulation": runner.as_ref().map(|r| r.emulation),
            "steps": steps_json,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        term.done(&format!(
            "ran {} step(s) with {}{}",
            a.steps.len(),
            runner.map(|r| r.describe()).unwrap_or_else(|| "the build cache".into()),
            a.output.as_ref().map(|o| format!("; wrote {}", o.display())).unwrap_or_default()
        ));
    }
    Ok(())
}
