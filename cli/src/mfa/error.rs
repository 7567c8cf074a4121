//! What can go wrong talking to the MFA service or driving a security key.
//! One type for the whole module so callers (the commands and the end-to-end
//! tests) match on one thing, and each variant reads as one clear line.

use std::path::PathBuf;

/// Everything the MFA client, the authenticator and the credential cache can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// The service URL, CA or caller credential is unusable (checked before connecting).
    #[error("{0}")]
    Config(String),
    /// The TCP or TLS connection to the MFA service failed.
    #[error("cannot connect to the MFA service at {url}: {reason}")]
    Connect {
        /// The service URL.
        url: String,
        /// Why (the transport error chain).
        reason: String,
    },
    /// The HTTP/2 connection broke or a request timed out.
    #[error("MFA service at {url}: {reason}")]
    Transport {
        /// The service URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The service refused the request with a Kubernetes `Status` (its message is shown as is).
    #[error("the MFA service refused the request: {message}")]
    Refused {
        /// The HTTP status code.
        code: u16,
        /// The `Status` message.
        message: String,
    },
    /// The service answered something that is not what the contract says.
    #[error("malformed answer from the MFA service ({what}): {reason}")]
    Malformed {
        /// Which answer.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The security key failed or refused the ceremony.
    #[error("security key: {0}")]
    Authenticator(String),
    /// The soft token file could not be read, created or saved.
    #[error("soft token {}: {reason}", path.display())]
    SoftToken {
        /// The `--soft-token` file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A file (credential, key, CA, cache entry) could not be read or written.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl MfaError {
    /// The `Status` code of a refusal, if this is one.
    pub fn refusal_code(&self) -> Option<u16> {
        match self {
            MfaError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, error: impl std::fmt::Display) -> Self {
        MfaError::File {
            path: path.into(),
            reason: error.to_string(),
        }
    }
}
