//! Who is on the other end of a TLS connection, from its verified client certificate.

use rustls::pki_types::CertificateDer;

/// The subject of a client certificate rustls has already verified against
/// the Deadbolt CA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's common name: a proxy's server id.
    pub common_name: Option<String>,
    /// The subject's organizations: Kubernetes-style groups.
    pub organizations: Vec<String>,
}

impl PeerIdentity {
    /// Reads the subject of a DER certificate.
    pub fn from_der(der: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|error| format!("the client certificate does not parse: {error}"))?;
        let subject = cert.subject();
        let text = |value: &x509_parser::x509::AttributeTypeAndValue<'_>| {
            value.as_str().ok().map(str::to_string)
        };
        Ok(Self {
            common_name: subject.iter_common_name().find_map(text),
            organizations: subject.iter_organization().filter_map(text).collect(),
        })
    }

    /// The identity of a finished TLS handshake's client, if it presented a certificate.
    pub fn from_connection(connection: &rustls::ServerConnection) -> Option<Result<Self, String>> {
        let leaf = connection.peer_certificates()?.first()?;
        Some(Self::from_der(leaf))
    }
}
