//! The MFA service's HTTPS listener: TLS (a Deadbolt client certificate is
//! optional), HTTP/2 only (a ceremony's two calls share one connection), who
//! the caller is (its certificate, else its bearer token by TokenReview), and
//! routing to [`MfaService`]. Refusals are Kubernetes `Status` bodies.

use std::net::SocketAddr;
use std::sync::Arc;

use deadbolt_api::credential::CertIdentity;
use deadbolt_api::mfa::service::{
    AUTHENTICATE_BEGIN_PATH, AUTHENTICATE_FINISH_PATH, DEVICES_PATH, REGISTER_BEGIN_PATH,
    REGISTER_FINISH_PATH, WHOAMI_PATH,
};
use deadbolt_runtime::certificate;
use deadbolt_runtime::connection::ConnectionLimits;
use deadbolt_runtime::token::{TokenChecker, TokenError};
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::service::{Caller, MfaService};
use crate::auth::bearer_token;
use crate::body::ChannelBody;
use crate::failure::Failure;
use crate::https::{Bound, Listener, read_body};

/// The ALPN protocol: HTTP/2 only, so a ceremony's calls share a connection.
pub const ALPN: &[&[u8]] = &[b"h2"];

/// The largest request body: a WebAuthn credential or assertion is a few KiB.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A caller's connection, HTTP/2 only: a request within 10s, closed after
/// 90s idle, a few calls at once.
const LISTENER: Listener = Listener {
    name: "mfa",
    limits: ConnectionLimits {
        max_concurrent_streams: 8,
        ..ConnectionLimits::API
    },
    http1: false,
    keep_alive: None,
};

/// Who may call: the service, and the token checker (none in standalone mode).
pub struct Endpoint {
    /// The service.
    pub service: MfaService,
    /// Checks bearer tokens; `None` accepts certificates only.
    pub tokens: Option<Arc<dyn TokenChecker>>,
}

struct Connection {
    remote: SocketAddr,
    /// The verified client certificate's identity, or why it cannot be read.
    certificate: Option<Result<CertIdentity, String>>,
}

/// Serves the MFA service on `bound` (TLS built with [`ALPN`]) until its shutdown.
pub async fn serve(bound: Bound, endpoint: Endpoint) {
    let endpoint = Arc::new(endpoint);
    LISTENER
        .serve(bound, move |peer| {
            let connection = Arc::new(Connection {
                remote: peer.remote,
                certificate: peer.certificate.as_ref().map(certificate::identity),
            });
            let endpoint = endpoint.clone();
            move |request| {
                let endpoint = endpoint.clone();
                let connection = connection.clone();
                async move { handle(&endpoint, &connection, request).await }
            }
        })
        .await;
}

async fn handle(
    endpoint: &Endpoint,
    connection: &Connection,
    request: Request<Incoming>,
) -> Response<ChannelBody> {
    match route(endpoint, connection, request).await {
        Ok(body) => ChannelBody::response(StatusCode::OK, "application/json", body),
        Err(failure) => {
            tracing::info!(remote = %connection.remote, code = failure.code.as_u16(),
                error = %failure.message, "MFA request refused");
            failure.into_response()
        }
    }
}

async fn route(
    endpoint: &Endpoint,
    connection: &Connection,
    request: Request<Incoming>,
) -> Result<Vec<u8>, Failure> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let caller = authenticate(endpoint, connection, &request).await?;
    let service = &endpoint.service;
    match (method, path.as_str()) {
        (Method::POST, REGISTER_BEGIN_PATH) => {
            let body = read_json(request).await?;
            reply(service.register_begin(&caller, body).await?)
        }
        (Method::POST, REGISTER_FINISH_PATH) => {
            let body = read_json(request).await?;
            reply(service.register_finish(&caller, body).await?)
        }
        (Method::POST, AUTHENTICATE_BEGIN_PATH) => {
            reply(service.authenticate_begin(&caller).await?)
        }
        (Method::POST, AUTHENTICATE_FINISH_PATH) => {
            let body = read_json(request).await?;
            reply(service.authenticate_finish(&caller, body).await?)
        }
        (Method::GET, DEVICES_PATH) => reply(service.devices(&caller).await?),
        (Method::DELETE, path) if path.starts_with(DEVICES_PATH) => {
            let uuid = path[DEVICES_PATH.len()..].trim_start_matches('/');
            if uuid.is_empty() || uuid.contains('/') {
                return Err(Failure::not_found(format!(
                    "DELETE {DEVICES_PATH}/UUID removes one device"
                )));
            }
            service.remove_device(&caller, uuid).await?;
            Ok(b"{}".to_vec())
        }
        (Method::GET, WHOAMI_PATH) => reply(service.whoami(&caller).await?),
        (method, path) => Err(Failure::not_found(format!(
            "no MFA endpoint {method} {path:?}; see the MFA service's paths in docs/mfa.md"
        ))),
    }
}

/// The caller: a verified Deadbolt user certificate wins; else a bearer token.
async fn authenticate(
    endpoint: &Endpoint,
    connection: &Connection,
    request: &Request<Incoming>,
) -> Result<Caller, Failure> {
    let remote = Some(connection.remote);
    match &connection.certificate {
        Some(Ok(identity)) if identity.is_proxy() => {
            return Err(Failure::forbidden(
                "a proxy certificate cannot call the MFA service",
            ));
        }
        Some(Ok(identity)) => {
            return Ok(Caller {
                identity: identity.clone(),
                remote,
            });
        }
        Some(Err(error)) => {
            return Err(Failure::unauthorized(format!(
                "invalid client certificate: {error}"
            )));
        }
        None => {}
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(bearer_token)
        .ok_or_else(|| {
            Failure::unauthorized(
                "no credentials: present a Deadbolt client certificate, or an \
                 `Authorization: Bearer <token>` header with a Kubernetes token",
            )
        })?;
    let checker = endpoint.tokens.as_ref().ok_or_else(|| {
        Failure::unauthorized(
            "bearer tokens are not accepted here (no Kubernetes to review them): \
             present a Deadbolt client certificate",
        )
    })?;
    match checker.check(token, remote.map(|addr| addr.ip())).await {
        Ok(user) => Ok(Caller {
            identity: CertIdentity {
                user: user.username,
                groups: user.groups,
                ..Default::default()
            },
            remote,
        }),
        Err(TokenError::Rejected(reason)) => Err(Failure::unauthorized(format!(
            "the bearer token was rejected: {reason}"
        ))),
        Err(TokenError::Unavailable(reason) | TokenError::Throttled(reason)) => {
            Err(Failure::unavailable(format!(
                "the bearer token cannot be checked right now: {reason}"
            )))
        }
    }
}

async fn read_json<T: DeserializeOwned>(request: Request<Incoming>) -> Result<T, Failure> {
    let bytes = read_body(request.into_body(), MAX_BODY_BYTES, || {
        Failure::bad_request(format!(
            "the request body is larger than {MAX_BODY_BYTES} bytes"
        ))
    })
    .await?;
    serde_json::from_slice(&bytes)
        .map_err(|error| Failure::bad_request(format!("the request body does not parse: {error}")))
}

fn reply(value: impl Serialize) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(&value)
        .map_err(|error| Failure::unavailable(format!("cannot encode the reply: {error}")))
}
