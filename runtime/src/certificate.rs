//! Reading a client certificate that rustls has already verified: the
//! identity it carries (the layout `deadbolt_api::credential` defines) and
//! when it may be used. One reader, so the operator's MFA service and every
//! proxy see the same identity in the same certificate.

use deadbolt_api::credential::CertIdentity;
use jiff::Timestamp;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// When a certificate may be used: rustls checks it at the handshake, and a
/// long-lived connection checks it again at each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before.
    pub not_before: Timestamp,
    /// Not valid after.
    pub not_after: Timestamp,
}

/// The identity in a certificate: CN, organizations and URI SANs. The error
/// says what is wrong with it, for the client.
pub fn identity(certificate: &CertificateDer<'_>) -> Result<CertIdentity, String> {
    let (_, parsed) = X509Certificate::from_der(certificate.as_ref())
        .map_err(|error| format!("cannot parse it: {error}"))?;
    let subject = parsed.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| "it has no subject common name (the user)".to_string())?;
    let organizations: Vec<&str> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .collect();
    let mut uris = Vec::new();
    if let Ok(Some(names)) = parsed.subject_alternative_name() {
        for name in &names.value.general_names {
            if let GeneralName::URI(uri) = name {
                uris.push(*uri);
            }
        }
    }
    Ok(CertIdentity::from_parts(common_name, organizations, uris))
}

/// A certificate's validity period.
pub fn validity(certificate: &CertificateDer<'_>) -> Result<Validity, String> {
    let (_, parsed) = X509Certificate::from_der(certificate.as_ref())
        .map_err(|error| format!("cannot parse it: {error}"))?;
    let validity = parsed.validity();
    let at = |time: x509_parser::time::ASN1Time| {
        Timestamp::from_second(time.timestamp())
            .map_err(|error| format!("its validity is out of range: {error}"))
    };
    Ok(Validity {
        not_before: at(validity.not_before)?,
        not_after: at(validity.not_after)?,
    })
}
