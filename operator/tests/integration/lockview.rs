//! The lock-view stream end to end: real TLS on loopback, a hyper HTTP/2
//! client acting as the proxy.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::TargetKind;
use deadbolt_api::protocol::{ObjectKey, RoleRecord, UserRecord, ViewEvent, ViewObject};
use deadbolt_operator::admin::{Metrics, Readiness};
use deadbolt_operator::ca::DeadboltCa;
use deadbolt_operator::shutdown::Shutdown;
use deadbolt_operator::source::{DirOptions, DirSource};
use deadbolt_operator::stream::LOCKVIEW_PATH;
use deadbolt_operator::view::ViewStore;
use deadbolt_testkit::{lock_entry, target};
use http::{Method, StatusCode};
use support::{Credentials, GOOD_TOKEN, Reply, Server, UNLISTED_TOKEN, eventually};

/// Long enough that heartbeats stay out of the way unless a test wants them.
const SLOW_HEARTBEAT: Duration = Duration::from_secs(1);

fn lock(name: &str, user: &str) -> ViewObject {
    lock_entry(name, target(TargetKind::User, user))
        .message(format!("{user} is locked"))
        .object()
}

fn expect_snapshot(event: ViewEvent) -> deadbolt_api::protocol::Snapshot {
    match event {
        ViewEvent::Snapshot(snapshot) => snapshot,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

fn refused(reply: Result<Reply, String>) -> (StatusCode, serde_json::Value) {
    match reply.expect("the request failed at the transport level") {
        Reply::Stream(_) => panic!("expected a refusal, got a stream"),
        Reply::Refused { status, body } => {
            let json = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {body}"));
            (status, json)
        }
    }
}

fn assert_status_body(json: &serde_json::Value, code: u16, reason: &str) {
    assert_eq!(json["kind"], "Status");
    assert_eq!(json["apiVersion"], "v1");
    assert_eq!(json["status"], "Failure");
    assert_eq!(json["reason"], reason);
    assert_eq!(json["code"], code);
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message in {json}"
    );
}

#[tokio::test]
async fn a_late_subscriber_gets_the_full_snapshot() {
    let store = ViewStore::default();
    store.upsert(lock("alice", "alice"));
    store.upsert(lock("bob", "bob"));
    store.upsert(ViewObject::Role(RoleRecord {
        name: "dev".into(),
        spec: Default::default(),
    }));
    store.upsert(ViewObject::User(UserRecord {
        name: "carol".into(),
        spec: Default::default(),
    }));
    store.delete(&ObjectKey::Lock("bob".into()));
    let server = Server::start(store, SLOW_HEARTBEAT).await;

    let mut proxy = server.subscribe("proxy-1").await;
    let snapshot = expect_snapshot(proxy.next_event().await.unwrap());
    assert_eq!(snapshot.revision, 5);
    let names: Vec<_> = snapshot.locks.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["alice"]);
    assert_eq!(snapshot.roles.len(), 1);
    assert_eq!(snapshot.users.len(), 1);
    assert_eq!(snapshot.config.max_lock_staleness_ms, 30_000);
    server.stop().await;
}

