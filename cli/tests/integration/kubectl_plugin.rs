//! The built binary as a real kubectl plugin: kubectl finds it on PATH and runs
//! it for `kubectl deadbolt ...`. No cluster is needed: the commands used here
//! fail, or finish, before any request.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A directory holding only `kubectl-deadbolt` (a link to the freshly built binary).
/// cargo's own output directory also holds `kubectl-deadbolt.d` (dep info), which
/// `kubectl plugin list` would flag as a non-executable plugin.
fn plugin_dir() -> PathBuf {
    let built = Path::new(env!("CARGO_BIN_EXE_kubectl-deadbolt"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kubectl-plugin-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl-deadbolt");
    if std::os::unix::fs::symlink(built, &link).is_err() {
        std::fs::copy(built, &link).unwrap();
    }
    dir
}

/// The `kubectl` on PATH; the test suite puts `.tools/bin` there.
fn kubectl() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "kubectl was not found on PATH; run scripts/install-tools.sh (it installs .tools/bin/kubectl) and put .tools/bin on PATH"
            )
        })
}

/// Runs kubectl with PATH = the plugin directory, then kubectl's own directory, and
/// no kubeconfig, so nothing reaches a cluster and no other installed plugin interferes.
fn run_kubectl(plugins: &Path, args: &[&str]) -> Output {
    let kubectl = kubectl();
    let kubectl_dir = kubectl
        .parent()
        .expect("kubectl has a directory")
        .to_path_buf();
    let path: OsString = std::env::join_paths([plugins.to_path_buf(), kubectl_dir]).unwrap();
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubectl-plugin-home");
    std::fs::create_dir_all(&home).unwrap();
    Command::new(&kubectl)
        .args(args)
        .env("PATH", path)
        .env("HOME", &home)
        .env("KUBECONFIG", home.join("no-such-kubeconfig"))
        .output()
        .unwrap_or_else(|error| panic!("running {}: {error}", kubectl.display()))
}

#[test]
fn kubectl_lists_and_runs_the_plugin() {
    let plugins = plugin_dir();
    let listed = run_kubectl(&plugins, &["plugin", "list"]);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    let stderr = String::from_utf8_lossy(&listed.stderr);
    let expected = plugins.join("kubectl-deadbolt");
    assert!(
        stdout
            .lines()
            .any(|line| Path::new(line.trim()) == expected),
        "`kubectl plugin list` should list {}; stdout:\n{stdout}\nstderr:\n{stderr}",
        expected.display(),
    );
    // kubectl warns about plugins that are not executable or are shadowed; none may be ours.
    assert!(!stderr.contains("kubectl-deadbolt"), "{stderr}");

    let locked = run_kubectl(
        &plugins,
        &[
            "deadbolt",
            "lock",
            "--ttl=1h",
            "--expires=2030-01-01T00:00:00Z",
            "--user=a",
        ],
    );
    assert_eq!(locked.status.code(), Some(1), "{locked:?}");
    assert_eq!(String::from_utf8_lossy(&locked.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&locked.stderr),
        "error: use only one of --ttl and --expires\n"
    );

    let help = run_kubectl(&plugins, &["deadbolt", "--help"]);
    assert_eq!(help.status.code(), Some(0), "{help:?}");
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: kubectl deadbolt"));
}
