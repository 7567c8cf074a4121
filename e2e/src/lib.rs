//! End-to-end scenarios against a real cluster named by `KUBECONFIG`, driven
//! with the real `kubectl` and the `kubectl-deadbolt` plugin.
//!
//! The tests are `#[ignore]`d so that a plain `cargo test` reports them as
//! skipped rather than passed; `scripts/test.sh` runs them with `--ignored`
//! when `KUBECONFIG` names a reachable cluster, and says plainly when not.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, for `crds/` and `examples/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether `KUBECONFIG` names a cluster that answers; the reason when it does not.
pub fn cluster_available() -> Result<(), String> {
    if std::env::var_os("KUBECONFIG").is_none_or(|v| v.is_empty()) {
        return Err("KUBECONFIG is not set".into());
    }
    let output = kubectl(&["version", "--request-timeout=5s"]);
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the cluster in KUBECONFIG does not answer: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs the real `kubectl` (from PATH) with the plugin directory in front of PATH.
pub fn kubectl(args: &[&str]) -> Output {
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(plugin_dir) = plugin_dir() {
        let mut joined = std::ffi::OsString::from(plugin_dir);
        joined.push(":");
        joined.push(&path);
        path = joined;
    }
    Command::new("kubectl")
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl (run scripts/install-tools.sh): {e}"))
}

/// The directory holding the built `kubectl-deadbolt`, if it has been built.
fn plugin_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<test binary> → target/<profile>
    let profile_dir = exe.parent()?.parent()?;
    profile_dir
        .join("kubectl-deadbolt")
        .exists()
        .then(|| profile_dir.to_path_buf())
}

/// Standard output as text, failing the test with stderr when the command failed.
pub fn success(output: Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
