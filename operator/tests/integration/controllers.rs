//! Controller scenarios against a mocked API server (tower-test), in the
//! style of kube-rs/controller-rs: each test calls a reconcile function with a
//! `Context` holding the mocked client and a manual clock, while a verifier
//! task asserts every request (method, URI, exact body) in order and answers it.

use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::audit::AuditEventKind;
use deadbolt_api::protocol::ViewObject;
use deadbolt_api::{AccessRole, ClusterAuthPreference, Lock, LockEntry, TargetKind, User};
use deadbolt_operator::controller::lock_index::SharedLockIndex;
use deadbolt_operator::controller::{
    self, AuditBuffer, AuditSink, Context, ManualClock, Settings, cap, lock, role, user,
};
use deadbolt_operator::leader::Leadership;
use deadbolt_operator::subscribers::Subscribers;
use deadbolt_operator::view::ViewStore;
use deadbolt_testkit::api_server::success_status;
use deadbolt_testkit::{ApiServer, PATIENCE, at, lock_entry, target};
use http::Method;
use kube::runtime::controller::Action;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const EVENTS_URI: &str = "/apis/events.k8s.io/v1/namespaces/default/events?";

fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = format!(
        "{}/tests/fixtures/controllers/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

/// A reconcile's world: the context, its clock and audit log, and the fake API server.
struct Scenario {
    ctx: Context,
    clock: ManualClock,
    audit: AuditBuffer,
    server: ApiServer,
}

fn scenario(now: &str) -> Scenario {
    let (client, server) = ApiServer::pair();
    let clock = ManualClock::new(at(now));
    let (audit_sink, audit) = AuditSink::memory();
    let ctx = Context::new(client)
        .with_clock(Arc::new(clock.clone()))
        .with_audit(audit_sink);
    Scenario {
        ctx,
        clock,
        audit,
        server,
    }
}

/// Runs `reconcile` while `verifier` plays the API server. The verifier fails
/// the test at the first unexpected request, also one made after its script.
async fn run<K, Fut>(
    ctx: Context,
    object: K,
    reconcile: impl FnOnce(Arc<K>, Arc<Context>) -> Fut,
    mut verifier: JoinHandle<()>,
) -> Action
where
    Fut: Future<Output = Result<Action, controller::Error>>,
{
    let reconcile = tokio::time::timeout(PATIENCE, reconcile(Arc::new(object), Arc::new(ctx)));
    tokio::pin!(reconcile);
    let result = tokio::select! {
        result = &mut reconcile => result,
        verified = &mut verifier => {
            rethrow(verified);
            reconcile.await
        }
    };
    let action = result
        .expect("the reconcile hung")
        .expect("the reconcile failed");
    // The context, and with it the client, is gone: the verifier ends.
    rethrow(
        tokio::time::timeout(PATIENCE, verifier)
            .await
            .expect("the verifier hung"),
    );
    action
}

fn rethrow(result: Result<(), tokio::task::JoinError>) {
    if let Err(error) = result {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// What the controllers send besides applies and reads, on testkit's [`ApiServer`].
trait ControllerRequests {
    /// A Kubernetes Event about `regarding` (kind, name) with this type, reason and note.
    async fn expect_event(
        &mut self,
        regarding: (&str, &str),
        type_: &str,
        reason: &str,
        note: &str,
    );

    /// A DELETE of exactly `uri` with exactly `expected` as its options.
    async fn expect_deletion(&mut self, uri: &str, expected: Value);
}

impl ControllerRequests for ApiServer {
    async fn expect_event(
        &mut self,
        regarding: (&str, &str),
        type_: &str,
        reason: &str,
        note: &str,
    ) {
        let (request, send) = self.expect(Method::POST, EVENTS_URI).await;
        let event = ApiServer::body(request).await;
        assert_eq!(event["regarding"]["kind"], regarding.0, "{event}");
        assert_eq!(event["regarding"]["name"], regarding.1, "{event}");
        assert_eq!(event["type"], type_, "{event}");
        assert_eq!(event["reason"], reason, "{event}");
        assert_eq!(event["note"], note, "{event}");
        assert_eq!(event["reportingController"], "deadbolt-operator", "{event}");
        ApiServer::reply(send, 201, &event);
    }

    async fn expect_deletion(&mut self, uri: &str, expected: Value) {
        let options = self.expect_delete(uri, success_status()).await;
        assert_eq!(options, expected);
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    since: &str,
) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "observedGeneration": generation, "lastTransitionTime": since,
    })
}

/// `ready` and the `Reconciling` and `Stalled` conditions kstatus reads beside
/// it (same reason, generation and transition time), then `rest`.
fn with_kstatus<const N: usize>(ready: Value, rest: [Value; N]) -> Value {
    let failed = ready["status"] == "False";
    let derived = |type_: &str, status: &str, message: Value| {
        let mut condition = ready.clone();
        condition["type"] = json!(type_);
        condition["status"] = json!(status);
        condition["message"] = message;
        condition
    };
    let reconciling = derived(
        "Reconciling",
        "False",
        json!("the latest generation has been acted on"),
    );
    let stalled = if failed {
        derived("Stalled", "True", ready["message"].clone())
    } else {
        derived("Stalled", "False", json!("nothing to fix"))
    };
    let mut all = vec![ready, reconciling, stalled];
    all.extend(rest);
    Value::Array(all)
}

// ---------------------------------------------------------------- Lock

const INCIDENT_STATUS: &str =
    "/apis/deadbolt.dev/v1/locks/incident/status?&force=true&fieldManager=deadbolt-operator";

fn incident_status(in_force: Value, enforced_by: Option<&str>) -> Value {
    let mut status = json!({
        "observedGeneration": 1,
        "conditions": with_kstatus(
            condition("Ready", "True", "Accepted", r#"targets User:"alice""#, 1, "2026-01-01T00:00:05Z"),
            [in_force],
        ),
        "expiresAt": "2026-01-01T10:00:00Z",
    });
    if let Some(count) = enforced_by {
        status["enforcedBy"] = json!(count);
    }
    json!({"apiVersion": "deadbolt.dev/v1", "kind": "Lock", "status": status})
}

#[tokio::test]
async fn a_new_lock_gets_its_status_an_event_and_a_created_audit_event() {
    let Scenario {
        ctx, audit, server, ..
    } = scenario("2026-01-01T00:00:05Z");
    let incident: Lock = fixture("lock-ttl.yaml");
    let reply = incident.clone();
    let verifier = server.spawn(|mut server| async move {
        let in_force = condition(
            "InForce",
            "True",
            "InForce",
            "in force until 2026-01-01T10:00:00Z",
            1,
            "2026-01-01T00:00:05Z",
        );
        server
            .expect_status(INCIDENT_STATUS, &reply, incident_status(in_force, None))
            .await;
        server
            .expect_event(
                ("Lock", "incident"),
                "Normal",
                "Locked",
                r#"lock targeting User:"alice" is in force: Suspicious activity."#,
            )
            .await;
        server
    });
    let action = run(ctx, incident, lock::reconcile, verifier).await;
    // The ttl counts from creationTimestamp: requeued for the expiry instant.
    assert_eq!(action, Action::requeue(hours(10) - Duration::from_secs(5)));

    let events = audit.events();
    assert_eq!(events.len(), 1);
    let created = &events[0];
    assert_eq!(created.event, AuditEventKind::LockCreated);
    assert_eq!(created.time, at("2026-01-01T00:00:00Z"));
    assert_eq!(created.lock.as_deref(), Some("incident"));
    assert_eq!(created.user.as_deref(), Some("admin@example.com"));
    assert_eq!(
        created.reason.as_deref(),
        Some(r#"lock targeting User:"alice" is in force: Suspicious activity."#)
    );
}

#[tokio::test]
async fn ttl_counts_from_creation_not_from_the_reconcile() {
    // Reconciled an hour after creation (say, after an operator outage).
    let Scenario {
        ctx, audit, server, ..
    } = scenario("2026-01-01T01:00:00Z");
    let mut incident: Lock = fixture("lock-ttl.yaml");
    incident.spec.ttl = Some("1h30m".into());
    let reply = incident.clone();
    let verifier = server.spawn(|mut server| async move {
        let mut expected = json!({"apiVersion": "deadbolt.dev/v1", "kind": "Lock", "status": {
            "observedGeneration": 1,
            "conditions": with_kstatus(
                condition("Ready", "True", "Accepted", r#"targets User:"alice""#, 1, "2026-01-01T01:00:00Z"),
                [condition("InForce", "True", "InForce", "in force until 2026-01-01T01:30:00Z", 1, "2026-01-01T01:00:00Z")],
            ),
            "expiresAt": "2026-01-01T01:30:00Z",
        }});
        server.expect_status(INCIDENT_STATUS, &reply, expected.take()).await;
        server.expect_event(("Lock", "incident"), "Normal", "Locked",
            r#"lock targeting User:"alice" is in force: Suspicious activity."#).await;
        server
    });
    let action = run(ctx, incident, lock::reconcile, verifier).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30 * 60)));
    assert_eq!(audit.events().len(), 1);
}

/// The lock as the watch delivers it after the first status write.
fn incident_after_first_write() -> Lock {
    let mut incident: Lock = fixture("lock-ttl.yaml");
    let in_force = condition(
        "InForce",
        "True",
        "InForce",
        "in force until 2026-01-01T10:00:00Z",
        1,
        "2026-01-01T00:00:05Z",
    );
    incident.status =
        Some(serde_json::from_value(incident_status(in_force, None)["status"].clone()).unwrap());
    incident
}

#[tokio::test]
async fn at_the_requeued_instant_the_lock_is_marked_expired_once() {
    let Scenario {
        ctx,
        clock,
        audit,
        server,
    } = scenario("2026-01-01T00:00:05Z");
    let incident = incident_after_first_write();
    let ctx = Arc::new(ctx);

    // Before expiry, with the status already right: nothing to write, requeue at expiry.
    let action = tokio::time::timeout(
        PATIENCE,
        lock::reconcile(Arc::new(incident.clone()), ctx.clone()),
    )
    .await
    .expect("no request was expected, so nothing should hang")
    .unwrap();
    assert_eq!(action, Action::requeue(hours(10) - Duration::from_secs(5)));
    assert!(
        audit.events().is_empty(),
        "lock.created only on first sight"
    );

    // The requeue fires at the expiry instant.
    clock.set(at("2026-01-01T10:00:00Z"));
    let reply = incident.clone();
    let verifier = server.spawn(|mut server| async move {
        let expired = condition(
            "InForce",
            "False",
            "Expired",
            "expired at 2026-01-01T10:00:00Z",
            1,
            "2026-01-01T10:00:00Z",
        );
        server
            .expect_status(INCIDENT_STATUS, &reply, incident_status(expired, None))
            .await;
        server
            .expect_event(
                ("Lock", "incident"),
                "Normal",
                "Expired",
                "expired at 2026-01-01T10:00:00Z",
            )
            .await;
        server
    });
    let ctx = Arc::try_unwrap(ctx).unwrap();
    let action = run(ctx, incident, lock::reconcile, verifier).await;
    assert_eq!(action, Action::await_change());

    let events = audit.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, AuditEventKind::LockExpired);
    assert_eq!(events[0].time, at("2026-01-01T10:00:00Z"));
    assert_eq!(events[0].lock.as_deref(), Some("incident"));
}

#[tokio::test]
async fn an_already_expired_status_is_neither_rewritten_nor_audited_again() {
    let Scenario {
        ctx, audit, server, ..
    } = scenario("2026-01-01T11:00:00Z");
    let mut incident: Lock = fixture("lock-ttl.yaml");
    let expired = condition(
        "InForce",
        "False",
        "Expired",
        "expired at 2026-01-01T10:00:00Z",
        1,
        "2026-01-01T10:00:00Z",
    );
    incident.status =
        Some(serde_json::from_value(incident_status(expired, None)["status"].clone()).unwrap());
    let verifier = server.spawn(|server| async move { server });
    let action = run(ctx, incident, lock::reconcile, verifier).await;
    assert_eq!(action, Action::await_change());
    assert!(audit.events().is_empty());
}

#[tokio::test]
async fn enforced_by_reports_the_acks_of_connected_proxies() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T00:00:06Z");
    // Three proxies are connected; two have acked the revision that brought
    // the lock, the third has acked nothing yet.
    let store = ViewStore::default();
    let entry =
        LockEntry::from_lock(&incident_after_first_write(), at("2026-01-01T00:00:00Z")).unwrap();
    let revision = store.upsert(ViewObject::Lock(entry)).unwrap();
    let subscribers = Subscribers::new();
    let proxies: Vec<_> = ["pg-1", "pg-2", "kube-1"]
        .into_iter()
        .map(|id| subscribers.connect(id))
        .collect();
    assert!(proxies[0].ack(revision));
    assert!(proxies[1].ack(revision));
    assert!(ctx.enforcement.refresh(&store, &subscribers, &[]));
    let incident = incident_after_first_write();
    let reply = incident.clone();
    let verifier = server.spawn(|mut server| async move {
        let in_force = condition(
            "InForce",
            "True",
            "InForce",
            "in force until 2026-01-01T10:00:00Z",
            1,
            "2026-01-01T00:00:05Z",
        );
        server
            .expect_status(
                INCIDENT_STATUS,
                &reply,
                incident_status(in_force, Some("2/3")),
            )
            .await;
        server
    });
    run(ctx, incident, lock::reconcile, verifier).await;
}

