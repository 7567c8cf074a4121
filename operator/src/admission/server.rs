//! The webhook's HTTPS listener: TLS, HTTP/1.1 or HTTP/2 (whichever the API
//! server speaks), routing, and the body limit.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_runtime::connection::{Activity, ConnectionLimits, close_when_idle};
use deadbolt_runtime::listener::{MAX_CONNECTIONS, accept_until, tls_handshake};
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::review::{MAX_REVIEW_BYTES, too_large};
use super::webhook::{Endpoint, Webhook};
use crate::body::ChannelBody;
use crate::failure::Failure;
use crate::shutdown::Shutdown;

/// The ALPN protocols to configure the webhook's TLS with: the API server
/// calls webhooks over HTTP/2 or HTTP/1.1, and both are served.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The API server's connections: a first request within 10s (the HTTP/2
/// preface included), closed after 90s with nothing in progress, at most 100
/// concurrent reviews on one connection.
const LIMITS: ConnectionLimits = ConnectionLimits {
    max_concurrent_streams: 100,
    ..ConnectionLimits::API
};

/// How long shutdown waits for in-flight reviews.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the webhook on `listener` with `tls` (built with [`ALPN`]) until
/// `shutdown`, then lets in-flight reviews finish and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    webhook: Webhook,
    shutdown: Shutdown,
) {
    let acceptor = TlsAcceptor::from(tls);
    let webhook = Arc::new(webhook);
    let graceful = GracefulShutdown::new();
    accept_until(
        &listener,
        &shutdown,
        "webhook",
        MAX_CONNECTIONS,
        |tcp, remote| {
            let acceptor = acceptor.clone();
            let webhook = webhook.clone();
            let watcher = graceful.watcher();
            async move {
                let Some(tls) = tls_handshake(&acceptor, tcp, remote, "webhook").await else {
                    return;
                };
                let service = service_fn(move |request| {
                    let webhook = webhook.clone();
                    async move { Ok::<_, Infallible>(handle(&webhook, request).await) }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(LIMITS.first_request);
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(LIMITS.max_concurrent_streams);
                let activity = Activity::new();
                let connection = builder
                    .serve_connection(TokioIo::new(tls), activity.track(service))
                    .into_owned();
                if let Err(error) =
                    close_when_idle(watcher.watch(connection), activity, LIMITS).await
                {
                    tracing::debug!(%remote, %error, "webhook connection ended with an error");
                }
            }
        },
    )
    .await;
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("webhook connections did not drain in time; dropping them");
    }
}

/// Answers one request; refusals of the HTTP request itself get a `Status` body.
async fn handle(webhook: &Webhook, request: Request<Incoming>) -> Response<ChannelBody> {
    match route(webhook, request).await {
        Ok(review) => {
            let mut response = Response::new(ChannelBody::full(review));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(failure) => {
            tracing::warn!(code = failure.code.as_u16(), error = %failure.message,
                "webhook request refused");
            failure.into_response()
        }
    }
}

async fn route(webhook: &Webhook, request: Request<Incoming>) -> Result<Vec<u8>, Failure> {
    let path = request.uri().path();
    let endpoint = Endpoint::from_path(path).ok_or_else(|| {
        let paths: Vec<_> = Endpoint::ALL.iter().map(|e| e.path()).collect();
        Failure::not_found(format!(
            "no webhook at {path:?}; the endpoints are {}",
            paths.join(", ")
        ))
    })?;
    if request.method() != Method::POST {
        return Err(Failure::method_not_allowed(format!(
            "{endpoint} takes POST, not {}",
            request.method()
        )));
    }
    let body = read_body(request.into_body()).await?;
    webhook.answer(endpoint, &body)
}

/// The whole body, refused with a 400 past [`MAX_REVIEW_BYTES`].
async fn read_body(body: Incoming) -> Result<Bytes, Failure> {
    match Limited::new(body, MAX_REVIEW_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => Err(Failure::bad_request(format!(
            "cannot read the request body: {error}"
        ))),
    }
}
