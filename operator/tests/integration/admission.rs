//! The admission webhooks, fed the AdmissionReview JSON the API server sends
//! (fixtures under `tests/fixtures/admission/`), and served end to end over
//! real TLS on loopback.

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use deadbolt_api::protocol::{ClusterConfig, RoleRecord, UserRecord, ViewObject};
use deadbolt_api::{AccessRoleSpec, LockingMode, TargetKind, UserSpec};
use deadbolt_operator::admin::Readiness;
use deadbolt_operator::admission::{
    self, CONTAINER_NAME, Endpoint, InjectSettings, Webhook, WebhookSettings,
};
use deadbolt_operator::https::Bound;
use deadbolt_operator::shutdown::Shutdown;
use deadbolt_operator::view::{ViewStore, default_cluster_config};
use deadbolt_runtime::tls::{self, ClientTls};
use deadbolt_testkit::role::strict_role;
use deadbolt_testkit::tls::TestCa;
use deadbolt_testkit::{PATIENCE, at, lock_entry, target};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

/// "Now" for every test: locks, expiries and the 30h bound are computed from it.
const NOW: &str = "2025-06-01T12:00:00Z";

const OPERATOR: &str = "system:serviceaccount:deadbolt-system:deadbolt-operator";
const IDP_SYNC: &str = "system:serviceaccount:deadbolt-system:deadbolt-idp-sync";

const ALICE_LOCKED: &str = r#"lock targeting User:"alice" is in force: Suspicious activity."#;
const CONTRACTORS_LOCKED: &str =
    r#"lock targeting Role:"contractor" is in force: All contractor access is disabled for 10h."#;
const STALE: &str = "preventive lock-out due to local lock view becoming unreliable";

/// The view: alice locked by name, the `contractor` role (given to the
/// `contractors` group) locked, a compromised service account locked, a
/// strict `oncall` role for the `sre` group, and the User alice.
fn store() -> ViewStore {
    let store = ViewStore::default();
    store.upsert(
        lock_entry("alice-suspicious", target(TargetKind::User, "alice"))
            .message("Suspicious activity.")
            .created(at("2025-06-01T10:00:00Z"))
            .object(),
    );
    store.upsert(
        lock_entry("contractors-off", target(TargetKind::Role, "contractor"))
            .message("All contractor access is disabled for 10h.")
            .created(at("2025-06-01T11:00:00Z"))
            .object(),
    );
    store.upsert(
        lock_entry(
            "builder-compromised",
            target(TargetKind::User, "system:serviceaccount:shop:builder"),
        )
        .message("Compromised workload.")
        .created(at("2025-06-01T11:30:00Z"))
        .object(),
    );
    store.upsert(ViewObject::Role(RoleRecord {
        name: "contractor".into(),
        spec: AccessRoleSpec {
            groups: vec!["contractors".into()],
            ..Default::default()
        },
    }));
    store.upsert(ViewObject::Role(strict_role("oncall", "sre")));
    store.upsert(ViewObject::User(UserRecord {
        name: "alice".into(),
        spec: UserSpec {
            roles: vec!["dev".into()],
            ..Default::default()
        },
    }));
    store
}

fn settings() -> WebhookSettings {
    WebhookSettings {
        operator_username: Some(OPERATOR.into()),
        idp_sync_users: vec![IDP_SYNC.into()],
        ..WebhookSettings::default()
    }
}

fn webhook(store: ViewStore) -> Webhook {
    let readiness = Readiness::new();
    readiness.set_ready();
    Webhook::new(store, readiness, settings()).with_clock(|| at(NOW))
}

fn fixture_text(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/admission/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&fixture_text(name)).unwrap()
}

fn as_user(mut review: Value, username: &str, groups: &[&str]) -> Value {
    review["request"]["userInfo"] = json!({"username": username, "groups": groups});
    review
}

/// The `response` of the AdmissionReview the webhook answers `review` with.
fn respond(webhook: &Webhook, endpoint: Endpoint, review: &Value) -> Value {
    let body = serde_json::to_vec(review).unwrap();
    let answer = webhook.answer(endpoint, &body).unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    answer["response"].clone()
}

fn uid(review: &Value) -> Value {
    review["request"]["uid"].clone()
}

fn allowed(review: &Value) -> Value {
    json!({"uid": uid(review), "allowed": true, "status": {}})
}

fn denied(review: &Value, code: u16, reason: &str, message: &str) -> Value {
    json!({
        "uid": uid(review),
        "allowed": false,
        "status": {"status": "Failure", "code": code, "reason": reason, "message": message}
    })
}

