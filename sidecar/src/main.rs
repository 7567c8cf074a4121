//! `deadbolt-sidecar`: parses flags, sets up logging, runs one proxy.

use std::process::ExitCode;

use clap::Parser;
use deadbolt_sidecar::Cli;
use deadbolt_sidecar::args::Command;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = match &cli.command {
        Command::Postgres(args) | Command::Mysql(args) => &args.common,
        Command::Kube(args) => &args.common,
    };
    if let Err(error) = common.output.init_logging() {
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
