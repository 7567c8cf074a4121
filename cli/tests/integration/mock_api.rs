//! The plugin against a mocked API server (kube-rs's `ApiServerVerifier`
//! pattern): each test checks the exact requests the plugin sends and what it
//! prints, and that bad input sends nothing at all.

use clap::Parser;
use deadbolt_testkit::ApiServer;
use http::{Method, Response};
use kube::Client;
use kube::client::Body;
use kubectl_deadbolt::{Cli, Error, execute};
use serde_json::{Value, json};

const LOCKS_PATH: &str = "/apis/deadbolt.dev/v1/locks";

struct Outcome {
    result: Result<(), Error>,
    out: String,
    err: String,
}

impl Outcome {
    fn error_text(&self) -> String {
        match &self.result {
            Ok(()) => panic!("expected an error, got success; stdout: {}", self.out),
            Err(error) => error.render(),
        }
    }
}

/// Runs `kubectl deadbolt ARGS` against `client`, capturing stdout and stderr.
async fn run(args: &[&str], client: Client) -> Outcome {
    let cli = Cli::try_parse_from(std::iter::once("kubectl-deadbolt").chain(args.iter().copied()))
        .expect("arguments parse");
    let mut out = Vec::new();
    let mut err = Vec::new();
    let result = execute(&cli.command, client, &mut out, &mut err).await;
    Outcome {
        result,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn lock_json(name: &str, target: Value) -> Value {
    json!({
        "apiVersion": "deadbolt.dev/v1",
        "kind": "Lock",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "7",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"target": target},
    })
}

fn list_json(items: Vec<Value>, continue_token: Option<&str>) -> Value {
    let mut metadata = json!({"resourceVersion": "42"});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({"apiVersion": "deadbolt.dev/v1", "kind": "LockList", "metadata": metadata, "items": items})
}

fn status_json(code: u16, reason: &str, message: &str, name: Option<&str>) -> Value {
    let mut status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    if let Some(name) = name {
        status["details"] = json!({"name": name, "group": "deadbolt.dev", "kind": "locks"});
    }
    status
}

fn deleted_status(name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
           "details": {"name": name, "group": "deadbolt.dev", "kind": "locks", "uid": format!("uid-{name}")}})
}

/// Answers the next request, which must be the first list page, with `items`.
async fn expect_list(server: &mut ApiServer, items: Vec<Value>) {
    server
        .expect_get(&format!("{LOCKS_PATH}?&limit=500"), list_json(items, None))
        .await;
}

/// Answers the next request, which must delete lock `name`.
async fn expect_delete(server: &mut ApiServer, name: &str) {
    server
        .expect_delete(&format!("{LOCKS_PATH}/{name}?"), deleted_status(name))
        .await;
}

fn assert_uuid_v4(name: &str) {
    let uuid = uuid::Uuid::parse_str(name).unwrap_or_else(|_| panic!("{name:?} is not a UUID"));
    assert_eq!(uuid.get_version_num(), 4, "{name}");
    assert_eq!(name, uuid.hyphenated().to_string(), "lowercase, hyphenated");
}

/// Answers a create with what the API server would return: the object, with server fields filled in.
async fn expect_create(server: &mut ApiServer) -> Value {
    server
        .expect_create(&format!("{LOCKS_PATH}?"), |body| {
            let mut created = body.clone();
            created["metadata"]["uid"] = json!("b1c5a8a2-0000-4000-8000-000000000000");
            created["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            created
        })
        .await
}

fn created_line(body: &Value) -> String {
    format!(
        "Created a lock with name \"{}\".\n",
        body["metadata"]["name"].as_str().unwrap()
    )
}

#[tokio::test]
async fn lock_with_user_message_and_ttl_posts_the_lock() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        let body = expect_create(&mut server).await;
        server.finish().await;
        body
    });
    let outcome = run(
        &[
            "lock",
            "--user=foo@example.com",
            "--message=Suspicious activity.",
            "--ttl=10h",
        ],
        client,
    )
    .await;
    let body = verifier.await.unwrap();
    outcome.result.as_ref().expect("lock succeeds");

    let name = body["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    assert_uuid_v4(&name);
    assert_eq!(
        body,
        json!({
            "apiVersion": "deadbolt.dev/v1",
            "kind": "Lock",
            "metadata": {"name": name},
            "spec": {
                "target": {"user": "foo@example.com"},
                "message": "Suspicious activity.",
                "ttl": "10h",
            },
        })
    );
    assert_eq!(
        outcome.out,
        format!("Created a lock with name \"{name}\".\n")
    );
    assert_eq!(outcome.err, "");
}

