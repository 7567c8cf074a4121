//! A lock-view server on loopback and a test client speaking HTTP/2 over TLS,
//! as a proxy would.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::protocol::{Ack, Revision, ViewEvent, decode_line, encode_line};
use deadbolt_operator::admin::{Metrics, Readiness};
use deadbolt_operator::auth::{Authenticator, TokenUser};
use deadbolt_operator::body::{BodyChunk, ChannelBody};
use deadbolt_operator::ca::{DeadboltCa, IssuedCert};
use deadbolt_operator::https::Bound;
use deadbolt_operator::shutdown::{Shutdown, ShutdownTrigger};
use deadbolt_operator::stream::{self, LOCKVIEW_PATH, SERVER_ID_HEADER, StreamContext};
use deadbolt_operator::subscribers::Subscribers;
use deadbolt_operator::view::ViewStore;
use deadbolt_runtime::tls::{self, ClientAuth, ClientTls};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use deadbolt_testkit::FakeTokens;
/// Waiting comes from the workspace's test kit; re-exported so the suites and
/// benches that include this module find it here.
pub use deadbolt_testkit::{PATIENCE, eventually};

/// The token of ServiceAccount `shop/proxy`, bound to pod `db-proxy-0`;
/// `shop/proxy` is on the server's subscriber list.
pub const GOOD_TOKEN: &str = "good-token";
/// A valid token of ServiceAccount `shop/web`, which is not on the list.
pub const UNLISTED_TOKEN: &str = "web-token";
/// The subscriber list of the test server.
pub const SUBSCRIBERS: [&str; 1] = ["shop/proxy"];

/// Knows [`GOOD_TOKEN`] and [`UNLISTED_TOKEN`]; everything else is "expired".
fn fake_tokens() -> FakeTokens {
    let tokens = FakeTokens::rejecting_unknown_with("token has expired");
    for (token, account, pod) in [
        (GOOD_TOKEN, "proxy", "db-proxy-0"),
        (UNLISTED_TOKEN, "web", "web-0"),
    ] {
        tokens.add_user(
            token,
            TokenUser {
                username: format!("system:serviceaccount:shop:{account}"),
                groups: vec![],
                extra: [(
                    deadbolt_operator::auth::subscribers::POD_NAME_EXTRA.to_string(),
                    vec![pod.to_string()],
                )]
                .into(),
            },
        );
    }
    tokens
}

/// A running lock-view server.
pub struct Server {
    pub addr: SocketAddr,
    pub ca: Arc<DeadboltCa>,
    pub store: ViewStore,
    pub subscribers: Subscribers,
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    trigger: ShutdownTrigger,
    task: JoinHandle<()>,
}

impl Server {
    /// A ready server over `store`, heartbeating every `heartbeat`.
    pub async fn start(store: ViewStore, heartbeat: Duration) -> Self {
        let readiness = Readiness::new();
        readiness.set_ready();
        Self::start_with(store, heartbeat, readiness).await
    }

