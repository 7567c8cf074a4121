//! The MFA service's client: one TLS connection, one HTTP/2 session, every
//! request of a command sent over it.
//!
//! One connection is not a detail: a ceremony's state lives in the replica
//! that began it, and a Kubernetes Service balances per connection, so `begin`
//! and `finish` must travel together. The server is verified against the
//! Deadbolt CA only (never the system roots), and the caller proves who it is
//! with a bearer token or a client certificate ([`Caller`]).
//!
//! The methods map one-to-one onto the contract in
//! [`deadbolt_api::mfa::service`] and stay low-level on purpose, so tests can
//! send replayed or tampered ceremonies; [`super::register`] and
//! [`super::login`] are the everyday entry points.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadbolt_api::mfa::service::{
    AUTHENTICATE_BEGIN_PATH, AUTHENTICATE_FINISH_PATH, AuthenticateFinish, Challenge, DEVICES_PATH,
    Device, Devices, REGISTER_BEGIN_PATH, REGISTER_FINISH_PATH, Refusal, RegisterBegin,
    RegisterFinish, SessionCredential, WHOAMI_PATH, WhoAmI,
};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use url::{Host, Url};

use super::MfaError;

/// How long connecting (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long one request may wait for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer read from the service; its answers are small JSON documents.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// How much of a non-`Status` error body is quoted in the error.
const QUOTED_BODY_CHARS: usize = 200;

/// Where the MFA service is, how to trust it and who is calling.
#[derive(Clone, Debug)]
pub struct MfaService {
    /// `https://HOST[:PORT][/PREFIX]`; the contract's paths are appended to it.
    pub url: String,
    /// The Deadbolt CA (PEM) the service's certificate chains to.
    pub ca_pem: String,
    /// The caller's credential.
    pub caller: Caller,
}

/// How the caller authenticates to the MFA service.
#[derive(Clone, PartialEq, Eq)]
pub enum Caller {
    /// A Kubernetes bearer token (the service checks it with a TokenReview).
    Token(String),
    /// A Deadbolt client certificate, presented in the TLS handshake.
    Certificate {
        /// The certificate chain (PEM), leaf first.
        cert_pem: String,
        /// Its private key (PEM).
        key_pem: String,
    },
}

impl fmt::Debug for Caller {
    /// Never prints the token or the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Token(_) => f.write_str("Token(<redacted>)"),
            Caller::Certificate { .. } => f.write_str("Certificate { .. }"),
        }
    }
}

impl Caller {
    /// A SHA-256 (hex) standing for this caller, for naming cache entries
    /// without storing the token or the key: the token's hash, or the
    /// certificate's (a certificate names one identity whatever key is used).
    pub fn fingerprint(&self) -> String {
        match self {
            Caller::Token(token) => sha256_hex(&[b"token\0", token.as_bytes()]),
            Caller::Certificate { cert_pem, .. } => {
                sha256_hex(&[b"certificate\0", cert_pem.trim().as_bytes()])
            }
        }
    }
}

/// SHA-256 of the concatenated `parts`, in lowercase hex. rustls's ring
/// provider supplies the hash, so no extra crypto crate is needed.
pub(crate) fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut data = Vec::new();
    for part in parts {
        data.extend_from_slice(part);
    }
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let hash = match suite.tls13() {
        Some(suite) => suite.common.hash_provider.hash(&data),
        // Not reachable: the constant is a TLS 1.3 suite. Fall back to
        // something stable rather than panicking.
        None => return data.iter().map(|byte| format!("{byte:02x}")).collect(),
    };
    hash.as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A connection to the MFA service. Dropping it closes the connection.
