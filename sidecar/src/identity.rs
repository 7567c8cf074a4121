//! Who is connecting: a client certificate from the Deadbolt CA (already
//! verified by rustls during the handshake), or a password that is a
//! Kubernetes bearer token, checked with a (cached) TokenReview.

use std::net::SocketAddr;
use std::sync::Arc;

use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::certificate;
use deadbolt_runtime::token::{TokenChecker, TokenError};
use rustls::pki_types::CertificateDer;

pub use deadbolt_runtime::certificate::Validity;

/// Why a client could not be identified. The text reaches the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The certificate could not be read, or names no user.
    #[error("invalid client certificate: {0}")]
    Certificate(String),
    /// A proxy's certificate was used to log in.
    #[error("a proxy certificate cannot be used to open a session")]
    ProxyCertificate,
    /// No certificate and an empty password.
    #[error(
        "no credentials: present a client certificate from the Deadbolt CA, or use a Kubernetes bearer token as the password"
    )]
    Missing,
    /// Tokens are not accepted by this proxy.
    #[error("password authentication is not configured on this proxy: use a client certificate")]
    TokensDisabled,
    /// The token was rejected.
    #[error("token rejected: {0}")]
    Rejected(String),
    /// The token could not be checked.
    #[error("cannot check the token right now: {0}")]
    Unavailable(String),
    /// Too many tokens from this address failed lately.
    #[error("{0}")]
    Throttled(String),
}

/// Turns a verified client certificate or a password into an identity.
#[derive(Clone, Default)]
pub struct Authenticator {
    tokens: Option<Arc<dyn TokenChecker>>,
}

impl Authenticator {
    /// An authenticator; without a token checker only certificates are accepted.
    pub fn new(tokens: Option<Arc<dyn TokenChecker>>) -> Self {
        Self { tokens }
    }

    /// The identity in a client certificate the TLS layer has verified.
    pub fn from_certificate(
        &self,
        certificate: &CertificateDer<'_>,
    ) -> Result<CertIdentity, AuthError> {
        let identity = certificate_identity(certificate)?;
        if identity.is_proxy() {
            return Err(AuthError::ProxyCertificate);
        }
        Ok(identity)
    }

    /// The identity behind a password that is a bearer token, sent from `source`.
    pub async fn from_password(
        &self,
        password: &str,
        source: Option<SocketAddr>,
    ) -> Result<CertIdentity, AuthError> {
        let token = password.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let checker = self.tokens.as_ref().ok_or(AuthError::TokensDisabled)?;
        match checker.check(token, source.map(|addr| addr.ip())).await {
            Ok(user) => Ok(CertIdentity {
                user: user.username,
                groups: user.groups,
                ..Default::default()
            }),
            Err(TokenError::Rejected(reason)) => Err(AuthError::Rejected(reason)),
            Err(TokenError::Unavailable(reason)) => Err(AuthError::Unavailable(reason)),
            Err(TokenError::Throttled(reason)) => Err(AuthError::Throttled(reason)),
        }
    }

    /// A database client's identity: its certificate when it presented one,
    /// otherwise the password `ask` reads from it. `Err` is a wire error while
    /// asking, which ends the login without an answer about the identity.
    pub async fn certificate_or_password<E>(
        &self,
        certificate: Option<&CertificateDer<'_>>,
        source: Option<SocketAddr>,
        ask: impl Future<Output = Result<String, E>>,
    ) -> Result<Result<CertIdentity, AuthError>, E> {
        Ok(match certificate {
            Some(certificate) => self.from_certificate(certificate),
            None => self.from_password(&ask.await?, source).await,
        })
    }
}

/// Reads CN, organizations and URI SANs, the layout `deadbolt_api::credential` defines.
pub fn certificate_identity(certificate: &CertificateDer<'_>) -> Result<CertIdentity, AuthError> {
    certificate::identity(certificate).map_err(AuthError::Certificate)
}

/// A certificate's validity period.
pub fn certificate_validity(certificate: &CertificateDer<'_>) -> Result<Validity, AuthError> {
    certificate::validity(certificate).map_err(AuthError::Certificate)
}
