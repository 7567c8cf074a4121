//! How a database client's opening ends before its login, in either protocol:
//! the client did not ask for TLS, the TLS handshake failed, or its first
//! messages were malformed (each protocol has its own wire error). The
//! protocol adapters have told the client when it could still hear them.

use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why the opening failed; `W` is the protocol's wire error.
#[derive(Debug, thiserror::Error)]
pub enum OpeningError<W: std::error::Error + 'static> {
    /// Malformed or unexpected input.
    #[error(transparent)]
    Wire(#[from] W),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// Plaintext was offered and is not allowed.
    #[error("the client did not ask for TLS")]
    PlaintextRefused,
    /// Direct TLS (PostgreSQL 17's `sslnegotiation=direct`) without the
    /// protocol's ALPN name; MySQL has no direct TLS.
    #[error("direct TLS without ALPN \"postgresql\"")]
    MissingAlpn,
}

/// The TLS handshake of a client that asked for TLS, and the leaf of the
/// client certificate rustls verified, if it presented one.
pub async fn accept_tls<W: std::error::Error + 'static>(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Result<(TlsStream<TcpStream>, Option<CertificateDer<'static>>), OpeningError<W>> {
    let stream = acceptor.accept(tcp).await.map_err(OpeningError::Tls)?;
    let certificate = deadbolt_runtime::listener::client_certificate(&stream).cloned();
    Ok((stream, certificate))
}