#[tokio::test]
async fn deltas_arrive_in_revision_order() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let mut proxy = server.subscribe("proxy-1").await;
    let snapshot = expect_snapshot(proxy.next_event().await.unwrap());
    assert_eq!(snapshot.revision, 0);

    for n in 0..20 {
        server
            .store
            .upsert(lock(&format!("lock-{n}"), &format!("user-{n}")));
    }
    server.store.upsert(lock("lock-3", "someone-else"));
    server.store.upsert(lock("lock-3", "someone-else")); // unchanged: no event
    server.store.delete(&ObjectKey::Lock("lock-0".into()));

    let mut expected = 1;
    while expected <= 22 {
        let event = proxy.next_change().await.unwrap();
        assert_eq!(event.revision(), expected, "out of order: {event:?}");
        expected += 1;
        match (event.revision(), event) {
            (
                21,
                ViewEvent::Upsert {
                    object: ViewObject::Lock(lock),
                    ..
                },
            ) => {
                assert_eq!(lock.target.user.as_deref(), Some("someone-else"));
            }
            (22, ViewEvent::Delete { key, .. }) => {
                assert_eq!(key, ObjectKey::Lock("lock-0".into()))
            }
            (_, ViewEvent::Upsert { .. }) => {}
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn heartbeats_keep_coming_and_report_the_streamed_revision() {
    let store = ViewStore::default();
    store.upsert(lock("a", "alice"));
    let server = Server::start(store, Duration::from_millis(20)).await;
    let mut proxy = server.subscribe("proxy-1").await;
    expect_snapshot(proxy.next_event().await.unwrap());
    for _ in 0..5 {
        match proxy.next_event().await.unwrap() {
            ViewEvent::Heartbeat { revision, .. } => assert_eq!(revision, 1),
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    server.store.upsert(lock("b", "bob"));
    assert_eq!(proxy.next_change().await.unwrap().revision(), 2);
    match proxy.next_event().await.unwrap() {
        ViewEvent::Heartbeat { revision, .. } => assert_eq!(revision, 2),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_blind_operator_sends_no_heartbeats() {
    let server = Server::start(ViewStore::default(), Duration::from_millis(20)).await;
    let mut proxy = server.subscribe("proxy-1").await;
    expect_snapshot(proxy.next_event().await.unwrap());
    assert!(matches!(
        proxy.next_event().await.unwrap(),
        ViewEvent::Heartbeat { .. }
    ));
    // One of its watches fails: it cannot vouch for the view any more.
    server.readiness.set_watch_failing(false, true);
    // Heartbeats already queued may still arrive; then nothing for many intervals.
    let silent = tokio::time::timeout(Duration::from_millis(400), async {
        loop {
            let arrived =
                tokio::time::timeout(Duration::from_millis(200), proxy.next_event()).await;
            if arrived.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        silent.is_ok(),
        "heartbeats kept coming from a blind operator"
    );
    server.readiness.set_watch_failing(true, false);
    assert!(matches!(
        proxy.next_event().await.unwrap(),
        ViewEvent::Heartbeat { .. }
    ));
    server.stop().await;
}

#[tokio::test]
async fn a_reconnect_gets_a_fresh_snapshot() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    server.store.upsert(lock("a", "alice"));
    let mut first = server.subscribe("proxy-1").await;
    assert_eq!(
        expect_snapshot(first.next_event().await.unwrap()).revision,
        1
    );
    drop(first);
    eventually("the first stream is gone", || {
        server.subscribers.connected() == 0
    })
    .await;

    server.store.upsert(lock("b", "bob"));
    server.store.delete(&ObjectKey::Lock("a".into()));
    let mut second = server.subscribe("proxy-1").await;
    let snapshot = expect_snapshot(second.next_event().await.unwrap());
    assert_eq!(snapshot.revision, 3);
    let names: Vec<_> = snapshot.locks.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["b"]);
    server.stop().await;
}

#[tokio::test]
async fn acks_move_the_enforced_by_aggregation() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let mut a = server.subscribe("proxy-a").await;
    let mut b = server.subscribe("proxy-b").await;
    expect_snapshot(a.next_event().await.unwrap());
    expect_snapshot(b.next_event().await.unwrap());

    let revision = server.store.upsert(lock("alice", "alice")).unwrap();
    assert_eq!(a.next_change().await.unwrap().revision(), revision);
    assert_eq!(b.next_change().await.unwrap().revision(), revision);
    let enforced = |name: &str| {
        server
            .subscribers
            .enforced_by_locks(server.store.lock_revisions())
            .get(name)
            .map(ToString::to_string)
    };
    assert_eq!(enforced("alice").as_deref(), Some("0/2"));

    a.ack("proxy-a", revision).await;
    eventually("proxy-a's ack counts", || {
        enforced("alice").as_deref() == Some("1/2")
    })
    .await;
    b.ack("proxy-b", revision).await;
    eventually("both acks count", || {
        enforced("alice").as_deref() == Some("2/2")
    })
    .await;

    // A change to the lock needs fresh acks.
    let revision = server.store.upsert(lock("alice", "alice-2")).unwrap();
    assert_eq!(enforced("alice").as_deref(), Some("0/2"));
    assert_eq!(a.next_change().await.unwrap().revision(), revision);
    a.ack("proxy-a", revision).await;
    eventually("the new ack counts", || {
        enforced("alice").as_deref() == Some("1/2")
    })
    .await;

    // Each of the three acks moved its proxy forward: three propagation times.
    let metrics = server.metrics.render(&server.store, &server.subscribers);
    assert!(
        metrics.contains("deadbolt_propagation_seconds_count 3"),
        "{metrics}"
    );

    drop(b);
    eventually("proxy-b is gone", || {
        enforced("alice").as_deref() == Some("1/1")
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_malformed_ack_disconnects_only_that_subscriber() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let mut good = server.subscribe("good").await;
    let mut bad = server.subscribe("bad").await;
    expect_snapshot(good.next_event().await.unwrap());
    expect_snapshot(bad.next_event().await.unwrap());

    bad.send_raw("{\"type\":\"applied\",\"revision\":\"not a number\"}\n")
        .await;
    let ended = loop {
        match bad.next_event().await {
            Ok(ViewEvent::Heartbeat { .. }) => continue,
            Ok(other) => panic!("expected the stream to be cut, got {other:?}"),
            Err(error) => break error,
        }
    };
    assert!(ended.contains("stream"), "{ended}");
    eventually("the bad subscriber is gone", || {
        server.subscribers.connected() == 1
    })
    .await;
    assert_eq!(server.subscribers.list()[0].server_id, "good");

    let revision = server.store.upsert(lock("a", "alice")).unwrap();
    assert_eq!(good.next_change().await.unwrap().revision(), revision);
    good.ack("good", revision).await;
    eventually("the good subscriber's ack counts", || {
        server.subscribers.enforced_by(revision).to_string() == "1/1"
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn impossible_acks_are_refused() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    // An ack of a revision never sent would inflate enforcedBy.
    let mut early = server.subscribe("early").await;
    expect_snapshot(early.next_event().await.unwrap());
    early.ack("early", 99).await;
    // Another proxy's name in the ack.
    let mut impostor = server.subscribe("impostor").await;
    expect_snapshot(impostor.next_event().await.unwrap());
    impostor.ack("someone-else", 0).await;

    for proxy in [&mut early, &mut impostor] {
        loop {
            match proxy.next_event().await {
                Ok(ViewEvent::Heartbeat { .. }) => continue,
                Ok(other) => panic!("expected the stream to be cut, got {other:?}"),
                Err(_) => break,
            }
        }
    }
    eventually("both are gone", || server.subscribers.connected() == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn a_bearer_token_subscriber_is_accepted() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let reply = server
        .request(
            Credentials::Token(GOOD_TOKEN.into()),
            Some("db-proxy-0"),
            Method::POST,
            LOCKVIEW_PATH,
        )
        .await
        .unwrap();
    let Reply::Stream(mut proxy) = reply else {
        panic!("a good token must be accepted");
    };
    expect_snapshot(proxy.next_event().await.unwrap());
    assert_eq!(server.subscribers.list()[0].server_id, "db-proxy-0");
    server.stop().await;
}

#[tokio::test]
async fn an_unlisted_subscriber_is_refused() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let reply = server
        .request(
            Credentials::Token(UNLISTED_TOKEN.into()),
            Some("web-0"),
            Method::POST,
            LOCKVIEW_PATH,
        )
        .await;
    let (status, json) = refused(reply);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_status_body(&json, 403, "Forbidden");
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("--subscriber"), "{message}");
    assert_eq!(server.subscribers.connected(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_listed_subscriber_cannot_claim_another_server_id() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let reply = server
        .request(
            Credentials::Token(GOOD_TOKEN.into()),
            Some("db-proxy-1"),
            Method::POST,
            LOCKVIEW_PATH,
        )
        .await;
    let (status, json) = refused(reply);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("bound to pod \"db-proxy-0\""), "{message}");
    // A proxy certificate cannot claim another proxy's id either.
    let (status, _) = refused(
        server
            .request(
                Credentials::Cert(server.proxy_cert("db-proxy-0")),
                Some("db-proxy-1"),
                Method::POST,
                LOCKVIEW_PATH,
            )
            .await,
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(server.subscribers.connected(), 0);
    server.stop().await;
}

#[tokio::test]
async fn streams_per_subscriber_are_capped() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let Ok(Reply::Stream(stream)) = server
            .request(
                Credentials::Token(GOOD_TOKEN.into()),
                Some("db-proxy-0"),
                Method::POST,
                LOCKVIEW_PATH,
            )
            .await
        else {
            panic!("the first streams are accepted");
        };
        open.push(stream);
    }
    let (status, json) = refused(
        server
            .request(
                Credentials::Token(GOOD_TOKEN.into()),
                Some("db-proxy-0"),
                Method::POST,
                LOCKVIEW_PATH,
            )
            .await,
    );
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        json["message"].as_str().unwrap().contains("already has 2"),
        "{json}"
    );
    drop(open);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_token_is_refused_with_a_status_body() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let reply = server
        .request(
            Credentials::Token("stolen".into()),
            Some("proxy-1"),
            Method::POST,
            LOCKVIEW_PATH,
        )
        .await;
    let (status, json) = refused(reply);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_status_body(&json, 401, "Unauthorized");
    let message = json["message"].as_str().unwrap();
    assert!(message.contains("token has expired"), "{message}");
    assert!(!message.contains("stolen"), "the token must not be echoed");
    assert_eq!(server.subscribers.connected(), 0);
    server.stop().await;
}

#[tokio::test]
async fn no_credentials_are_refused_with_a_status_body() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let reply = server
        .request(
            Credentials::None,
            Some("proxy-1"),
            Method::POST,
            LOCKVIEW_PATH,
        )
        .await;
    let (status, json) = refused(reply);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_status_body(&json, 401, "Unauthorized");
    assert!(
        json["message"].as_str().unwrap().contains("no credentials"),
        "{json}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_during_the_handshake() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let stranger = DeadboltCa::generate()
        .unwrap()
        .issue_proxy_cert("proxy-1", Duration::from_secs(3600))
        .unwrap();
    let error = match server
        .request(
            Credentials::Cert(stranger),
            Some("proxy-1"),
            Method::POST,
            LOCKVIEW_PATH,
        )
        .await
    {
        Ok(_) => panic!("a certificate from another CA must be refused"),
        Err(error) => error,
    };
    // TLS 1.3 clients learn of the rejection from the server's alert.
    assert!(error.contains("UnknownCA"), "unexpected error: {error}");
    assert_eq!(server.subscribers.connected(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_must_match_the_server_id_header() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let cert = server.proxy_cert("proxy-1");
    let (status, json) = refused(
        server
            .request(
                Credentials::Cert(cert),
                Some("proxy-2"),
                Method::POST,
                LOCKVIEW_PATH,
            )
            .await,
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_status_body(&json, 403, "Forbidden");

    let user_cert = server.proxy_cert("proxy-1");
    let (status, json) = refused(
        server
            .request(
                Credentials::Cert(user_cert),
                None,
                Method::POST,
                LOCKVIEW_PATH,
            )
            .await,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_status_body(&json, 400, "BadRequest");
    server.stop().await;
}

#[tokio::test]
async fn wrong_paths_and_methods_get_status_bodies() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let (status, json) = refused(
        server
            .request(
                Credentials::Cert(server.proxy_cert("p")),
                Some("p"),
                Method::POST,
                "/v2/nope",
            )
            .await,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_status_body(&json, 404, "NotFound");
    let (status, json) = refused(
        server
            .request(
                Credentials::Cert(server.proxy_cert("p")),
                Some("p"),
                Method::GET,
                LOCKVIEW_PATH,
            )
            .await,
    );
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_status_body(&json, 405, "MethodNotAllowed");
    server.stop().await;
}

#[tokio::test]
async fn nothing_is_served_before_the_source_has_loaded() {
    let readiness = Readiness::new();
    let server = Server::start_with(ViewStore::default(), SLOW_HEARTBEAT, readiness.clone()).await;
    let (status, json) = refused(
        server
            .request(
                Credentials::Cert(server.proxy_cert("p")),
                Some("p"),
                Method::POST,
                LOCKVIEW_PATH,
            )
            .await,
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_status_body(&json, 503, "ServiceUnavailable");
    readiness.set_ready();
    let mut proxy = server.subscribe("p").await;
    expect_snapshot(proxy.next_event().await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_streams_cleanly() {
    let server = Server::start(ViewStore::default(), SLOW_HEARTBEAT).await;
    let mut proxy = server.subscribe("p").await;
    expect_snapshot(proxy.next_event().await.unwrap());
    let subscribers = server.subscribers.clone();
    server.stop().await;
    let error = loop {
        match proxy.next_event().await {
            Ok(ViewEvent::Heartbeat { .. }) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(error) => break error,
        }
    };
    assert_eq!(error, "the stream ended");
    eventually("the subscriber is gone", || subscribers.connected() == 0).await;
}

#[tokio::test]
async fn the_dir_source_streams_an_edited_lock() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("locks.yaml");
    let manifest = |user: &str, message: &str| {
        format!(
            "apiVersion: deadbolt.dev/v1\nkind: Lock\nmetadata:\n  name: incident\n\
             spec:\n  target:\n    user: {user}\n  message: {message}\n  ttl: 10h\n"
        )
    };
    std::fs::write(&file, manifest("alice", "Suspicious activity.")).unwrap();

    let store = ViewStore::default();
    let readiness = Readiness::new();
    let mut source = DirSource::new(
        dir.path(),
        store.clone(),
        readiness.clone(),
        Arc::new(Metrics::new()),
        DirOptions {
            poll_interval: Duration::from_millis(50),
            settle: Duration::from_millis(20),
        },
    );
    source.load().unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let source_task = tokio::spawn(source.run(shutdown));
    let server = Server::start_with(store, SLOW_HEARTBEAT, readiness).await;

    let mut proxy = server.subscribe("proxy-1").await;
    let snapshot = expect_snapshot(proxy.next_event().await.unwrap());
    assert_eq!(snapshot.locks.len(), 1);
    let original = &snapshot.locks[0];
    assert_eq!(original.target.user.as_deref(), Some("alice"));
    assert!(
        original.expires_at.is_some(),
        "ttl counts from the file's mtime"
    );

    std::fs::write(&file, manifest("bob", "Compromised laptop.")).unwrap();
    let ViewEvent::Upsert {
        revision,
        object: ViewObject::Lock(edited),
    } = proxy.next_change().await.unwrap()
    else {
        panic!("expected the edited lock");
    };
    assert_eq!(revision, snapshot.revision + 1);
    assert_eq!(edited.name, "incident");
    assert_eq!(edited.target.user.as_deref(), Some("bob"));
    assert_eq!(
        edited.message(),
        r#"lock targeting User:"bob" is in force: Compromised laptop."#
    );

    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        proxy.next_change().await.unwrap(),
        ViewEvent::Delete {
            revision: revision + 1,
            key: ObjectKey::Lock("incident".into())
        }
    );

    trigger.trigger();
    source_task.await.unwrap();
    server.stop().await;
}
