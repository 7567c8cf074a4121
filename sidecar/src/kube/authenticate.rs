//! Who is asking, as a tower layer: the Deadbolt client certificate of the
//! connection, still within its validity at this request (an HTTP/2
//! connection outlives certificates), or else the request's bearer token (a
//! TokenReview against the upstream cluster, cached by the
//! [`Authenticator`]). A verified certificate takes precedence, as the API
//! server's own authenticator chain does. The principal and the request's
//! audit facts go into the request's extensions; a failure is answered here
//! with 401 (503 when the token cannot be checked right now) and audited.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use deadbolt_api::credential::CertIdentity;
use http::{HeaderMap, Request, Response, StatusCode, header};
use jiff::Timestamp;
use tower::{Layer, Service};

use super::body::ProxyBody;
use super::{BoxResponse, Peer, status};
use crate::audit::SessionFacts;
use crate::gate::Gate;
use crate::identity::{AuthError, Authenticator};

/// Why a request is not authenticated, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// 401, or 503 when the token cannot be checked right now.
    pub code: StatusCode,
    /// The `Status` message.
    pub message: String,
}

/// Authenticates every request before the inner service sees it.
#[derive(Clone)]
pub struct AuthenticateLayer {
    authenticator: Authenticator,
    gate: Gate,
}

