//! `deadbolt-sidecar`: parses flags, sets up logging, runs one proxy.

use std::process::ExitCode;

use clap::Parser;
use deadbolt_sidecar::Cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = cli.command.common();
    if let Err(error) = common.output.init_logging() {
        eprintln!("deadbolt-sidecar: {error}");
        return ExitCode::FAILURE;
    }
    // One thread is a current-thread runtime: it polls its sockets itself, so
    // a request costs no wake-ups of an I/O driver or of other workers.
    let mut runtime = match common.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(usize::from(threads));
            runtime
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("deadbolt-sidecar: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(deadbolt_sidecar::run::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