fn locked(review: &Value, lock: &str, message: &str) -> Value {
    let mut response = denied(review, 403, "Forbidden", message);
    response["auditAnnotations"] = json!({"lock": lock});
    response
}

#[test]
fn writes_and_connects_by_locked_identities_are_refused_with_the_lock_message() {
    let webhook = webhook(store());
    for name in [
        "create-configmap.json",
        "delete-deployment.json",
        "exec-pod.json",
    ] {
        let review = fixture(name);
        let alice = as_user(
            review.clone(),
            "alice",
            &["developers", "system:authenticated"],
        );
        let response = respond(&webhook, Endpoint::EnforceLocks, &alice);
        assert_eq!(
            response["status"]["message"].as_str(),
            Some(ALICE_LOCKED),
            "{name}"
        );
        assert_eq!(
            response,
            locked(&alice, "alice-suspicious", ALICE_LOCKED),
            "{name}"
        );

        let carol = as_user(
            review.clone(),
            "carol",
            &["contractors", "system:authenticated"],
        );
        let response = respond(&webhook, Endpoint::EnforceLocks, &carol);
        assert_eq!(
            response["status"]["message"].as_str(),
            Some(CONTRACTORS_LOCKED),
            "{name}"
        );
        assert_eq!(
            response,
            locked(&carol, "contractors-off", CONTRACTORS_LOCKED),
            "{name}"
        );

        let bob = as_user(review, "bob", &["developers", "system:authenticated"]);
        let response = respond(&webhook, Endpoint::EnforceLocks, &bob);
        assert_eq!(response, allowed(&bob), "{name}");
        assert_eq!(response.get("warnings"), None);
    }
}

#[test]
fn fixtures_as_recorded_get_the_expected_answers() {
    let webhook = webhook(store());
    let create = fixture("create-configmap.json");
    assert_eq!(
        respond(&webhook, Endpoint::EnforceLocks, &create),
        locked(&create, "alice-suspicious", ALICE_LOCKED)
    );
    let delete = fixture("delete-deployment.json");
    assert_eq!(
        respond(&webhook, Endpoint::EnforceLocks, &delete),
        locked(&delete, "contractors-off", CONTRACTORS_LOCKED)
    );
    let exec = fixture("exec-pod.json");
    assert_eq!(
        respond(&webhook, Endpoint::EnforceLocks, &exec),
        allowed(&exec)
    );
}

#[test]
fn the_denial_is_exact_on_the_wire() {
    let webhook = webhook(store());
    let answer = webhook
        .answer(
            Endpoint::EnforceLocks,
            fixture_text("create-configmap.json").as_bytes(),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(answer).unwrap(),
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"3f1c8a52-7d0e-4b8e-9a43-1f6d2e0c5b71","allowed":false,"status":{"status":"Failure","code":403,"message":"lock targeting User:\"alice\" is in force: Suspicious activity.","reason":"Forbidden"},"auditAnnotations":{"lock":"alice-suspicious"}}}"#
    );
}

#[test]
fn service_accounts_are_lockable_but_the_control_plane_is_exempt() {
    let webhook = webhook(store());
    let review = fixture("create-configmap.json");
    let builder = as_user(
        review.clone(),
        "system:serviceaccount:shop:builder",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:shop",
            "system:authenticated",
        ],
    );
    let message = r#"lock targeting User:"system:serviceaccount:shop:builder" is in force: Compromised workload."#;
    assert_eq!(
        respond(&webhook, Endpoint::EnforceLocks, &builder),
        locked(&builder, "builder-compromised", message)
    );

    // Strict everywhere and an unreliable view: only exempt requesters get through.
    let store = store();
    store.upsert(ViewObject::Config(ClusterConfig {
        locking_mode: LockingMode::Strict,
        ..default_cluster_config()
    }));
    let readiness = Readiness::new();
    readiness.set_ready();
    let strict = Webhook::new(store, readiness, settings())
        .with_clock(|| at(NOW))
        .with_reliability(|| false);
    for (user, groups) in [
        (
            "system:node:worker-1",
            &["system:nodes", "system:authenticated"][..],
        ),
        (
            "system:serviceaccount:kube-system:replicaset-controller",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:kube-system",
            ][..],
        ),
        (OPERATOR, &["system:serviceaccounts"][..]),
    ] {
        let request = as_user(review.clone(), user, groups);
        assert_eq!(
            respond(&strict, Endpoint::EnforceLocks, &request),
            allowed(&request),
            "{user}"
        );
    }
    let bob = as_user(review, "bob", &["developers"]);
    assert_eq!(
        respond(&strict, Endpoint::EnforceLocks, &bob),
        denied(&bob, 403, "Forbidden", STALE)
    );
}

