//! The `ERR` packet: `mysql_common`'s [`ErrPacket`] (a [`ServerError`]'s
//! code, SQLSTATE and message), and the codes the proxy answers with, named
//! as MySQL and MariaDB name them. Reading one passes a server's refusal on
//! as it is, including the kind sent before the handshake, which carries no
//! SQLSTATE.

use mysql_common::constants::CapabilityFlags;
use mysql_common::packets::{ErrPacket, ServerError, SqlState};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::super::packet::{WireError, write_payload};
use super::{decode, encode};

/// An error code and SQLSTATE, as the `mysql` client prints them:
/// `ERROR 1045 (28000): <message>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    /// The numeric code.
    pub code: u16,
    /// The five-character SQLSTATE.
    pub state: [u8; 5],
}

/// The SQLSTATE of an error that names none.
const GENERAL_ERROR: [u8; 5] = *b"HY000";

/// A refusal by a lock, a stale view or failed authentication:
/// `ER_ACCESS_DENIED_ERROR`, what MySQL itself answers a refused login with.
pub const ACCESS_DENIED: ErrorCode = ErrorCode::new(1045, *b"28000");
/// A live session cut by a lock or a stale view: `ER_CONNECTION_KILLED`,
/// what MariaDB sends a connection that `KILL` ended.
pub const CONNECTION_KILLED: ErrorCode = ErrorCode::new(1927, *b"70100");
/// A malformed opening: `ER_HANDSHAKE_ERROR` ("Bad handshake").
pub const BAD_HANDSHAKE: ErrorCode = ErrorCode::new(1043, *b"08S01");
/// A packet longer than the proxy accepts at this point: `ER_NET_PACKET_TOO_LARGE`.
pub const PACKET_TOO_LARGE: ErrorCode = ErrorCode::new(1153, *b"08S01");
/// A client that did not ask for TLS: `ER_SECURE_TRANSPORT_REQUIRED`.
pub const SECURE_TRANSPORT_REQUIRED: ErrorCode = ErrorCode::new(3159, GENERAL_ERROR);
/// A command the proxy does not relay: `ER_NOT_SUPPORTED_YET`.
pub const NOT_SUPPORTED: ErrorCode = ErrorCode::new(1235, *b"42000");
/// The upstream could not be reached or spoke nonsense: `CR_CONN_HOST_ERROR`,
/// the code the `mysql` client itself uses for an unreachable server.
pub const UPSTREAM_UNREACHABLE: ErrorCode = ErrorCode::new(2003, GENERAL_ERROR);

impl ErrorCode {
    const fn new(code: u16, state: [u8; 5]) -> Self {
        Self { code, state }
    }

    /// The `ERR` packet with this code and `message`.
    pub fn packet(self, message: &str) -> ErrPacket<'_> {
        ErrPacket::Error(ServerError::new(
            self.code,
            Some(SqlState::new(self.state)),
            message.as_bytes(),
        ))
    }
}

/// The payload of an `ERR` packet with this code and message.
pub fn err_payload(code: ErrorCode, message: &str) -> Vec<u8> {
    encode(&code.packet(message))
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

/// An `ERR` payload's code, SQLSTATE and message, to pass on as they are. A
/// server that refuses a connection before the handshake (too many
/// connections, a blocked host) leaves the SQLSTATE out: it reads as
/// `HY000`, with the whole rest as the message.
pub fn parse_error(payload: &[u8]) -> Result<(ErrorCode, String), WireError> {
    // With CLIENT_PROTOCOL_41 the SQLSTATE must be there; without, the rest
    // is the message. Neither context enables MariaDB's progress reports.
    let packet = decode::<ErrPacket<'_>>(payload, CapabilityFlags::CLIENT_PROTOCOL_41)
        .or_else(|_| decode::<ErrPacket<'_>>(payload, CapabilityFlags::empty()));
    let Ok(ErrPacket::Error(error)) = packet else {
        return Err(WireError::Malformed("truncated error packet".into()));
    };
    let state = error
        .sql_state_ref()
        .map_or(GENERAL_ERROR, SqlState::as_bytes);
    Ok((
        ErrorCode {
            code: error.error_code(),
            state,
        },
        error.message_str().into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_short_state_marker_is_part_of_the_message() {
        let (code, message) = parse_error(b"\xff\x10\x04#HY0").unwrap();
        assert_eq!((code.code, &code.state), (1040, b"HY000"));
        assert_eq!(message, "#HY0");
        let (code, message) = parse_error(b"\xff\xff\xff#42000progress?").unwrap();
        assert_eq!((code.code, &code.state), (0xffff, b"42000"));
        assert_eq!(message, "progress?");
    }
}
