//! The kube-API proxy (`deadbolt-sidecar kube`): TLS with HTTP/1.1 and
//! HTTP/2, authentication by Deadbolt client certificate or bearer token, a
//! refusal of any client impersonation, the lock check on every request, and
//! forwarding to the API server with the proxy's own credentials and
//! `Impersonate-*` headers. Watches, followed logs and upgraded connections
//! (exec, attach, port-forward) are registered sessions that a lock cuts with
//! its message.
//!
//! What each kind of request gets:
//!
//! | request | lock check | registered | cut by | audit |
//! |---|---|---|---|---|
//! | discovery (`/api`, `/apis/...`, `/version`, `/openapi`) | no | no | — | — |
//! | other short requests | yes | no | — | `session.rejected` when refused |
//! | watch | yes | yes | an `ERROR` event with the `Status`, then the end | start, end or terminated |
//! | `logs -f` | yes | yes | the message as a last line, then the end | start, end or terminated |
//! | exec/attach, WebSocket | yes | yes | the `Status` on channel 3, then a close frame | start, end or terminated |
//! | exec/attach, SPDY | yes | yes | the `Status` on the error stream, then a close | start, end or terminated |
//! | port-forward | yes | yes | a close (WebSocket: close frame with the message) | start, end or terminated |
//!
//! Refusals are `403` with a `Status` whose message is the lock's. Discovery
//! passes without a lock check because kubectl fetches it first and, for a
//! refusal there, prints `unknown` instead of the message; it holds no object
//! data, and the API server lets every authenticated user read it.

