//! The webhook's HTTPS endpoint: HTTP/1.1 or HTTP/2 (whichever the API
//! server speaks) on the operator's one HTTPS loop ([`crate::https`]),
//! routing, and the body limit.

use std::sync::Arc;

use deadbolt_runtime::connection::ConnectionLimits;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::review::{MAX_REVIEW_BYTES, too_large};
use super::webhook::{Endpoint, Webhook};
use crate::body::ChannelBody;
use crate::failure::Failure;
use crate::https::{Bound, Listener, read_body};

/// The ALPN protocols to configure the webhook's TLS with: the API server
/// calls webhooks over HTTP/2 or HTTP/1.1, and both are served.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The API server's connections, over HTTP/2 or HTTP/1.1: a first request
/// within 10s (the HTTP/2 preface included), closed after 90s with nothing in
/// progress, at most 100 concurrent reviews on one connection.
const LISTENER: Listener = Listener {
    name: "webhook",
    limits: ConnectionLimits {
        max_concurrent_streams: 100,
        ..ConnectionLimits::API
    },
    http1: true,
    keep_alive: None,
};

/// Serves the webhook on `bound` (TLS built with [`ALPN`]) until its
/// shutdown, then lets in-flight reviews finish and returns.
pub async fn serve(bound: Bound, webhook: Webhook) {
    let webhook = Arc::new(webhook);
    LISTENER
        .serve(bound, move |_peer| {
            let webhook = webhook.clone();
            move |request| {
                let webhook = webhook.clone();
                async move { handle(&webhook, request).await }
            }
        })
        .await;
}

/// Answers one request; refusals of the HTTP request itself get a `Status` body.
async fn handle(webhook: &Webhook, request: Request<Incoming>) -> Response<ChannelBody> {
    match route(webhook, request).await {
        Ok(review) => ChannelBody::response(StatusCode::OK, "application/json", review),
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
    let body = read_body(request.into_body(), MAX_REVIEW_BYTES, too_large).await?;
    webhook.answer(endpoint, &body)
}
