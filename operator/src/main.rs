//! `deadbolt-operator`: parses flags, sets up logging, and runs the operator
//! until SIGTERM or SIGINT. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use deadbolt_operator::{Args, logging};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = logging::init(args.log_format, &args.log_level) {
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
