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
    // The main thread is the first worker; the others get runtimes of
    // their own (deadbolt_sidecar::workers).
    let mut runtime = tokio::runtime::Builder::new_current_thread();
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
