//! The Deadbolt CA: signs the operator's serving certificate and the client
//! certificates proxies subscribe with (and, later, users' short-lived certificates).
//!
//! Where the CA's key lives is a [`CaStore`]: a Secret in Kubernetes, two
//! files in standalone mode.

mod store;

pub use store::{
    CaPem, CaStore, Created, DirCaStore, SECRET_NAME, SecretCaStore, init, load_existing,
    load_or_create,
};

use std::time::Duration;

use deadbolt_api::credential::{CertIdentity, ca_common_name};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use std::sync::Arc;

use deadbolt_runtime::tls::{CertifiedKey, TlsError};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

/// The organization (the Kubernetes "group") of proxy client certificates: a
/// certificate from the Deadbolt CA may subscribe to the lock view only if it has it.
pub use deadbolt_api::credential::PROXY_GROUP as PROXY_ORGANIZATION;

/// The start of the CA certificate's common name; a per-CA id follows.
pub const CA_COMMON_NAME: &str = "Deadbolt CA";

/// How long a generated CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Backdating of issued certificates, to tolerate clocks a little behind ours.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Why the CA could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The certificate or key is not usable.
    #[error("invalid Deadbolt CA: {0}")]
    Invalid(String),
    /// Generating or signing failed.
    #[error("could not issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// The request for a certificate is not acceptable.
    #[error("cannot issue a certificate for {name:?}: {reason}")]
    BadName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Reading or writing the CA's store failed.
    #[error("Deadbolt CA store {store}: {message}")]
    Store {
        /// Which store.
        store: String,
        /// What went wrong.
        message: String,
    },
}

/// The CA: its certificate and the key that signs with it.
pub struct DeadboltCa {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DeadboltCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadboltCa").finish_non_exhaustive()
    }
}

/// A certificate the CA issued, with its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl IssuedCert {
    /// The certificate and key, ready for a TLS config.
    pub fn certified_key(&self) -> Result<CertifiedKey, TlsError> {
        CertifiedKey::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
    }
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl DeadboltCa {
    /// A new self-signed CA.
    pub fn generate() -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            ca_common_name(CA_COMMON_NAME, key.public_key_raw()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "deadbolt");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) =
            validity_at(OffsetDateTime::now_utc(), CA_VALIDITY)?;
        let cert = params.self_signed(&key)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// The CA from its PEM certificate and key, checking that they belong
    /// together and that the certificate is a CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let invalid = |message: String| CaError::Invalid(message);
        let key = KeyPair::from_pem(key_pem)
            .map_err(|error| invalid(format!("the key does not parse: {error}")))?;
        let cert_der = deadbolt_runtime::tls::parse_certificates(cert_pem.as_bytes())
            .map_err(|error| invalid(error.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| invalid("no certificate in the PEM".into()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|error| invalid(format!("the certificate does not parse: {error}")))?;
        if !parsed.is_ca() {
            return Err(invalid("the certificate is not a CA certificate".into()));
        }
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(invalid("the key does not match the certificate".into()));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|error| invalid(format!("the certificate cannot issue: {error}")))?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            cert_der,
            issuer,
        })
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM: only for its store.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A root store holding just this CA, to verify the certificates it issued.
    pub fn root_store(&self) -> Result<Arc<RootCertStore>, TlsError> {
        deadbolt_runtime::tls::root_store(self.cert_pem.as_bytes())
    }

    /// A client certificate for the proxy `server_id`, which it presents to
    /// subscribe to the lock view: CN is the server id, O is [`PROXY_ORGANIZATION`].
    pub fn issue_proxy_cert(
        &self,
        server_id: &str,
        valid_for: Duration,
    ) -> Result<IssuedCert, CaError> {
        check_name(server_id)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, server_id);
        params
            .distinguished_name
            .push(DnType::OrganizationName, PROXY_ORGANIZATION);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, valid_for)
    }

    /// A short-lived client certificate carrying a user's identity (CN user,
    /// `deadbolt:` URIs for groups, roles, MFA device, device and access
    /// requests, as `deadbolt_api::credential` lays out), which the proxies accept.
    pub fn issue_user_cert(
        &self,
        identity: &CertIdentity,
        valid_for: Duration,
    ) -> Result<IssuedCert, CaError> {
        let params = user_params(identity)?;
        self.sign(params, valid_for)
    }

    /// A user certificate for a public key the client holds the private key
    /// of (SubjectPublicKeyInfo, PEM), valid from `now` (less the clock-skew
    /// allowance) for `valid_for`: the MFA service's session credentials.
    /// Returns the certificate, PEM.
    pub fn issue_user_cert_for_key(
        &self,
        identity: &CertIdentity,
        public_key_pem: &str,
        now: jiff::Timestamp,
        valid_for: Duration,
    ) -> Result<String, CaError> {
        let key = rcgen::SubjectPublicKeyInfo::from_pem(public_key_pem).map_err(|_| {
            CaError::BadName {
                name: identity.user.clone(),
                reason: "the public key is not a PEM SubjectPublicKeyInfo",
            }
        })?;
        let mut params = user_params(identity)?;
        let now =
            OffsetDateTime::from_unix_timestamp(now.as_second()).map_err(|_| CaError::BadName {
                name: identity.user.clone(),
                reason: "the time is out of range",
            })?;
        (params.not_before, params.not_after) = validity_at(now, valid_for)?;
        params.use_authority_key_identifier_extension = true;
        Ok(params.signed_by(&key, &self.issuer)?.pem())
    }

    /// A serving certificate for these DNS names and IP addresses.
    pub fn issue_serving_cert(
        &self,
        names: &[String],
        valid_for: Duration,
    ) -> Result<IssuedCert, CaError> {
        let first = names.first().ok_or(CaError::BadName {
            name: String::new(),
            reason: "a serving certificate needs at least one name",
        })?;
        for name in names {
            check_name(name)?;
        }
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, valid_for)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        valid_for: Duration,
    ) -> Result<IssuedCert, CaError> {
        (params.not_before, params.not_after) = validity_at(OffsetDateTime::now_utc(), valid_for)?;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A user certificate's subject and extensions: CN the user, the rest as URIs.
fn user_params(identity: &CertIdentity) -> Result<CertificateParams, CaError> {
    check_name(&identity.user)?;
    if identity.is_proxy() {
        return Err(CaError::BadName {
            name: identity.user.clone(),
            reason: "a user certificate cannot carry the proxies' group",
        });
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, identity.user.as_str());
    // Groups travel as URIs: a subject here holds one organization only.
    for uri in identity.uris() {
        let uri = uri.try_into().map_err(|_| CaError::BadName {
            name: identity.user.clone(),
            reason: "a group, role, device or request name is not a valid URI",
        })?;
        params.subject_alt_names.push(SanType::URI(uri));
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn check_name(name: &str) -> Result<(), CaError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 253 {
        "it is longer than 253 bytes"
    } else if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        "it contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(CaError::BadName {
        name: name.to_string(),
        reason,
    })
}

