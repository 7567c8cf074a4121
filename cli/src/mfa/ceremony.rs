//! The two ceremonies end to end: registering a security key, and passing an
//! MFA check to get a short-lived client certificate. Each runs `begin` and
//! `finish` on the one connection of the [`MfaClient`] it is given.
//!
//! For a login the key pair is made here and only its public half is sent, so
//! the private key of the session credential never leaves this machine. The
//! answer is checked before it is used: the certificate must be for that key,
//! and the CA must parse.

use deadbolt_api::mfa::service::{AuthenticateFinish, Device, RegisterFinish};
use jiff::Timestamp;
use rcgen::KeyPair;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::sign::CertifiedKey;

use super::client::parse_certificates;
use super::{Authenticator, MfaClient, MfaError};

pub use deadbolt_api::mfa::service::{MAX_DEVICE_NAME, check_device_name};

/// A session credential, ready to use: what `kubectl deadbolt login --mfa` hands out.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedLogin {
    /// The client certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM), made on this machine.
    pub key_pem: String,
    /// The Deadbolt CA (PEM) that proxies' serving certificates chain to.
    pub ca_pem: String,
    /// When the certificate stops starting new sessions.
    pub expires_at: Timestamp,
    /// The UUID of the device that passed the check.
    pub mfa_device: String,
}

impl std::fmt::Debug for IssuedLogin {
    /// Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedLogin")
            .field("expires_at", &self.expires_at)
            .field("mfa_device", &self.mfa_device)
            .finish_non_exhaustive()
    }
}

/// Registers the key behind `authenticator` as a device called `name`.
pub async fn register(
    client: &MfaClient,
    authenticator: &mut Authenticator,
    name: &str,
) -> Result<Device, MfaError> {
    let challenge = client.begin_registration(name).await?;
    let credential = authenticator.register(&challenge.challenge).await?;
    let device = client
        .finish_registration(&RegisterFinish {
            ceremony: challenge.ceremony,
            credential,
        })
        .await?;
    if device.uuid.trim().is_empty() {
        return Err(MfaError::Malformed {
            what: "registered device",
            reason: "the device has no UUID".into(),
        });
    }
    Ok(device)
}

/// Passes an MFA check with `authenticator` and gets a session credential for
/// a fresh local key pair, narrowed to proxy `target` when given.
pub async fn login(
    client: &MfaClient,
    authenticator: &mut Authenticator,
    target: Option<String>,
) -> Result<IssuedLogin, MfaError> {
    let challenge = client.begin_authentication().await?;
    let assertion = authenticator.authenticate(&challenge.challenge).await?;
    let key = KeyPair::generate()
        .map_err(|error| MfaError::Config(format!("generating a key pair: {error}")))?;
    let credential = client
        .finish_authentication(&AuthenticateFinish {
            ceremony: challenge.ceremony,
            assertion,
            public_key_pem: key.public_key_pem(),
            target,
        })
        .await?;
    let issued = IssuedLogin {
        cert_pem: credential.certificate_pem,
        key_pem: key.serialize_pem(),
        ca_pem: credential.ca_pem,
        expires_at: credential.expires_at,
        mfa_device: credential.mfa_device,
    };
    check_issued(&issued)?;
    Ok(issued)
}

/// The certificate is for our key and the CA is a certificate: anything else
/// is a malformed answer, caught here rather than by psql or kubectl later.
pub fn check_issued(issued: &IssuedLogin) -> Result<(), MfaError> {
    let malformed = |reason: String| MfaError::Malformed {
        what: "session credential",
        reason,
    };
    let chain = parse_certificates(&issued.cert_pem, "the certificate")
        .map_err(|error| malformed(error.to_string()))?;
    parse_certificates(&issued.ca_pem, "the CA").map_err(|error| malformed(error.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|error| malformed(format!("the private key: {error}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| malformed(format!("the private key: {error}")))?;
    CertifiedKey::new(chain, signing_key)
        .keys_match()
        .map_err(|error| {
            malformed(format!(
                "the certificate is not for the key this client sent: {error}"
            ))
        })?;
    if issued.mfa_device.trim().is_empty() {
        return Err(malformed("it names no MFA device".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, Issuer};

    fn issued_for(key: &KeyPair, subject_key: &KeyPair) -> IssuedLogin {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let cert = CertificateParams::new(vec!["alice".to_string()])
            .unwrap()
            .signed_by(subject_key, &issuer)
            .unwrap();
        IssuedLogin {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: ca.pem(),
            expires_at: Timestamp::UNIX_EPOCH,
            mfa_device: "d6c06a18-e147-4232-9dfe-6f83a28d5850".into(),
        }
    }

    #[test]
    fn the_certificate_must_be_for_our_key() {
        let key = KeyPair::generate().unwrap();
        assert!(check_issued(&issued_for(&key, &key)).is_ok());
        let other = KeyPair::generate().unwrap();
        let error = check_issued(&issued_for(&key, &other)).unwrap_err();
        assert!(error.to_string().contains("not for the key"), "{error}");
        let mut garbage = issued_for(&key, &key);
        garbage.ca_pem = "garbage".into();
        assert!(matches!(
            check_issued(&garbage),
            Err(MfaError::Malformed { .. })
        ));
        assert!(!format!("{garbage:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn device_names_are_checked_locally() {
        assert!(check_device_name("yubikey").is_ok());
        assert!(check_device_name("").is_err());
        assert!(check_device_name(&"x".repeat(65)).is_err());
        assert!(check_device_name(&"é".repeat(64)).is_ok());
        assert!(check_device_name("a\nb").is_err());
    }
}
