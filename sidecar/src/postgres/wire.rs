//! Reading and writing PostgreSQL messages around pgwire's codecs: the
//! length-prefixed reads (with limits, so a 2 GiB length is an error and not an
//! allocation) and `ErrorResponse` construction. The relay finds message
//! boundaries with [`crate::framing::LengthPrefixed::postgres`] instead of
//! decoding every message.

use bytes::{BufMut, BytesMut};
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::{DecodeContext, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Startup-phase packets (startup, SSL/GSS/cancel requests, passwords) are small;
/// PostgreSQL itself caps them at 10,000 bytes.
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// SQLSTATE for refusals by a lock or a stale view: invalid_authorization_specification.
pub const SQLSTATE_LOCKED: &str = "28000";
/// SQLSTATE for a rejected password or token: invalid_password.
pub const SQLSTATE_BAD_PASSWORD: &str = "28P01";
/// SQLSTATE for malformed input: protocol_violation.
pub const SQLSTATE_PROTOCOL: &str = "08P01";
/// SQLSTATE for an unreachable upstream: connection_failure.
pub const SQLSTATE_UPSTREAM: &str = "08006";

/// Why the wire could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the connection.
    #[error("the connection closed")]
    Closed,
    /// A length field is impossible.
    #[error("invalid message length {0}")]
    Length(i64),
    /// A message could not be decoded.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message arrived that the protocol does not allow here.
    #[error("unexpected message {0:?}")]
    Unexpected(char),
    /// I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn closed_on_eof(error: std::io::Error) -> WireError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        WireError::Closed
    } else {
        WireError::Io(error)
    }
}

/// Reads an untyped startup-phase packet (length + body) into a buffer that
/// holds the whole packet, length included.
pub async fn read_startup_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<BytesMut, WireError> {
    let length = reader.read_i32().await.map_err(closed_on_eof)?;
    if length < 8 || length as usize > MAX_STARTUP_PACKET {
        return Err(WireError::Length(length.into()));
    }
    let mut packet = BytesMut::with_capacity(length as usize);
    packet.put_i32(length);
    packet.resize(length as usize, 0);
    reader
        .read_exact(&mut packet[4..])
        .await
        .map_err(closed_on_eof)?;
    Ok(packet)
}

/// Reads one typed message (tag + length + body) whole, refusing lengths over `max`.
pub async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<BytesMut, WireError> {
    let tag = reader.read_u8().await.map_err(closed_on_eof)?;
    let length = reader.read_i32().await.map_err(closed_on_eof)?;
    if length < 4 || length as usize > max {
        return Err(WireError::Length(length.into()));
    }
    let mut message = BytesMut::with_capacity(1 + length as usize);
    message.put_u8(tag);
    message.put_i32(length);
    message.resize(1 + length as usize, 0);
    reader
        .read_exact(&mut message[5..])
        .await
        .map_err(closed_on_eof)?;
    Ok(message)
}

/// Checks what pgwire's decoders take for granted, so a malformed body is an
/// error and not an out-of-bounds read: authentication requests carry at least
/// their code (and MD5 its salt), and C-string messages end with their NUL.
fn check_structure(message: &[u8]) -> Result<(), WireError> {
    let malformed = |what: &str| Err(WireError::Malformed(what.into()));
    let Some(&tag) = message.first() else {
        return malformed("empty message");
    };
    let body = message.get(5..).unwrap_or_default();
    match tag {
        b'R' => match body
            .get(..4)
            .map(|code| i32::from_be_bytes([code[0], code[1], code[2], code[3]]))
        {
            None => malformed("authentication request without a code"),
            Some(5) if body.len() != 8 => malformed("MD5 request without a 4-byte salt"),
            _ => Ok(()),
        },
        b'E' | b'N' if !fields_are_terminated(body) => malformed("unterminated field list"),
        b'p' if body.last() != Some(&0) => malformed("unterminated string"),
        _ => Ok(()),
    }
}

