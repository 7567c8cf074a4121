//! `kubectl-deadbolt`: kubectl finds this binary on PATH and runs it for
//! `kubectl deadbolt ...`. All logic lives in the library so tests can drive it.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let env = kubectl_deadbolt::Environment::from_process();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let code = kubectl_deadbolt::run(std::env::args_os(), &env, &mut out, &mut err).await;
    ExitCode::from(code)
}
