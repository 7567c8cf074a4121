//! `deadbolt-operator`: parses flags, sets up logging, and runs the operator
//! until SIGTERM or SIGINT. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use deadbolt_operator::Args;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = args.output.init_logging() {
        eprintln!("deadbolt-operator: {error:#}");
        return ExitCode::FAILURE;
    }
    match deadbolt_operator::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