#[tokio::test]
async fn expired_locks_are_deleted_after_the_retention() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T03:00:00Z");
    let ctx = ctx.with_settings(Settings {
        expired_lock_retention: Some(hours(1)),
    });
    let maintenance: Lock = fixture("lock-expires.yaml");

    // Expired at 02:00, retention 1h: 03:00 is the end of retention.
    let verifier = server.spawn(|mut server| async move {
        server
            .expect_deletion(
                "/apis/deadbolt.dev/v1/locks/maintenance?",
                json!({"preconditions": {"uid": "0a6b1f3e-7c55-4d7e-8f30-51f0b2c9d812"}}),
            )
            .await;
        server
            .expect_event(
                ("Lock", "maintenance"),
                "Normal",
                "Deleted",
                "expired for longer than --expired-lock-retention 1h0m0s",
            )
            .await;
        server
    });
    let action = run(ctx, maintenance, lock::reconcile, verifier).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn an_expired_lock_within_retention_is_requeued_for_its_end() {
    let Scenario {
        ctx, audit, server, ..
    } = scenario("2026-01-01T02:30:00Z");
    let ctx = ctx.with_settings(Settings {
        expired_lock_retention: Some(hours(1)),
    });
    let maintenance: Lock = fixture("lock-expires.yaml");
    let reply = maintenance.clone();
    let verifier = server.spawn(|mut server| async move {
        let expected = json!({"apiVersion": "deadbolt.dev/v1", "kind": "Lock", "status": {
            "observedGeneration": 2,
            "conditions": with_kstatus(
                condition("Ready", "True", "Accepted", r#"targets Role:"dev""#, 2, "2026-01-01T02:30:00Z"),
                [condition("InForce", "False", "Expired", "expired at 2026-01-01T02:00:00Z", 2, "2026-01-01T02:30:00Z")],
            ),
            "expiresAt": "2026-01-01T02:00:00Z",
        }});
        server.expect_status("/apis/deadbolt.dev/v1/locks/maintenance/status?&force=true&fieldManager=deadbolt-operator", &reply, expected).await;
        server.expect_event(("Lock", "maintenance"), "Normal", "Locked", r#"lock targeting Role:"dev" is in force"#).await;
        server.expect_event(("Lock", "maintenance"), "Normal", "Expired", "expired at 2026-01-01T02:00:00Z").await;
        server
    });
    let action = run(ctx, maintenance, lock::reconcile, verifier).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30 * 60)));
    let kinds: Vec<_> = audit.events().iter().map(|event| event.event).collect();
    assert_eq!(
        kinds,
        [AuditEventKind::LockCreated, AuditEventKind::LockExpired]
    );
}