#[tokio::test]
async fn lock_with_expires_sends_an_rfc3339_utc_time() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        let body = expect_create(&mut server).await;
        server.finish().await;
        body
    });
    let outcome = run(
        &[
            "lock",
            "--role=contractor",
            "--expires",
            "2030-01-01T02:00:00+02:00",
        ],
        client,
    )
    .await;
    let body = verifier.await.unwrap();
    outcome.result.as_ref().expect("lock succeeds");
    assert_uuid_v4(body["metadata"]["name"].as_str().unwrap());
    assert_eq!(
        body["spec"],
        json!({"target": {"role": "contractor"}, "expires": "2030-01-01T00:00:00Z"})
    );
    assert_eq!(outcome.out, created_line(&body));
}

#[tokio::test]
async fn lock_with_every_target_flag_sets_every_field() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        let body = expect_create(&mut server).await;
        server.finish().await;
        body
    });
    let outcome = run(
        &[
            "lock",
            "--user=alice",
            "--role=dev",
            "--login=postgres",
            "--mfa-device=d6c06a18-e147-4232-9dfe-6f83a28d5850",
            "--device=9cdfc0ad-64b7-4d9c-9342-50e97f418ba0",
            "--server-id=363256df-f78a-4d99-803c-bae19da9ede4",
            "--windows-desktop=WIN-FMPFM5UF1SS",
            "--access-request=261e80c5-357b-4c43-9b67-40a6bc4c6e4d",
        ],
        client,
    )
    .await;
    let body = verifier.await.unwrap();
    outcome.result.as_ref().expect("lock succeeds");
    assert_eq!(
        body["spec"],
        json!({"target": {
            "user": "alice",
            "role": "dev",
            "login": "postgres",
            "mfaDevice": "d6c06a18-e147-4232-9dfe-6f83a28d5850",
            "device": "9cdfc0ad-64b7-4d9c-9342-50e97f418ba0",
            "serverId": "363256df-f78a-4d99-803c-bae19da9ede4",
            "windowsDesktop": "WIN-FMPFM5UF1SS",
            "accessRequest": "261e80c5-357b-4c43-9b67-40a6bc4c6e4d",
        }})
    );
    assert_eq!(outcome.out, created_line(&body));
}

#[tokio::test]
async fn each_lock_gets_a_fresh_name() {
    let mut names = Vec::new();
    for _ in 0..2 {
        let (client, mut server) = ApiServer::pair();
        let verifier = tokio::spawn(async move { expect_create(&mut server).await });
        run(&["lock", "--user=alice"], client).await.result.unwrap();
        names.push(verifier.await.unwrap()["metadata"]["name"].clone());
    }
    assert_ne!(names[0], names[1]);
}

#[tokio::test]
async fn forbidden_create_prints_like_kubectl() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        let (_, send) = server.next().await;
        ApiServer::reply(
            send,
            403,
            &status_json(
                403,
                "Forbidden",
                "locks.deadbolt.dev is forbidden: User \"bob\" cannot create resource \"locks\" in API group \"deadbolt.dev\" at the cluster scope",
                None,
            ),
        );
        server.finish().await;
    });
    let outcome = run(&["lock", "--user=alice"], client).await;
    verifier.await.unwrap();
    assert_eq!(
        outcome.error_text(),
        "Error from server (Forbidden): locks.deadbolt.dev is forbidden: User \"bob\" cannot create resource \"locks\" in API group \"deadbolt.dev\" at the cluster scope"
    );
    assert_eq!(outcome.out, "");
}

#[tokio::test]
async fn missing_crd_gets_a_hint() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        let (_, send) = server.next().await;
        send.send_response(
            Response::builder()
                .status(404)
                .header("content-type", "text/plain")
                .body(Body::from(b"404 page not found\n".to_vec()))
                .unwrap(),
        );
    });
    let outcome = run(&["lock", "--user=alice"], client).await;
    verifier.await.unwrap();
    assert_eq!(
        outcome.error_text(),
        "Error from server (NotFound): 404 page not found (is Deadbolt installed? the locks.deadbolt.dev CustomResourceDefinition was not found)"
    );
}

#[tokio::test]
async fn unlock_deletes_only_locks_with_exactly_that_target() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        expect_list(
            &mut server,
            vec![
                lock_json("alice-1", json!({"user": "alice"})),
                lock_json("alice-and-dev", json!({"user": "alice", "role": "dev"})),
                lock_json("bob", json!({"user": "bob"})),
                lock_json("role-alice", json!({"role": "alice"})),
                lock_json("alice-2", json!({"user": "alice"})),
            ],
        )
        .await;
        expect_delete(&mut server, "alice-1").await;
        expect_delete(&mut server, "alice-2").await;
        server.finish().await;
    });
    let outcome = run(&["unlock", "--user=alice"], client).await;
    verifier.await.unwrap();
    outcome.result.as_ref().expect("unlock succeeds");
    assert_eq!(
        outcome.out,
        "lock \"alice-1\" has been deleted\nlock \"alice-2\" has been deleted\n"
    );
}

