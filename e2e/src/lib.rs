//! End-to-end scenarios against a real cluster named by `KUBECONFIG`: the
//! operator, the proxies and the webhooks run out of cluster as real
//! processes (webhooks registered by `url:`), driven with the real `kubectl`,
//! `psql` and the `kubectl-deadbolt` plugin.
//!
//! The tests are `#[ignore]`d so that a plain `cargo test` reports them as
//! skipped rather than passed; `scripts/test.sh` runs them with `--ignored`
//! (one at a time: they share the cluster's CRDs and webhooks) against the
//! cluster in `KUBECONFIG`, or against a private API server it starts from
//! `../shared/k8s` when that is there, and otherwise says SKIPPED.
//!
//! Set `DEADBOLT_E2E_WEBHOOK_HOST` to an address of this machine that the API
//! server can reach (default `127.0.0.1`, right for a local API server; a
//! kind cluster needs the host's address on the kind network).

pub mod chart;
pub mod mfa;
pub mod pki;
pub mod process;
pub mod psql;
pub mod scenario;
pub mod webhook;

/// A real PostgreSQL in a temporary directory, from the workspace's test kit.
pub use deadbolt_testkit::postgres;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The generous bound on anything a scenario waits for.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The repository root, for `crds/` and `examples/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A built binary of the workspace (`cargo build --workspace --bins`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test binary> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a target directory");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
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

/// The cluster, with the CRDs installed; panics when there is none (the
/// tests are run only with `--ignored`, by a script that checked).
pub fn require_cluster() {
    if let Err(reason) = cluster_available() {
        panic!("e2e needs a real cluster: {reason}");
    }
    static CRDS: OnceLock<()> = OnceLock::new();
    CRDS.get_or_init(|| {
        let crds = repo_root().join("crds");
        success(kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().unwrap(),
        ]));
        success(kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ]));
    });
}

/// The admin kubeconfig the scenarios run with.
pub fn admin_kubeconfig() -> PathBuf {
    PathBuf::from(std::env::var_os("KUBECONFIG").expect("KUBECONFIG"))
}

/// Where a node of this machine can be used, or why not: the private API
/// server started with `--node` (`DEADBOLT_E2E_KIT` names its state directory
/// and the kit; `DEADBOLT_E2E_NO_NODE` says why there is none).
pub fn node_kit() -> Result<(PathBuf, PathBuf), String> {
    if let Ok(reason) = std::env::var("DEADBOLT_E2E_NO_NODE") {
        return Err(reason);
    }
    let state = std::env::var_os("DEADBOLT_E2E_STATE")
        .ok_or("no private API server with a node (DEADBOLT_E2E_STATE is not set)")?;
    let kit = std::env::var_os("DEADBOLT_E2E_KIT").ok_or("DEADBOLT_E2E_KIT is not set")?;
    Ok((PathBuf::from(state), PathBuf::from(kit)))
}

/// Runs the real `kubectl` (from PATH) with the plugin directory in front of PATH.
pub fn kubectl(args: &[&str]) -> Output {
    kubectl_command(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl (run scripts/install-tools.sh): {e}"))
}

/// The same, as a command to adjust (environment, stdin) before running.
pub fn kubectl_command(args: &[&str]) -> Command {
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(plugin_dir) = bin("kubectl-deadbolt").parent() {
        let mut joined = std::ffi::OsString::from(plugin_dir);
        joined.push(":");
        joined.push(&path);
        path = joined;
    }
    let mut command = Command::new("kubectl");
    command.args(args).env("PATH", path);
    command
}

/// Runs `kubectl` with `input` on its standard input.
pub fn kubectl_stdin(args: &[&str], input: &str) -> Output {
    let mut child = kubectl_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `kubectl apply -f -` of `manifest`, which must succeed.
pub fn apply(manifest: &str) -> String {
    success(kubectl_stdin(&["apply", "-f", "-"], manifest))
}

/// Standard output as text, failing the test with stderr when the command failed.
pub fn success(output: Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Polls `check` every 100 ms until it holds or `patience` runs out.
pub fn eventually(what: &str, patience: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub use deadbolt_testkit::net::free_port;

/// A namespace of one scenario, deleted when dropped.
pub struct Namespace {
    /// Its name.
    pub name: String,
}

impl Namespace {
    /// A new namespace `e2e-<stem>-<random>`.
    pub fn create(stem: &str) -> Self {
        let id = uuid_like();
        let name = format!("e2e-{stem}-{}", &id[id.len() - 8..]);
        success(kubectl(&["create", "namespace", &name]));
        Self { name }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

/// Deletes cluster-scoped objects (locks, roles, users, webhook configurations)
/// a scenario created, when dropped.
#[derive(Default)]
pub struct Cleanup(Vec<(String, String)>);

impl Cleanup {
    /// Deletes `kind/name` at the end.
    pub fn add(&mut self, kind: &str, name: &str) {
        self.0.push((kind.to_string(), name.to_string()));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (kind, name) in self.0.iter().rev() {
            let _ = kubectl(&["delete", kind, name, "--ignore-not-found", "--wait=false"]);
        }
    }
}

/// A random-enough lowercase hex string (names must not collide between runs).
pub fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!("{:016x}", nanos ^ (u64::from(std::process::id()) << 40))
}
