//! Subscribes to the operator's lock-view stream (`POST /v1/lockview`, HTTP/2
//! over TLS; see docs/lock-view-protocol.md), applies what arrives to the
//! [`Enforcer`], acknowledges each applied revision, and reconnects with
//! backoff when the stream ends. A reconnect always starts from a snapshot.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use deadbolt_api::protocol::{
    Ack, LOCKVIEW_PATH, NDJSON, SERVER_ID_HEADER, ViewEvent, decode_line, encode_line,
};
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use super::Enforcer;
use deadbolt_runtime::tls::{ClientTls, TlsError};

/// A snapshot of many locks is one long line; anything beyond this is refused.
const MAX_LINE: usize = 512 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How this proxy proves who it is to the operator.
#[derive(Debug, Clone)]
pub enum ViewCredentials {
    /// A client certificate from the Deadbolt CA (set on the TLS config).
    Certificate,
    /// A projected ServiceAccount token (audience `deadbolt`), re-read at every
    /// connect because the kubelet rotates it.
    TokenFile(PathBuf),
}

/// Where and how to subscribe.
#[derive(Debug, Clone)]
pub struct ViewClientConfig {
    /// The operator's stream endpoint, e.g. `https://deadbolt-operator:8443`.
    pub endpoint: Uri,
    /// This proxy's server id.
    pub server_id: String,
    /// TLS settings: the Deadbolt CA to trust and, for certificate credentials, the client certificate.
    pub tls: ClientTls,
    /// How to authenticate.
    pub credentials: ViewCredentials,
}

/// Why one subscription ended.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not an `https://host[:port]` URL.
    #[error("invalid lock-view endpoint {0}: expected https://host[:port]")]
    Endpoint(String),
    /// TCP or TLS failed.
    #[error("cannot reach the operator at {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS settings could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The token file could not be read.
    #[error("cannot read the token file {path}: {source}")]
    Token {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// HTTP/2 failed.
    #[error("lock-view stream failed: {0}")]
    Http(#[from] hyper::Error),
    /// The operator refused the subscription.
    #[error("the operator refused the lock-view subscription ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The `Status` message or body text.
        message: String,
    },
    /// A message could not be read or applied; the view resyncs on reconnect.
    #[error("{0}")]
    Protocol(String),
    /// The operator closed the stream.
    #[error("the operator closed the lock-view stream")]
    Closed,
}

/// The lock-view client of one proxy process.
pub struct ViewClient {
    config: ViewClientConfig,
    connector: TlsConnector,
    state: Arc<Enforcer>,
}

impl ViewClient {
    /// A client that feeds `state`.
    pub fn new(config: ViewClientConfig, state: Arc<Enforcer>) -> Result<Self, ClientError> {
        if config.endpoint.scheme_str() != Some("https") || config.endpoint.host().is_none() {
            return Err(ClientError::Endpoint(config.endpoint.to_string()));
        }
        let connector = TlsConnector::from(config.tls.config(&[b"h2"])?);
        Ok(Self {
            config,
            connector,
            state,
        })
    }

    /// Subscribes until the process stops, reconnecting with capped exponential backoff.
    pub async fn run(self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started_with = self.state.revision();
            let error = self.subscribe().await;
            let progressed = self.state.revision() != started_with;
            tracing::warn!(error = %error, "lock-view stream ended; reconnecting");
            if progressed {
                backoff = FIRST_BACKOFF;
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One subscription: connect, stream, and return why it ended.
    pub async fn subscribe(&self) -> ClientError {
        match self.try_subscribe().await {
            Ok(()) => ClientError::Closed,
            Err(error) => error,
        }
    }

    async fn try_subscribe(&self) -> Result<(), ClientError> {
        let endpoint = &self.config.endpoint;
        let host = endpoint.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = endpoint.port_u16().unwrap_or(443);
        let connect_error = |source| ClientError::Connect {
            endpoint: endpoint.to_string(),
            source,
        };
        let server_name = ServerName::try_from(host.to_string())
            .map_err(|_| ClientError::Endpoint(endpoint.to_string()))?;
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            self.connector.connect(server_name, tcp).await
        })
        .await
        .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
        .map_err(connect_error)?;

        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        let driver = tokio::spawn(connection);

        let (acks, ack_receiver) = mpsc::channel::<Bytes>(16);
        let body = StreamBody::new(Box::pin(futures::stream::unfold(
            ack_receiver,
            |mut receiver| async move {
                let line = receiver.recv().await?;
                Some((Ok::<_, Infallible>(Frame::data(line)), receiver))
            },
        )));
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!(
                "https://{}:{port}{LOCKVIEW_PATH}",
                endpoint.host().unwrap_or_default()
            ))
            .header(SERVER_ID_HEADER, &self.config.server_id)
            .header(header::CONTENT_TYPE, NDJSON);
        if let ViewCredentials::TokenFile(path) = &self.config.credentials {
            let token =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| ClientError::Token {
                        path: path.display().to_string(),
                        source,
                    })?;
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
        }
        let request = request
            .body(body)
            .map_err(|e| ClientError::Protocol(format!("cannot build the request: {e}")))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let text = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            driver.abort();
            return Err(ClientError::Refused {
                status,
                message: status_message(&text),
            });
        }

        tracing::info!(endpoint = %self.config.endpoint, server_id = %self.config.server_id,
            "lock-view stream connected");
        let result = self.stream(&mut body, &acks).await;
        driver.abort();
        result
    }

    async fn stream(
        &self,
        body: &mut hyper::body::Incoming,
        acks: &mpsc::Sender<Bytes>,
    ) -> Result<(), ClientError> {
        let mut pending = BytesMut::new();
        // How far `pending` is known to hold no newline, so a long snapshot line
        // arriving in many frames is scanned once, not once per frame.
        let mut scanned = 0;
        let mut acked = None;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(offset) = pending[scanned..].iter().position(|b| *b == b'\n') {
                let line = pending.split_to(scanned + offset + 1);
                scanned = 0;
                let event: ViewEvent =
                    decode_line(&line).map_err(|e| ClientError::Protocol(e.to_string()))?;
                let revision = self
                    .state
                    .apply(event)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                if acked != Some(revision) {
                    let ack = Ack::Applied {
                        revision,
                        server_id: self.config.server_id.clone(),
                    };
                    // A full ack queue only delays enforcedBy; it never blocks the view.
                    let _ = acks.try_send(Bytes::from(encode_line(&ack)));
                    acked = Some(revision);
                }
            }
            scanned = pending.len();
            if pending.len() > MAX_LINE {
                return Err(ClientError::Protocol(format!(
                    "a lock-view message exceeds {MAX_LINE} bytes"
                )));
            }
        }
        Err(ClientError::Closed)
    }
}

/// The message of a Kubernetes `Status` body, or the body as text.
fn status_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// ±20% so a fleet of proxies does not reconnect in lock-step after an operator restart.
fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let factor = 0.8 + f64::from(nanos % 400) / 1000.0;
    base.mul_f64(factor)
}

/// Cuts strict sessions once the view goes stale; runs for the life of the process.
pub async fn staleness_watchdog(state: Arc<Enforcer>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let cut = state.enforce_staleness();
        if cut > 0 {
            tracing::warn!(
                sessions = cut,
                "lock view unreliable: cutting strict sessions"
            );
        }
    }
}
