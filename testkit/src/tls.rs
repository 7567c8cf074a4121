//! TLS for servers a test runs on loopback (a fake kube-apiserver, a server
//! that answers garbage): a throwaway CA and a serving config for
//! `localhost`/`127.0.0.1`, so a test states only what its server speaks.
//!
//! Tests that need the operator's own certificates (proxy or user
//! certificates, its subject conventions) use `DeadboltCa` instead; this CA
//! only serves, and clients trust it through [`TestCa::cert_pem`].

use std::sync::Arc;

use deadbolt_api::credential::ca_common_name;
use deadbolt_runtime::tls::{self, CertifiedKey, ClientAuth, TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::{RootCertStore, ServerConfig};

/// The names a loopback server's certificate carries.
pub const LOCALHOST: [&str; 2] = ["localhost", "127.0.0.1"];

/// A self-signed CA for one test's servers.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A new CA. Its name carries part of its key, so two CAs never share a
    /// subject: a certificate from the other one fails as an unknown issuer.
    ///
    /// # Panics
    /// If key generation or signing fails.
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("generate a CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            ca_common_name("deadbolt test CA", key.public_key_raw()),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA as a root store (a `Result`, as `DeadboltCa::root_store` is, so
    /// code written against either reads the same).
    pub fn root_store(&self) -> Result<Arc<RootCertStore>, TlsError> {
        tls::root_store(self.cert_pem.as_bytes())
    }

    /// A serving certificate for these DNS names and IP addresses, with its key.
    ///
    /// # Panics
    /// If a name is not a valid DNS name or IP address, or signing fails.
    pub fn serving_key(&self, names: &[&str]) -> CertifiedKey {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("valid serving names");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate a serving key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the serving certificate");
        CertifiedKey::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .expect("a certificate and key just issued parse")
    }

    /// A server config for a loopback server: a [`LOCALHOST`] certificate
    /// from this CA, no client certificates, and these ALPN protocols.
    ///
    /// # Panics
    /// If the config cannot be built.
    pub fn localhost_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        tls::server_config(self.serving_key(&LOCALHOST), ClientAuth::None, alpn)
            .expect("a serving config from a fresh certificate")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_runtime::tls::ClientTls;
    use rustls::{ClientConnection, ServerConnection};

    /// Runs a handshake in memory between a client trusting `trusted` and a
    /// localhost server of `serving`.
    fn handshake(trusted: &TestCa, serving: &TestCa) -> Result<(), rustls::Error> {
        let client_config = ClientTls {
            roots: trusted.root_store().unwrap(),
            identity: None,
        }
        .config(&[b"h2"])
        .unwrap();
        let mut client =
            ClientConnection::new(client_config, "localhost".try_into().unwrap()).unwrap();
        let mut server = ServerConnection::new(serving.localhost_config(&[b"h2"])).unwrap();
        while client.is_handshaking() || server.is_handshaking() {
            let mut bytes = Vec::new();
            client.write_tls(&mut bytes).unwrap();
            server.read_tls(&mut bytes.as_slice()).unwrap();
            server.process_new_packets()?;
            bytes.clear();
            server.write_tls(&mut bytes).unwrap();
            client.read_tls(&mut bytes.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        assert_eq!(client.alpn_protocol(), Some(&b"h2"[..]));
        Ok(())
    }

    #[test]
    fn a_client_trusting_the_ca_accepts_its_localhost_server() {
        let ca = TestCa::new();
        handshake(&ca, &ca).unwrap();
    }

    #[test]
    fn a_client_trusting_another_ca_refuses_the_server_as_of_an_unknown_issuer() {
        let error = handshake(&TestCa::new(), &TestCa::new()).unwrap_err();
        assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    }
}