#[tokio::test]
async fn unlock_with_several_flags_needs_all_of_them() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        expect_list(
            &mut server,
            vec![
                lock_json("alice", json!({"user": "alice"})),
                lock_json("alice-and-dev", json!({"role": "dev", "user": "alice"})),
                lock_json(
                    "alice-dev-login",
                    json!({"user": "alice", "role": "dev", "login": "root"}),
                ),
            ],
        )
        .await;
        expect_delete(&mut server, "alice-and-dev").await;
        server.finish().await;
    });
    let outcome = run(&["unlock", "--role=dev", "--user=alice"], client).await;
    verifier.await.unwrap();
    outcome.result.as_ref().expect("unlock succeeds");
    assert_eq!(outcome.out, "lock \"alice-and-dev\" has been deleted\n");
}

#[tokio::test]
async fn unlock_without_an_exact_match_fails_and_deletes_nothing() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        expect_list(
            &mut server,
            vec![
                lock_json("alice-and-dev", json!({"user": "alice", "role": "dev"})),
                lock_json("bob", json!({"user": "bob"})),
            ],
        )
        .await;
        server.finish().await;
    });
    let outcome = run(&["unlock", "--user=alice"], client).await;
    verifier.await.unwrap();
    assert!(matches!(outcome.result, Err(Error::NoMatch { .. })));
    assert_eq!(
        outcome.error_text(),
        "error: no lock targets exactly User:\"alice\"; these locks target it together with other fields and were left alone (remove them with `kubectl deadbolt rm NAME`): alice-and-dev"
    );
    assert_eq!(outcome.out, "");
}

#[tokio::test]
async fn ls_pages_through_locks_and_prints_a_table() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        let mut in_force = lock_json(
            "5444970a-39a0-4814-968d-e58b4a8fa686",
            json!({"user": "alice", "role": "dev"}),
        );
        in_force["spec"]["message"] = json!("Suspicious activity.");
        in_force["spec"]["ttl"] = json!("10h");
        in_force["status"] = json!({
            "observedGeneration": 1,
            "expiresAt": "2026-01-01T10:00:00Z",
            "enforcedBy": "3/3",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Valid", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "InForce", "status": "True", "reason": "Unexpired", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
        });
        let (request, send) = server.next().await;
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().path(), LOCKS_PATH);
        assert_eq!(request.uri().query(), Some("&limit=500"));
        ApiServer::reply(send, 200, &list_json(vec![in_force], Some("page-2")));

        let mut forever = lock_json("forever", json!({"serverId": "proxy-1"}));
        forever["spec"]["message"] = json!("line one\nline two");
        let mut fixed = lock_json("fixed", json!({"login": "root"}));
        fixed["spec"]["expires"] = json!("2030-01-01T00:00:00Z");
        let mut fresh = lock_json("fresh", json!({"device": "d1"}));
        fresh["spec"]["ttl"] = json!("1h30m");
        let (request, send) = server.next().await;
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().path(), LOCKS_PATH);
        assert_eq!(request.uri().query(), Some("&limit=500&continue=page-2"));
        ApiServer::reply(send, 200, &list_json(vec![forever, fixed, fresh], None));
        server.finish().await;
    });
    let outcome = run(&["ls"], client).await;
    verifier.await.unwrap();
    outcome.result.as_ref().expect("ls succeeds");
    let expected = [
        "NAME                                   TARGET                    MESSAGE                EXPIRES                IN-FORCE   ENFORCED",
        "5444970a-39a0-4814-968d-e58b4a8fa686   User:\"alice\" Role:\"dev\"   Suspicious activity.   2026-01-01T10:00:00Z   True       3/3",
        "forever                                ServerID:\"proxy-1\"        line one line two      never                  <none>     <none>",
        "fixed                                  Login:\"root\"              <none>                 2030-01-01T00:00:00Z   <none>     <none>",
        "fresh                                  Device:\"d1\"               <none>                 2026-01-01T01:30:00Z   <none>     <none>",
    ];
    assert_eq!(
        outcome.out,
        expected.map(|line| format!("{line}\n")).concat()
    );
    assert_eq!(outcome.err, "");
}

#[tokio::test]
async fn ls_with_no_locks_says_so_on_stderr() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        expect_list(&mut server, vec![]).await;
        server.finish().await;
    });
    let outcome = run(&["ls"], client).await;
    verifier.await.unwrap();
    outcome.result.as_ref().expect("ls succeeds");
    assert_eq!(outcome.out, "");
    assert_eq!(outcome.err, "No locks found.\n");
}

