//! The MySQL messages the proxy reads or writes, one type per message. Their
//! encode and decode traits are `mysql_common`'s [`MySerialize`] and
//! [`MyDeserialize`]: where `mysql_common` has the message, its type is used
//! as it is (`ErrPacket`, `OkPacket`, `StmtPacket`, `HandshakePacket`,
//! `AuthSwitchRequest`, `SslRequest`, `Command`); the proxy's own types
//! implement the same traits where `mysql_common`'s do not say what the
//! proxy must ([`Greeting`], [`ClientHello`], [`LoginRequest`]). Peer input
//! is only ever decoded through [`decode`], which turns anything malformed
//! into a [`WireError`], never a panic.

mod command;
mod error;
mod greeting;
mod handshake_response;
mod response;

pub use command::{Command, command};
pub use error::{
    ACCESS_DENIED, BAD_HANDSHAKE, CONNECTION_KILLED, ErrorCode, NOT_SUPPORTED, PACKET_TOO_LARGE,
    SECURE_TRANSPORT_REQUIRED, UPSTREAM_UNREACHABLE, err_payload, parse_error, send_error,
};
pub use greeting::{Greeting, PROTOCOL_VERSION, check_greeting};
pub use handshake_response::{
    ClientHello, LoginRequest, SSL_REQUEST_LENGTH, client_capabilities, parse_hello,
};
pub use response::{
    EOF, ERR, LOCAL_INFILE, OK, column_count, eof_status, ok_status, prepare_counts,
    terminator_status,
};

use mysql_common::io::ParseBuf;
use mysql_common::proto::{MyDeserialize, MySerialize};

use super::packet::WireError;

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

/// A message's payload.
pub fn encode<T: MySerialize + ?Sized>(message: &T) -> Vec<u8> {
    let mut payload = Vec::new();
    message.serialize(&mut payload);
    payload
}
