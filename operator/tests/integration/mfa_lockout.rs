//! Failed MFA checks counted in Leases, as every replica behind the MFA
//! Service sees them: the exact requests (a field-selected list, since the
//! operator may not get arbitrary Leases; a create, or a patch carrying the
//! resourceVersion read), and a write that loses to another replica's is read
//! and made again, so both failures count; a Lease that counts for nothing
//! any more is deleted when read, unless it changed meanwhile.

use std::time::Duration;

use deadbolt_operator::mfa::{LeaseLockout, LockoutRule, LockoutStore, Standing};
use deadbolt_testkit::api_server::success_status;
use deadbolt_testkit::{ApiServer, at};
use http::Method;
use serde_json::{Value, json};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/deadbolt/leases";
/// `deadbolt-mfa-lockout-<uuid v5 of "jerry">`, as the store names it.
const NAME: &str = "deadbolt-mfa-lockout-";
/// Jerry's standing after one failure at the test's `now`.
const ONE_FAILURE: &str = r#"{"user":"jerry","failures":1,"lastFailure":"2030-01-01T00:00:00Z"}"#;

fn list_uri(name: &str) -> String {
    format!("{LEASES}?&fieldSelector=metadata.name%3D{name}")
}

fn lease_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList", "metadata": {}, "items": items})
}

fn lease(name: &str, version: &str, standing: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": "deadbolt",
            "resourceVersion": version,
            "annotations": {"deadbolt.dev/mfa-lockout": standing},
        },
    })
}

fn conflict(reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": 409, "metadata": {}})
}

#[tokio::test]
async fn failures_from_two_replicas_both_count_and_a_pass_clears_them() {
    let (client, mut server) = ApiServer::pair();
    let store = LeaseLockout::new(client, "deadbolt", None);
    let rule = LockoutRule {
        max_failures: 2,
        lasts: Duration::from_secs(1800),
    };
    let now = at("2030-01-01T00:00:00Z");

    let script = tokio::spawn(async move {
        // No Lease yet: create one. Another replica created it first (409),
        // so read it again and patch what was read.
        let (request, send) = server.next().await;
        let uri = request.uri().to_string();
        let name = uri
            .split("metadata.name%3D")
            .nth(1)
            .expect("a field-selected list")
            .to_string();
        assert!(name.starts_with(NAME), "{name}");
        assert_eq!(
            (request.method(), uri.as_str()),
            (&Method::GET, list_uri(&name).as_str())
        );
        ApiServer::reply(send, 200, &lease_list(vec![]));
        let (request, send) = server.expect(Method::POST, &format!("{LEASES}?")).await;
        let created = ApiServer::body(request).await;
        assert_eq!(created["metadata"]["name"], name.as_str());
        assert_eq!(
            created["metadata"]["labels"]["deadbolt.dev/mfa-lockout"],
            "true"
        );
        assert_eq!(
            created["metadata"]["annotations"]["deadbolt.dev/mfa-lockout"],
            ONE_FAILURE
        );
        // Its holder is the user, so `kubectl get leases` says whose it is.
        assert_eq!(created["spec"]["holderIdentity"], "jerry");
        ApiServer::reply(send, 409, &conflict("AlreadyExists"));
        server
            .expect_get(
                &list_uri(&name),
                lease_list(vec![lease(&name, "7", ONE_FAILURE)]),
            )
            .await;
        let (request, send) = server
            .expect(Method::PATCH, &format!("{LEASES}/{name}?"))
            .await;
        assert_eq!(
            request.headers()["content-type"],
            "application/merge-patch+json"
        );
        let locked = r#"{"user":"jerry","failures":2,"lockedUntil":"2030-01-01T00:30:00Z","lastFailure":"2030-01-01T00:00:00Z"}"#;
        assert_eq!(
            ApiServer::body(request).await,
            json!({
                "metadata": {"resourceVersion": "7", "annotations": {"deadbolt.dev/mfa-lockout": locked}},
                "spec": {"holderIdentity": "jerry", "renewTime": "2030-01-01T00:00:00.000000Z"},
            })
        );
        ApiServer::reply(send, 200, &lease(&name, "8", locked));

        // Every replica now reads the lock-out.
        server
            .expect_get(
                &list_uri(&name),
                lease_list(vec![lease(&name, "8", locked)]),
            )
            .await;
        // A Lease naming another user counts for nobody: refused, not ignored.
        server
            .expect_get(
                &list_uri(&name),
                lease_list(vec![lease(&name, "8", r#"{"user":"olga","failures":9}"#)]),
            )
            .await;
        // A passed check deletes it.
        server
            .expect_delete(&format!("{LEASES}/{name}?"), success_status())
            .await;
        // A Lease whose failures are forgotten counts for nothing, and is
        // deleted if nothing changed it since it was read.
        server
            .expect_get(
                &list_uri(&name),
                lease_list(vec![lease(&name, "9", ONE_FAILURE)]),
            )
            .await;
        let precondition = server
            .expect_delete(&format!("{LEASES}/{name}?"), success_status())
            .await;
        assert_eq!(precondition["preconditions"]["resourceVersion"], "9");
        server
    });

    assert_eq!(
        store.fail("jerry", now, rule).await.unwrap(),
        Some(at("2030-01-01T00:30:00Z")),
        "the second failure, counted on top of the other replica's, locks out"
    );
    assert_eq!(
        store.standing("jerry", now, rule).await.unwrap(),
        Standing {
            failures: 2,
            locked_until: Some(at("2030-01-01T00:30:00Z")),
            last_failure: Some(now),
        }
    );
    let foreign = store.standing("jerry", now, rule).await.unwrap_err();
    assert!(foreign.to_string().contains("delete it"), "{foreign}");
    store.succeed("jerry").await.unwrap();
    let later = at("2030-01-01T01:00:00Z");
    assert_eq!(
        store.standing("jerry", later, rule).await.unwrap(),
        Standing::default()
    );
    drop(store);
    script.await.unwrap().finish().await;
}
