//! The resources on a real API server: every example is accepted, the CRDs'
//! rules refuse invalid Locks with a clear message, and the kubectl plugin
//! locks, lists and unlocks.

use deadbolt_e2e::scenario::Scenario;
use deadbolt_e2e::{kubectl, kubectl_stdin, repo_root, require_cluster, stderr, success};

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn every_example_is_accepted_by_the_api_server() {
    require_cluster();
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("examples"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 16, "{files:?}");
    // The ClusterAuthPreference examples are one singleton: each replaces the last.
    for file in &files {
        let path = file.to_str().unwrap();
        let created = kubectl(&["apply", "--server-side", "--force-conflicts", "-f", path]);
        assert!(
            created.status.success(),
            "{} was refused: {}",
            file.display(),
            stderr(&created)
        );
    }
    for file in files.iter().rev() {
        success(kubectl(&[
            "delete",
            "-f",
            file.to_str().unwrap(),
            "--ignore-not-found",
            "--wait=false",
        ]));
    }
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn invalid_locks_are_refused_with_a_clear_message() {
    let scenario = Scenario::new("invalid");
    let cases = [
        (
            "an empty target",
            r#"{"target":{}}"#,
            "a lock target needs at least one of user, role, login, mfaDevice, device, serverId, windowsDesktop or accessRequest",
        ),
        (
            "ttl with expires",
            r#"{"target":{"user":"x"},"ttl":"1h","expires":"2030-01-01T00:00:00Z"}"#,
            "set at most one of expires and ttl",
        ),
        (
            "a bad expires",
            r#"{"target":{"user":"x"},"expires":"next tuesday"}"#,
            "spec.expires",
        ),
        (
            "a bad ttl",
            r#"{"target":{"user":"x"},"ttl":"ten hours"}"#,
            "spec.ttl",
        ),
    ];
    for (what, spec, message) in cases {
        let name = scenario.name("invalid");
        let manifest = format!(
            r#"{{"apiVersion":"deadbolt.dev/v1","kind":"Lock","metadata":{{"name":"{name}"}},"spec":{spec}}}"#
        );
        let output = kubectl_stdin(&["create", "-f", "-"], &manifest);
        assert!(!output.status.success(), "{what} was accepted");
        assert!(
            stderr(&output).contains(message),
            "{what}: {}",
            stderr(&output)
        );
    }
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn the_plugin_locks_lists_and_unlocks() {
    let scenario = Scenario::new("plugin");
    let user = format!("{}@example.com", scenario.name("e2e-user"));
    let created = success(kubectl(&[
        "deadbolt",
        "lock",
        &format!("--user={user}"),
        "--message=e2e",
        "--ttl=1h",
    ]));
    let name = created
        .trim()
        .strip_prefix("Created a lock with name \"")
        .and_then(|rest| rest.strip_suffix("\"."))
        .unwrap_or_else(|| panic!("unexpected output: {created}"))
        .to_string();
    let listed = success(kubectl(&["deadbolt", "ls"]));
    assert!(
        listed.contains(&name) && listed.contains(&format!("User:\"{user}\"")),
        "{listed}"
    );
    let target = success(kubectl(&[
        "get",
        "locks",
        &name,
        "-o",
        "jsonpath={.spec.target.user}",
    ]));
    assert_eq!(target, user);
    let unlocked = success(kubectl(&["deadbolt", "unlock", &format!("--user={user}")]));
    assert!(unlocked.contains(&name), "{unlocked}");
    let gone = kubectl(&["get", "locks", &name]);
    assert!(!gone.status.success(), "the lock is still there");
}