#[test]
fn a_strict_role_on_an_unreliable_view_is_locked_out() {
    let readiness = Readiness::new();
    readiness.set_ready();
    let webhook = Webhook::new(store(), readiness, settings())
        .with_clock(|| at(NOW))
        .with_reliability(|| false);
    let exec = fixture("exec-pod.json");
    let oncall = as_user(exec.clone(), "bob", &["sre", "system:authenticated"]);
    let response = respond(&webhook, Endpoint::EnforceLocks, &oncall);
    assert_eq!(response["status"]["message"].as_str(), Some(STALE));
    assert_eq!(response, denied(&oncall, 403, "Forbidden", STALE));
    // Best effort keeps using the last view.
    assert_eq!(
        respond(&webhook, Endpoint::EnforceLocks, &exec),
        allowed(&exec)
    );
}

#[test]
fn a_view_that_has_not_loaded_refuses_everyone_not_exempt() {
    let webhook = Webhook::new(store(), Readiness::new(), settings()).with_clock(|| at(NOW));
    let exec = fixture("exec-pod.json");
    assert_eq!(
        respond(&webhook, Endpoint::EnforceLocks, &exec),
        denied(&exec, 403, "Forbidden", STALE)
    );
}

#[test]
fn a_lock_on_an_unknown_user_or_role_is_allowed_with_warnings() {
    let webhook = webhook(store());
    let review = fixture("create-lock.json");
    let response = respond(&webhook, Endpoint::ValidateDeadbolt, &review);
    let warnings = [
        r#"lock targets user "nobody", which has no User resource; it will still apply to a Kubernetes user of that name"#,
        r#"lock targets role "ghost", which has no AccessRole resource; it will only apply to users and certificates that name that role"#,
    ];
    assert_eq!(response["warnings"], json!(warnings));
    assert_eq!(
        warnings,
        [
            admission::missing_user_warning("nobody"),
            admission::missing_role_warning("ghost")
        ]
    );
    assert_eq!(
        response,
        json!({"uid": uid(&review), "allowed": true, "status": {}, "warnings": warnings})
    );

    let mut known = review;
    known["request"]["object"]["spec"]["target"] = json!({"user": "alice", "role": "contractor"});
    assert_eq!(
        respond(&webhook, Endpoint::ValidateDeadbolt, &known),
        allowed(&known)
    );
}

/// The JSONPatch of a response: base64 on the wire, as the API documents it.
fn decoded_patch(response: &Value) -> Value {
    let text = response["patch"]
        .as_str()
        .expect("the patch is a base64 string");
    let bytes = BASE64_STANDARD.decode(text).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn new_locks_are_stamped_with_their_creator() {
    let webhook = webhook(store());
    let review = fixture("create-lock.json");
    let response = respond(&webhook, Endpoint::MutateLocks, &review);
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    assert_eq!(
        decoded_patch(&response),
        json!([{
            "op": "add",
            "path": "/metadata/annotations/deadbolt.dev~1created-by",
            "value": "locksmith@example.com"
        }])
    );
    assert_eq!(
        deadbolt_api::CREATED_BY_ANNOTATION,
        "deadbolt.dev/created-by"
    );

    // Anything but a Lock is left alone.
    let configmap = fixture("create-configmap.json");
    assert_eq!(
        respond(&webhook, Endpoint::MutateLocks, &configmap),
        allowed(&configmap)
    );
}

/// A Pod CREATE review for a Pod with `annotations`.
fn create_pod(annotations: Value) -> Value {
    let mut review = fixture("create-configmap.json");
    let request = &mut review["request"];
    request["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    request["resource"] = json!({"group": "", "version": "v1", "resource": "pods"});
    request["name"] = json!("orders-db-0");
    request["object"] = json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "orders-db-0", "namespace": "shop", "annotations": annotations,
                     "labels": {"app": "orders"}},
        "spec": {"containers": [{"name": "postgres", "image": "postgres:15"}]},
    });
    review
}

