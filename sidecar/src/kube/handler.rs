//! The innermost service of the kube proxy: by the time a request gets here
//! it is authenticated, classified and cleaned (the layers in `mod.rs`), so
//! this decides it against the lock view and forwards it, impersonating the
//! caller: discovery as it is, short requests checked, streams checked and
//! registered, upgrades checked, registered and tunnelled.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use deadbolt_api::credential::CertIdentity;
use http::{Request, Response, StatusCode, Version, header};
use hyper::body::{Body, Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tower::Service;
use tracing::Instrument;

use super::body::{BoxError, ProxyBody, boxed, empty};
use super::classify::{RequestKind, Upgrade, UpgradeProtocol};
use super::impersonate::Impersonation;
use super::status;
use super::stream::{self, StreamKind};
use super::strip_header::returned_headers;
use super::tunnel::{self, SpdyTunnel, Tunnel, WebSocketTunnel};
use super::upstream::{UpstreamBody, UpstreamError};
use super::{BoxResponse, KubeProxy};
use crate::audit::SessionFacts;
use crate::gate::Ending;
use crate::view::Reach;

/// Decides and forwards requests for one proxy.
#[derive(Clone)]
pub struct Dispatch {
    proxy: Arc<KubeProxy>,
}

impl Dispatch {
    /// The innermost service of `proxy`.
    pub fn new(proxy: Arc<KubeProxy>) -> Self {
        Self { proxy }
    }
}

impl Service<Request<Incoming>> for Dispatch {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxResponse;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> BoxResponse {
        let proxy = self.proxy.clone();
        Box::pin(async move { Ok(proxy.dispatch(request).await) })
    }
}

/// Who a request goes upstream as.
struct Acting<'a> {
    principal: &'a CertIdentity,
    roles: &'a [String],
    /// The registered session's id, for sessions Deadbolt audits (watches,
    /// followed logs, exec, attach, port-forward); `None` for short requests,
    /// which are not audited one by one when allowed.
    session_id: Option<&'a str>,
}

