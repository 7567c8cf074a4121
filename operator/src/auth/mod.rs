//! Who may subscribe to the lock view: a proxy with a client certificate from
//! the Deadbolt CA (for the server id it was issued for), or a ServiceAccount
//! on the `--subscriber` list whose token passes a TokenReview (for the server
//! id its entry allows, [`subscribers`]).

pub mod subscribers;

pub use deadbolt_runtime::token::{
    CachePolicy, CachingTokenChecker, DEFAULT_AUDIENCE, TokenChecker, TokenError, TokenReviewer,
    TokenUser,
};
pub use subscribers::SubscriberRule;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use deadbolt_api::credential::CertIdentity;
use deadbolt_api::protocol::SERVER_ID_HEADER;
use http::HeaderValue;

use crate::ca::PROXY_ORGANIZATION;
use crate::failure::Failure;

/// An authenticated subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A proxy certificate from the Deadbolt CA; its common name is the proxy's server id.
    Proxy {
        /// The server id the certificate was issued for.
        server_id: String,
    },
    /// A bearer token the API server vouched for.
    Token {
        /// Who the token belongs to.
        user: TokenUser,
    },
}

impl Principal {
    /// The identity behind the subscription, which its stream cap counts by.
    pub fn key(&self) -> String {
        match self {
            Self::Proxy { server_id } => format!("proxy:{server_id}"),
            Self::Token { user } => format!("token:{}", user.username),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Proxy { server_id } => write!(f, "proxy certificate {server_id:?}"),
            Self::Token { user } => write!(f, "token of {:?}", user.username),
        }
    }
}

/// Turns a connection's certificate or a request's `Authorization` header into
/// a [`Principal`], or into the 401/403/503 the client is sent.
#[derive(Clone, Default)]
pub struct Authenticator {
    tokens: Option<Arc<dyn TokenChecker>>,
    subscribers: Vec<SubscriberRule>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.is_some())
            .field("subscribers", &self.subscribers)
            .finish()
    }
}

const NO_CREDENTIALS: &str = "no credentials: present a client certificate issued by the Deadbolt CA, \
     or an `Authorization: Bearer <token>` header with a service account token for audience \"deadbolt\"";

impl Authenticator {
    /// Accepts client certificates, and bearer tokens when `tokens` is set
    /// (standalone mode has no API server to review tokens with).
    pub fn new(tokens: Option<Arc<dyn TokenChecker>>) -> Self {
        Self {
            tokens,
            subscribers: Vec::new(),
        }
    }

    /// Lets these ServiceAccounts subscribe with tokens; without any, no token is accepted.
    pub fn with_subscribers(mut self, subscribers: Vec<SubscriberRule>) -> Self {
        self.subscribers = subscribers;
        self
    }

    /// Whether `principal` may subscribe as `server_id`.
    pub fn authorize(&self, principal: &Principal, server_id: &str) -> Result<(), Failure> {
        match principal {
            Principal::Proxy { server_id: issued } if issued != server_id => {
                Err(Failure::forbidden(format!(
                    "the client certificate was issued for server id {issued:?}, \
                     but {SERVER_ID_HEADER} says {server_id:?}"
                )))
            }
            Principal::Proxy { .. } => Ok(()),
            Principal::Token { user } => subscribers::authorize(&self.subscribers, user, server_id)
                .map_err(Failure::forbidden),
        }
    }

