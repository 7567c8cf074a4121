//! The MySQL proxy against a real MariaDB, with the real `mysql` client and
//! with mysql_async: allowed sessions work (text and binary protocol, many
//! rows, several results), locked ones are refused and cut with the exact
//! lock message, other sessions carry on, a stale view is handled per locking
//! mode, and hostile input gets an error or a close without disturbing a
//! good session.

use crate::support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use deadbolt_api::TargetKind;
use deadbolt_api::credential::CertIdentity;
use deadbolt_api::resources::LockingMode;
use deadbolt_runtime::tls::{self, ClientTls};
use deadbolt_sidecar::database::upstream::UpstreamTls;
use deadbolt_sidecar::mysql::wire::{self, LoginRequest};
use mysql_async::prelude::Queryable;
use mysql_common::constants::CapabilityFlags;
use rustls::pki_types::ServerName;
use support::mariadb::{ED25519_USER, Mariadb};
use support::mysql_proxy::{Proxy, TOM_TOKEN};
use support::operator::{Operator, target};
use support::proxy::user;
use support::{PATIENCE, eventually};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

async fn setup(server_id: &str) -> (Mariadb, Operator, Proxy) {
    let mariadb = Mariadb::start();
    let operator = Operator::start().await;
    let proxy = Proxy::start(&operator, &mariadb, server_id).await;
    (mariadb, operator, proxy)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The code and message of a server error from mysql_async.
fn server_error(error: mysql_async::Error) -> (u16, String) {
    match error {
        mysql_async::Error::Server(error) => (error.code, error.message),
        other => panic!("not a server error: {other:?}"),
    }
}

const SUSPICIOUS: &str = "Suspicious activity.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_sessions_run_queries_prepared_statements_and_long_results() {
    let (_mariadb, _operator, proxy) = setup("proxy-allowed").await;
    let alice = user("alice");

    let output = proxy.mysql(&alice, "app", "select 40 + 2");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "42\n");
    // The greeting mirrors the upstream's version.
    let output = proxy.mysql(&alice, "app", "status");
    assert!(
        stdout(&output).contains("MariaDB") && stdout(&output).contains("Deadbolt"),
        "{}",
        stdout(&output)
    );

    // A bearer token instead of a certificate, read with mysql_clear_password.
    let output = proxy.mysql_with_token(TOM_TOKEN, "app", "select current_user()");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "app@%\n");
    let output = proxy.mysql_with_token("not-a-token", "app", "select 1");
    assert_eq!(
        stderr(&output),
        "ERROR 1045 (28000): token rejected: the token is not valid\n"
    );

    // The upstream checks the login: MariaDB's ed25519 plugin, and a wrong schema.
    let output = proxy.mysql(&alice, ED25519_USER.0, "select current_user()");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "edward@%\n");
    let output = proxy.mysql(&alice, "nobody", "select 1");
    assert_eq!(
        stderr(&output),
        "ERROR 1045 (28000): Access denied for user 'nobody'@'127.0.0.1' (using password: NO)\n"
    );

    let mut conn = proxy.connect(&alice, "app").await.unwrap();
    conn.query_drop("create table items (id int primary key, name text)")
        .await
        .unwrap();
    // Prepared statements: the binary protocol, parameters, binary rows.
    for id in 0..10 {
        conn.exec_drop(
            "insert into items values (?, ?)",
            (id, format!("item {id}")),
        )
        .await
        .unwrap();
    }
    let names: Vec<(i32, String)> = conn
        .exec("select id, name from items where id >= ? order by id", (8,))
        .await
        .unwrap();
    assert_eq!(names, vec![(8, "item 8".into()), (9, "item 9".into())]);
    // A result of many packets, read in many pieces.
    let rows: Vec<(u64, String)> = conn
        .query("select seq, repeat('x', 200) from seq_1_to_20000")
        .await
        .unwrap();
    assert_eq!(rows.len(), 20_000);
    assert_eq!(rows[19_999].0, 20_000);
    assert_eq!(rows[19_999].1.len(), 200);
    // Several results from one query.
    let mut results = conn
        .query_iter("select 1; select 'two'; update items set name = 'x' where id = 1")
        .await
        .unwrap();
    let first: Vec<u8> = results.collect().await.unwrap();
    let second: Vec<String> = results.collect().await.unwrap();
    results.drop_result().await.unwrap();
    assert_eq!((first, second), (vec![1], vec!["two".to_string()]));
    assert_eq!(conn.affected_rows(), 1);
    // Becoming another database user behind the proxy's back is refused; the
    // session carries on.
    let change = conn
        .change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some("reporting".into()))
                .with_pass(Some("reporting-secret".into())),
        )
        .await
        .unwrap_err();
    assert_eq!(
        server_error(change),
        (
            1235,
            "COM_CHANGE_USER is not supported through the Deadbolt proxy: reconnect as the other user".into()
        )
    );
    let count: Option<u64> = conn
        .query_first("select count(*) from items")
        .await
        .unwrap();
    assert_eq!(count, Some(10));
    conn.disconnect().await.unwrap();

    let events = proxy.audit.json();
    assert!(events.iter().any(|e| e["event"] == "session.start"
        && e["user"] == "alice"
        && e["login"] == "app"
        && e["db"] == "app"));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "session.start" && e["user"] == "tom")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_targets_are_refused_with_the_exact_message() {
    let (_mariadb, operator, proxy) = setup("proxy-refuse").await;
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
        operator.lock(&name, target(kind, value), SUSPICIOUS);
        proxy.catch_up(&operator).await;
        let output = proxy.mysql(&mallory, "reporting", "select 1");
        assert!(!output.status.success());
        assert_eq!(
            stderr(&output),
            format!("ERROR 1045 (28000): {message}\n"),
            "{kind:?}"
        );
        operator.unlock(&name);
        proxy.catch_up(&operator).await;
    }

    // A user who logs in with a token is locked alike.
    operator.lock("token-user", target(TargetKind::User, "tom"), SUSPICIOUS);
    proxy.catch_up(&operator).await;
    let output = proxy.mysql_with_token(TOM_TOKEN, "app", "select 1");
    assert_eq!(
        stderr(&output),
        "ERROR 1045 (28000): lock targeting User:\"tom\" is in force: Suspicious activity.\n"
    );
    operator.unlock("token-user");

    operator.lock(
        "proxy-wide",
        target(TargetKind::ServerId, "proxy-refuse"),
        "maintenance",
    );
    proxy.catch_up(&operator).await;
    let output = proxy.mysql(&user("alice"), "app", "select 1");
    assert_eq!(
        stderr(&output),
        "ERROR 1045 (28000): lock targeting ServerID:\"proxy-refuse\" is in force: maintenance\n"
    );
    let error = proxy.connect(&user("alice"), "app").await.err().unwrap();
    assert_eq!(
        server_error(error),
        (
            1045,
            r#"lock targeting ServerID:"proxy-refuse" is in force: maintenance"#.into()
        )
    );
    let rejected = proxy
        .audit
        .json()
        .into_iter()
        .filter(|e| e["event"] == "session.rejected")
        .count();
    assert_eq!(rejected, 7);
}

