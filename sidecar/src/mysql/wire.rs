//! MySQL packet framing around `mysql_common`'s codecs: the 4-byte header
//! (3-byte little-endian length, sequence id), reads with limits (an absurd
//! length is an error, not an allocation), the proxy's own `ERR` packets, the
//! `HandshakeResponse` the proxy sends upstream, and a buffer that hands the
//! relay whole packets so it always knows where the boundaries are.

use bytes::{Buf, BufMut, BytesMut};
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::{BufMutExt, ParseBuf};
use mysql_common::packets::{ErrPacket, ServerError, SqlState};
use mysql_common::proto::{MyDeserialize, MySerialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes in a packet header.
pub const HEADER: usize = 4;
/// A payload of exactly this length continues in the next packet.
pub const MAX_PAYLOAD: usize = 0xff_ffff;
/// The longest packet the opening of a connection may carry: a handshake
/// response with connection attributes, or a bearer token as a password.
pub const MAX_HANDSHAKE_PACKET: usize = 64 * 1024;

pub use crate::io::ByteStream;

/// An error code and SQLSTATE, as the `mysql` client prints them:
/// `ERROR 1045 (28000): <message>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    /// The numeric code.
    pub code: u16,
    /// The five-character SQLSTATE.
    pub state: [u8; 5],
}

/// A refusal by a lock, a stale view or failed authentication:
/// `ER_ACCESS_DENIED_ERROR`, what MySQL itself answers a refused login with.
pub const ACCESS_DENIED: ErrorCode = ErrorCode {
    code: 1045,
    state: *b"28000",
};
/// A live session cut by a lock or a stale view: `ER_CONNECTION_KILLED`,
/// what MariaDB sends a connection that `KILL` ended.
pub const CONNECTION_KILLED: ErrorCode = ErrorCode {
    code: 1927,
    state: *b"70100",
};
/// A malformed opening: `ER_HANDSHAKE_ERROR` ("Bad handshake").
pub const BAD_HANDSHAKE: ErrorCode = ErrorCode {
    code: 1043,
    state: *b"08S01",
};
/// A packet longer than the proxy accepts at this point: `ER_NET_PACKET_TOO_LARGE`.
pub const PACKET_TOO_LARGE: ErrorCode = ErrorCode {
    code: 1153,
    state: *b"08S01",
};
/// A client that did not ask for TLS: `ER_SECURE_TRANSPORT_REQUIRED`.
pub const SECURE_TRANSPORT_REQUIRED: ErrorCode = ErrorCode {
    code: 3159,
    state: *b"HY000",
};
/// A command the proxy does not relay: `ER_NOT_SUPPORTED_YET`.
pub const NOT_SUPPORTED: ErrorCode = ErrorCode {
    code: 1235,
    state: *b"42000",
};
/// The upstream could not be reached or spoke nonsense: `CR_CONN_HOST_ERROR`,
/// the code the `mysql` client itself uses for an unreachable server.
pub const UPSTREAM_UNREACHABLE: ErrorCode = ErrorCode {
    code: 2003,
    state: *b"HY000",
};

/// Why the wire could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the connection.
    #[error("the connection closed")]
    Closed,
    /// A packet is longer than allowed here.
    #[error("packet of {0} bytes is too large here")]
    TooLarge(usize),
    /// A packet could not be decoded.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A packet came with the wrong sequence id.
    #[error("packet out of order: sequence id {got}, expected {expected}")]
    OutOfOrder {
        /// What arrived.
        got: u8,
        /// What the protocol requires.
        expected: u8,
    },
    /// I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl WireError {
    /// The code a client is told this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::TooLarge(_) => PACKET_TOO_LARGE,
            _ => BAD_HANDSHAKE,
        }
    }
}

fn closed_on_eof(error: std::io::Error) -> WireError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        WireError::Closed
    } else {
        WireError::Io(error)
    }
}

/// One packet: a sequence id and a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The sequence id.
    pub seq: u8,
    /// The payload, without the header.
    pub payload: Vec<u8>,
}

/// The length and sequence id in a packet header.
pub fn parse_header(header: &[u8; HEADER]) -> (usize, u8) {
    let length =
        usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    (length, header[3])
}