/// Whether an error or notice body is a run of (code, NUL-terminated string)
/// fields closed by a zero code, as pgwire's decoder assumes.
fn fields_are_terminated(mut body: &[u8]) -> bool {
    loop {
        match body.split_first() {
            None => return false,
            Some((0, rest)) => return rest.is_empty(),
            Some((_, rest)) => match rest.iter().position(|b| *b == 0) {
                Some(end) => body = &rest[end + 1..],
                None => return false,
            },
        }
    }
}

/// Decodes a whole message with pgwire, after `check_structure`. pgwire's
/// decoders index into the buffer, so anything the check misses is still
/// caught here rather than unwinding through the proxy.
pub fn decode<M: Message>(mut message: BytesMut) -> Result<M, WireError> {
    if M::message_type().is_some() {
        check_structure(&message)?;
    }
    let context = DecodeContext::default();
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        M::decode(&mut message, &context)
    }))
    .map_err(|_| WireError::Malformed("undecodable message body".into()))?;
    decoded
        .map_err(|error| WireError::Malformed(error.to_string()))?
        .ok_or_else(|| WireError::Malformed("truncated message".into()))
}

/// Encodes a message with pgwire.
pub fn encode<M: Message>(message: &M) -> BytesMut {
    let mut buffer = BytesMut::with_capacity(message.message_length() + 1);
    // Only messages the proxy builds itself are encoded, and their sizes are bounded.
    if let Err(error) = message.encode(&mut buffer) {
        tracing::error!(%error, "cannot encode a message");
    }
    buffer
}

/// An `ErrorResponse` with the given severity, SQLSTATE and message, which
/// `psql` prints as `SEVERITY:  message`.
pub fn error_response(severity: &str, code: &str, message: &str) -> BytesMut {
    encode(&ErrorResponse::new(vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', code.to_string()),
        (b'M', message.to_string()),
    ]))
}

/// Sends a FATAL error and closes the write side.
pub async fn send_fatal<W: AsyncWrite + Unpin>(writer: &mut W, code: &str, message: &str) {
    let _ = writer
        .write_all(&error_response("FATAL", code, message))
        .await;
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn huge_startup_lengths_are_refused_without_allocating() {
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(
            read_startup_packet(&mut input).await,
            Err(WireError::Length(_))
        ));
        let mut input: &[u8] = &[b'p', 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_message(&mut input, MAX_STARTUP_PACKET).await,
            Err(WireError::Length(_))
        ));
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        use pgwire::messages::startup::{Authentication, Password};
        for bytes in [
            &[b'R', 0, 0, 0, 4][..],
            &[b'R', 0, 0, 0, 8, 0, 0, 0, 5],
            &[b'R', 0, 0, 0, 9, 0, 0, 0, 5, 1],
        ] {
            assert!(
                decode::<Authentication>(BytesMut::from(bytes)).is_err(),
                "{bytes:?}"
            );
        }
        assert!(decode::<ErrorResponse>(BytesMut::from(&[b'E', 0, 0, 0, 6, b'M'][..])).is_err());
        // Found by fuzzing: a field's own NUL is not the list's closing zero.
        assert!(decode::<ErrorResponse>(BytesMut::from(&[b'E', 0, 0, 0, 6, b'M', 0][..])).is_err());
        let closed =
            decode::<ErrorResponse>(BytesMut::from(&[b'E', 0, 0, 0, 8, b'M', b'x', 0, 0][..]));
        assert_eq!(closed.unwrap().fields, vec![(b'M', "x".to_string())]);
        assert!(decode::<Password>(BytesMut::from(&[b'p', 0, 0, 0, 5, b'x'][..])).is_err());
        let password =
            decode::<Password>(BytesMut::from(&[b'p', 0, 0, 0, 6, b'x', 0][..])).unwrap();
        assert_eq!(password.password, "x");
    }

    #[test]
    fn error_responses_carry_the_message() {
        let bytes = error_response(
            "FATAL",
            SQLSTATE_LOCKED,
            "lock targeting User:\"a\" is in force",
        );
        assert_eq!(bytes[0], b'E');
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("lock targeting User:\"a\" is in force"));
        assert!(text.contains("28000"));
    }
}