impl KubeProxy {
    async fn dispatch(&self, mut request: Request<Incoming>) -> Response<ProxyBody> {
        let extensions = request.extensions_mut();
        let (Some(kind), Some(principal), Some(facts)) = (
            extensions.remove::<RequestKind>(),
            extensions.remove::<CertIdentity>(),
            extensions.remove::<SessionFacts>(),
        ) else {
            // The layers always set these; a request without them is refused, never forwarded.
            return status::response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request was not authenticated and classified",
            );
        };
        match kind {
            RequestKind::Discovery => self.discovery(request, principal).await,
            RequestKind::Short => self.short(request, facts, principal).await,
            RequestKind::Stream(kind) => self.streamed(request, facts, principal, kind).await,
            RequestKind::Upgrade(upgrade) => self.upgrade(request, facts, principal, upgrade).await,
            RequestKind::BadRequest(message) => status::response(StatusCode::BAD_REQUEST, &message),
        }
    }

    /// A discovery request: forwarded as the user, without a lock check.
    async fn discovery(
        &self,
        request: Request<Incoming>,
        principal: CertIdentity,
    ) -> Response<ProxyBody> {
        let roles = self.gate.view.with_replica(|replica| {
            replica.roles_for(&principal.user, &principal.groups, &principal.roles)
        });
        let acting = Acting {
            principal: &principal,
            roles: &roles,
            session_id: None,
        };
        self.forward(request, &acting).await
    }

    /// A short request: checked, forwarded, not registered.
    async fn short(
        &self,
        request: Request<Incoming>,
        mut facts: SessionFacts,
        principal: CertIdentity,
    ) -> Response<ProxyBody> {
        let identity = match self.gate.check(&mut facts, &principal, Reach::Kubernetes) {
            Ok(identity) => identity,
            Err(refusal) => return status::response(StatusCode::FORBIDDEN, &refusal.message()),
        };
        let acting = Acting {
            principal: &principal,
            roles: &identity.roles,
            session_id: None,
        };
        self.forward(request, &acting).await
    }

    /// Forwards a short request and relays the answer.
    async fn forward(
        &self,
        request: Request<Incoming>,
        acting: &Acting<'_>,
    ) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        let upstream_request = match self.upstream_request(parts, boxed(body), acting) {
            Ok(request) => request,
            Err(message) => return status::response(StatusCode::FORBIDDEN, &message),
        };
        match self.upstream.send(upstream_request).await {
            Ok(response) => relayed(response),
            Err(error) => upstream_failure(&error),
        }
    }

    /// A watch, a followed log, a proxied or unrecognised response:
    /// registered, relayed, cut with a notice (or a reset).
    async fn streamed(
        &self,
        request: Request<Incoming>,
        mut facts: SessionFacts,
        principal: CertIdentity,
        kind: StreamKind,
    ) -> Response<ProxyBody> {
        let session = match self.gate.admit(&mut facts, &principal, Reach::Kubernetes) {
            Ok(session) => session,
            Err(refusal) => return status::response(StatusCode::FORBIDDEN, &refusal.message()),
        };
        let roles = session.admission.identity.roles.clone();
        let acting = Acting {
            principal: &principal,
            roles: &roles,
            session_id: Some(&facts.sid),
        };
        let (parts, body) = request.into_parts();
        let upstream_request = match self.upstream_request(parts, boxed(body), &acting) {
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
            return relayed(response);
        }
        stream::relay(response, kind, session)
    }

    /// Exec, attach, port-forward: registered, upgraded on both sides, relayed, cut.
    async fn upgrade(
        &self,
        mut request: Request<Incoming>,
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
        let mut session = match self.gate.admit(&mut facts, &principal, Reach::Kubernetes) {
            Ok(session) => session,
            Err(refusal) => return status::response(StatusCode::FORBIDDEN, &refusal.message()),
        };
        let client_upgrade = hyper::upgrade::on(&mut request);
        let roles = session.admission.identity.roles.clone();
        let acting = Acting {
            principal: &principal,
            roles: &roles,
            session_id: Some(&facts.sid),
        };
        let (parts, _body) = request.into_parts();
        let upstream_request = match self.upstream_request(parts, empty(), &acting) {
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
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            session.finish(Ending::Normal);
            return relayed(response);
        }
        let headers = returned_headers(response.headers(), true);
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let response_header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
        };
        let mut tunnel: Box<dyn Tunnel> = match upgrade.protocol {
            UpgradeProtocol::WebSocket => Box::new(WebSocketTunnel::new(
                response_header("sec-websocket-protocol"),
                upgrade.subresource,
            )),
            UpgradeProtocol::Spdy => Box::new(SpdyTunnel::new(
                response_header("x-stream-protocol-version"),
                upgrade.subresource,
            )),
        };
        let span = session.span().clone();
        let relay = async move {
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
        };
        tokio::spawn(relay.instrument(span));
        let mut switching = Response::new(empty());
        *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *switching.headers_mut() = headers;
        switching
    }

    /// The request as the API server receives it: the client's method, path,
    /// (already cleaned) headers and body, plus the impersonation of the
    /// caller. Fails when a name cannot be a header value.
    fn upstream_request(
        &self,
        parts: http::request::Parts,
        body: UpstreamBody,
        acting: &Acting<'_>,
    ) -> Result<Request<UpstreamBody>, String> {
        let labels = self.gate.view.labels();
        let impersonation = self.gate.view.with_replica(|replica| {
            Impersonation::new(
                acting.principal,
                replica,
                acting.roles,
                labels,
                acting.session_id,
            )
        });
        let mut request = Request::from_parts(parts, body);
        impersonation.apply(request.headers_mut())?;
        Ok(request)
    }
}

/// An upstream response as the client receives it.
fn relayed<B>(response: Response<B>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let mut relayed = Response::new(boxed(body));
    *relayed.status_mut() = parts.status;
    *relayed.headers_mut() = returned_headers(&parts.headers, false);
    relayed
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
