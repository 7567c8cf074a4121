//! The start of a MySQL connection on the client's side: the proxy's own
//! greeting (protocol 10, `CLIENT_SSL` offered), the client's `SSLRequest`
//! and the TLS upgrade, then its `HandshakeResponse41`. Plaintext clients are
//! refused with an `ERR` packet unless explicitly allowed. Without a client
//! certificate, [`read_clear_password`] switches the client to
//! `mysql_clear_password` to read its bearer token.

use std::sync::Arc;

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::packets::{AuthSwitchRequest, HandshakePacket, HandshakeResponse};
use mysql_common::proto::MySerialize;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::wire::{self, ByteStream, MAX_HANDSHAKE_PACKET, WireError};

/// The length of an `SSLRequest` payload.
const SSL_REQUEST_LENGTH: usize = 32;
/// The plugin named in the greeting. Clients answer it with a scramble the
/// proxy ignores; it is what servers usually name, so every client knows it.
const GREETING_PLUGIN: &[u8] = b"mysql_native_password";
/// The plugin a bearer token is read with.
pub const CLEAR_PASSWORD_PLUGIN: &[u8] = b"mysql_clear_password";

/// The proxy's greeting.
#[derive(Debug, Clone)]
pub struct Greeting {
    /// The version string clients see.
    pub server_version: String,
    /// The connection id clients see.
    pub connection_id: u32,
    /// The nonce (20 bytes, no NUL).
    pub scramble: [u8; 20],
    /// What the proxy offers.
    pub capabilities: CapabilityFlags,
    /// The default collation.
    pub collation: u8,
}

impl Greeting {
    /// A nonce in the alphabet servers use (7-bit, no NUL), so clients that
    /// treat it as a C string read it whole.
    pub fn random_scramble() -> [u8; 20] {
        let mut scramble = [0u8; 20];
        if deadbolt_runtime::tls::provider()
            .secure_random
            .fill(&mut scramble)
            .is_err()
        {
            tracing::warn!("no secure randomness for the greeting nonce");
        }
        for byte in &mut scramble {
            *byte = match *byte & 0x7f {
                0 => 1,
                b'$' => b'%',
                other => other,
            };
        }
        scramble
    }

    /// The greeting's payload.
    pub fn payload(&self) -> Vec<u8> {
        let mut part_two = self.scramble[8..].to_vec();
        part_two.push(0);
        let mut part_one = [0u8; 8];
        part_one.copy_from_slice(&self.scramble[..8]);
        let mut payload = Vec::with_capacity(96);
        HandshakePacket::new(
            10,
            self.server_version.as_bytes(),
            self.connection_id,
            part_one,
            Some(part_two),
            self.capabilities,
            self.collation,
            StatusFlags::SERVER_STATUS_AUTOCOMMIT,
            Some(GREETING_PLUGIN),
        )
        .serialize(&mut payload);
        payload
    }
}

/// What the client said in its `HandshakeResponse41`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The capabilities it asked for.
    pub capabilities: CapabilityFlags,
    /// The largest packet it accepts.
    pub max_packet_size: u32,
    /// Its collation.
    pub collation: u8,
    /// The database user: the session's login.
    pub user: String,
    /// The schema (`CLIENT_CONNECT_WITH_DB`).
    pub database: Option<String>,
    /// The plugin its response is for.
    pub auth_plugin: Option<Vec<u8>>,
    /// Its authentication response.
    pub auth_response: Vec<u8>,
    /// Its connection attributes.
    pub attributes: Vec<(String, String)>,
}

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
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Malformed or unexpected input.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// Plaintext was offered and is not allowed.
    #[error("the client did not ask for TLS")]
    PlaintextRefused,
}

/// Greets the client, sets up TLS and reads its handshake response.
pub async fn open(
    mut tcp: TcpStream,
    tls: Arc<ServerConfig>,
    allow_plaintext: bool,
    greeting: &Greeting,
) -> Result<Opened, HandshakeError> {
    wire::write_payload(&mut tcp, 0, &greeting.payload())
        .await
        .map_err(WireError::Io)?;
    let first = match wire::read_expected(&mut tcp, 1, MAX_HANDSHAKE_PACKET).await {
        Ok(packet) => packet,
        Err(error) => return Err(tell(&mut tcp, 2, error).await.into()),
    };
    let capabilities = match client_capabilities(&first.payload) {
        Ok(capabilities) => capabilities,
        Err(error) => return Err(tell(&mut tcp, 2, error).await.into()),
    };
    if !capabilities.contains(CapabilityFlags::CLIENT_SSL) {
        if !allow_plaintext {
            wire::send_error(
                &mut tcp,
                2,
                wire::SECURE_TRANSPORT_REQUIRED,
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
    let mut stream = TlsAcceptor::from(tls)
        .accept(tcp)
        .await
        .map_err(HandshakeError::Tls)?;
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|certificate| certificate.clone().into_owned());
    let response = match wire::read_expected(&mut stream, 2, MAX_HANDSHAKE_PACKET).await {
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
        wire::send_error(stream, seq, error.code(), &message).await;
    }
    error
}

/// The capabilities at the start of an `SSLRequest` or a handshake response.
fn client_capabilities(payload: &[u8]) -> Result<CapabilityFlags, WireError> {
    let bytes: [u8; 4] = payload
        .get(..4)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| WireError::Malformed("a handshake response without capabilities".into()))?;
    let capabilities = CapabilityFlags::from_bits_truncate(u32::from_le_bytes(bytes));
    if !capabilities.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(WireError::Malformed(
            "a client that does not speak protocol 4.1".into(),
        ));
    }
    Ok(capabilities)
}

