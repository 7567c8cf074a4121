//! Who is asking: the Deadbolt client certificate of the connection, or else
//! the request's bearer token (a TokenReview against the upstream cluster,
//! cached by the [`Authenticator`]). A verified certificate takes precedence,
//! as the API server's own authenticator chain does.

use deadbolt_api::credential::CertIdentity;
use http::{HeaderMap, StatusCode, header};

use crate::identity::{AuthError, Authenticator};

/// Why a request is not authenticated, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// 401, or 503 when the token cannot be checked right now.
    pub code: StatusCode,
    /// The `Status` message.
    pub message: String,
}

/// Identifies the client of one request. `certificate` is what the
/// connection's verified client certificate said, if it presented one.
pub async fn authenticate(
    authenticator: &Authenticator,
    certificate: Option<&Result<CertIdentity, AuthError>>,
    headers: &HeaderMap,
) -> Result<CertIdentity, AuthFailure> {
    if let Some(from_certificate) = certificate {
        return from_certificate.clone().map_err(failure);
    }
    let token = bearer_token(headers)?;
    authenticator.from_password(token).await.map_err(failure)
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
        AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
    use deadbolt_runtime::token::{TokenChecker, TokenError, TokenUser};
    use futures::future::BoxFuture;
    use http::HeaderValue;
    use std::sync::Arc;

    struct OnlyGood;

    impl TokenChecker for OnlyGood {
        fn check<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<TokenUser, TokenError>> {
            Box::pin(async move {
                match token {
                    "good" => Ok(TokenUser {
                        username: "bob".into(),
                        groups: vec!["dev".into()],
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

    #[tokio::test]
    async fn tokens_are_checked_and_their_failures_explained() {
        let authenticator = Authenticator::new(Some(Arc::new(OnlyGood)));
        let bob = authenticate(&authenticator, None, &with_authorization("Bearer good"))
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
            let failure = authenticate(&authenticator, None, &with_authorization(header))
                .await
                .unwrap_err();
            assert_eq!(failure.code, code, "{header}");
            assert!(
                failure.message.contains(text),
                "{header}: {}",
                failure.message
            );
        }
        let failure = authenticate(&authenticator, None, &HeaderMap::new())
            .await
            .unwrap_err();
        assert!(failure.message.starts_with("no credentials"));
    }

    #[tokio::test]
    async fn a_certificate_wins_and_tokens_can_be_disabled() {
        let authenticator = Authenticator::new(None);
        let alice = CertIdentity {
            user: "alice".into(),
            ..Default::default()
        };
        let from_cert = authenticate(
            &authenticator,
            Some(&Ok(alice.clone())),
            &with_authorization("Bearer good"),
        )
        .await
        .unwrap();
        assert_eq!(from_cert, alice);
        let failure = authenticate(&authenticator, None, &with_authorization("Bearer good"))
            .await
            .unwrap_err();
        assert!(
            failure.message.contains("--token-review"),
            "{}",
            failure.message
        );
    }
}
