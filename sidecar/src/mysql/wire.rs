//! The MySQL proxy's wire layer as the crate shows it: what the integration
//! tests, the fuzz targets and their seed generator speak to the proxy with.
//! Only re-exports: framing lives in `packet`, the messages in `messages`.

pub use super::messages::{
    ACCESS_DENIED, BAD_HANDSHAKE, CONNECTION_KILLED, ErrorCode, LoginRequest, NOT_SUPPORTED,
    PACKET_TOO_LARGE, SECURE_TRANSPORT_REQUIRED, UPSTREAM_UNREACHABLE, check_greeting, decode,
    err_payload, parse_error, send_error,
};
pub use super::packet::{
    HEADER, MAX_HANDSHAKE_PACKET, MAX_PAYLOAD, Packet, PacketBuffer, WireError, frame,
    packet_fields, parse_header, read_expected, read_packet, write_payload,
};
pub use crate::io::ByteStream;
