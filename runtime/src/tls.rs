//! rustls set-up shared by the operator and the proxies: PEM loading, serving
//! configs that verify Deadbolt client certificates, and client configs that
//! trust the Deadbolt CA. Every config uses ring explicitly, like kube's client,
//! so no process-wide crypto provider is needed.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS could not be configured; the message names the file or the problem.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The crypto provider every config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process default for libraries that rely on one (kube's
/// client). Harmless when a default is already installed.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every certificate in a PEM document.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError(format!("invalid certificate PEM: {error}")))?;
    if certs.is_empty() {
        return Err(TlsError("no certificate found in the PEM".into()));
    }
    Ok(certs)
}

/// The first private key in a PEM document.
pub fn parse_private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|error| TlsError(format!("invalid private key PEM: {error}")))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path)
        .map_err(|error| TlsError(format!("cannot read {}: {error}", path.display())))
}

/// A root store holding the certificates of a PEM document (the Deadbolt CA).
pub fn root_store(pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certificates(pem)? {
        roots
            .add(cert)
            .map_err(|error| TlsError(format!("not a usable CA certificate: {error}")))?;
    }
    Ok(Arc::new(roots))
}

/// A root store from a PEM file.
pub fn root_store_from_file(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    root_store(&read(path)?).map_err(|TlsError(m)| TlsError(format!("{}: {m}", path.display())))
}

/// A certificate chain with its private key: what a listener presents, or a client proves itself with.
#[derive(Debug)]
pub struct CertifiedKey {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for CertifiedKey {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl CertifiedKey {
    /// From PEM text.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        Ok(Self {
            chain: parse_certificates(cert)?,
            key: parse_private_key(key)?,
        })
    }

    /// From a certificate file and a key file.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Self::from_pem(&read(cert)?, &read(key)?)
            .map_err(|TlsError(message)| TlsError(format!("{}: {message}", cert.display())))
    }
}

/// Whether a listener asks for client certificates.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No client certificates.
    None,
    /// Certificates are optional (bearer tokens or passwords may be used
    /// instead); one that is presented must chain to these roots.
    Optional(Arc<RootCertStore>),
    /// A certificate chaining to these roots is required.
    Required(Arc<RootCertStore>),
}

/// A listener's config with `identity` as its certificate and the given ALPN protocols.
pub fn server_config(
    identity: CertifiedKey,
    client_auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError(error.to_string()))?;
    let optional = matches!(client_auth, ClientAuth::Optional(_));
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(roots) | ClientAuth::Required(roots) => {
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            if optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|error| TlsError(format!("cannot verify client certificates: {error}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(identity.chain, identity.key)
        .map_err(|error| TlsError(format!("the serving certificate is not usable: {error}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// What a client trusts and, optionally, proves itself with.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The roots server certificates must chain to.
    pub roots: Arc<RootCertStore>,
    /// A client certificate to present.
    pub identity: Option<CertifiedKey>,
}

impl ClientTls {
    /// A client config speaking the given ALPN protocols.
    pub fn config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError(error.to_string()))?
            .with_root_certificates(self.roots.clone());
        let mut config = match &self.identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(|error| {
                    TlsError(format!("the client certificate is not usable: {error}"))
                })?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_pem_is_a_clear_error() {
        let error = parse_certificates(b"not pem").unwrap_err();
        assert!(error.to_string().contains("no certificate"), "{error}");
        assert!(parse_private_key(b"").is_err());
        assert!(
            root_store(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
    }
}
