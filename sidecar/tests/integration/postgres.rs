//! The PostgreSQL proxy against a real PostgreSQL, with the real `psql` and
//! with tokio-postgres: allowed sessions work, locked ones are refused and cut
//! with the exact lock message, other sessions carry on, and a stale view is
//! handled per locking mode.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use deadbolt_api::TargetKind;
use deadbolt_api::credential::CertIdentity;
use deadbolt_api::resources::LockingMode;
use deadbolt_runtime::clock::ManualClock;
use deadbolt_testkit::postgres::Postgres;
use support::operator::{Operator, target};
use support::proxy::{Proxy, user};
use support::{PATIENCE, eventually};

async fn setup(server_id: &str) -> (Postgres, Operator, Proxy) {
    let postgres = Postgres::start();
    let operator = Operator::start().await;
    let proxy = Proxy::start(&operator, &postgres, server_id).await;
    (postgres, operator, proxy)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A tokio-postgres session through the proxy, and its connection task, which
/// ends with the server's FATAL error when the session is cut.
async fn tokio_postgres_client(
    proxy: &Proxy,
    identity: &CertIdentity,
    login: &str,
) -> Result<
    (
        tokio_postgres::Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ),
    tokio_postgres::Error,
> {
    let (cert, key) = proxy.user_cert(identity);
    let tls = deadbolt_runtime::tls::ClientTls {
        roots: deadbolt_runtime::tls::root_store(
            &std::fs::read(proxy.files.path().join("ca.crt")).unwrap(),
        )
        .unwrap(),
        identity: Some(deadbolt_runtime::tls::CertifiedKey::from_files(&cert, &key).unwrap()),
    }
    .config(&[b"postgresql"])
    .unwrap();
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
    let config = format!(
        "host=localhost port={} user={login} dbname={login} sslmode=require",
        proxy.addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, connector).await?;
    Ok((client, tokio::spawn(connection)))
}

/// The error the connection task ended with.
async fn connection_error(
    task: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) -> String {
    match tokio::time::timeout(PATIENCE, task).await {
        Ok(Ok(Err(error))) => match error.as_db_error() {
            Some(db) => format!("{}:  {}", db.severity(), db.message()),
            None => error.to_string(),
        },
        other => panic!("the connection did not end with an error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_sessions_run_queries_copy_and_prepared_statements() {
    let (_postgres, _operator, proxy) = setup("proxy-allowed").await;
    let alice = user("alice");

    let output = proxy.psql(&alice, "app", "select 40 + 2");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "42");

    let (client, _connection) = tokio_postgres_client(&proxy, &alice, "app").await.unwrap();
    client
        .batch_execute("create table items (id int primary key, name text)")
        .await
        .unwrap();
    let insert = client
        .prepare("insert into items values ($1, $2)")
        .await
        .unwrap();
    for id in 0..10 {
        client
            .execute(&insert, &[&id, &format!("item {id}")])
            .await
            .unwrap();
    }
    let sink = client.copy_in("copy items from stdin").await.unwrap();
    {
        use futures::SinkExt;
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from_static(b"100\tcopied\n101\tcopied too\n"))
            .await
            .unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap(), 2);
    }
    let row = client
        .query_one("select count(*) from items", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 12);

    let events = proxy.audit.json();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "session.start" && e["user"] == "alice" && e["login"] == "app")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_targets_are_refused_with_the_exact_message() {
    let (_postgres, operator, proxy) = setup("proxy-refuse").await;
    let mfa = "d6c06a18-e147-4232-9dfe-6f83a28d5850";
    let cases = [
        (
            TargetKind::User,
            "mallory",
            r#"lock targeting User:"mallory" is in force: Suspicious activity."#,
        ),
        (
            TargetKind::Role,
            "contractor",
            r#"lock targeting Role:"contractor" is in force: Suspicious activity."#,
        ),
        (
            TargetKind::Login,
            "reporting",
            r#"lock targeting Login:"reporting" is in force: Suspicious activity."#,
        ),
        (
            TargetKind::MfaDevice,
            mfa,
            r#"lock targeting MFADevice:"d6c06a18-e147-4232-9dfe-6f83a28d5850" is in force: Suspicious activity."#,
        ),
    ];
    let mallory = CertIdentity {
        user: "mallory".into(),
        roles: vec!["contractor".into()],
        mfa_device: Some(mfa.into()),
        ..Default::default()
    };
    for (index, (kind, value, message)) in cases.into_iter().enumerate() {
        let name = format!("lock-{index}");
        operator.lock(&name, target(kind, value), "Suspicious activity.");
        proxy.catch_up(&operator).await;
        let output = proxy.psql(&mallory, "reporting", "select 1");
        assert!(!output.status.success());
        assert!(
            stderr(&output).contains(&format!("FATAL:  {message}")),
            "{kind:?}: {}",
            stderr(&output)
        );
        operator.unlock(&name);
        proxy.catch_up(&operator).await;
    }

    operator.lock(
        "proxy-wide",
        target(TargetKind::ServerId, "proxy-refuse"),
        "maintenance",
    );
    proxy.catch_up(&operator).await;
    let output = proxy.psql(&user("alice"), "app", "select 1");
    assert!(
        stderr(&output)
            .contains(r#"FATAL:  lock targeting ServerID:"proxy-refuse" is in force: maintenance"#),
        "{}",
        stderr(&output)
    );
    let rejected = proxy
        .audit
        .json()
        .into_iter()
        .filter(|e| e["event"] == "session.rejected")
        .count();
    assert_eq!(rejected, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_lock_cuts_the_open_session_and_spares_the_others() {
    let (_postgres, operator, proxy) = setup("proxy-cut").await;
    let (alice, alice_connection) = tokio_postgres_client(&proxy, &user("alice"), "app")
        .await
        .unwrap();
    let (bob, _bob_connection) = tokio_postgres_client(&proxy, &user("bob"), "app")
        .await
        .unwrap();
    alice.simple_query("select 1").await.unwrap();
    bob.simple_query("select 1").await.unwrap();

    // A live psql session of alice's too, reading statements from stdin.
    let alice_identity = user("alice");
    let mut psql = Command::new("psql")
        .arg(proxy.conninfo(&alice_identity, "app"))
        .args(["-XAt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = psql.stdin.take().unwrap();
    writeln!(stdin, "select 'before';").unwrap();
    let stdout = psql.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    });
    let first_line = tokio::time::timeout(PATIENCE, first_line)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first_line.trim(), "before");
    assert_eq!(proxy.view.registry().len(), 3);

    operator.lock(
        "cut-alice",
        target(TargetKind::User, "alice"),
        "Suspicious activity.",
    );
    eventually("alice's sessions to be cut", || {
        proxy.view.registry().len() == 1
    })
    .await;

    assert_eq!(
        connection_error(alice_connection).await,
        r#"FATAL:  lock targeting User:"alice" is in force: Suspicious activity."#
    );
    assert!(alice.simple_query("select 2").await.is_err());
    let rows = bob.simple_query("select 'still here'").await.unwrap();
    assert!(!rows.is_empty());

    // psql may already have noticed the cut and exited; then this write fails.
    let _ = writeln!(stdin, "select 'after';");
    drop(stdin);
    let output = tokio::task::spawn_blocking(move || psql.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&output.stdout).contains("after"));
    assert!(
        stderr(&output)
            .contains(r#"FATAL:  lock targeting User:"alice" is in force: Suspicious activity."#),
        "{}",
        stderr(&output)
    );
    let terminated = proxy
        .audit
        .json()
        .into_iter()
        .filter(|e| e["event"] == "session.terminated")
        .count();
    assert_eq!(terminated, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_returns_once_the_lock_is_deleted_or_expires() {
    // The proxy's clock is the test's: the lock expires when the test says.
    let clock = ManualClock::new(jiff::Timestamp::now());
    let _postgres = Postgres::start();
    let mut operator = Operator::start().await;
    operator.view_clock = std::sync::Arc::new(clock.clone());
    let proxy = Proxy::start(&operator, &_postgres, "proxy-return").await;
    let alice = user("alice");
    operator.lock("deleted-later", target(TargetKind::User, "alice"), "wait");
    proxy.catch_up(&operator).await;
    assert!(!proxy.psql(&alice, "app", "select 1").status.success());
    operator.unlock("deleted-later");
    proxy.catch_up(&operator).await;
    assert!(proxy.psql(&alice, "app", "select 1").status.success());

    operator.lock_until(
        "expiring",
        target(TargetKind::User, "alice"),
        Duration::from_secs(3600),
    );
    // From now (at or after the lock's creation): still locked 3,500 s on,
    // free once the hour has passed.
    clock.set(jiff::Timestamp::now());
    proxy.catch_up(&operator).await;
    assert!(!proxy.psql(&alice, "app", "select 1").status.success());
    clock.advance(jiff::SignedDuration::from_secs(3500));
    assert!(
        !proxy.psql(&alice, "app", "select 1").status.success(),
        "expired early"
    );
    clock.advance(jiff::SignedDuration::from_secs(101));
    let output = proxy.psql(&alice, "app", "select 1");
    assert!(output.status.success(), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_granted_after_login_and_then_locked_cuts_the_session() {
    let (_postgres, operator, proxy) = setup("proxy-granted").await;
    let (ursula, ursula_connection) = tokio_postgres_client(&proxy, &user("ursula"), "app")
        .await
        .unwrap();
    ursula.simple_query("select 1").await.unwrap();
    // Granted a role while connected...
    operator.user(
        "ursula",
        deadbolt_api::resources::UserSpec {
            roles: vec!["incident-responder".into()],
            ..Default::default()
        },
    );
    proxy.catch_up(&operator).await;
    ursula.simple_query("select 2").await.unwrap();
    // ...which is then locked: the live session holds it, so it is cut.
    operator.lock(
        "responders",
        target(TargetKind::Role, "incident-responder"),
        "Suspicious activity.",
    );
    assert_eq!(
        connection_error(ursula_connection).await,
        r#"FATAL:  lock targeting Role:"incident-responder" is in force: Suspicious activity."#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_cancel_requests_for_relayed_sessions_are_forwarded() {
    let (_postgres, _operator, proxy) = setup("proxy-cancel").await;
    let (client, _connection) = tokio_postgres_client(&proxy, &user("alice"), "app")
        .await
        .unwrap();
    let token = client.cancel_token();
    let tls = deadbolt_runtime::tls::ClientTls {
        roots: deadbolt_runtime::tls::root_store(
            &std::fs::read(proxy.files.path().join("ca.crt")).unwrap(),
        )
        .unwrap(),
        identity: None,
    }
    .config(&[b"postgresql"])
    .unwrap();
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
    let long = tokio::spawn(async move { client.simple_query("select pg_sleep(60)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A cancel request naming the backend with another secret is dropped.
    let mut forged = Vec::new();
    forged.extend_from_slice(&16u32.to_be_bytes());
    forged.extend_from_slice(&80_877_102u32.to_be_bytes());
    forged.extend_from_slice(&[0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
    {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(&forged).await.unwrap();
        let _ = stream.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !long.is_finished(),
        "a forged cancel request stopped the query"
    );

    // The session's own key cancels it, through the proxy (over TLS, as libpq does).
    token.cancel_query(connector).await.unwrap();
    let outcome = tokio::time::timeout(PATIENCE, long).await.unwrap().unwrap();
    let error = outcome.unwrap_err();
    assert!(
        error.as_db_error().is_some_and(|db| db
            .message()
            .contains("canceling statement due to user request")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_operator_falls_silent_and_strict_sessions_are_cut() {
    // The operator stays up and connected, but its own watches of the API
    // server fail (a partition): it must stop vouching for the view.
    let (_postgres, operator, proxy) = setup("proxy-blind").await;
    operator.role(deadbolt_api::protocol::RoleRecord {
        name: "oncall".into(),
        spec: deadbolt_api::AccessRoleSpec {
            options: deadbolt_api::resources::RoleOptions {
                lock: Some(LockingMode::Strict),
                ..Default::default()
            },
            groups: vec!["oncall".into()],
            ..Default::default()
        },
    });
    operator.configure(LockingMode::BestEffort, Duration::from_secs(2));
    eventually("the settings", || {
        proxy.view.max_staleness() == Duration::from_secs(2)
    })
    .await;
    let mut sre = user("sre");
    sre.groups.push("oncall".into());
    let (strict, strict_connection) = tokio_postgres_client(&proxy, &sre, "app").await.unwrap();
    let (relaxed, _relaxed_connection) = tokio_postgres_client(&proxy, &user("dev"), "app")
        .await
        .unwrap();
    strict.simple_query("select 1").await.unwrap();

    operator.readiness.set_watch_failing(false, true);
    // The view stays reliable while heartbeats are merely missing for less
    // than maxLockStaleness; then strict sessions are cut.
    assert!(proxy.view.is_reliable());
    eventually("the strict session to be cut", || {
        proxy.view.registry().len() == 1
    })
    .await;
    assert_eq!(
        connection_error(strict_connection).await,
        "FATAL:  preventive lock-out due to local lock view becoming unreliable"
    );
    relaxed
        .simple_query("select 'best effort carries on'")
        .await
        .unwrap();
    let refused = proxy.psql(&sre, "app", "select 1");
    assert!(
        stderr(&refused).contains("preventive lock-out"),
        "{}",
        stderr(&refused)
    );

    // Its watches recover: heartbeats resume and sessions are admitted again.
    operator.readiness.set_watch_failing(true, false);
    eventually("the view to be reliable again", || proxy.view.is_reliable()).await;
    assert!(proxy.psql(&sre, "app", "select 1").status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_view_cuts_strict_sessions_and_spares_best_effort_ones() {
    let (_postgres, mut operator, proxy) = setup("proxy-stale").await;
    // The role "oncall" is strict; the cluster stays best effort.
    operator
        .store
        .upsert(deadbolt_api::protocol::ViewObject::Role(
            deadbolt_api::protocol::RoleRecord {
                name: "oncall".into(),
                spec: deadbolt_api::AccessRoleSpec {
                    options: deadbolt_api::resources::RoleOptions {
                        lock: Some(LockingMode::Strict),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            },
        ));
    operator.configure(LockingMode::BestEffort, Duration::from_secs(1));
    eventually("the settings", || {
        proxy.view.max_staleness() == Duration::from_secs(1)
    })
    .await;
    let strict_user = CertIdentity {
        user: "sre".into(),
        groups: vec![support::operator::ENGINEERS.into()],
        roles: vec!["oncall".into()],
        ..Default::default()
    };
    let (strict, strict_connection) = tokio_postgres_client(&proxy, &strict_user, "app")
        .await
        .unwrap();
    let (relaxed, _relaxed_connection) = tokio_postgres_client(&proxy, &user("dev"), "app")
        .await
        .unwrap();
    strict.simple_query("select 1").await.unwrap();

    operator.stop().await;
    eventually("the strict session to be cut", || {
        proxy.view.registry().len() == 1
    })
    .await;
    assert_eq!(
        connection_error(strict_connection).await,
        "FATAL:  preventive lock-out due to local lock view becoming unreliable"
    );
    assert!(strict.simple_query("select 2").await.is_err());
    relaxed.simple_query("select 'carry on'").await.unwrap();
    let output = proxy.psql(&strict_user, "app", "select 1");
    assert!(
        stderr(&output)
            .contains("FATAL:  preventive lock-out due to local lock view becoming unreliable"),
        "{}",
        stderr(&output)
    );
    assert!(proxy.psql(&user("dev"), "app", "select 1").status.success());

    operator.restart().await;
    tokio::time::timeout(PATIENCE, async {
        while !proxy.view.is_reliable() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the proxy reconnects");
    assert!(proxy.psql(&strict_user, "app", "select 1").status.success());
}