    /// Authenticates a request from `remote`. A verified client certificate wins over a header.
    pub async fn authenticate(
        &self,
        peer: Option<&CertIdentity>,
        authorization: Option<&HeaderValue>,
        remote: Option<SocketAddr>,
    ) -> Result<Principal, Failure> {
        if let Some(peer) = peer {
            return proxy_principal(peer);
        }
        let Some(header) = authorization else {
            return Err(Failure::unauthorized(NO_CREDENTIALS));
        };
        let token = bearer_token(header).ok_or_else(|| {
            Failure::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
        let Some(tokens) = &self.tokens else {
            return Err(Failure::unauthorized(
                "bearer tokens are not accepted: this operator runs without Kubernetes; \
                 present a client certificate issued by the Deadbolt CA",
            ));
        };
        match tokens.check(token, remote.map(|addr| addr.ip())).await {
            Ok(user) => Ok(Principal::Token { user }),
            Err(TokenError::Rejected(reason)) => Err(Failure::unauthorized(format!(
                "the bearer token was rejected: {reason}"
            ))),
            Err(TokenError::Unavailable(reason) | TokenError::Throttled(reason)) => {
                Err(Failure::unavailable(format!(
                    "the bearer token cannot be checked right now, retry later: {reason}"
                )))
            }
        }
    }
}

fn proxy_principal(peer: &CertIdentity) -> Result<Principal, Failure> {
    if peer.is_proxy() && !peer.user.is_empty() {
        return Ok(Principal::Proxy {
            server_id: peer.user.clone(),
        });
    }
    Err(Failure::forbidden(format!(
        "the client certificate (CN={:?}, groups {:?}) is not a proxy certificate: the lock view \
         needs one issued by the Deadbolt CA for a proxy (organization {PROXY_ORGANIZATION:?})",
        peer.user, peer.groups,
    )))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(header: &HeaderValue) -> Option<&str> {
    let value = header.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_testkit::FakeTokens;
    use http::StatusCode;

    fn authenticator() -> Authenticator {
        let tokens = FakeTokens::rejecting_unknown_with("token has expired");
        tokens.add("good", "alice", &[]);
        tokens.fail("down", TokenError::Unavailable("connection refused".into()));
        Authenticator::new(Some(tokens.checker()))
    }

    async fn header(value: &str) -> Result<Principal, Failure> {
        let value = HeaderValue::from_str(value).unwrap();
        authenticator().authenticate(None, Some(&value), None).await
    }

    #[tokio::test]
    async fn bearer_tokens_are_checked() {
        assert_eq!(header("Bearer good").await.unwrap().key(), "token:alice");
        let rejected = header("Bearer bad").await.unwrap_err();
        assert_eq!(rejected.code, StatusCode::UNAUTHORIZED);
        assert!(rejected.message.contains("token has expired"));
        assert!(!rejected.message.contains("bad"), "never echo the token");
        assert_eq!(
            header("Bearer down").await.unwrap_err().code,
            StatusCode::SERVICE_UNAVAILABLE
        );
        for malformed in ["Basic abc", "Bearer", "Bearer   ", "good"] {
            let failure = header(malformed).await.unwrap_err();
            assert_eq!(failure.code, StatusCode::UNAUTHORIZED, "{malformed}");
        }
    }

    #[tokio::test]
    async fn no_credentials_is_401_with_guidance() {
        let failure = authenticator()
            .authenticate(None, None, None)
            .await
            .unwrap_err();
        assert_eq!(failure.code, StatusCode::UNAUTHORIZED);
        assert!(failure.message.contains("client certificate"));
    }

    #[tokio::test]
    async fn tokens_without_a_checker_are_refused() {
        let value = HeaderValue::from_static("Bearer good");
        let failure = Authenticator::new(None)
            .authenticate(None, Some(&value), None)
            .await
            .unwrap_err();
        assert_eq!(failure.code, StatusCode::UNAUTHORIZED);
        assert!(failure.message.contains("without Kubernetes"));
    }

    #[tokio::test]
    async fn only_proxy_certificates_may_subscribe() {
        let proxy = CertIdentity {
            user: "proxy-1".into(),
            groups: vec![PROXY_ORGANIZATION.into()],
            ..Default::default()
        };
        assert_eq!(
            authenticator().authenticate(Some(&proxy), None, None).await,
            Ok(Principal::Proxy {
                server_id: "proxy-1".into()
            })
        );
        let user = CertIdentity {
            user: "alice".into(),
            groups: vec!["dev".into()],
            ..Default::default()
        };
        let failure = authenticator()
            .authenticate(Some(&user), None, None)
            .await
            .unwrap_err();
        assert_eq!(failure.code, StatusCode::FORBIDDEN);
    }
}