pub mod authn;
pub mod body;
pub mod classify;
pub mod impersonate;
pub mod spdy;
pub mod status;
pub mod stream;
pub mod tunnel;
pub mod upstream;
pub mod websocket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::listener::{accept_until, tls_handshake};
use deadbolt_runtime::shutdown::Shutdown;
use http::{Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::audit::SessionFacts;
use crate::gate::{Ending, Gate};
use crate::identity::{AuthError, Authenticator};
use body::{ProxyBody, boxed, empty};
use classify::{RequestKind, Upgrade, UpgradeProtocol};
use impersonate::Impersonation;
use stream::StreamKind;
use tunnel::{SpdyTunnel, Tunnel, WebSocketTunnel};
use upstream::{
    Upstream, UpstreamBody, UpstreamError, forwarded_headers, relay_body, returned_headers,
};

/// ALPN protocols offered to clients.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// How long an HTTP/1.1 client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The most header bytes a request may carry (HTTP/1.1 buffer, HTTP/2 header
/// list). The API server's own limit is 1 MiB; tokens and impersonation
/// headers fit in far less.
const MAX_HEADER_BYTES: usize = 256 * 1024;
/// The most headers an HTTP/1.1 request may carry.
const MAX_HEADERS: usize = 200;
/// HTTP/2 pings that notice dead clients of idle watches.
const CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(30);

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

/// What a client connection established once for all its requests.
struct ClientConnection {
    remote: SocketAddr,
    /// The identity in its verified client certificate, if it presented one.
    certificate: Option<Result<CertIdentity, AuthError>>,
}

impl KubeProxy {
    /// Accepts connections until shutdown; each runs in its own task, so one
    /// client's bad input never touches another's requests.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        accept_until(&listener, &shutdown, "kube", |tcp, remote| {
            let proxy = self.clone();
            async move { proxy.connection(tcp, remote).await }
        })
        .await;
    }

    async fn connection(self: Arc<Self>, tcp: TcpStream, remote: SocketAddr) {
        let acceptor = TlsAcceptor::from(self.tls.clone());
        let Some(tls) = tls_handshake(&acceptor, tcp, remote, "kube").await else {
            self.gate.metrics.protocol_errors.inc();
            return;
        };
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| self.authenticator.from_certificate(leaf));
        let client = Arc::new(ClientConnection {
            remote,
            certificate,
        });

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES)
            .max_headers(MAX_HEADERS);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .keep_alive_interval(CLIENT_KEEP_ALIVE);
        let proxy = self.clone();
        let service = service_fn(move |request| {
            let proxy = proxy.clone();
            let client = client.clone();
            async move { Ok::<_, Infallible>(proxy.handle(request, &client).await) }
        });
        if let Err(error) = builder
            .serve_connection_with_upgrades(TokioIo::new(tls), service)
            .await
        {
            tracing::debug!(%remote, %error, "client connection ended with an error");
        }
    }

    /// Authenticates, refuses impersonation, checks the lock view and forwards.
    async fn handle(
        &self,
        request: Request<Incoming>,
        client: &ClientConnection,
    ) -> Response<ProxyBody> {
        let mut facts = SessionFacts::new(self.gate.view.server_id(), Some(client.remote));
        let principal = match authn::authenticate(
            &self.authenticator,
            client.certificate.as_ref(),
            request.headers(),
        )
        .await
        {
            Ok(principal) => principal,
            Err(failure) => {
                self.gate.reject(&facts, &failure.message);
                return status::response(failure.code, &failure.message);
            }
        };
        facts.user = Some(principal.user.clone());
        let kind = classify::classify(request.method(), request.uri(), request.headers());
        // Discovery is served as the authenticated user whatever it asks; any
        // other request that asks to impersonate is refused.
        if kind != RequestKind::Discovery
            && let Some(header) = impersonate::requested_impersonation(request.headers())
        {
            let message = impersonate::refusal(header);
            self.gate.reject(&facts, &message);
            return status::response(StatusCode::FORBIDDEN, &message);
        }
        match kind {
            RequestKind::Discovery => self.discovery(request, client, facts, principal).await,
            RequestKind::BadUpgrade(message) => {
                self.gate.metrics.protocol_errors.inc();
                status::response(StatusCode::BAD_REQUEST, &message)
            }
            RequestKind::Short => self.short(request, client, facts, principal).await,
            RequestKind::Watch => {
                self.streamed(request, client, facts, principal, StreamKind::Watch)
                    .await
            }
            RequestKind::FollowLogs => {
                self.streamed(request, client, facts, principal, StreamKind::FollowLogs)
                    .await
            }
            RequestKind::Upgrade(upgrade) => {
                self.upgrade(request, client, facts, principal, upgrade)
                    .await
            }
        }
    }

    /// A discovery request: forwarded as the user, without a lock check.
    async fn discovery(
        &self,
        request: Request<Incoming>,
        client: &ClientConnection,
        facts: SessionFacts,
        principal: CertIdentity,
    ) -> Response<ProxyBody> {
        let roles = self.gate.view.with_replica(|replica| {
            replica.roles_for(&principal.user, &principal.groups, &principal.roles)
        });
        self.forward(request, client, &facts, &principal, &roles)
            .await
    }

    /// A short request: checked, forwarded, not registered.
    async fn short(
        &self,
        request: Request<Incoming>,
        client: &ClientConnection,
        mut facts: SessionFacts,
        principal: CertIdentity,
    ) -> Response<ProxyBody> {
        let identity = match self.gate.check(&mut facts, &principal) {
            Ok(identity) => identity,
            Err(denial) => return status::response(StatusCode::FORBIDDEN, denial.message()),
        };
        self.forward(request, client, &facts, &principal, &identity.roles)
            .await
    }

    /// Forwards a short request and relays the answer.
    async fn forward(
        &self,
        request: Request<Incoming>,
        client: &ClientConnection,
        facts: &SessionFacts,
        principal: &CertIdentity,
        roles: &[String],
    ) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        let upstream_request = match self.upstream_request(
            &parts,
            boxed(body),
            client,
            principal,
            roles,
            facts,
            false,
        ) {
            Ok(request) => request,
            Err(message) => return status::response(StatusCode::FORBIDDEN, &message),
        };
        match self.upstream.send(upstream_request).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let mut relayed = Response::new(relay_body(body));
                *relayed.status_mut() = parts.status;
                *relayed.headers_mut() = returned_headers(&parts.headers, false);
                relayed
            }
            Err(error) => upstream_failure(&error),
        }
    }

    /// A watch or a followed log: registered, relayed, cut with a notice.
    async fn streamed(
        &self,
        request: Request<Incoming>,
        client: &ClientConnection,
        mut facts: SessionFacts,
        principal: CertIdentity,
        kind: StreamKind,
    ) -> Response<ProxyBody> {
        let session = match self.gate.admit(&mut facts, &principal) {
            Ok(session) => session,
            Err(denial) => return status::response(StatusCode::FORBIDDEN, denial.message()),
        };
        let roles = session.admission.identity.roles.clone();
        let (parts, body) = request.into_parts();
        let upstream_request = match self.upstream_request(
            &parts,
            boxed(body),
            client,
            &principal,
            &roles,
            &facts,
            false,
        ) {
            Ok(request) => request,
            Err(message) => {
                session.finish(Ending::Failed(message.clone()));
                return status::response(StatusCode::FORBIDDEN, &message);
            }
        };
        let response = match self.upstream.send(upstream_request).await {
            Ok(response) => response,
            Err(error) => {
                session.finish(Ending::Failed(error.to_string()));
                return upstream_failure(&error);
            }
        };
        if !response.status().is_success() {
            // A refusal or an error: nothing long-running to watch over.
            session.finish(Ending::Normal);
            let (parts, body) = response.into_parts();
            let mut relayed = Response::new(relay_body(body));
            *relayed.status_mut() = parts.status;
            *relayed.headers_mut() = returned_headers(&parts.headers, false);
            return relayed;
        }
        stream::relay(response, kind, session)
    }

    /// Exec, attach, port-forward: registered, upgraded on both sides, relayed, cut.
    async fn upgrade(
        &self,
        mut request: Request<Incoming>,
        client: &ClientConnection,
        mut facts: SessionFacts,
        principal: CertIdentity,
        upgrade: Upgrade,
    ) -> Response<ProxyBody> {
        if request.version() != Version::HTTP_11 {
            self.gate.metrics.protocol_errors.inc();
            return status::response(
                StatusCode::BAD_REQUEST,
                "connection upgrades (exec, attach, port-forward) need HTTP/1.1",
            );
        }
        let mut session = match self.gate.admit(&mut facts, &principal) {
            Ok(session) => session,
            Err(denial) => return status::response(StatusCode::FORBIDDEN, denial.message()),
        };
        let client_upgrade = hyper::upgrade::on(&mut request);
        let roles = session.admission.identity.roles.clone();
        let (parts, _body) = request.into_parts();
        let upstream_request = match self.upstream_request(
            &parts,
            empty(),
            client,
            &principal,
            &roles,
            &facts,
            true,
        ) {
            Ok(request) => request,
            Err(message) => {
                session.finish(Ending::Failed(message.clone()));
                return status::response(StatusCode::FORBIDDEN, &message);
            }
        };
        let mut response = match self.upstream.upgrade(upstream_request).await {
            Ok(response) => response,
            Err(error) => {
                session.finish(Ending::Failed(error.to_string()));
                return upstream_failure(&error);
            }
        };
        let headers = returned_headers(response.headers(), true);
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            session.finish(Ending::Normal);
            let (parts, body) = response.into_parts();
            let mut relayed = Response::new(boxed(body));
            *relayed.status_mut() = parts.status;
            *relayed.headers_mut() = returned_headers(&parts.headers, false);
            return relayed;
        }
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let mut tunnel: Box<dyn Tunnel> = match upgrade.protocol {
            UpgradeProtocol::WebSocket => {
                let subprotocol = response
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                Box::new(WebSocketTunnel::new(
                    subprotocol,
                    upgrade.has_error_channel(),
                ))
            }
            UpgradeProtocol::Spdy => {
                let stream_protocol = response
                    .headers()
                    .get("x-stream-protocol-version")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default();
                Box::new(SpdyTunnel::new(
                    stream_protocol,
                    upgrade.has_error_channel(),
                ))
            }
        };
        tokio::spawn(async move {
            let ending = match (client_upgrade.await, upstream_upgrade.await) {
                (Ok(client), Ok(upstream)) => {
                    tunnel::relay(
                        TokioIo::new(client),
                        TokioIo::new(upstream),
                        tunnel.as_mut(),
                        &mut session,
                    )
                    .await
                }
                (Err(error), _) | (_, Err(error)) => {
                    Ending::Failed(format!("upgrade failed: {error}"))
                }
            };
            session.finish(ending);
        });
        let mut switching = Response::new(empty());
        *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *switching.headers_mut() = headers;
        switching
    }

    /// The request as the API server receives it: the client's method, path,
    /// headers (minus its credentials and hop-by-hop headers) and body, plus
    /// the impersonation of `principal`. Fails when a name cannot be a header value.
    #[allow(clippy::too_many_arguments)]
    fn upstream_request(
        &self,
        parts: &http::request::Parts,
        body: UpstreamBody,
        client: &ClientConnection,
        principal: &CertIdentity,
        roles: &[String],
        facts: &SessionFacts,
        upgrade: bool,
    ) -> Result<Request<UpstreamBody>, String> {
        let impersonation = self
            .gate
            .view
            .with_replica(|replica| Impersonation::new(principal, replica, roles, &facts.sid));
        let mut headers = forwarded_headers(&parts.headers, upgrade, client.remote);
        impersonation.apply(&mut headers)?;
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.headers_mut() = headers;
        Ok(request)
    }
}

/// The client's view of an upstream failure.
fn upstream_failure(error: &UpstreamError) -> Response<ProxyBody> {
    tracing::warn!(%error, "upstream request failed");
    let code = match error {
        UpstreamError::Http(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = status::response(code, &error.to_string());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}