/// Reads a client's `HandshakeResponse41` payload (public for the fuzz targets).
pub fn parse_hello(payload: &[u8]) -> Result<ClientHello, WireError> {
    client_capabilities(payload)?;
    let response: HandshakeResponse<'_> = wire::decode(payload, ())?;
    // mysql_common keeps it private; the decode checked the fixed part is there.
    let max_packet_size = payload
        .get(4..8)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(0, u32::from_le_bytes);
    let text = |bytes: &[u8], what: &str| {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| WireError::Malformed(format!("the {what} is not UTF-8")))
    };
    let mut attributes: Vec<(String, String)> = response
        .connect_attributes()
        .unwrap_or_default()
        .into_iter()
        .collect();
    attributes.sort();
    Ok(ClientHello {
        capabilities: response.capabilities(),
        max_packet_size,
        collation: response.collation(),
        user: text(response.user(), "user name")?,
        database: response
            .db_name()
            .filter(|name| !name.is_empty())
            .map(|name| text(name, "database name"))
            .transpose()?,
        auth_plugin: response
            .auth_plugin()
            .map(|plugin| plugin.as_bytes().to_vec()),
        auth_response: response.scramble_buf().to_vec(),
        attributes,
    })
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
        let mut switch = Vec::new();
        AuthSwitchRequest::new(CLEAR_PASSWORD_PLUGIN, nonce).serialize(&mut switch);
        let seq = wire::write_payload(&mut opened.stream, opened.next_seq, &switch).await?;
        opened.next_seq = seq.wrapping_add(1);
        wire::read_expected(&mut opened.stream, seq, MAX_HANDSHAKE_PACKET)
            .await?
            .payload
    };
    let password = password.strip_suffix(&[0]).unwrap_or(&password);
    String::from_utf8(password.to_vec())
        .map_err(|_| WireError::Malformed("the password is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::wire::LoginRequest;

    #[test]
    fn greetings_decode_with_the_offered_capabilities_and_nonce() {
        let greeting = Greeting {
            server_version: "8.0.0-Deadbolt".into(),
            connection_id: 1 << 31,
            scramble: Greeting::random_scramble(),
            capabilities: CapabilityFlags::CLIENT_PROTOCOL_41
                | CapabilityFlags::CLIENT_SSL
                | CapabilityFlags::CLIENT_SECURE_CONNECTION
                | CapabilityFlags::CLIENT_PLUGIN_AUTH,
            collation: 45,
        };
        assert!(greeting.scramble.iter().all(|b| *b != 0 && *b < 0x80));
        let payload = greeting.payload();
        let decoded: HandshakePacket<'_> = wire::decode(&payload, ()).unwrap();
        assert_eq!(decoded.server_version_str(), "8.0.0-Deadbolt");
        assert_eq!(decoded.connection_id(), 1 << 31);
        assert_eq!(decoded.nonce(), greeting.scramble);
        assert_eq!(decoded.capabilities(), greeting.capabilities);
        assert_eq!(decoded.auth_plugin_name_ref(), Some(GREETING_PLUGIN));
    }

    #[test]
    fn handshake_responses_become_hellos() {
        let attributes = vec![("_os".to_string(), "Linux".to_string())];
        let payload = LoginRequest {
            capabilities: CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
                | CapabilityFlags::CLIENT_CONNECT_ATTRS
                | CapabilityFlags::CLIENT_SSL,
            max_packet_size: 1 << 24,
            collation: 45,
            user: "app",
            auth_response: b"",
            database: Some("shop"),
            auth_plugin: b"mysql_native_password",
            attributes: &attributes,
        }
        .encode();
        let hello = parse_hello(&payload).unwrap();
        assert_eq!(hello.user, "app");
        assert_eq!(hello.database.as_deref(), Some("shop"));
        assert_eq!(hello.attributes, attributes);
        assert_eq!(
            hello.auth_plugin.as_deref(),
            Some(&b"mysql_native_password"[..])
        );

        assert!(parse_hello(&payload[..20]).is_err());
        assert!(parse_hello(&[0, 0, 0, 0]).is_err(), "no protocol 4.1");
        let mut latin1 = payload.clone();
        latin1[32] = 0xe9;
        assert!(
            parse_hello(&latin1).is_err(),
            "a user name that is not UTF-8"
        );
    }
}
