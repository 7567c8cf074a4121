//! The start of a MySQL connection on the client's side: the proxy's own
//! greeting (protocol 10, `CLIENT_SSL` offered), the client's `SSLRequest`
//! and the TLS upgrade, then its `HandshakeResponse41`. Plaintext clients are
//! refused with an `ERR` packet unless explicitly allowed. Without a client
//! certificate, [`read_clear_password`] switches the client to
//! `mysql_clear_password` to read its bearer token.

use std::sync::Arc;

use mysql_common::constants::CapabilityFlags;
use mysql_common::packets::AuthSwitchRequest;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::messages::{
    self, ClientHello, Greeting, SECURE_TRANSPORT_REQUIRED, SSL_REQUEST_LENGTH,
    client_capabilities, parse_hello, send_error,
};
use super::packet::{self, MAX_HANDSHAKE_PACKET, WireError};
use crate::database::opening::{OpeningError, accept_tls};
use crate::io::ByteStream;

/// The plugin a bearer token is read with.
pub const CLEAR_PASSWORD_PLUGIN: &[u8] = b"mysql_clear_password";

/// A client connection after its handshake response.
pub struct Opened {
    /// The client stream.
    pub stream: Box<dyn ByteStream>,
    /// The first certificate of the verified chain, if one was presented.
    pub certificate: Option<CertificateDer<'static>>,
    /// What the client asked for.
    pub hello: ClientHello,
    /// The sequence id of the proxy's next packet to the client.
    pub next_seq: u8,
}

/// Why the opening failed; the client has been told when it could be.
pub type HandshakeError = OpeningError<WireError>;

/// Greets the client, sets up TLS and reads its handshake response.
pub async fn open(
    mut tcp: TcpStream,
    tls: Arc<ServerConfig>,
    allow_plaintext: bool,
    greeting: &Greeting,
) -> Result<Opened, HandshakeError> {
    packet::write_payload(&mut tcp, 0, &greeting.payload())
        .await
        .map_err(WireError::Io)?;
    let first = match packet::read_expected(&mut tcp, 1, MAX_HANDSHAKE_PACKET).await {
        Ok(packet) => packet,
        Err(error) => return Err(tell(&mut tcp, 2, error).await.into()),
    };
    let capabilities = match client_capabilities(&first.payload) {
        Ok(capabilities) => capabilities,
        Err(error) => return Err(tell(&mut tcp, 2, error).await.into()),
    };
    if !capabilities.contains(CapabilityFlags::CLIENT_SSL) {
        if !allow_plaintext {
            send_error(
                &mut tcp,
                2,
                SECURE_TRANSPORT_REQUIRED,
                "this Deadbolt proxy requires TLS: connect with --ssl (MySQL's client: --ssl-mode=REQUIRED)",
            )
            .await;
            return Err(HandshakeError::PlaintextRefused);
        }
        return match parse_hello(&first.payload) {
            Ok(hello) => Ok(Opened {
                stream: Box::new(tcp),
                certificate: None,
                hello,
                next_seq: 2,
            }),
            Err(error) => Err(tell(&mut tcp, 2, error).await.into()),
        };
    }
    if first.payload.len() != SSL_REQUEST_LENGTH {
        let error =
            WireError::Malformed("a handshake response that asks for TLS without TLS".into());
        return Err(tell(&mut tcp, 2, error).await.into());
    }
    let (mut stream, certificate) = accept_tls(&TlsAcceptor::from(tls), tcp).await?;
    let response = match packet::read_expected(&mut stream, 2, MAX_HANDSHAKE_PACKET).await {
        Ok(packet) => packet,
        Err(error) => return Err(tell(&mut stream, 3, error).await.into()),
    };
    match parse_hello(&response.payload) {
        Ok(hello) => Ok(Opened {
            stream: Box::new(stream),
            certificate,
            hello,
            next_seq: 3,
        }),
        Err(error) => Err(tell(&mut stream, 3, error).await.into()),
    }
}

/// Tells the client why its opening failed, when it is still listening.
async fn tell<S: ByteStream>(stream: &mut S, seq: u8, error: WireError) -> WireError {
    if !matches!(error, WireError::Closed | WireError::Io(_)) {
        let message = format!("bad handshake: {error}");
        send_error(stream, seq, error.code(), &message).await;
    }
    error
}

/// The client's password, sent in the clear inside TLS: taken from its
/// handshake response when it already used `mysql_clear_password`, otherwise
/// asked for with an `AuthSwitchRequest` (which advances `opened.next_seq`).
pub async fn read_clear_password(
    opened: &mut Opened,
    scramble: &[u8; 20],
) -> Result<String, WireError> {
    let hello = &opened.hello;
    let password = if hello.auth_plugin.as_deref() == Some(CLEAR_PASSWORD_PLUGIN)
        && !hello.auth_response.is_empty()
    {
        hello.auth_response.clone()
    } else {
        if !hello
            .capabilities
            .contains(CapabilityFlags::CLIENT_PLUGIN_AUTH)
        {
            return Err(WireError::Malformed(
                "a client that cannot switch authentication plugins".into(),
            ));
        }
        let mut nonce = scramble.to_vec();
        nonce.push(0);
        let switch = messages::encode(&AuthSwitchRequest::new(CLEAR_PASSWORD_PLUGIN, nonce));
        let seq = packet::write_payload(&mut opened.stream, opened.next_seq, &switch).await?;
        opened.next_seq = seq.wrapping_add(1);
        packet::read_expected(&mut opened.stream, seq, MAX_HANDSHAKE_PACKET)
            .await?
            .payload
    };
    let password = password.strip_suffix(&[0]).unwrap_or(&password);
    String::from_utf8(password.to_vec())
        .map_err(|_| WireError::Malformed("the password is not UTF-8".into()))
}