/// Reads one packet whole, refusing payloads over `max` (and multi-packet
/// payloads, which the opening of a connection never needs).
pub async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Packet, WireError> {
    let mut header = [0u8; HEADER];
    reader
        .read_exact(&mut header)
        .await
        .map_err(closed_on_eof)?;
    let (length, seq) = parse_header(&header);
    if length > max || length >= MAX_PAYLOAD {
        return Err(WireError::TooLarge(length));
    }
    let mut payload = vec![0u8; length];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(closed_on_eof)?;
    Ok(Packet { seq, payload })
}

/// Reads one packet and checks its sequence id.
pub async fn read_expected<R: AsyncRead + Unpin>(
    reader: &mut R,
    expected: u8,
    max: usize,
) -> Result<Packet, WireError> {
    let packet = read_packet(reader, max).await?;
    if packet.seq != expected {
        return Err(WireError::OutOfOrder {
            got: packet.seq,
            expected,
        });
    }
    Ok(packet)
}

/// Frames a payload as packets starting at sequence id `seq`, splitting it
/// where the protocol requires. Returns the bytes and the next sequence id.
pub fn frame(mut seq: u8, payload: &[u8]) -> (Vec<u8>, u8) {
    let mut out = Vec::with_capacity(payload.len() + HEADER);
    let mut rest = payload;
    loop {
        let take = rest.len().min(MAX_PAYLOAD);
        out.put_uint_le(take as u64, 3);
        out.put_u8(seq);
        out.extend_from_slice(&rest[..take]);
        seq = seq.wrapping_add(1);
        rest = &rest[take..];
        if take < MAX_PAYLOAD {
            return (out, seq);
        }
    }
}

/// Writes a payload as packets starting at `seq`; returns the next sequence id.
pub async fn write_payload<W: AsyncWrite + Unpin>(
    writer: &mut W,
    seq: u8,
    payload: &[u8],
) -> std::io::Result<u8> {
    let (bytes, next) = frame(seq, payload);
    writer.write_all(&bytes).await?;
    writer.flush().await?;
    Ok(next)
}

/// The payload of an `ERR` packet with this code and message.
pub fn err_payload(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(message.len() + 9);
    ErrPacket::Error(ServerError::new(
        code.code,
        Some(SqlState::new(code.state)),
        message.as_bytes(),
    ))
    .serialize(&mut payload);
    payload
}

/// Sends an `ERR` packet and closes the write side.
pub async fn send_error<W: AsyncWrite + Unpin>(
    writer: &mut W,
    seq: u8,
    code: ErrorCode,
    message: &str,
) {
    let _ = write_payload(writer, seq, &err_payload(code, message)).await;
    let _ = writer.shutdown().await;
}

/// Decodes a payload with `mysql_common`. Its decoders check lengths, but
/// a few helpers index or unwrap, so anything they miss is still caught here
/// rather than unwinding through the proxy.
pub fn decode<'a, T>(payload: &'a [u8], context: T::Ctx) -> Result<T, WireError>
where
    T: MyDeserialize<'a>,
{
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ParseBuf(payload).parse::<T>(context)
    }))
    .map_err(|_| WireError::Malformed("undecodable packet".into()))?
    .map_err(|error| WireError::Malformed(error.to_string()))
}

/// Checks a server greeting for what `mysql_common`'s decoder takes for
/// granted: its `auth_plugin_data_len` feeds an `i8` subtraction that
/// overflows for 0x80..=0x87 (found by fuzzing). Real servers send 0 or 21;
/// anything from 0x80 up is refused.
pub fn check_greeting(payload: &[u8]) -> Result<(), WireError> {
    let Some(version_end) = payload
        .get(1..)
        .and_then(|rest| rest.iter().position(|b| *b == 0))
    else {
        return Ok(());
    };
    // After the version: connection id (4), scramble (8), filler (1),
    // capabilities (2), collation (1), status (2), capabilities (2), then the length.
    match payload.get(version_end + 2 + 20) {
        Some(length) if *length >= 0x80 => Err(WireError::Malformed(format!(
            "greeting with an impossible auth-plugin-data length {length}"
        ))),
        _ => Ok(()),
    }
}

