//! `deadbolt-sidecar`: parses flags, sets up logging, runs one proxy.

use std::process::ExitCode;

use clap::Parser;
use deadbolt_sidecar::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = cli.command.common().output.init_logging() {
        eprintln!("deadbolt-sidecar: {error}");
        return ExitCode::FAILURE;
    }
    match deadbolt_sidecar::run::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
