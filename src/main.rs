//! The `spxpack` binary: parse → logging → `cli::run` → error report → exit code.

use clap::Parser;

mod cli;

fn main() {
    // the RUN sandbox re-executes spxpack; it must not start threads (signal handler) first
    if let Some(a) = std::env::args().nth(1)
        && a.starts_with("__sandbox-")
    {
        spxpack::sandbox::internal_main(&std::env::args().skip(1).collect::<Vec<_>>());
    }
    let cli = cli::Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPXPACK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    spxpack::atomic::install_signal_cleanup();
    match cli::run(cli) {
        Ok(()) => {}
        Err(_) if spxpack::atomic::interrupted() => {
            // the signal handler is removing partial output and exits with 130
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprint!("{}", e.render());
            std::process::exit(e.exit_code());
        }
    }
}
