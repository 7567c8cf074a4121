//! Locks on a real cluster: the CRDs install, the API server enforces their CEL
//! rules, and the plugin creates, lists and removes locks.

use deadbolt_e2e::{cluster_available, kubectl, repo_root, success};

fn require_cluster() {
    if let Err(reason) = cluster_available() {
        panic!("e2e needs a real cluster: {reason}");
    }
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn crds_install_and_cel_rejects_bad_locks() {
    require_cluster();
    let crds = repo_root().join("crds");
    success(kubectl(&[
        "apply",
        "--server-side",
        "-f",
        crds.to_str().unwrap(),
    ]));
    success(kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/locks.deadbolt.dev",
        "--timeout=60s",
    ]));

    let empty_target = r#"{"apiVersion":"deadbolt.dev/v1","kind":"Lock","metadata":{"name":"e2e-empty"},"spec":{"target":{}}}"#;
    let output = kubectl_stdin(&["create", "-f", "-"], empty_target);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("a lock target needs at least one of"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let both = r#"{"apiVersion":"deadbolt.dev/v1","kind":"Lock","metadata":{"name":"e2e-both"},"spec":{"target":{"user":"x"},"ttl":"1h","expires":"2030-01-01T00:00:00Z"}}"#;
    let output = kubectl_stdin(&["create", "-f", "-"], both);
    assert!(String::from_utf8_lossy(&output.stderr).contains("set at most one of expires and ttl"));
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn plugin_creates_lists_and_removes_a_lock() {
    require_cluster();
    let crds = repo_root().join("crds");
    success(kubectl(&[
        "apply",
        "--server-side",
        "-f",
        crds.to_str().unwrap(),
    ]));
    let created = success(kubectl(&[
        "deadbolt",
        "lock",
        "--user=e2e-user@example.com",
        "--message=e2e",
        "--ttl=1h",
    ]));
    let name = created
        .trim()
        .strip_prefix("Created a lock with name \"")
        .and_then(|rest| rest.strip_suffix("\"."))
        .unwrap_or_else(|| panic!("unexpected output: {created}"))
        .to_string();
    let listed = success(kubectl(&[
        "get",
        "locks",
        &name,
        "-o",
        "jsonpath={.spec.target.user}",
    ]));
    assert_eq!(listed, "e2e-user@example.com");
    let unlocked = success(kubectl(&[
        "deadbolt",
        "unlock",
        "--user=e2e-user@example.com",
    ]));
    assert!(unlocked.contains(&name), "{unlocked}");
}

fn kubectl_stdin(args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("kubectl")
        .args(args)
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