#[tokio::test]
async fn rm_deletes_the_named_lock() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        let name = "24679348-baff-4987-a2cd-e820ab7f9d2b";
        let (request, send) = server.next().await;
        assert_eq!(request.method(), Method::DELETE);
        assert_eq!(request.uri().path(), format!("{LOCKS_PATH}/{name}"));
        // kube sends empty DeleteParams as a JSON body.
        assert_eq!(ApiServer::body(request).await, json!({}));
        ApiServer::reply(send, 200, &lock_json(name, json!({"user": "alice"})));
        server.finish().await;
    });
    let outcome = run(
        &["rm", "locks/24679348-baff-4987-a2cd-e820ab7f9d2b"],
        client,
    )
    .await;
    verifier.await.unwrap();
    outcome.result.as_ref().expect("rm succeeds");
    assert_eq!(
        outcome.out,
        "lock \"24679348-baff-4987-a2cd-e820ab7f9d2b\" has been deleted\n"
    );
}

#[tokio::test]
async fn rm_of_a_missing_lock_says_not_found() {
    let (client, mut server) = ApiServer::pair();
    let verifier = tokio::spawn(async move {
        let (request, send) = server.next().await;
        assert_eq!(request.method(), Method::DELETE);
        assert_eq!(request.uri().path(), format!("{LOCKS_PATH}/nope"));
        ApiServer::reply(
            send,
            404,
            &status_json(
                404,
                "NotFound",
                "locks.deadbolt.dev \"nope\" not found",
                Some("nope"),
            ),
        );
        server.finish().await;
    });
    let outcome = run(&["rm", "nope"], client).await;
    verifier.await.unwrap();
    assert!(matches!(&outcome.result, Err(Error::NotFound(name)) if name == "nope"));
    assert_eq!(outcome.error_text(), "error: lock \"nope\" not found");
    assert_eq!(outcome.out, "");
}

/// Runs a command whose flags are bad and checks that it fails with `expected` and sends nothing.
async fn assert_rejected_offline(args: &[&str], expected: &str) {
    let (client, server) = ApiServer::pair();
    let verifier = tokio::spawn(async move { server.finish().await });
    let outcome = run(args, client).await;
    verifier.await.unwrap();
    assert_eq!(outcome.error_text(), expected, "{args:?}");
    assert_eq!(outcome.out, "");
}

#[tokio::test]
async fn ttl_with_expires_is_rejected_before_any_request() {
    assert_rejected_offline(
        &[
            "lock",
            "--user=a",
            "--ttl=1h",
            "--expires=2030-01-01T00:00:00Z",
        ],
        "error: use only one of --ttl and --expires",
    )
    .await;
}

#[tokio::test]
async fn a_target_is_required() {
    assert_rejected_offline(
        &["lock", "--message=hi", "--ttl=1h"],
        "error: at least one of the target fields must be set",
    )
    .await;
    assert_rejected_offline(
        &["lock", "--user="],
        "error: at least one of the target fields must be set",
    )
    .await;
    assert_rejected_offline(
        &["unlock"],
        "error: at least one of the target fields must be set",
    )
    .await;
}

#[tokio::test]
async fn bad_ttl_is_explained() {
    assert_rejected_offline(
        &["lock", "--user=a", "--ttl=10d"],
        "error: invalid --ttl \"10d\": expected a Go duration such as 10h, 90m or 1h30m (units ns, us, ms, s, m, h; days are not a unit: 10 days is 240h)",
    )
    .await;
    assert_rejected_offline(
        &["lock", "--user=a", "--ttl=0s"],
        "error: invalid --ttl \"0s\": the lock would expire at once; use a positive duration such as 10h or 90m",
    )
    .await;
}

#[tokio::test]
async fn bad_expires_is_explained() {
    assert_rejected_offline(
        &["lock", "--user=a", "--expires=tomorrow"],
        "error: invalid --expires \"tomorrow\": expected an RFC 3339 time such as 2030-01-01T00:00:00Z",
    )
    .await;
    let outcome_text = {
        let (client, server) = ApiServer::pair();
        let verifier = tokio::spawn(async move { server.finish().await });
        let outcome = run(
            &["lock", "--user=a", "--expires=2030-02-30T00:00:00Z"],
            client,
        )
        .await;
        verifier.await.unwrap();
        outcome.error_text()
    };
    assert!(
        outcome_text.starts_with(
            "error: invalid --expires \"2030-02-30T00:00:00Z\": expected an RFC 3339 time such as 2030-01-01T00:00:00Z: "
        ),
        "{outcome_text}"
    );
}

#[tokio::test]
async fn bad_lock_names_are_rejected_before_any_request() {
    assert_rejected_offline(
        &["rm", "../secrets"],
        "error: invalid lock name \"../secrets\": must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
    )
    .await;
}