pub struct MfaClient {
    /// The URL requests are built from (scheme, authority, path prefix).
    base: Url,
    /// `Bearer ...` for a token caller.
    authorization: Option<HeaderValue>,
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl fmt::Debug for MfaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MfaClient")
            .field("url", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Drop for MfaClient {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The checked pieces of an [`MfaService`], before any I/O.
struct Endpoint {
    base: Url,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

/// Checks an MFA service URL without connecting: `https`, a host, no
/// credentials, query or fragment.
pub fn check_url(url: &str) -> Result<(), MfaError> {
    endpoint(url).map(drop)
}

fn endpoint(url: &str) -> Result<Endpoint, MfaError> {
    let base = Url::parse(url)
        .map_err(|error| MfaError::Config(format!("invalid MFA service URL {url:?}: {error}")))?;
    if base.scheme() != "https" {
        return Err(MfaError::Config(format!(
            "invalid MFA service URL {url:?}: it must start with https://"
        )));
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err(MfaError::Config(format!(
            "invalid MFA service URL {url:?}: credentials do not belong in the URL"
        )));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(MfaError::Config(format!(
            "invalid MFA service URL {url:?}: it must not have a query or a fragment"
        )));
    }
    let port = base.port_or_known_default().unwrap_or(443);
    let (host, server_name) = match base.host() {
        Some(Host::Domain(domain)) => {
            let name = ServerName::try_from(domain.to_string()).map_err(|error| {
                MfaError::Config(format!("invalid MFA service host {domain:?}: {error}"))
            })?;
            (domain.to_string(), name)
        }
        Some(Host::Ipv4(ip)) => (ip.to_string(), ServerName::IpAddress(ip.into())),
        Some(Host::Ipv6(ip)) => (ip.to_string(), ServerName::IpAddress(ip.into())),
        None => {
            return Err(MfaError::Config(format!(
                "invalid MFA service URL {url:?}: it has no host"
            )));
        }
    };
    Ok(Endpoint {
        base,
        host,
        port,
        server_name,
    })
}

/// The rustls config: the Deadbolt CA as the only root, ALPN h2, and the
/// caller's certificate when it has one.
fn tls_config(service: &MfaService) -> Result<ClientConfig, MfaError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in parse_certificates(&service.ca_pem, "the MFA service CA")? {
        roots.add(cert).map_err(|error| {
            MfaError::Config(format!(
                "the MFA service CA is not a usable CA certificate: {error}"
            ))
        })?;
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| MfaError::Config(format!("TLS set-up: {error}")))?
        .with_root_certificates(roots);
    let mut config = match &service.caller {
        Caller::Token(_) => builder.with_no_client_auth(),
        Caller::Certificate { cert_pem, key_pem } => {
            let chain = parse_certificates(cert_pem, "the client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|error| {
                MfaError::Config(format!("the client key is not a PEM private key: {error}"))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|error| {
                MfaError::Config(format!(
                    "the client certificate and key cannot be used: {error}"
                ))
            })?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Every certificate in a PEM document, with an error naming `what` when there is none.
pub(crate) fn parse_certificates(
    pem: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, MfaError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| MfaError::Config(format!("{what} is not valid PEM: {error}")))?;
    if certs.is_empty() {
        return Err(MfaError::Config(format!("{what} holds no PEM certificate")));
    }
    Ok(certs)
}

fn bearer(caller: &Caller) -> Result<Option<HeaderValue>, MfaError> {
    match caller {
        Caller::Token(token) => {
            let token = token.trim();
            if token.is_empty() {
                return Err(MfaError::Config("the bearer token is empty".into()));
            }
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                MfaError::Config("the bearer token holds characters a header cannot carry".into())
            })?;
            value.set_sensitive(true);
            Ok(Some(value))
        }
        Caller::Certificate { .. } => Ok(None),
    }
}

impl MfaClient {
    /// Opens the one connection every request of this client goes over: TCP,
    /// TLS (server verified against `ca_pem`, SNI from the URL, client
    /// certificate if the caller has one), then an HTTP/2 handshake.
    pub async fn connect(service: &MfaService) -> Result<MfaClient, MfaError> {
        let Endpoint {
            base,
            host,
            port,
            server_name,
        } = endpoint(&service.url)?;
        let authorization = bearer(&service.caller)?;
        let connector = TlsConnector::from(Arc::new(tls_config(service)?));
        let connect_error = |reason: String| MfaError::Connect {
            url: service.url.clone(),
            reason,
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|error| connect_error(error.to_string()))?;
            let _ = tcp.set_nodelay(true);
            connector
                .connect(server_name, tcp)
                .await
                .map_err(|error| connect_error(crate::error::chain(&error)))
        })
        .await
        .map_err(|_| connect_error(format!("no answer within {CONNECT_TIMEOUT:?}")))??;
        if let Some(protocol) = tls.get_ref().1.alpn_protocol()
            && protocol != b"h2"
        {
            return Err(connect_error(format!(
                "the server chose the protocol {:?}, not HTTP/2",
                String::from_utf8_lossy(protocol)
            )));
        }
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|error| connect_error(format!("HTTP/2 handshake: {error}")))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(MfaClient {
            base,
            authorization,
            sender,
            driver,
        })
    }

