//! The start of a PostgreSQL connection: TLS first (the `SSLRequest` dance, or
//! PostgreSQL 17's direct TLS with ALPN `postgresql`), then the startup packet.
//! Plaintext sessions are refused unless explicitly allowed.

use std::sync::Arc;

use bytes::BytesMut;
use pgwire::messages::startup::{GssEncRequest, SslRequest, Startup};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::wire::{self, WireError};
use crate::database::opening::{OpeningError, accept_tls};
use crate::io::ByteStream;

/// The ALPN protocol PostgreSQL 17 requires for direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";
/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;
/// The code of a `CancelRequest` (pgwire keeps its constant private).
const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// How many SSL/GSS requests a client may send before its startup packet.
const MAX_NEGOTIATIONS: usize = 3;

/// What the client asked for once the connection is set up.
pub enum Opening {
    /// A session: the stream, the client's verified certificate (if any) and its startup message.
    Session {
        /// The client stream.
        stream: Box<dyn ByteStream>,
        /// The first certificate of the verified chain.
        certificate: Option<CertificateDer<'static>>,
        /// The startup message.
        startup: Startup,
    },
    /// A query cancellation, to forward to the upstream as it is.
    Cancel(BytesMut),
}

/// Why the opening failed; the client has been told when it could be.
pub type NegotiationError = OpeningError<WireError>;

/// Sets up TLS and reads the startup packet.
pub async fn open(
    tcp: TcpStream,
    tls: Arc<ServerConfig>,
    allow_plaintext: bool,
) -> Result<Opening, NegotiationError> {
    let acceptor = TlsAcceptor::from(tls);
    let mut first = [0u8; 1];
    let peeked = tcp.peek(&mut first).await.map_err(WireError::Io)?;
    if peeked == 0 {
        return Err(WireError::Closed.into());
    }
    if first[0] == TLS_HANDSHAKE {
        let (stream, certificate) = accept_tls(&acceptor, tcp).await?;
        if stream.get_ref().1.alpn_protocol() != Some(ALPN_POSTGRESQL) {
            return Err(NegotiationError::MissingAlpn);
        }
        return read_startup_over_tls(stream, certificate).await;
    }

    let mut tcp = tcp;
    for _ in 0..MAX_NEGOTIATIONS {
        let packet = wire::read_startup_packet(&mut tcp).await?;
        match request_code(&packet) {
            SslRequest::BODY_MAGIC_NUMBER => {
                tcp.write_all(b"S").await.map_err(WireError::Io)?;
                let (stream, certificate) = accept_tls(&acceptor, tcp).await?;
                return read_startup_over_tls(stream, certificate).await;
            }
            GssEncRequest::BODY_MAGIC_NUMBER => {
                tcp.write_all(b"N").await.map_err(WireError::Io)?;
            }
            CANCEL_REQUEST_CODE => return Ok(Opening::Cancel(packet)),
            _ if allow_plaintext => {
                let startup = decode_startup(packet)?;
                return Ok(Opening::Session {
                    stream: Box::new(tcp),
                    certificate: None,
                    startup,
                });
            }
            _ => {
                wire::send_fatal(
                    &mut tcp,
                    wire::SQLSTATE_PROTOCOL,
                    "this Deadbolt proxy requires TLS: connect with sslmode=require or stronger",
                )
                .await;
                return Err(NegotiationError::PlaintextRefused);
            }
        }
    }
    Err(WireError::Malformed("too many SSL/GSS negotiation requests".into()).into())
}

async fn read_startup_over_tls(
    mut stream: tokio_rustls::server::TlsStream<TcpStream>,
    certificate: Option<CertificateDer<'static>>,
) -> Result<Opening, NegotiationError> {
    let packet = match wire::read_startup_packet(&mut stream).await {
        Ok(packet) => packet,
        Err(error) => return Err(tell(&mut stream, error).await),
    };
    let startup = match request_code(&packet) {
        CANCEL_REQUEST_CODE => return Ok(Opening::Cancel(packet)),
        SslRequest::BODY_MAGIC_NUMBER | GssEncRequest::BODY_MAGIC_NUMBER => {
            Err(WireError::Malformed("SSL negotiation inside TLS".into()))
        }
        _ => decode_startup(packet),
    };
    match startup {
        Ok(startup) => Ok(Opening::Session {
            stream: Box::new(stream),
            certificate,
            startup,
        }),
        Err(error) => Err(tell(&mut stream, error).await),
    }
}

/// Tells the client why its startup packet was refused (when it is still there to hear it).
async fn tell<S: ByteStream>(stream: &mut S, error: WireError) -> NegotiationError {
    if !matches!(error, WireError::Closed | WireError::Io(_)) {
        let message = format!("invalid startup packet: {error}");
        wire::send_fatal(stream, wire::SQLSTATE_PROTOCOL, &message).await;
    }
    error.into()
}

fn request_code(packet: &[u8]) -> i32 {
    i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]])
}

fn decode_startup(packet: BytesMut) -> Result<Startup, WireError> {
    let startup: Startup = wire::decode(packet)?;
    if startup.protocol_number_major != 3 {
        return Err(WireError::Malformed(format!(
            "unsupported protocol version {}.{}",
            startup.protocol_number_major, startup.protocol_number_minor
        )));
    }
    Ok(startup)
}