/// An `ERR` payload's code, SQLSTATE and message, to pass on as they are. A
/// server that refuses a connection before the handshake (too many
/// connections, a blocked host) leaves the SQLSTATE out.
pub fn parse_error(payload: &[u8]) -> Result<(ErrorCode, String), WireError> {
    let malformed = || WireError::Malformed("truncated error packet".into());
    let (&header, rest) = payload.split_first().ok_or_else(malformed)?;
    if header != 0xff || rest.len() < 2 {
        return Err(malformed());
    }
    let code = u16::from_le_bytes([rest[0], rest[1]]);
    let rest = &rest[2..];
    let (state, message) = match rest.split_first() {
        Some((b'#', marked)) if marked.len() >= 5 => {
            let mut state = [0u8; 5];
            state.copy_from_slice(&marked[..5]);
            (state, &marked[5..])
        }
        _ => (*b"HY000", rest),
    };
    Ok((
        ErrorCode { code, state },
        String::from_utf8_lossy(message).into_owned(),
    ))
}

/// The `HandshakeResponse41` the proxy logs in to the upstream with. Written
/// here rather than with `mysql_common`'s builder, which picks the collation
/// itself; the client's must pass through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest<'a> {
    /// Capabilities asked for.
    pub capabilities: CapabilityFlags,
    /// The largest packet the client accepts.
    pub max_packet_size: u32,
    /// The connection's collation.
    pub collation: u8,
    /// The database user.
    pub user: &'a str,
    /// The first authentication response.
    pub auth_response: &'a [u8],
    /// The schema, with `CLIENT_CONNECT_WITH_DB`.
    pub database: Option<&'a str>,
    /// The authentication plugin the response is for.
    pub auth_plugin: &'a [u8],
    /// Connection attributes, with `CLIENT_CONNECT_ATTRS`.
    pub attributes: &'a [(String, String)],
}

impl LoginRequest<'_> {
    /// The payload. Capabilities are adjusted to what the fields say.
    pub fn encode(&self) -> Vec<u8> {
        let mut capabilities = self.capabilities
            | CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH;
        capabilities.set(
            CapabilityFlags::CLIENT_CONNECT_WITH_DB,
            self.database.is_some(),
        );
        let lenenc_response =
            capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA);
        let mut out = Vec::with_capacity(128);
        out.put_u32_le(capabilities.bits());
        out.put_u32_le(self.max_packet_size);
        out.put_u8(self.collation);
        out.put_slice(&[0; 23]);
        out.put_slice(self.user.as_bytes());
        out.put_u8(0);
        if lenenc_response {
            out.put_lenenc_str(self.auth_response);
        } else {
            let take = self.auth_response.len().min(usize::from(u8::MAX));
            out.put_u8_str(&self.auth_response[..take]);
        }
        if let Some(database) = self.database {
            out.put_slice(database.as_bytes());
            out.put_u8(0);
        }
        out.put_slice(self.auth_plugin);
        out.put_u8(0);
        if capabilities.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS) {
            let mut attributes = Vec::new();
            for (key, value) in self.attributes {
                attributes.put_lenenc_str(key.as_bytes());
                attributes.put_lenenc_str(value.as_bytes());
            }
            out.put_lenenc_str(&attributes);
        }
        out
    }
}

/// Bytes read from one side of a relayed session, handed out one whole packet
/// at a time. Reading into it is cancel-safe, so the relay can wait on both
/// sides at once without losing bytes.
#[derive(Debug, Default)]
pub struct PacketBuffer {
    buffer: BytesMut,
}

/// How much a relay read asks for at least.
const READ_CHUNK: usize = 16 * 1024;

impl PacketBuffer {
    /// Reads more bytes; `Ok(0)` when the peer closed.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> std::io::Result<usize> {
        let wanted = match self.header() {
            Some((length, _)) => (HEADER + length).saturating_sub(self.buffer.len()),
            None => 0,
        };
        self.buffer.reserve(wanted.max(READ_CHUNK));
        reader.read_buf(&mut self.buffer).await
    }

    fn header(&self) -> Option<(usize, u8)> {
        let header: &[u8; HEADER] = self.buffer.get(..HEADER)?.try_into().ok()?;
        Some(parse_header(header))
    }

    /// The next whole packet, header included, if it has arrived.
    pub fn next_packet(&mut self) -> Option<BytesMut> {
        let (length, _) = self.header()?;
        if self.buffer.len() < HEADER + length {
            return None;
        }
        Some(self.buffer.split_to(HEADER + length))
    }

    /// Whether bytes of an unfinished packet are waiting.
    pub fn has_partial_packet(&self) -> bool {
        self.buffer.has_remaining()
    }
}