    /// The service URL this client talks to.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// `POST register/begin`: a registration challenge for a device called `name`.
    pub async fn begin_registration(&self, name: &str) -> Result<Challenge, MfaError> {
        let body = RegisterBegin {
            name: name.to_string(),
        };
        self.call(
            Method::POST,
            REGISTER_BEGIN_PATH,
            Some(&body),
            "registration challenge",
        )
        .await
    }

    /// `POST register/finish`: sends the authenticator's credential; the service answers with the new device.
    pub async fn finish_registration(&self, finish: &RegisterFinish) -> Result<Device, MfaError> {
        self.call(
            Method::POST,
            REGISTER_FINISH_PATH,
            Some(finish),
            "registered device",
        )
        .await
    }

    /// `POST authenticate/begin`: an authentication challenge for the caller's devices.
    pub async fn begin_authentication(&self) -> Result<Challenge, MfaError> {
        self.call::<(), _>(
            Method::POST,
            AUTHENTICATE_BEGIN_PATH,
            None,
            "authentication challenge",
        )
        .await
    }

    /// `POST authenticate/finish`: sends the assertion and the public key to certify.
    pub async fn finish_authentication(
        &self,
        finish: &AuthenticateFinish,
    ) -> Result<SessionCredential, MfaError> {
        self.call(
            Method::POST,
            AUTHENTICATE_FINISH_PATH,
            Some(finish),
            "session credential",
        )
        .await
    }

    /// `GET devices`: the caller's registered devices.
    pub async fn devices(&self) -> Result<Devices, MfaError> {
        self.call::<(), _>(Method::GET, DEVICES_PATH, None, "device list")
            .await
    }

    /// `DELETE devices/{uuid}`: removes one of the caller's devices.
    pub async fn remove_device(&self, uuid: &str) -> Result<(), MfaError> {
        let uuid = uuid::Uuid::parse_str(uuid).map_err(|error| {
            MfaError::Config(format!("invalid MFA device UUID {uuid:?}: {error}"))
        })?;
        self.send(
            Method::DELETE,
            &format!("{DEVICES_PATH}/{}", uuid.hyphenated()),
            None,
        )
        .await
        .map(drop)
    }

    /// `GET whoami`: the caller as Deadbolt sees it.
    pub async fn whoami(&self) -> Result<WhoAmI, MfaError> {
        self.call::<(), _>(Method::GET, WHOAMI_PATH, None, "whoami")
            .await
    }

