//! The admission webhooks on a real API server, registered by `url:`: the
//! operator puts its CA into the configuration's `caBundle` itself (the leader
//! does, `--validating-webhook-configuration`), and then a locked user's direct `kubectl
//! create` is denied with the lock message, and allowed again once unlocked.

use std::time::{Duration, Instant};

use deadbolt_e2e::scenario::{Scenario, lock_manifest};
use deadbolt_e2e::webhook::{enforcing_operator, service_account_kubeconfig};
use deadbolt_e2e::{PATIENCE, apply, kubectl, stderr, success};

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn a_locked_users_direct_create_is_denied_by_the_validating_webhook() {
    let mut scenario = Scenario::new("webhook");
    let _operator = enforcing_operator(&mut scenario, "e2e-enforcement");

    let ns = scenario.ns().to_string();
    let mallory = service_account_kubeconfig(&scenario, "mallory");
    let user = format!("system:serviceaccount:{ns}:mallory");
    let create = |name: &str| {
        kubectl(&[
            "--kubeconfig",
            mallory.to_str().unwrap(),
            "create",
            "configmap",
            name,
            "-n",
            &ns,
        ])
    };
    // The API server may call the webhook before it trusts the new bundle.
    let deadline = Instant::now() + PATIENCE;
    while !create("before").status.success() {
        assert!(Instant::now() < deadline, "mallory could never write");
        std::thread::sleep(Duration::from_millis(200));
    }

    let lock = scenario.name("lock-mallory");
    scenario.cleanup.add("locks.deadbolt.dev", &lock);
    apply(&lock_manifest(
        &lock,
        &format!("user: {user}"),
        "Suspicious activity.",
        "",
    ));
    let message = format!(r#"lock targeting User:"{user}" is in force: Suspicious activity."#);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let refused = create("during");
        if !refused.status.success() {
            assert!(stderr(&refused).contains(&message), "{}", stderr(&refused));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mallory's writes were never refused"
        );
        success(kubectl(&["delete", "configmap", "during", "-n", &ns]));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The administrator is not locked.
    success(kubectl(&["create", "configmap", "admin-write", "-n", &ns]));
    success(kubectl(&["delete", "lock", &lock]));
    let deadline = Instant::now() + PATIENCE;
    while !create("after").status.success() {
        assert!(
            Instant::now() < deadline,
            "mallory's writes never came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
