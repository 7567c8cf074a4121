//! Malformed and hostile input to the PostgreSQL proxy: each gets a clear
//! error or a close, nothing panics, and a concurrent good session carries on.

use crate::support;

use deadbolt_runtime::tls::{self, ClientTls};
use deadbolt_testkit::postgres::Postgres;
use rustls::pki_types::ServerName;
use support::PATIENCE;
use support::operator::Operator;
use support::proxy::{Proxy, user};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

fn startup(user: &str) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for (key, value) in [("user", user), ("database", user)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// Everything the proxy sends until it closes, within the test's patience.
async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("the proxy closes the connection");
    out
}

fn error_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Harness {
    _postgres: Postgres,
    _operator: Operator,
    proxy: Proxy,
    connector: TlsConnector,
}

impl Harness {
    async fn start(server_id: &str) -> Self {
        let postgres = Postgres::start();
        let operator = Operator::start().await;
        let proxy = Proxy::start(&operator, &postgres, server_id).await;
        let tls = ClientTls {
            roots: tls::root_store(operator.ca_pem().as_bytes()).unwrap(),
            identity: None,
        };
        Self {
            connector: TlsConnector::from(tls.config(&[]).unwrap()),
            _postgres: postgres,
            _operator: operator,
            proxy,
        }
    }

    async fn tcp(&self) -> TcpStream {
        TcpStream::connect(self.proxy.addr).await.unwrap()
    }

    async fn tls(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut tcp = self.tcp().await;
        tcp.write_all(&SSL_REQUEST).await.unwrap();
        assert_eq!(tcp.read_u8().await.unwrap(), b'S');
        self.connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// A good session works while the bad ones are open.
    fn good_session_works(&self) {
        let output = self.proxy.psql(&user("alice"), "app", "select 'fine'");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_openings_get_errors_or_closes() {
    let harness = Harness::start("proxy-bad-input").await;

    // Connections that say nothing, or stop half-way, hold nothing up.
    let _silent = harness.tcp().await;
    let mut half = harness.tcp().await;
    half.write_all(&SSL_REQUEST).await.unwrap();
    let mut half_tls = harness.tls().await;
    half_tls.write_all(&[0, 0]).await.unwrap();
    harness.good_session_works();

    // A 2 GiB length before TLS: closed, nothing allocated.
    let mut huge = harness.tcp().await;
    huge.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])
        .await
        .unwrap();
    assert!(read_to_close(&mut huge).await.is_empty());

    // Plaintext: refused with a clear FATAL.
    let mut plain = harness.tcp().await;
    plain.write_all(&startup("app")).await.unwrap();
    let reply = error_text(&read_to_close(&mut plain).await);
    assert!(reply.contains("requires TLS"), "{reply}");

    // Garbage after TLS: a protocol error.
    let mut garbage = harness.tls().await;
    garbage
        .write_all(b"\x00\x00\x00\x0cGARBAGE!")
        .await
        .unwrap();
    let reply = error_text(&read_to_close(&mut garbage).await);
    assert!(reply.contains("invalid startup packet"), "{reply}");

    // A 2 GiB startup length after TLS.
    let mut huge_tls = harness.tls().await;
    huge_tls.write_all(&[0x7f, 0xff, 0xff, 0xff]).await.unwrap();
    let reply = error_text(&read_to_close(&mut huge_tls).await);
    assert!(reply.contains("invalid message length"), "{reply}");

    // A startup packet without a user.
    let mut nameless = harness.tls().await;
    nameless
        .write_all(&[0, 0, 0, 9, 0, 3, 0, 0, 0])
        .await
        .unwrap();
    let reply = error_text(&read_to_close(&mut nameless).await);
    assert!(reply.contains("names no user"), "{reply}");

    // No certificate: a password is asked for; an absurd password length closes.
    let mut password = harness.tls().await;
    password.write_all(&startup("app")).await.unwrap();
    let mut request = [0u8; 9];
    password.read_exact(&mut request).await.unwrap();
    assert_eq!(
        request,
        [b'R', 0, 0, 0, 8, 0, 0, 0, 3],
        "AuthenticationCleartextPassword"
    );
    password
        .write_all(&[b'p', 0x7f, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    read_to_close(&mut password).await;

    // A password when tokens are not configured: a clear refusal.
    let mut token = harness.tls().await;
    token.write_all(&startup("app")).await.unwrap();
    token.read_exact(&mut request).await.unwrap();
    token
        .write_all(&[b'p', 0, 0, 0, 10, b't', b'o', b'k', b'e', b'n', 0])
        .await
        .unwrap();
    let reply = error_text(&read_to_close(&mut token).await);
    assert!(
        reply.contains("password authentication is not configured"),
        "{reply}"
    );

    harness.good_session_works();
    drop(half_tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_message_length_mid_session_ends_only_that_session() {
    let harness = Harness::start("proxy-bad-session").await;
    let alice = user("alice");
    let (cert, key) = harness.proxy.user_cert(&alice);
    let tls = ClientTls {
        roots: tls::root_store(&std::fs::read(harness.proxy.files.path().join("ca.crt")).unwrap())
            .unwrap(),
        identity: Some(tls::CertifiedKey::from_files(&cert, &key).unwrap()),
    };
    let connector = TlsConnector::from(tls.config(&[]).unwrap());
    let mut tcp = harness.tcp().await;
    tcp.write_all(&SSL_REQUEST).await.unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'S');
    let mut stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    stream.write_all(&startup("app")).await.unwrap();
    // Read up to ReadyForQuery ('Z', len 5, status).
    let mut greeting = Vec::new();
    let mut byte = [0u8; 1];
    while !greeting.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
        stream.read_exact(&mut byte).await.unwrap();
        greeting.push(byte[0]);
    }
    // A query message claiming 3 bytes: impossible.
    stream.write_all(&[b'Q', 0, 0, 0, 3]).await.unwrap();
    let reply = error_text(&read_to_close(&mut stream).await);
    assert!(reply.contains("invalid message length 3"), "{reply}");
    harness.good_session_works();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_needs_the_postgresql_alpn() {
    let harness = Harness::start("proxy-direct").await;
    let alice = user("alice");
    let (cert, key) = harness.proxy.user_cert(&alice);
    let roots = tls::root_store(&std::fs::read(harness.proxy.files.path().join("ca.crt")).unwrap())
        .unwrap();
    let direct = |alpn: &'static [&'static [u8]]| {
        let tls = ClientTls {
            roots: roots.clone(),
            identity: Some(tls::CertifiedKey::from_files(&cert, &key).unwrap()),
        };
        TlsConnector::from(tls.config(alpn).unwrap())
    };

    let mut stream = direct(&[b"postgresql"])
        .connect(
            ServerName::try_from("localhost").unwrap(),
            harness.tcp().await,
        )
        .await
        .unwrap();
    stream.write_all(&startup("app")).await.unwrap();
    let mut first = [0u8; 9];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, [b'R', 0, 0, 0, 8, 0, 0, 0, 0], "AuthenticationOk");

    let without_alpn = direct(&[])
        .connect(
            ServerName::try_from("localhost").unwrap(),
            harness.tcp().await,
        )
        .await;
    if let Ok(mut stream) = without_alpn {
        let _ = stream.write_all(&startup("app")).await;
        assert!(read_to_close(&mut stream).await.is_empty());
    }
}