    /// Sends a JSON request and decodes a JSON answer of type `T`.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        what: &'static str,
    ) -> Result<T, MfaError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|error| MfaError::Config(format!("encoding the request: {error}")))?;
        let answer = self.send(method, path, body).await?;
        serde_json::from_slice(&answer).map_err(|error| MfaError::Malformed {
            what,
            reason: error.to_string(),
        })
    }

    /// Sends one request over the connection and returns the body of a 2xx
    /// answer; anything else becomes [`MfaError::Refused`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, MfaError> {
        let uri = self.uri(path);
        let mut request = Request::builder()
            .method(method)
            .uri(uri.as_str())
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("kubectl-deadbolt/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|error| MfaError::Config(format!("building the request to {uri}: {error}")))?;
        let transport = |reason: String| MfaError::Transport {
            url: self.base.to_string(),
            reason,
        };
        let mut sender = self.sender.clone();
        let exchange = async {
            sender
                .ready()
                .await
                .map_err(|error| transport(format!("the connection is closed: {error}")))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|error| transport(crate::error::chain(&error)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|error| transport(format!("reading the answer: {error}")))?
                .to_bytes();
            Ok::<_, MfaError>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| transport(format!("no answer to {path} within {REQUEST_TIMEOUT:?}")))??;
        if status.is_success() {
            Ok(body)
        } else {
            Err(refusal(status, &body))
        }
    }

    fn uri(&self, path: &str) -> String {
        let mut base = self.base.clone();
        let prefix = base.path().trim_end_matches('/').to_string();
        base.set_path(&format!("{prefix}{path}"));
        base.to_string()
    }
}

/// A non-2xx answer: the `Status` message when the body is one, else the code and a quote of the body.
fn refusal(status: StatusCode, body: &[u8]) -> MfaError {
    let message = serde_json::from_slice::<Refusal>(body)
        .ok()
        .map(|refusal| refusal.message)
        .filter(|message| !message.trim().is_empty())
        .unwrap_or_else(|| {
            let text: String = String::from_utf8_lossy(body)
                .chars()
                .map(|ch| if ch.is_control() { ' ' } else { ch })
                .take(QUOTED_BODY_CHARS)
                .collect();
            let text = text.trim();
            if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {text}")
            }
        });
    MfaError::Refused {
        code: status.as_u16(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_connecting() {
        for (url, expected) in [
            ("http://mfa.example", "must start with https://"),
            ("not a url", "invalid MFA service URL"),
            ("https://user:pw@mfa.example", "credentials"),
            ("https://mfa.example/?a=b", "query"),
        ] {
            let error = endpoint(url).err().expect(url).to_string();
            assert!(error.contains(expected), "{url}: {error}");
        }
        let ok = endpoint("https://mfa.example:8443/prefix/").unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("mfa.example", 8443));
        let ip = endpoint("https://[::1]").unwrap();
        assert_eq!((ip.host.as_str(), ip.port), ("::1", 443));
    }

    #[test]
    fn refusals_carry_the_status_message() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"no MFA device registered","reason":"Forbidden","code":403}"#;
        let error = refusal(StatusCode::FORBIDDEN, body);
        assert_eq!(error.refusal_code(), Some(403));
        assert_eq!(
            error.to_string(),
            "the MFA service refused the request: no MFA device registered"
        );
        let error = refusal(StatusCode::BAD_GATEWAY, b"<html>\nbad gateway</html>");
        assert!(
            error
                .to_string()
                .contains("HTTP 502 Bad Gateway: <html> bad gateway")
        );
        let error = refusal(StatusCode::INTERNAL_SERVER_ERROR, b"");
        assert!(
            error
                .to_string()
                .ends_with("HTTP 500 Internal Server Error")
        );
    }

    #[test]
    fn the_caller_is_never_printed_and_hashed_stably() {
        let caller = Caller::Token("s3cr3t-token".into());
        assert!(!format!("{caller:?}").contains("s3cr3t"));
        assert_eq!(caller.fingerprint(), caller.fingerprint());
        assert_ne!(
            caller.fingerprint(),
            Caller::Token("other".into()).fingerprint()
        );
        assert_eq!(caller.fingerprint().len(), 64);
        // SHA-256 of the empty string, to pin the hash function.
        assert_eq!(
            sha256_hex(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