/// A `mysql` process reading statements from its stdin, once it has answered the first.
struct LiveMysql {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
}

impl LiveMysql {
    async fn start(proxy: &Proxy, identity: &CertIdentity, login: &str) -> Self {
        let mut child = Command::new("mysql")
            .args(proxy.mysql_args(identity, login))
            .arg("--unbuffered")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "select 'before';").unwrap();
        let stdout = child.stdout.take().unwrap();
        let first_line = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            (line, reader)
        });
        let (first_line, rest) = tokio::time::timeout(PATIENCE, first_line)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first_line, "before\n");
        // Keep reading in the background so the pipe never fills.
        std::thread::spawn(move || std::io::copy(&mut { rest }, &mut std::io::sink()));
        Self { child, stdin }
    }

    /// Sends one more statement, closes stdin, and returns what `mysql` printed on stderr.
    async fn finish(mut self, statement: &str) -> String {
        // mysql may already have noticed the cut and exited; then this write fails.
        let _ = writeln!(self.stdin, "{statement}");
        drop(self.stdin);
        let output = tokio::task::spawn_blocking(move || self.child.wait_with_output().unwrap())
            .await
            .unwrap();
        stderr(&output)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_lock_cuts_the_open_sessions_and_spares_the_others() {
    let (mariadb, operator, proxy) = setup("proxy-cut").await;
    let alice = user("alice");
    let message = r#"lock targeting User:"alice" is in force: Suspicious activity."#;

    // An idle mysql_async session of alice's, after prepared statements and a long result.
    let mut idle = proxy.connect(&alice, "app").await.unwrap();
    let rows: Vec<u64> = idle
        .exec("select seq from seq_1_to_5000 where seq > ?", (10,))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4990);
    let _: Vec<String> = idle.query("select 'a'; select 'b'").await.unwrap();
    // One of hers waiting for a long query.
    let mut busy = proxy.connect(&alice, "app").await.unwrap();
    let long_query = tokio::spawn(async move {
        let result = busy.query_drop("select sleep(600)").await;
        (busy, result)
    });
    // An idle mysql client of hers, and another user's session.
    let live = LiveMysql::start(&proxy, &alice, "app").await;
    let mut bob = proxy.connect(&user("bob"), "app").await.unwrap();
    bob.query_drop("select 1").await.unwrap();
    eventually("the long query to run on the server", || {
        mariadb.sql(
            "select count(*) from information_schema.processlist where info = 'select sleep(600)'",
        ) == "1"
    })
    .await;
    assert_eq!(proxy.view.registry().len(), 4);

    operator.lock("cut-alice", target(TargetKind::User, "alice"), SUSPICIOUS);
    eventually("alice's sessions to be cut", || {
        proxy.view.registry().len() == 1
    })
    .await;

    let (_busy, result) = tokio::time::timeout(PATIENCE, long_query)
        .await
        .expect("the long query ends with the cut")
        .unwrap();
    assert_eq!(server_error(result.unwrap_err()), (1927, message.into()));
    let error = idle.query_drop("select 2").await.unwrap_err();
    assert_eq!(server_error(error), (1927, message.into()));
    let printed = live.finish("select 'after';").await;
    assert!(
        printed.contains(&format!("ERROR 1927 (70100) at line 2: {message}\n")),
        "{printed}"
    );

    let still: Vec<String> = bob.query("select 'still here'").await.unwrap();
    assert_eq!(still, vec!["still here".to_string()]);
    let terminated = proxy
        .audit
        .json()
        .into_iter()
        .filter(|e| e["event"] == "session.terminated" && e["reason"] == message)
        .count();
    assert_eq!(terminated, 3);

    // A new session is refused; once the lock is deleted, alice gets in again.
    let output = proxy.mysql(&alice, "app", "select 1");
    assert_eq!(stderr(&output), format!("ERROR 1045 (28000): {message}\n"));
    operator.unlock("cut-alice");
    proxy.catch_up(&operator).await;
    let output = proxy.mysql(&alice, "app", "select 'back'");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "back\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_view_cuts_strict_sessions_and_spares_best_effort_ones() {
    let (_mariadb, mut operator, proxy) = setup("proxy-stale").await;
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
    let mut strict = proxy.connect(&strict_user, "app").await.unwrap();
    let mut relaxed = proxy.connect(&user("dev"), "app").await.unwrap();
    strict.query_drop("select 1").await.unwrap();
    let live = LiveMysql::start(&proxy, &strict_user, "app").await;

    operator.stop().await;
    eventually("the strict sessions to be cut", || {
        proxy.view.registry().len() == 1
    })
    .await;
    let stale = "preventive lock-out due to local lock view becoming unreliable";
    let error = strict.query_drop("select 2").await.unwrap_err();
    assert_eq!(server_error(error), (1927, stale.into()));
    let printed = live.finish("select 'after';").await;
    assert!(
        printed.contains(&format!("ERROR 1927 (70100) at line 2: {stale}\n")),
        "{printed}"
    );
    let carried_on: Vec<String> = relaxed.query("select 'carry on'").await.unwrap();
    assert_eq!(carried_on, vec!["carry on".to_string()]);
    let output = proxy.mysql(&strict_user, "app", "select 1");
    assert_eq!(stderr(&output), format!("ERROR 1045 (28000): {stale}\n"));
    let output = proxy.mysql(&user("dev"), "app", "select 1");
    assert!(output.status.success(), "{}", stderr(&output));

    operator.restart().await;
    tokio::time::timeout(PATIENCE, async {
        while !proxy.view.is_reliable() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the proxy reconnects");
    let output = proxy.mysql(&strict_user, "app", "select 1");
    assert!(output.status.success(), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_is_reached_over_verified_tls_when_configured() {
    let operator = Operator::start().await;
    let serving = operator
        .ca
        .issue_serving_cert(
            &["localhost".into(), "127.0.0.1".into()],
            Duration::from_secs(3600),
        )
        .unwrap();
    let mariadb = Mariadb::start_with_tls(&serving.cert_pem, &serving.key_pem);
    let upstream_tls = UpstreamTls {
        config: ClientTls {
            roots: tls::root_store(operator.ca_pem().as_bytes()).unwrap(),
            identity: None,
        }
        .config(&[])
        .unwrap(),
        server_name: ServerName::try_from("localhost").unwrap(),
    };
    let proxy = Proxy::start_with(&operator, &mariadb, "proxy-tls", Some(upstream_tls), &[]).await;
    let output = proxy.mysql(
        &user("alice"),
        ED25519_USER.0,
        "select variable_value <> '' from information_schema.session_status where variable_name = 'Ssl_cipher'",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "1\n");

    // Without TLS to it, the server refuses the proxy (MariaDB says no more
    // than "access denied"), and the client hears the server's own words.
    let plain = Proxy::start(&operator, &mariadb, "proxy-plain").await;
    let output = plain.mysql(&user("alice"), "app", "select 1");
    assert_eq!(
        stderr(&output),
        "ERROR 1045 (28000): Access denied for user 'app'@'127.0.0.1' (using password: YES)\n"
    );
}

/// A raw client: greeting, `SSLRequest`, TLS, then whatever the test sends.
struct RawClient {
    connector: TlsConnector,
}

/// An `SSLRequest` payload.
fn ssl_request() -> Vec<u8> {
    let capabilities = CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SSL
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH;
    let mut payload = capabilities.bits().to_le_bytes().to_vec();
    payload.extend((1u32 << 24).to_le_bytes());
    payload.push(45);
    payload.extend([0; 23]);
    payload
}

/// A handshake response that logs in as `user` with a certificate.
fn handshake_response(user: &str) -> Vec<u8> {
    LoginRequest {
        capabilities: CapabilityFlags::CLIENT_SSL
            | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
            | CapabilityFlags::CLIENT_DEPRECATE_EOF,
        max_packet_size: 1 << 24,
        collation: 45,
        user,
        auth_response: b"",
        database: Some(user),
        auth_plugin: b"mysql_native_password",
        attributes: &[],
    }
    .encode()
}

/// Everything the proxy sends until it closes, within the test's patience.
async fn read_to_close<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("the proxy closes the connection");
    out
}

/// The one ERR packet in `bytes`: its sequence id, code and message.
fn only_error(bytes: &[u8]) -> (u8, u16, String) {
    let (frame, rest) = bytes.split_at(4 + usize::from(bytes[0]));
    assert!(rest.is_empty(), "more than one packet: {bytes:?}");
    let (code, message) = wire::parse_error(&frame[4..]).unwrap();
    (frame[3], code.code, message)
}

impl RawClient {
    fn new(proxy: &Proxy, identity: Option<&CertIdentity>) -> Self {
        let identity = identity.map(|identity| {
            let (cert, key) = proxy.user_cert(identity);
            tls::CertifiedKey::from_files(&cert, &key).unwrap()
        });
        let tls = ClientTls {
            roots: tls::root_store(&std::fs::read(proxy.files.path().join("ca.crt")).unwrap())
                .unwrap(),
            identity,
        };
        Self {
            connector: TlsConnector::from(tls.config(&[]).unwrap()),
        }
    }

    /// Connected, with the greeting read.
    async fn tcp(&self, proxy: &Proxy) -> TcpStream {
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        let greeting = wire::read_packet(&mut tcp, 1 << 16).await.unwrap();
        assert_eq!((greeting.seq, greeting.payload[0]), (0, 10));
        tcp
    }

    /// Upgraded to TLS after an `SSLRequest`.
    async fn tls(&self, proxy: &Proxy) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut tcp = self.tcp(proxy).await;
        wire::write_payload(&mut tcp, 1, &ssl_request())
            .await
            .unwrap();
        self.connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_an_error_or_a_close_and_spares_a_good_session() {
    let (_mariadb, _operator, proxy) = setup("proxy-bad-input").await;
    let raw = RawClient::new(&proxy, None);
    let good_session_works = || {
        let output = proxy.mysql(&user("alice"), "app", "select 'fine'");
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(stdout(&output), "fine\n");
    };
    // A good session open the whole time.
    let mut open = proxy.connect(&user("carol"), "app").await.unwrap();
    open.query_drop("select 1").await.unwrap();

    // Connections that say nothing, or stop half-way, hold nothing up.
    let _silent = raw.tcp(&proxy).await;
    let mut half = raw.tcp(&proxy).await;
    wire::write_payload(&mut half, 1, &ssl_request())
        .await
        .unwrap();
    let mut half_tls = raw.tls(&proxy).await;
    half_tls.write_all(&[40, 0]).await.unwrap();
    good_session_works();

    // A 0xffffff-length packet of garbage, before and after TLS.
    let mut huge = raw.tcp(&proxy).await;
    huge.write_all(&[0xff, 0xff, 0xff, 1]).await.unwrap();
    huge.write_all(&[b'x'; 1000]).await.unwrap();
    let (seq, code, message) = only_error(&read_to_close(&mut huge).await);
    assert_eq!((seq, code), (2, 1153));
    assert!(message.contains("too large"), "{message}");
    let mut huge_tls = raw.tls(&proxy).await;
    huge_tls.write_all(&[0xff, 0xff, 0xff, 2]).await.unwrap();
    huge_tls.write_all(&[b'x'; 1000]).await.unwrap();
    let (seq, code, _) = only_error(&read_to_close(&mut huge_tls).await);
    assert_eq!((seq, code), (3, 1153));

    // Garbage after TLS.
    let mut garbage = raw.tls(&proxy).await;
    garbage.write_all(b"\x05\x00\x00\x02hello").await.unwrap();
    let (seq, code, message) = only_error(&read_to_close(&mut garbage).await);
    assert_eq!((seq, code), (3, 1043));
    assert!(message.contains("protocol 4.1"), "{message}");
    let mut text = raw.tls(&proxy).await;
    text.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let (_, code, _) = only_error(&read_to_close(&mut text).await);
    assert_eq!(code, 1153);

    // A malformed handshake response: the user name never ends.
    let mut malformed = raw.tls(&proxy).await;
    let mut response = handshake_response("app");
    response.truncate(34);
    wire::write_payload(&mut malformed, 2, &response)
        .await
        .unwrap();
    let (seq, code, message) = only_error(&read_to_close(&mut malformed).await);
    assert_eq!((seq, code), (3, 1043));
    assert!(
        message.starts_with("bad handshake: malformed packet"),
        "{message}"
    );

    // Out of sequence.
    let mut disordered = raw.tls(&proxy).await;
    wire::write_payload(&mut disordered, 9, &handshake_response("app"))
        .await
        .unwrap();
    let (_, code, message) = only_error(&read_to_close(&mut disordered).await);
    assert_eq!(code, 1043);
    assert!(message.contains("out of order"), "{message}");

    // TLS that is not TLS.
    let mut not_tls = raw.tcp(&proxy).await;
    wire::write_payload(&mut not_tls, 1, &ssl_request())
        .await
        .unwrap();
    not_tls
        .write_all(&[0x16, 3, 1, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    let reply = read_to_close(&mut not_tls).await;
    assert!(
        reply.is_empty() || reply[0] == 0x15,
        "at most a TLS alert: {reply:?}"
    );

    // Plaintext: refused with a clear error.
    let mut plain = raw.tcp(&proxy).await;
    let mut response = handshake_response("app");
    response[1] &= !0x08; // no CLIENT_SSL
    wire::write_payload(&mut plain, 1, &response).await.unwrap();
    let (seq, code, message) = only_error(&read_to_close(&mut plain).await);
    assert_eq!((seq, code), (2, 3159));
    assert!(message.contains("requires TLS"), "{message}");

    // No certificate: the token is asked for; an absurd answer closes.
    let mut token = raw.tls(&proxy).await;
    wire::write_payload(&mut token, 2, &handshake_response("app"))
        .await
        .unwrap();
    let switch = wire::read_packet(&mut token, 1 << 16).await.unwrap();
    assert_eq!(switch.seq, 3);
    assert!(switch.payload.starts_with(b"\xfemysql_clear_password\0"));
    token.write_all(&[0xff, 0xff, 0xff, 4]).await.unwrap();
    let (seq, code, _) = only_error(&read_to_close(&mut token).await);
    assert_eq!((seq, code), (5, 1153));

    good_session_works();
    open.query_drop("select 2").await.unwrap();
    drop(_silent);
    drop(half);
    drop(half_tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_session_relays_unknown_commands_and_refuses_change_user() {
    let (_mariadb, _operator, proxy) = setup("proxy-raw").await;
    let raw = RawClient::new(&proxy, Some(&user("alice")));
    let mut session = raw.tls(&proxy).await;
    wire::write_payload(&mut session, 2, &handshake_response("app"))
        .await
        .unwrap();
    let ok = wire::read_packet(&mut session, 1 << 16).await.unwrap();
    assert_eq!((ok.seq, ok.payload[0]), (3, 0));

    // An unknown command reaches the server, which answers it.
    wire::write_payload(&mut session, 0, &[0xee, 1, 2, 3])
        .await
        .unwrap();
    let answer = wire::read_packet(&mut session, 1 << 16).await.unwrap();
    assert_eq!(answer.seq, 1);
    let (code, _) = wire::parse_error(&answer.payload).unwrap();
    assert_eq!(code.code, 1047, "ER_UNKNOWN_COM_ERROR");

    // COM_CHANGE_USER is answered by the proxy.
    wire::write_payload(&mut session, 0, b"\x11root\0\0")
        .await
        .unwrap();
    let answer = wire::read_packet(&mut session, 1 << 16).await.unwrap();
    assert_eq!(answer.seq, 1);
    let (code, _) = wire::parse_error(&answer.payload).unwrap();
    assert_eq!(code.code, 1235);

    // COM_PING still works, then COM_QUIT ends the session.
    wire::write_payload(&mut session, 0, &[0x0e]).await.unwrap();
    let pong = wire::read_packet(&mut session, 1 << 16).await.unwrap();
    assert_eq!((pong.seq, pong.payload[0]), (1, 0));
    wire::write_payload(&mut session, 0, &[0x01]).await.unwrap();
    assert!(read_to_close(&mut session).await.is_empty());
    eventually("the session to end", || proxy.view.registry().is_empty()).await;
}