/// The header fields of a whole packet taken from a [`PacketBuffer`].
pub fn packet_fields(packet: &[u8]) -> (usize, u8, &[u8]) {
    let header: [u8; HEADER] = [packet[0], packet[1], packet[2], packet[3]];
    let (length, seq) = parse_header(&header);
    (length, seq, &packet[HEADER..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_with_an_impossible_plugin_data_length_are_refused() {
        // Found by fuzzing: mysql_common's decoder overflows on 0x80..=0x87.
        let mut greeting = vec![0x0a, b'8', 0, 1, 0, 0, 0];
        greeting.extend_from_slice(b"abcdefgh");
        greeting.extend_from_slice(&[0, 0x00, 0x80, 0x2d, 0x02, 0x00, 0x00, 0x00, 0x80]);
        greeting.extend_from_slice(&[0; 10]);
        assert!(check_greeting(&greeting).is_err());
        // Protocol (1), version "8" and its NUL (2), then 20 bytes to the length.
        greeting[23] = 21;
        assert!(check_greeting(&greeting).is_ok());
    }
    use mysql_common::packets::HandshakeResponse;

    #[test]
    fn long_payloads_are_split_and_exact_multiples_end_with_an_empty_packet() {
        let (bytes, next) = frame(7, b"hi");
        assert_eq!(bytes, [2, 0, 0, 7, b'h', b'i']);
        assert_eq!(next, 8);
        let payload = vec![1u8; MAX_PAYLOAD];
        let (bytes, next) = frame(255, &payload);
        assert_eq!(bytes.len(), 2 * HEADER + MAX_PAYLOAD);
        assert_eq!(&bytes[..HEADER], &[0xff, 0xff, 0xff, 255]);
        assert_eq!(&bytes[HEADER + MAX_PAYLOAD..], &[0, 0, 0, 0]);
        assert_eq!(next, 1);
    }

    #[tokio::test]
    async fn absurd_lengths_are_refused_without_allocating() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 1, b'x'];
        assert!(matches!(
            read_packet(&mut input, MAX_HANDSHAKE_PACKET).await,
            Err(WireError::TooLarge(MAX_PAYLOAD))
        ));
        let mut input: &[u8] = &[3, 0, 0, 1, b'x'];
        assert!(matches!(
            read_packet(&mut input, MAX_HANDSHAKE_PACKET).await,
            Err(WireError::Closed)
        ));
        let mut input: &[u8] = &[1, 0, 0, 5, b'x'];
        assert!(matches!(
            read_expected(&mut input, 2, MAX_HANDSHAKE_PACKET).await,
            Err(WireError::OutOfOrder {
                got: 5,
                expected: 2
            })
        ));
    }

    #[test]
    fn errors_carry_code_state_and_message() {
        let payload = err_payload(ACCESS_DENIED, "lock targeting User:\"a\" is in force");
        assert_eq!(payload[0], 0xff);
        assert_eq!(&payload[1..3], &1045u16.to_le_bytes());
        assert_eq!(&payload[3..9], b"#28000");
        assert_eq!(&payload[9..], b"lock targeting User:\"a\" is in force");
        let (code, message) = parse_error(&payload).unwrap();
        assert_eq!(code, ACCESS_DENIED);
        assert_eq!(message, "lock targeting User:\"a\" is in force");
        assert!(parse_error(&[0xff, 1]).is_err());
        assert!(parse_error(&[0x00, 1, 2, 3]).is_err());
        let (code, message) = parse_error(b"\xffj\x04Host '127.0.0.1' is not allowed").unwrap();
        assert_eq!(code.code, 1130);
        assert_eq!(&code.state, b"HY000");
        assert_eq!(message, "Host '127.0.0.1' is not allowed");
    }

    #[test]
    fn login_requests_decode_with_mysql_common() {
        let attributes = vec![("_client_name".to_string(), "libmariadb".to_string())];
        let request = LoginRequest {
            capabilities: CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
                | CapabilityFlags::CLIENT_CONNECT_ATTRS
                | CapabilityFlags::CLIENT_DEPRECATE_EOF,
            max_packet_size: 1 << 24,
            collation: 45,
            user: "app",
            auth_response: &[7; 20],
            database: Some("shop"),
            auth_plugin: b"mysql_native_password",
            attributes: &attributes,
        };
        let payload = request.encode();
        let decoded: HandshakeResponse<'_> = decode(&payload, ()).unwrap();
        assert_eq!(decoded.user(), b"app");
        assert_eq!(decoded.db_name(), Some(&b"shop"[..]));
        assert_eq!(decoded.scramble_buf(), &[7; 20]);
        assert_eq!(decoded.collation(), 45);
        assert!(
            decoded
                .capabilities()
                .contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
        );
        assert_eq!(
            decoded.connect_attributes().unwrap()["_client_name"],
            "libmariadb"
        );
        let short = LoginRequest {
            capabilities: CapabilityFlags::empty(),
            database: None,
            ..request
        };
        let payload = short.encode();
        let decoded: HandshakeResponse<'_> = decode(&payload, ()).unwrap();
        assert_eq!(decoded.scramble_buf(), &[7; 20]);
        assert_eq!(decoded.db_name(), None);
    }

    #[test]
    fn every_truncation_of_a_handshake_response_is_an_error_not_a_panic() {
        let request = LoginRequest {
            capabilities: CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
                | CapabilityFlags::CLIENT_CONNECT_ATTRS,
            max_packet_size: 1 << 24,
            collation: 45,
            user: "app",
            auth_response: &[7; 20],
            database: Some("shop"),
            auth_plugin: b"mysql_native_password",
            attributes: &[("k".into(), "v".into())],
        };
        let payload = request.encode();
        let whole: HandshakeResponse<'_> = decode(&payload, ()).unwrap();
        for end in 0..payload.len() {
            // A truncation is refused, or (where the tail is optional) read
            // as a shorter message: never as the whole one.
            if let Ok(short) = decode::<HandshakeResponse<'_>>(&payload[..end], ()) {
                assert_ne!(
                    short, whole,
                    "a truncation at {end} read as the whole message"
                );
            }
        }
        assert!(decode::<HandshakeResponse<'_>>(&payload[..3], ()).is_err());
        // Pseudo-random garbage, deterministically.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let length = (state % 120) as usize;
            let garbage: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            // A response needs its four capability bytes at least.
            let response = decode::<HandshakeResponse<'_>>(&garbage, ());
            assert!(garbage.len() >= 4 || response.is_err());
            let _ = decode::<mysql_common::packets::HandshakePacket<'_>>(&garbage, ());
            // An error packet starts with 0xff and a two-byte code.
            let error = parse_error(&garbage);
            if garbage.first() != Some(&0xff) || garbage.len() < 3 {
                assert!(error.is_err(), "{garbage:?} read as an error packet");
            } else {
                let (code, _) = error.unwrap();
                assert_eq!(code.code, u16::from_le_bytes([garbage[1], garbage[2]]));
            }
        }
    }

    #[tokio::test]
    async fn packets_are_handed_out_whole() {
        let (mut stream, _) = frame(0, b"first");
        stream.extend(frame(1, b"second").0);
        let mut buffer = PacketBuffer::default();
        let mut reader: &[u8] = &stream[..7];
        buffer.fill(&mut reader).await.unwrap();
        assert!(buffer.next_packet().is_none());
        assert!(buffer.has_partial_packet());
        let mut reader: &[u8] = &stream[7..];
        buffer.fill(&mut reader).await.unwrap();
        let first = buffer.next_packet().unwrap();
        assert_eq!(packet_fields(&first), (5, 0, &b"first"[..]));
        let second = buffer.next_packet().unwrap();
        assert_eq!(packet_fields(&second), (6, 1, &b"second"[..]));
        assert!(buffer.next_packet().is_none());
        assert!(!buffer.has_partial_packet());
    }
}
