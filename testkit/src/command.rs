//! The real clients tests run (`psql`, `mysql`, `kubectl`): what a command
//! printed, once it has succeeded, or a panic that shows what it said instead.

use std::process::Output;

/// The trimmed standard output of `output`; panics with `what` and the
/// command's standard error when it failed.
///
/// # Panics
/// When the command exited unsuccessfully.
pub fn succeeded(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