    /// A server whose readiness the test controls.
    pub async fn start_with(store: ViewStore, heartbeat: Duration, readiness: Readiness) -> Self {
        let ca = Arc::new(DeadboltCa::generate().unwrap());
        let serving = ca
            .issue_serving_cert(
                &["localhost".into(), "127.0.0.1".into()],
                Duration::from_secs(3600),
            )
            .unwrap();
        let config = tls::server_config(
            serving.certified_key().unwrap(),
            ClientAuth::Optional(ca.root_store().unwrap()),
            &[b"h2"],
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let subscribers = Subscribers::new();
        let (trigger, shutdown) = Shutdown::new();
        let metrics = Arc::new(Metrics::new());
        let context = StreamContext {
            store: store.clone(),
            subscribers: subscribers.clone(),
            authenticator: Authenticator::new(Some(fake_tokens().checker())).with_subscribers(
                SUBSCRIBERS
                    .iter()
                    .map(|rule| rule.parse().unwrap())
                    .collect(),
            ),
            readiness: readiness.clone(),
            metrics: metrics.clone(),
            heartbeat_interval: heartbeat,
            max_streams_per_subscriber: 2,
        };
        let task = tokio::spawn(stream::serve(
            Bound::new(listener, config, shutdown),
            context,
        ));
        Self {
            addr,
            ca,
            store,
            subscribers,
            readiness,
            metrics,
            trigger,
            task,
        }
    }

    /// A proxy client certificate from this server's CA.
    pub fn proxy_cert(&self, server_id: &str) -> IssuedCert {
        self.ca
            .issue_proxy_cert(server_id, Duration::from_secs(3600))
            .unwrap()
    }

    /// Subscribes as a proxy with a client certificate; panics unless 200.
    pub async fn subscribe(&self, server_id: &str) -> Subscription {
        let cert = self.proxy_cert(server_id);
        let reply = self
            .request(
                Credentials::Cert(cert),
                Some(server_id),
                Method::POST,
                LOCKVIEW_PATH,
            )
            .await
            .expect("the request failed");
        match reply {
            Reply::Stream(subscription) => subscription,
            Reply::Refused { status, body } => panic!("refused with {status}: {body}"),
        }
    }

    /// Sends one lock-view request with these credentials.
    pub async fn request(
        &self,
        credentials: Credentials,
        server_id: Option<&str>,
        method: Method,
        path: &str,
    ) -> Result<Reply, String> {
        request(
            self.addr,
            self.ca.cert_pem(),
            credentials,
            server_id,
            method,
            path,
        )
        .await
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the server did not stop")
            .unwrap();
    }
}

/// How the test client authenticates.
pub enum Credentials {
    None,
    Token(String),
    Cert(IssuedCert),
}

/// What a request got back.
pub enum Reply {
    /// 200: the stream.
    Stream(Subscription),
    /// Anything else, with its body.
    Refused { status: StatusCode, body: String },
}

/// Connects over TLS with ALPN h2 and sends one request.
pub async fn request(
    addr: SocketAddr,
    ca_pem: &str,
    credentials: Credentials,
    server_id: Option<&str>,
    method: Method,
    path: &str,
) -> Result<Reply, String> {
    let client_tls = ClientTls {
        roots: tls::root_store(ca_pem.as_bytes()).unwrap(),
        identity: match &credentials {
            Credentials::Cert(cert) => Some(cert.certified_key().unwrap()),
            _ => None,
        },
    };
    let connector = tokio_rustls::TlsConnector::from(client_tls.config(&[b"h2"]).unwrap());
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/2 handshake: {}", error_chain(&e)))?;
    tokio::spawn(connection);

    let (acks, body) = ChannelBody::channel(16);
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"));
    if let Some(server_id) = server_id {
        builder = builder.header(SERVER_ID_HEADER, server_id);
    }
    if let Credentials::Token(token) = &credentials {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(builder.body(body).unwrap())
        .await
        .map_err(|e| format!("request: {}", error_chain(&e)))?;
    let status = response.status();
    if status != StatusCode::OK {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
            .unwrap_or_default();
        return Ok(Reply::Refused { status, body });
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "application/x-ndjson");
    Ok(Reply::Stream(Subscription {
        body: response.into_body(),
        buffer: Vec::new(),
        acks,
        _sender: sender,
    }))
}

/// Every error in a chain, so assertions can look for the root cause.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One open lock-view stream.
pub struct Subscription {
    body: Incoming,
    buffer: Vec<u8>,
    acks: mpsc::Sender<BodyChunk>,
    _sender: hyper::client::conn::http2::SendRequest<ChannelBody>,
}

impl Subscription {
    /// The next event, or an error when the stream ended or failed.
    pub async fn next_event(&mut self) -> Result<ViewEvent, String> {
        tokio::time::timeout(PATIENCE, self.read_event())
            .await
            .map_err(|_| "no event within 10 s".to_string())?
    }

    async fn read_event(&mut self) -> Result<ViewEvent, String> {
        loop {
            if let Some(newline) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=newline).collect();
                return decode_line(&line).map_err(|e| e.to_string());
            }
            match self.body.frame().await {
                None => return Err("the stream ended".into()),
                Some(Err(error)) => {
                    return Err(format!("the stream failed: {}", error_chain(&error)));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event that is not a heartbeat.
    pub async fn next_change(&mut self) -> Result<ViewEvent, String> {
        loop {
            match self.next_event().await? {
                ViewEvent::Heartbeat { .. } => continue,
                event => return Ok(event),
            }
        }
    }

    /// Acks `revision` as `server_id`.
    pub async fn ack(&self, server_id: &str, revision: Revision) {
        let ack = Ack::Applied {
            revision,
            server_id: server_id.into(),
        };
        self.send_raw(encode_line(&ack)).await;
    }

    /// Sends raw bytes on the ack stream.
    pub async fn send_raw(&self, bytes: impl Into<Bytes>) {
        self.acks
            .send(Ok(bytes.into()))
            .await
            .expect("the ack stream is closed");
    }
}