#[test]
fn pods_that_ask_get_a_database_sidecar() {
    let injecting = Webhook::new(
        store(),
        Readiness::new(),
        WebhookSettings {
            injection: Some(InjectSettings {
                image: "localhost/deadbolt:dev".into(),
                view_url: "https://deadbolt-operator.deadbolt-system.svc:8443".into(),
            }),
            ..settings()
        },
    );
    let asks = create_pod(
        json!({"deadbolt.dev/inject": "postgres", "deadbolt.dev/tls-secret": "orders-db-tls"}),
    );
    let response = respond(&injecting, Endpoint::MutatePods, &asks);
    assert_eq!(response["allowed"], true);
    let patch = decoded_patch(&response);
    assert_eq!(patch[0]["path"], "/spec/containers/-");
    assert_eq!(patch[0]["value"]["name"], CONTAINER_NAME);
    assert_eq!(patch[0]["value"]["image"], "localhost/deadbolt:dev");

    // A Pod that asks wrongly is refused with the reason, and one that asks
    // for nothing is left alone.
    let wrong = create_pod(json!({"deadbolt.dev/inject": "postgres"}));
    let response = respond(&injecting, Endpoint::MutatePods, &wrong);
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    let plain = create_pod(json!({}));
    assert_eq!(
        respond(&injecting, Endpoint::MutatePods, &plain),
        allowed(&plain)
    );

    // An operator that does not inject refuses Pods that ask rather than
    // letting them start without their proxy.
    let response = respond(&webhook(store()), Endpoint::MutatePods, &asks);
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("--inject-image")
    );
    assert_eq!(
        respond(&webhook(store()), Endpoint::MutatePods, &plain),
        allowed(&plain)
    );
}

#[test]
fn created_by_is_restored_on_update_and_a_change_is_refused() {
    let webhook = webhook(store());
    let review = fixture("update-lock.json");
    let response = respond(&webhook, Endpoint::MutateLocks, &review);
    assert_eq!(
        decoded_patch(&response),
        json!([{"op": "add", "path": "/metadata/annotations", "value": {"deadbolt.dev/created-by": "locksmith@example.com"}}])
    );
    assert_eq!(
        respond(&webhook, Endpoint::ValidateDeadbolt, &review),
        denied(
            &review,
            422,
            "Invalid",
            r#"the annotation deadbolt.dev/created-by records who created the Lock and cannot be changed (it is "locksmith@example.com")"#
        )
    );
    // Once restored (as the mutating webhook does), the update passes.
    let mut restored = review;
    restored["request"]["object"]["metadata"]["annotations"] =
        json!({"deadbolt.dev/created-by": "locksmith@example.com"});
    assert_eq!(
        respond(&webhook, Endpoint::ValidateDeadbolt, &restored),
        allowed(&restored)
    );
}

#[test]
fn a_temporary_user_expiring_more_than_30h_after_creation_is_denied() {
    let webhook = webhook(store());
    let review = fixture("create-temporary-user.json");
    assert_eq!(
        respond(&webhook, Endpoint::ValidateDeadbolt, &review),
        denied(
            &review,
            422,
            "Invalid",
            r#"User "frank@example.com": spec.expires (2025-06-02T18:00:01Z) must be at most 30h after the user's creation (2025-06-01T12:00:00Z), i.e. no later than 2025-06-02T18:00:00Z"#
        )
    );
    let mut exactly_30h = review;
    exactly_30h["request"]["object"]["spec"]["expires"] = json!("2025-06-02T18:00:00Z");
    assert_eq!(
        respond(&webhook, Endpoint::ValidateDeadbolt, &exactly_30h),
        allowed(&exactly_30h)
    );
}

#[test]
fn an_sso_user_can_be_deleted_but_not_edited() {
    let webhook = webhook(store());
    let edit = fixture("update-sso-user.json");
    assert_eq!(
        respond(&webhook, Endpoint::ValidateDeadbolt, &edit),
        denied(
            &edit,
            403,
            "Forbidden",
            r#"User "erin@example.com" is an SSO user: it can be deleted but not edited (this request changes its spec)"#
        )
    );
    for editor in [OPERATOR, IDP_SYNC] {
        let request = as_user(edit.clone(), editor, &["system:serviceaccounts"]);
        assert_eq!(
            respond(&webhook, Endpoint::ValidateDeadbolt, &request),
            allowed(&request),
            "{editor}"
        );
    }
    let mut status = edit;
    status["request"]["subResource"] = json!("status");
    assert_eq!(
        respond(&webhook, Endpoint::ValidateDeadbolt, &status),
        allowed(&status)
    );
    let delete = fixture("delete-sso-user.json");
    assert_eq!(
        respond(&webhook, Endpoint::ValidateDeadbolt, &delete),
        allowed(&delete)
    );
}

#[test]
fn removing_a_synced_users_origin_label_is_an_edit() {
    let webhook = webhook(store());
    let review = fixture("update-synced-user.json");
    assert_eq!(
        respond(&webhook, Endpoint::ValidateDeadbolt, &review),
        denied(
            &review,
            403,
            "Forbidden",
            r#"User "gina@example.com" is synced from the identity provider "okta" (label deadbolt.dev/origin): it can be deleted but not edited (this request changes its labels)"#
        )
    );
}

