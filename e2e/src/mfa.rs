//! `kubectl deadbolt`'s MFA commands as a user runs them: the real binary,
//! against an operator's MFA service, with a software security key.

use std::path::Path;
use std::process::Output;

use crate::bin;

/// `kubectl deadbolt ARGS` against the MFA service at `mfa_url` (trusting
/// `ca`), as `caller` says (`--token-file F`, or `--cert C --key K`).
pub fn plugin(mfa_url: &str, ca: &Path, caller: &[&str], args: &[&str]) -> Output {
    std::process::Command::new(bin("kubectl-deadbolt"))
        .args(args)
        .args(["--mfa-url", mfa_url])
        .arg("--mfa-ca")
        .arg(ca)
        .args(caller)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

/// The UUID `mfa add` printed (`MFA device NAME registered: UUID`).
pub fn registered_uuid(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .rsplit(' ')
        .next()
        .filter(|uuid| uuid.len() == 36)
        .unwrap_or_else(|| panic!("no device UUID in {text:?}: {}", crate::stderr(output)))
        .to_string()
}
