//! The kube-API proxy (`deadbolt-sidecar kube`): TLS with HTTP/1.1 and
//! HTTP/2, authentication by Deadbolt client certificate or bearer token, a
//! refusal of any client impersonation, the lock check on every request, and
//! forwarding to the API server with the proxy's own credentials and
//! `Impersonate-*` headers. Watches, followed logs, proxied responses and
//! upgraded connections (exec, attach, port-forward) are registered sessions
//! that a lock cuts with its message.
//!
//! Each request passes through small tower layers, one concern each, before
//! the [`handler`] decides and forwards it (the last three are [`guard`]s):
//!
//! 1. [`authenticate`]: certificate (valid now) or bearer token → the principal in the extensions;
//! 2. [`classify`]: the request as the API server will route it ([`canonical`]) → its kind, or 400;
//! 3. [`impersonate`]: any `Impersonate-*` header outside discovery → 403;
//! 4. [`strip_header`]: credentials, identity and hop-by-hop headers removed, `X-Forwarded-For` set.
//!
//! What each kind of request gets:
//!
//! | request | lock check | registered | cut by | audit |
//! |---|---|---|---|---|
//! | discovery (exact: `/api`, `/apis/...`, `/version`, `/openapi/...`) | no | no | — | — |
//! | other short requests (finite reads, writes) | yes | no | — | `session.rejected` when refused |
//! | watch | yes | yes | an `ERROR` event with the `Status`, then the end | start, end or terminated |
//! | `logs -f` | yes | yes | the message as a last line, then the end | start, end or terminated |
//! | `*/proxy/*` and anything unrecognised | yes | yes | a reset | start, end or terminated |
//! | exec/attach, WebSocket | yes | yes | the `Status` on channel 3, then a close frame | start, end or terminated |
//! | exec/attach, SPDY | yes | yes | the `Status` on the error stream, then a close | start, end or terminated |
//! | port-forward | yes | yes | SPDY: the message on each error stream; WebSocket: a close frame with it | start, end or terminated |
//!
//! Refusals are `403` with a `Status` whose message is the lock's. Discovery
//! passes without a lock check because kubectl fetches it first and, for a
//! refusal there, prints `unknown` instead of the message; it holds no object
//! data, and the API server lets every authenticated user read it.

pub mod authenticate;
pub mod body;
pub mod canonical;
pub mod classify;
pub mod guard;
pub mod handler;
pub mod impersonate;
pub mod spdy;
pub mod status;
pub mod stream;
pub mod strip_header;
pub mod tunnel;
pub mod upstream;
pub mod websocket;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::connection::{Activity, ConnectionLimits, close_when_idle};
use deadbolt_runtime::listener::{
    MAX_CONNECTIONS, accept_until, client_certificate, tls_handshake,
};
use deadbolt_runtime::shutdown::Shutdown;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceBuilder;

use crate::gate::Gate;
use crate::identity::{AuthError, Authenticator, Validity, certificate_validity};
use authenticate::AuthenticateLayer;
use body::ProxyBody;
use classify::Classify;
use guard::GuardLayer;
use handler::Dispatch;
use impersonate::RefuseImpersonation;
use strip_header::StripHeaders;
use upstream::Upstream;

/// ALPN protocols offered to clients.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// The most header bytes a request may carry (HTTP/1.1 buffer, HTTP/2 header
/// list). The API server's own limit is 1 MiB; tokens and impersonation
/// headers fit in far less.
const MAX_HEADER_BYTES: usize = 256 * 1024;
/// The most headers an HTTP/1.1 request may carry.
const MAX_HEADERS: usize = 200;
/// HTTP/2 pings that notice dead clients of idle watches.
const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Client connections: a first request within 10s (the HTTP/2 preface
/// included), closed after 90s with nothing in progress, and as many
/// concurrent streams as the API server allows by default.
const LIMITS: ConnectionLimits = ConnectionLimits {
    max_concurrent_streams: 1000,
    ..ConnectionLimits::API
};

/// What every layer answers with: a boxed future of a response, never an error.
pub type BoxResponse =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

/// Everything the kube-API proxy needs.
pub struct KubeProxy {
    /// Lock checks, audit and metrics.
    pub gate: Gate,
    /// Identifies clients.
    pub authenticator: Authenticator,
    /// The TLS config clients are served with ([`ALPN`], optional client certificates).
    pub tls: Arc<ServerConfig>,
    /// The API server and the proxy's credentials for it.
    pub upstream: Upstream,
}

/// What the connection a request arrived on established once: the client's
/// address and its verified client certificate, if it presented one. Every
/// request carries it in its extensions.
#[derive(Debug)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
    /// The identity in its verified client certificate.
    pub certificate: Option<Result<CertIdentity, AuthError>>,
    /// That certificate's validity, checked again at each request.
    pub validity: Option<Validity>,
}

impl Peer {
    /// The peer of a request; a request without one (which the connection
    /// always adds) is treated as an anonymous client of an unknown address.
    pub fn of<B>(request: &Request<B>) -> Arc<Peer> {
        request
            .extensions()
            .get::<Arc<Peer>>()
            .cloned()
            .unwrap_or_else(|| {
                Arc::new(Peer {
                    remote: SocketAddr::from(([0, 0, 0, 0], 0)),
                    certificate: None,
                    validity: None,
                })
            })
    }
}

impl KubeProxy {
    /// Accepts connections until shutdown; each runs in its own task, so one
    /// client's bad input never touches another's requests.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        accept_until(
            &listener,
            &shutdown,
            "kube",
            MAX_CONNECTIONS,
            |tcp, remote| {
                let proxy = self.clone();
                async move { proxy.connection(tcp, remote).await }
            },
        )
        .await;
    }

    async fn connection(self: Arc<Self>, tcp: TcpStream, remote: SocketAddr) {
        let acceptor = TlsAcceptor::from(self.tls.clone());
        let Some(tls) = tls_handshake(&acceptor, tcp, remote, "kube").await else {
            self.gate.metrics.protocol_errors.inc();
            return;
        };
        let leaf = client_certificate(&tls);
        let peer = Arc::new(Peer {
            remote,
            certificate: leaf.map(|leaf| self.authenticator.from_certificate(leaf)),
            validity: leaf.and_then(|leaf| certificate_validity(leaf).ok()),
        });

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(LIMITS.first_request)
            .max_buf_size(MAX_HEADER_BYTES)
            .max_headers(MAX_HEADERS);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .max_concurrent_streams(LIMITS.max_concurrent_streams)
            .keep_alive_interval(CLIENT_KEEP_ALIVE);
        let service = ServiceBuilder::new()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(peer.clone());
                request
            })
            .layer(AuthenticateLayer::new(
                self.authenticator.clone(),
                self.gate.clone(),
            ))
            .layer(GuardLayer::new(Classify::new(self.gate.metrics.clone())))
            .layer(GuardLayer::new(RefuseImpersonation::new(self.gate.clone())))
            .layer(GuardLayer::new(StripHeaders))
            .service(Dispatch::new(self.clone()));
        let activity = Activity::new();
        let service = activity.track(TowerToHyperService::new(service));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
        if let Err(error) = close_when_idle(connection, activity, LIMITS).await {
            tracing::debug!(%remote, %error, "client connection ended with an error");
        }
    }
}