#[tokio::test]
async fn an_invalid_lock_is_not_ready() {
    let Scenario {
        ctx, audit, server, ..
    } = scenario("2026-01-01T00:00:01Z");
    let confused: Lock = fixture("lock-invalid.yaml");
    let reply = confused.clone();
    let verifier = server.spawn(|mut server| async move {
        let expected = json!({"apiVersion": "deadbolt.dev/v1", "kind": "Lock", "status": {
            "observedGeneration": 1,
            "conditions": with_kstatus(
                condition("Ready", "False", "Invalid", r#"lock "confused" sets both expires and ttl"#, 1, "2026-01-01T00:00:01Z"),
                [condition("InForce", "Unknown", "Invalid", "proxies keep the last valid version of this lock, if they had one", 1, "2026-01-01T00:00:01Z")],
            ),
        }});
        server.expect_status("/apis/deadbolt.dev/v1/locks/confused/status?&force=true&fieldManager=deadbolt-operator", &reply, expected).await;
        server.expect_event(("Lock", "confused"), "Warning", "Invalid", r#"lock "confused" sets both expires and ttl"#).await;
        server
    });
    let action = run(ctx, confused, lock::reconcile, verifier).await;
    assert_eq!(action, Action::await_change());
    assert!(audit.events().is_empty());
}

#[tokio::test]
async fn a_lock_fixed_after_being_invalid_is_audited_as_created() {
    let Scenario {
        ctx, audit, server, ..
    } = scenario("2026-01-01T00:00:05Z");
    let mut incident: Lock = fixture("lock-ttl.yaml");
    incident.metadata.generation = Some(2);
    incident.status = Some(
        serde_json::from_value(json!({
            "observedGeneration": 1,
            "conditions": with_kstatus(
                condition("Ready", "False", "Invalid", "whatever was wrong", 1, "2026-01-01T00:00:01Z"),
                [condition("InForce", "Unknown", "Invalid", "proxies keep the last valid version of this lock, if they had one", 1, "2026-01-01T00:00:01Z")],
            ),
        }))
        .unwrap(),
    );
    let reply = incident.clone();
    let verifier = server.spawn(|mut server| async move {
        let mut expected = json!({"apiVersion": "deadbolt.dev/v1", "kind": "Lock", "status": {
            "observedGeneration": 2,
            "conditions": with_kstatus(
                condition("Ready", "True", "Accepted", r#"targets User:"alice""#, 2, "2026-01-01T00:00:05Z"),
                [condition("InForce", "True", "InForce", "in force until 2026-01-01T10:00:00Z", 2, "2026-01-01T00:00:05Z")],
            ),
            "expiresAt": "2026-01-01T10:00:00Z",
        }});
        // Reconciling was False before and still is: its transition time stays.
        expected["status"]["conditions"][1]["lastTransitionTime"] = json!("2026-01-01T00:00:01Z");
        server.expect_status(INCIDENT_STATUS, &reply, expected).await;
        server
            .expect_event(("Lock", "incident"), "Normal", "Locked",
                r#"lock targeting User:"alice" is in force: Suspicious activity."#)
            .await;
        server
    });
    run(ctx, incident, lock::reconcile, verifier).await;
    let kinds: Vec<_> = audit.events().iter().map(|event| event.event).collect();
    assert_eq!(kinds, [AuditEventKind::LockCreated]);
}

// ---------------------------------------------------------------- User

const BOB_LOCK: &str = "deadbolt-suspended-bob";
const BOB_UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

fn bob_lock_manifest() -> Value {
    json!({
        "apiVersion": "deadbolt.dev/v1",
        "kind": "Lock",
        "metadata": {
            "name": BOB_LOCK,
            "labels": {"deadbolt.dev/auto-lock": "suspended-user"},
            "ownerReferences": [{
                "apiVersion": "deadbolt.dev/v1", "kind": "User", "name": "bob",
                "uid": BOB_UID, "controller": true,
            }],
        },
        "spec": {
            "target": {"user": "bob"},
            "message": "user suspended in identity provider",
        },
    })
}

fn user_status(generation: i64, message: &str, since: &str, locked_by: Option<&str>) -> Value {
    let mut status = json!({
        "observedGeneration": generation,
        "conditions": with_kstatus(condition("Ready", "True", "Reconciled", message, generation, since), []),
        "locked": locked_by.is_some(),
    });
    if let Some(lock) = locked_by {
        status["lockedBy"] = json!(lock);
    }
    json!({"apiVersion": "deadbolt.dev/v1", "kind": "User", "status": status})
}

#[tokio::test]
async fn a_suspended_synced_user_is_locked_automatically() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T12:00:00Z");
    let bob: User = fixture("user-synced-suspended.yaml");
    let reply = bob.clone();
    let verifier = server.spawn(|mut server| async move {
        server
            .expect_apply(
                "/apis/deadbolt.dev/v1/locks/deadbolt-suspended-bob?&force=true&fieldManager=deadbolt-operator",
                bob_lock_manifest(),
                bob_lock_manifest(),
            )
            .await;
        server.expect_event(("User", "bob"), "Normal", "Locked",
            "suspended in identity provider: applied Lock deadbolt-suspended-bob").await;
        server
            .expect_status(
                "/apis/deadbolt.dev/v1/users/bob/status?&force=true&fieldManager=deadbolt-operator",
                &reply,
                user_status(3, "suspended in identity provider: locked by Lock deadbolt-suspended-bob",
                    "2026-01-01T12:00:00Z", Some(BOB_LOCK)),
            )
            .await;
        server
    });
    let action = run(ctx, bob, user::reconcile, verifier).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_suspended_user_with_a_username_is_locked_by_that_name() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T12:00:00Z");
    let mut bob: User = fixture("user-synced-suspended.yaml");
    bob.spec.username = Some("bob@example.com".into());
    let reply = bob.clone();
    let mut manifest = bob_lock_manifest();
    manifest["spec"]["target"]["user"] = json!("bob@example.com");
    let verifier = server.spawn(|mut server| async move {
        server
            .expect_apply(
                "/apis/deadbolt.dev/v1/locks/deadbolt-suspended-bob?&force=true&fieldManager=deadbolt-operator",
                manifest.clone(),
                manifest,
            )
            .await;
        server.expect_event(("User", "bob"), "Normal", "Locked",
            "suspended in identity provider: applied Lock deadbolt-suspended-bob").await;
        server
            .expect_status(
                "/apis/deadbolt.dev/v1/users/bob/status?&force=true&fieldManager=deadbolt-operator",
                &reply,
                user_status(3, "suspended in identity provider: locked by Lock deadbolt-suspended-bob",
                    "2026-01-01T12:00:00Z", Some(BOB_LOCK)),
            )
            .await;
        server
    });
    let action = run(ctx, bob, user::reconcile, verifier).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_suspended_user_whose_lock_is_in_the_view_needs_no_write() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T12:00:01Z");
    ctx.locks.upsert(
        lock_entry(BOB_LOCK, target(TargetKind::User, "bob"))
            .message("user suspended in identity provider")
            .created(at("2026-01-01T12:00:00Z"))
            .build(),
    );
    let mut bob: User = fixture("user-synced-suspended.yaml");
    bob.status = Some(
        serde_json::from_value(
            user_status(
                3,
                "suspended in identity provider: locked by Lock deadbolt-suspended-bob",
                "2026-01-01T12:00:00Z",
                Some(BOB_LOCK),
            )["status"]
                .clone(),
        )
        .unwrap(),
    );
    let verifier = server.spawn(|server| async move { server });
    run(ctx, bob, user::reconcile, verifier).await;
}

#[tokio::test]
async fn unsuspending_removes_the_automatic_lock() {
    let Scenario { ctx, server, .. } = scenario("2026-01-02T09:00:00Z");
    let locks = SharedLockIndex::default();
    locks.upsert(
        lock_entry(BOB_LOCK, target(TargetKind::User, "bob"))
            .message("user suspended in identity provider")
            .created(at("2026-01-01T12:00:00Z"))
            .build(),
    );
    let ctx = ctx.with_locks(locks);
    let mut bob: User = fixture("user-synced-suspended.yaml");
    bob.spec.suspended = false;
    bob.metadata.generation = Some(4);
    bob.status = Some(
        serde_json::from_value(
            user_status(
                3,
                "suspended in identity provider: locked by Lock deadbolt-suspended-bob",
                "2026-01-01T12:00:00Z",
                Some(BOB_LOCK),
            )["status"]
                .clone(),
        )
        .unwrap(),
    );
    let reply = bob.clone();
    let verifier = server.spawn(|mut server| async move {
        let mut existing = bob_lock_manifest();
        existing["metadata"]["uid"] = json!("c0ffee00-0000-4000-8000-000000000001");
        server
            .expect_get(
                "/apis/deadbolt.dev/v1/locks/deadbolt-suspended-bob",
                existing,
            )
            .await;
        server
            .expect_deletion(
                "/apis/deadbolt.dev/v1/locks/deadbolt-suspended-bob?",
                json!({"preconditions": {"uid": "c0ffee00-0000-4000-8000-000000000001"}}),
            )
            .await;
        server
            .expect_event(
                ("User", "bob"),
                "Normal",
                "Unlocked",
                "no longer suspended: deleted Lock deadbolt-suspended-bob",
            )
            .await;
        // Ready stayed True, so its transition time stays; the lock is gone.
        server
            .expect_status(
                "/apis/deadbolt.dev/v1/users/bob/status?&force=true&fieldManager=deadbolt-operator",
                &reply,
                user_status(4, "up to date", "2026-01-01T12:00:00Z", None),
            )
            .await;
        server
    });
    let action = run(ctx, bob, user::reconcile, verifier).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_lock_with_the_automatic_name_but_another_owner_is_left_alone() {
    let Scenario { ctx, server, .. } = scenario("2026-01-02T09:00:00Z");
    ctx.locks.upsert(
        lock_entry(BOB_LOCK, target(TargetKind::User, "bob"))
            .created(at("2026-01-01T12:00:00Z"))
            .build(),
    );
    let mut bob: User = fixture("user-synced-suspended.yaml");
    bob.spec.suspended = false;
    let reply = bob.clone();
    let verifier = server.spawn(|mut server| async move {
        let handmade = json!({
            "apiVersion": "deadbolt.dev/v1", "kind": "Lock",
            "metadata": {"name": BOB_LOCK, "uid": "c0ffee00-0000-4000-8000-000000000002"},
            "spec": {"target": {"user": "bob"}},
        });
        server
            .expect_get(
                "/apis/deadbolt.dev/v1/locks/deadbolt-suspended-bob",
                handmade,
            )
            .await;
        server
            .expect_status(
                "/apis/deadbolt.dev/v1/users/bob/status?&force=true&fieldManager=deadbolt-operator",
                &reply,
                user_status(3, "up to date", "2026-01-02T09:00:00Z", Some(BOB_LOCK)),
            )
            .await;
        server
    });
    run(ctx, bob, user::reconcile, verifier).await;
}

#[tokio::test]
async fn a_temporary_user_is_deleted_when_it_expires() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T08:00:00Z");
    let carol: User = fixture("user-temporary.yaml");
    let verifier = server.spawn(|mut server| async move {
        server
            .expect_deletion(
                "/apis/deadbolt.dev/v1/users/carol?",
                json!({"preconditions": {"uid": "3c9d7e21-5a4b-4c3d-9e8f-7a6b5c4d3e2f"}}),
            )
            .await;
        server
            .expect_event(
                ("User", "carol"),
                "Normal",
                "Expired",
                "temporary user expired at 2026-01-01T08:00:00Z; deleted",
            )
            .await;
        server
    });
    let action = run(ctx, carol, user::reconcile, verifier).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_temporary_user_is_requeued_for_its_expiry() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T07:00:00Z");
    let carol: User = fixture("user-temporary.yaml");
    let reply = carol.clone();
    let verifier = server.spawn(|mut server| async move {
        server
            .expect_status(
                "/apis/deadbolt.dev/v1/users/carol/status?&force=true&fieldManager=deadbolt-operator",
                &reply,
                user_status(1, "temporary user, deleted at 2026-01-01T08:00:00Z", "2026-01-01T07:00:00Z", None),
            )
            .await;
        server
    });
    let action = run(ctx, carol, user::reconcile, verifier).await;
    assert_eq!(action, Action::requeue(hours(1)));
}

#[tokio::test]
async fn a_temporary_user_expiring_after_30_hours_is_capped_with_a_warning() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T01:00:00Z");
    let dave: User = fixture("user-temporary-too-long.yaml");
    let reply = dave.clone();
    let message = "spec.expires 2026-01-03T00:00:00Z is more than 30h after creation; the user is deleted at 2026-01-02T06:00:00Z (creation + 30h)";
    let verifier = server.spawn(move |mut server| async move {
        server
            .expect_status(
                "/apis/deadbolt.dev/v1/users/dave/status?&force=true&fieldManager=deadbolt-operator",
                &reply,
                user_status(1, message, "2026-01-01T01:00:00Z", None),
            )
            .await;
        server.expect_event(("User", "dave"), "Warning", "ExpiryCapped", message).await;
        server
    });
    let action = run(ctx, dave, user::reconcile, verifier).await;
    assert_eq!(action, Action::requeue(hours(29)));
}

#[tokio::test]
async fn a_capped_temporary_user_is_deleted_30_hours_after_creation() {
    let Scenario { ctx, server, .. } = scenario("2026-01-02T06:00:00Z");
    let dave: User = fixture("user-temporary-too-long.yaml");
    let verifier = server.spawn(|mut server| async move {
        server
            .expect_deletion(
                "/apis/deadbolt.dev/v1/users/dave?",
                json!({"preconditions": {"uid": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"}}),
            )
            .await;
        server
            .expect_event(
                ("User", "dave"),
                "Normal",
                "Expired",
                "temporary user expired at 2026-01-02T06:00:00Z; deleted",
            )
            .await;
        server
    });
    run(ctx, dave, user::reconcile, verifier).await;
}

#[tokio::test]
async fn user_status_shows_the_lock_in_force_from_the_view_until_it_expires() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T00:30:00Z");
    // A role lock on dev, which alice holds.
    ctx.locks.upsert(
        lock_entry("maintenance", target(TargetKind::Role, "dev"))
            .created(at("2026-01-01T00:00:00Z"))
            .expires_at(at("2026-01-01T02:00:00Z"))
            .build(),
    );
    let alice: User = fixture("user-local.yaml");
    let reply = alice.clone();
    let verifier = server.spawn(|mut server| async move {
        server
            .expect_status(
                "/apis/deadbolt.dev/v1/users/alice/status?&force=true&fieldManager=deadbolt-operator",
                &reply,
                user_status(1, "up to date", "2026-01-01T00:30:00Z", Some("maintenance")),
            )
            .await;
        server
    });
    let action = run(ctx, alice, user::reconcile, verifier).await;
    // Requeued for the lock's expiry, when alice is no longer locked.
    assert_eq!(action, Action::requeue(Duration::from_secs(90 * 60)));
}

// ---------------------------------------------------------------- ClusterAuthPreference and AccessRole

#[tokio::test]
async fn an_empty_cluster_auth_preference_reports_the_defaults() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T00:00:02Z");
    let cap: ClusterAuthPreference = fixture("cap-empty.yaml");
    let reply = cap.clone();
    let verifier = server.spawn(|mut server| async move {
        let expected = json!({"apiVersion": "deadbolt.dev/v1", "kind": "ClusterAuthPreference", "status": {
            "observedGeneration": 1,
            "conditions": with_kstatus(condition("Ready", "True", "Applied",
                "in effect: lockingMode best_effort, requireSessionMfa false, maxLockStaleness 30s",
                1, "2026-01-01T00:00:02Z"), []),
            "lockingMode": "best_effort",
            "requireSessionMfa": "false",
            "maxLockStaleness": "30s",
        }});
        server
            .expect_status(
                "/apis/deadbolt.dev/v1/clusterauthpreferences/cluster-auth-preference/status?&force=true&fieldManager=deadbolt-operator",
                &reply,
                expected,
            )
            .await;
        server
    });
    let action = run(ctx, cap, cap::reconcile, verifier).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_contradictory_role_is_not_ready() {
    let Scenario { ctx, server, .. } = scenario("2026-01-01T00:00:03Z");
    let ops: AccessRole = fixture("role-contradictory.yaml");
    let reply = ops.clone();
    let findings = r#"allow.logins lists "app" more than once; allow.logins "root" is also denied; deny wins, so it grants nothing"#;
    let verifier = server.spawn(move |mut server| async move {
        let expected = json!({"apiVersion": "deadbolt.dev/v1", "kind": "AccessRole", "status": {
            "observedGeneration": 4,
            "conditions": with_kstatus(condition("Ready", "False", "Invalid", findings, 4, "2026-01-01T00:00:03Z"), []),
        }});
        server
            .expect_status(
                "/apis/deadbolt.dev/v1/accessroles/ops/status?&force=true&fieldManager=deadbolt-operator",
                &reply,
                expected,
            )
            .await;
        server.expect_event(("AccessRole", "ops"), "Warning", "Invalid", findings).await;
        server
    });
    run(ctx, ops, role::reconcile, verifier).await;
}

// ---------------------------------------------------------------- Leadership

#[tokio::test]
async fn followers_write_nothing() {
    let (_switch, follower) = Leadership::manual(false);
    let now = "2026-01-01T20:00:00Z";
    macro_rules! silent {
        ($fixture:literal, $reconcile:path) => {{
            let Scenario {
                ctx, audit, server, ..
            } = scenario(now);
            let ctx = ctx.with_leadership(follower.clone());
            let verifier = server.spawn(|server| async move { server });
            let action = run(ctx, fixture($fixture), $reconcile, verifier).await;
            assert_eq!(action, Action::await_change(), $fixture);
            assert!(audit.events().is_empty(), $fixture);
        }};
    }
    silent!("lock-ttl.yaml", lock::reconcile);
    silent!("user-synced-suspended.yaml", user::reconcile);
    silent!("user-temporary.yaml", user::reconcile);
    silent!("cap-empty.yaml", cap::reconcile);
    silent!("role-contradictory.yaml", role::reconcile);
}

// ---------------------------------------------------------------- Wiring

/// A cluster for `controller::run`: lists return the fixtures, watches stay
/// open, and every write is reported on `writes` as (method, URI, body).
async fn cluster(
    mut server: ApiServer,
    writes: tokio::sync::mpsc::UnboundedSender<(Method, String, Value)>,
) {
    let objects: Vec<(&str, Value)> = vec![
        ("locks", fixture("lock-ttl.yaml")),
        ("users", fixture("user-synced-suspended.yaml")),
        ("accessroles", fixture("role-contradictory.yaml")),
        ("clusterauthpreferences", fixture("cap-empty.yaml")),
    ];
    let mut held = Vec::new();
    while let Some((request, send)) = server.next_or_gone().await {
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let path = request.uri().path().to_string();
        if method == Method::GET && uri.contains("watch=true") {
            held.push(send);
            continue;
        }
        if method == Method::GET {
            let plural = path.rsplit('/').next().unwrap_or_default();
            // The automatic-lock watch (label selector) starts out empty.
            let items: Vec<Value> = objects
                .iter()
                .filter(|(kind, _)| *kind == plural && !uri.contains("labelSelector"))
                .map(|(_, object)| object.clone())
                .collect();
            let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1000"}, "items": items});
            ApiServer::reply(send, 200, &list);
            continue;
        }
        let body = ApiServer::body(request).await;
        let reply = if path.ends_with("/status") {
            let name = path
                .trim_end_matches("/status")
                .rsplit('/')
                .next()
                .unwrap_or_default();
            let mut object = objects
                .iter()
                .map(|(_, object)| object.clone())
                .find(|object| object["metadata"]["name"] == name)
                .expect("a status write for a known object");
            object["status"] = body["status"].clone();
            object
        } else {
            body.clone()
        };
        let _ = writes.send((method, uri, body));
        ApiServer::reply(send, 200, &reply);
    }
}

#[tokio::test]
async fn the_controllers_run_against_a_cluster_and_stop_on_shutdown() {
    use deadbolt_operator::shutdown::Shutdown;
    use deadbolt_operator::subscribers::Subscribers;
    use deadbolt_operator::view::ViewStore;

    let (client, server) = ApiServer::pair();
    let (writes_tx, mut writes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(cluster(server, writes_tx));
    let (audit_sink, audit) = AuditSink::memory();
    let ctx = Context::new(client).with_audit(audit_sink);
    let (stop, shutdown) = Shutdown::new();
    let task = tokio::spawn(controller::run(
        Arc::new(ctx),
        ViewStore::default(),
        Subscribers::new(),
        None,
        shutdown,
    ));

    let mut seen = std::collections::BTreeSet::new();
    let expected = [
        "PATCH /apis/deadbolt.dev/v1/locks/incident/status",
        "PATCH /apis/deadbolt.dev/v1/locks/deadbolt-suspended-bob",
        "PATCH /apis/deadbolt.dev/v1/users/bob/status",
        "PATCH /apis/deadbolt.dev/v1/accessroles/ops/status",
        "PATCH /apis/deadbolt.dev/v1/clusterauthpreferences/cluster-auth-preference/status",
    ];
    while !expected.iter().all(|write| seen.contains(*write)) {
        let (method, uri, _) = tokio::time::timeout(PATIENCE, writes.recv())
            .await
            .unwrap_or_else(|_| panic!("missing writes; saw {seen:?}"))
            .unwrap();
        if method != Method::POST {
            let path = uri.split('?').next().unwrap_or_default();
            seen.insert(format!("{method} {path}"));
        }
    }
    assert!(audit.text().contains(r#""event":"lock.created""#));

    stop.trigger();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the controllers did not stop")
        .unwrap();
}
