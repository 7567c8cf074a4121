//! MySQL packet framing: the 4-byte header (3-byte little-endian length,
//! sequence id), reads with limits (an absurd length is an error, not an
//! allocation), writes split where the protocol requires, and a buffer that
//! hands the relay whole packets so it always knows where the boundaries are.
//!
//! Writing uses `mysql_common`'s [`packet_to_chunks`]. Reading keeps the
//! proxy's own code, because `mysql_common`'s `PacketCodec` does not fit
//! either reader:
//! - [`read_packet`] reads exactly one packet's bytes from the socket. The
//!   codec decodes from a buffer filled ahead, and reading ahead of an
//!   `SSLRequest` would swallow the TLS handshake that follows it; it also
//!   counts sequence ids itself from 0, where the proxy checks the id each
//!   step of the opening expects.
//! - [`PacketBuffer`] hands the relay each packet raw, header included, to
//!   forward unchanged the moment it is whole. The codec joins a multi-packet
//!   payload (up to `max_allowed_packet`) before handing it out, strips the
//!   headers and refuses sequence ids it did not expect, where the relay
//!   passes on 16 MiB payloads piece by piece and only observes the ids.

use bytes::{Buf, BytesMut};
use mysql_common::proto::codec::packet_to_chunks;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::messages::{BAD_HANDSHAKE, ErrorCode, PACKET_TOO_LARGE};

/// Bytes in a packet header.
pub const HEADER: usize = 4;
/// A payload of exactly this length continues in the next packet
/// (`mysql_common::constants::MAX_PAYLOAD_LEN`, which is a `static`).
pub const MAX_PAYLOAD: usize = 0xff_ffff;
/// The longest packet the opening of a connection may carry: a handshake
/// response with connection attributes, or a bearer token as a password.
pub const MAX_HANDSHAKE_PACKET: usize = 64 * 1024;

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
/// where the protocol requires (an exact multiple of [`MAX_PAYLOAD`] ends
/// with an empty packet). Returns the bytes and the next sequence id.
pub fn frame(seq: u8, payload: &[u8]) -> (Vec<u8>, u8) {
    let mut out = BytesMut::new();
    let next = packet_to_chunks(seq, &mut &payload[..], &mut out);
    (out.into(), next)
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

    #[test]
    fn the_payload_limit_is_mysql_commons() {
        assert_eq!(MAX_PAYLOAD, mysql_common::constants::MAX_PAYLOAD_LEN);
        let (bytes, next) = frame(3, b"");
        assert_eq!(bytes, [0, 0, 0, 3]);
        assert_eq!(next, 4);
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