impl AuthenticateLayer {
    /// Checks certificates and tokens with `authenticator`; refusals are audited through `gate`.
    pub fn new(authenticator: Authenticator, gate: Gate) -> Self {
        Self {
            authenticator,
            gate,
        }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuthenticateLayer`] builds.
#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    layer: AuthenticateLayer,
}

impl<S, B> Service<Request<B>> for Authenticate<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = BoxResponse;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> BoxResponse {
        let mut inner = self.inner.clone();
        let layer = self.layer.clone();
        Box::pin(async move {
            let peer = Peer::of(&request);
            let mut facts = SessionFacts::new(layer.gate.view.server_id(), Some(peer.remote));
            match authenticate(
                &layer.authenticator,
                &peer,
                request.headers(),
                Timestamp::now(),
            )
            .await
            {
                Ok(principal) => {
                    facts.user = Some(principal.user.clone());
                    request.extensions_mut().insert(principal);
                    request.extensions_mut().insert(facts);
                    inner.call(request).await
                }
                Err(failure) => {
                    layer.gate.reject(&facts, &failure.message);
                    Ok(status::response(failure.code, &failure.message))
                }
            }
        })
    }
}

/// Identifies the client of one request at `now`.
pub async fn authenticate(
    authenticator: &Authenticator,
    peer: &Arc<Peer>,
    headers: &HeaderMap,
    now: Timestamp,
) -> Result<CertIdentity, AuthFailure> {
    if let Some(from_certificate) = &peer.certificate {
        if let Some(validity) = &peer.validity
            && !(validity.not_before <= now && now <= validity.not_after)
        {
            return Err(AuthFailure {
                code: StatusCode::UNAUTHORIZED,
                message: format!(
                    "the client certificate is valid from {} to {}, not now: get a new one and reconnect",
                    validity.not_before, validity.not_after
                ),
            });
        }
        return from_certificate.clone().map_err(failure);
    }
    let token = bearer_token(headers)?;
    authenticator
        .from_password(token, Some(peer.remote))
        .await
        .map_err(failure)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    let unauthorized = |message: &str| AuthFailure {
        code: StatusCode::UNAUTHORIZED,
        message: message.to_string(),
    };
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(failure(AuthError::Missing));
    };
    if values.next().is_some() {
        return Err(unauthorized("more than one Authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not ASCII"))?;
    let value = value.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "only bearer tokens and Deadbolt client certificates are accepted",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(failure(AuthError::Missing));
    }
    Ok(token)
}

/// The client-facing wording of an authentication error.
fn failure(error: AuthError) -> AuthFailure {
    let code = match error {
        AuthError::Unavailable(_) | AuthError::Throttled(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    let message = match error {
        AuthError::Missing => "no credentials: present a client certificate from the Deadbolt CA, or a bearer token".to_string(),
        AuthError::TokensDisabled => "bearer tokens are not accepted by this proxy (it runs without --token-review): present a client certificate from the Deadbolt CA".to_string(),
        other => other.to_string(),
    };
    AuthFailure { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Validity;
    use deadbolt_runtime::token::{TokenChecker, TokenError, TokenUser};
    use futures::future::BoxFuture;
    use http::HeaderValue;
    use std::net::IpAddr;

    struct OnlyGood;

    impl TokenChecker for OnlyGood {
        fn check<'a>(
            &'a self,
            token: &'a str,
            _source: Option<IpAddr>,
        ) -> BoxFuture<'a, Result<TokenUser, TokenError>> {
            Box::pin(async move {
                match token {
                    "good" => Ok(TokenUser {
                        username: "bob".into(),
                        groups: vec!["dev".into()],
                        ..Default::default()
                    }),
                    "down" => Err(TokenError::Unavailable("apiserver down".into())),
                    _ => Err(TokenError::Rejected("token is invalid".into())),
                }
            })
        }
    }

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn peer(
        certificate: Option<Result<CertIdentity, AuthError>>,
        validity: Option<Validity>,
    ) -> Arc<Peer> {
        Arc::new(Peer {
            remote: "192.0.2.1:4000".parse().unwrap(),
            certificate,
            validity,
        })
    }

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn tokens_are_checked_and_their_failures_explained() {
        let authenticator = Authenticator::new(Some(Arc::new(OnlyGood)));
        let none = peer(None, None);
        let bob = authenticate(
            &authenticator,
            &none,
            &with_authorization("Bearer good"),
            now(),
        )
        .await
        .unwrap();
        assert_eq!(bob.user, "bob");
        assert_eq!(bob.groups, vec!["dev".to_string()]);

        let cases = [
            ("Bearer bad", StatusCode::UNAUTHORIZED, "token rejected"),
            (
                "Bearer down",
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot check",
            ),
            ("Bearer ", StatusCode::UNAUTHORIZED, "no credentials"),
            ("Basic YTpi", StatusCode::UNAUTHORIZED, "only bearer tokens"),
        ];
        for (header, code, text) in cases {
            let failure = authenticate(&authenticator, &none, &with_authorization(header), now())
                .await
                .unwrap_err();
            assert_eq!(failure.code, code, "{header}");
            assert!(
                failure.message.contains(text),
                "{header}: {}",
                failure.message
            );
        }
        let failure = authenticate(&authenticator, &none, &HeaderMap::new(), now())
            .await
            .unwrap_err();
        assert!(failure.message.starts_with("no credentials"));
    }

    #[tokio::test]
    async fn a_certificate_wins_while_valid_and_tokens_can_be_disabled() {
        let authenticator = Authenticator::new(None);
        let alice = CertIdentity {
            user: "alice".into(),
            ..Default::default()
        };
        let validity = Validity {
            not_before: "2026-05-31T00:00:00Z".parse().unwrap(),
            not_after: "2026-06-01T00:00:00Z".parse().unwrap(),
        };
        let with_cert = peer(Some(Ok(alice.clone())), Some(validity));
        let from_cert = authenticate(
            &authenticator,
            &with_cert,
            &with_authorization("Bearer good"),
            now(),
        )
        .await
        .unwrap();
        assert_eq!(from_cert, alice);
        let later = now() + jiff::SignedDuration::from_secs(1);
        let expired = authenticate(&authenticator, &with_cert, &HeaderMap::new(), later)
            .await
            .unwrap_err();
        assert_eq!(expired.code, StatusCode::UNAUTHORIZED);
        assert!(expired.message.contains("not now"), "{}", expired.message);
        let failure = authenticate(
            &authenticator,
            &peer(None, None),
            &with_authorization("Bearer good"),
            now(),
        )
        .await
        .unwrap_err();
        assert!(
            failure.message.contains("--token-review"),
            "{}",
            failure.message
        );
    }
}