fn validity_at(
    now: OffsetDateTime,
    valid_for: Duration,
) -> Result<(OffsetDateTime, OffsetDateTime), CaError> {
    let out_of_range = || CaError::BadName {
        name: format!("{valid_for:?}"),
        reason: "the validity period is out of range",
    };
    let skew = time::Duration::try_from(CLOCK_SKEW).map_err(|_| out_of_range())?;
    let valid_for = time::Duration::try_from(valid_for).map_err(|_| out_of_range())?;
    let not_before = now.checked_sub(skew).ok_or_else(out_of_range)?;
    let not_after = now.checked_add(valid_for).ok_or_else(out_of_range)?;
    Ok((not_before, not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_ca_round_trips_through_pem() {
        let ca = DeadboltCa::generate().unwrap();
        let again = DeadboltCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(again.cert_der(), ca.cert_der());
    }

    #[test]
    fn a_key_from_another_ca_is_refused() {
        let ca = DeadboltCa::generate().unwrap();
        let other = DeadboltCa::generate().unwrap();
        let error = DeadboltCa::from_pem(ca.cert_pem(), other.key_pem()).unwrap_err();
        assert!(error.to_string().contains("does not match"), "{error}");
    }

    #[test]
    fn a_leaf_certificate_is_not_a_ca() {
        let ca = DeadboltCa::generate().unwrap();
        let leaf = ca
            .issue_proxy_cert("proxy-1", Duration::from_secs(60))
            .unwrap();
        let error = DeadboltCa::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
        assert!(error.to_string().contains("not a CA"), "{error}");
    }

    #[test]
    fn proxy_certificates_carry_the_server_id_and_proxy_group() {
        let ca = DeadboltCa::generate().unwrap();
        let issued = ca
            .issue_proxy_cert("kube-proxy-1", Duration::from_secs(3600))
            .unwrap();
        let der = deadbolt_runtime::tls::parse_certificates(issued.cert_pem.as_bytes()).unwrap();
        let peer = deadbolt_runtime::certificate::identity(&der[0]).unwrap();
        assert_eq!(peer.user, "kube-proxy-1");
        assert_eq!(peer.groups, vec![PROXY_ORGANIZATION.to_string()]);
        assert!(peer.is_proxy());
    }

    #[test]
    fn bad_names_are_refused() {
        let ca = DeadboltCa::generate().unwrap();
        for name in ["", "two words", "line\nbreak"] {
            assert!(matches!(
                ca.issue_proxy_cert(name, Duration::from_secs(60)),
                Err(CaError::BadName { .. })
            ));
        }
        assert!(ca.issue_serving_cert(&[], Duration::from_secs(60)).is_err());
    }
}