#[test]
fn malformed_reviews_are_400s() {
    let webhook = webhook(store());
    let failure = webhook
        .answer(Endpoint::EnforceLocks, b"{\"kind\": \"AdmissionRev")
        .unwrap_err();
    assert_eq!(failure.code, StatusCode::BAD_REQUEST);
    assert!(
        failure
            .message
            .starts_with("the body is not a valid admission.k8s.io/v1 AdmissionReview: "),
        "{}",
        failure.message
    );
    let mut no_operation = fixture("exec-pod.json");
    no_operation["request"]["operation"] = json!("WATCH");
    let failure = webhook
        .answer(
            Endpoint::EnforceLocks,
            &serde_json::to_vec(&no_operation).unwrap(),
        )
        .unwrap_err();
    assert_eq!(failure.code, StatusCode::BAD_REQUEST);
    assert!(failure.message.contains("WATCH"), "{}", failure.message);
}

/// A webhook on loopback behind TLS from a fresh Deadbolt CA.
struct Served {
    addr: std::net::SocketAddr,
    ca_pem: String,
    trigger: deadbolt_operator::shutdown::ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

async fn serve() -> Served {
    let ca = TestCa::new();
    let config = ca.localhost_config(admission::ALPN);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(admission::serve(
        Bound::new(listener, config, shutdown),
        webhook(store()),
    ));
    Served {
        addr,
        ca_pem: ca.cert_pem().to_string(),
        trigger,
        task,
    }
}

/// One request over a fresh TLS connection, HTTP/1.1 or HTTP/2 by ALPN.
async fn post(
    served: &Served,
    alpn: &[u8],
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, String, String) {
    let client = ClientTls {
        roots: tls::root_store(served.ca_pem.as_bytes()).unwrap(),
        identity: None,
    };
    let connector = tokio_rustls::TlsConnector::from(client.config(&[alpn]).unwrap());
    let tcp = TcpStream::connect(served.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    let request = Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = if alpn == b"h2" {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn the_https_endpoints_answer_over_http1_and_http2() {
    let served = serve().await;

    // HTTP/1.1, with the `?timeout=` the API server appends.
    let create = fixture_text("create-configmap.json").into_bytes();
    let (status, content_type, body) = post(
        &served,
        b"http/1.1",
        Method::POST,
        "/validate/locks-enforcement?timeout=10s",
        create,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let review: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        review["response"],
        locked(
            &fixture("create-configmap.json"),
            "alice-suspicious",
            ALICE_LOCKED
        )
    );

    // HTTP/2: the mutating endpoint.
    let lock = fixture_text("create-lock.json").into_bytes();
    let (status, _, body) = post(&served, b"h2", Method::POST, "/mutate/locks", lock).await;
    assert_eq!(status, StatusCode::OK);
    let review: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        decoded_patch(&review["response"])[0]["value"],
        "locksmith@example.com"
    );

    // Malformed JSON: a clear 400 Status.
    let (status, content_type, body) = post(
        &served,
        b"http/1.1",
        Method::POST,
        "/validate/deadbolt",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "application/json");
    let failure: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(failure["kind"], "Status");
    assert_eq!(failure["reason"], "BadRequest");
    assert_eq!(failure["code"], 400);
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .starts_with("the body is not a valid admission.k8s.io/v1 AdmissionReview: "),
        "{body}"
    );

    // Oversized: refused without reading it all into a review.
    let huge = vec![b' '; admission::MAX_REVIEW_BYTES + 1];
    let (status, _, body) = post(&served, b"h2", Method::POST, "/validate/deadbolt", huge).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let failure: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        failure["message"],
        "the AdmissionReview is larger than 8 MiB"
    );

    // Wrong path and method.
    let (status, _, _) = post(&served, b"http/1.1", Method::POST, "/validate", vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = post(&served, b"h2", Method::GET, "/mutate/locks", vec![]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    served.trigger.trigger();
    tokio::time::timeout(PATIENCE, served.task)
        .await
        .expect("the webhook did not stop")
        .unwrap();
}

#[test]
fn every_endpoint_has_its_path() {
    let paths: Vec<_> = Endpoint::ALL.iter().map(|e| e.path()).collect();
    assert_eq!(
        paths,
        [
            "/validate/deadbolt",
            "/validate/locks-enforcement",
            "/mutate/locks",
            "/mutate/pods"
        ]
    );
    for endpoint in Endpoint::ALL {
        assert_eq!(Endpoint::from_path(endpoint.path()), Some(endpoint));
    }
}
