//! The server's greeting (`HandshakeV10`), both ways: the proxy's own to a
//! client, written with `mysql_common`'s [`HandshakePacket`], and the check
//! the upstream's must pass before that same type decodes it.

use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::packets::HandshakePacket;
use mysql_common::proto::MySerialize;

use super::super::packet::WireError;
use super::encode;

/// The protocol version of every MySQL since 3.21.
pub const PROTOCOL_VERSION: u8 = 10;
/// The plugin named in the greeting. Clients answer it with a scramble the
/// proxy ignores; it is what servers usually name, so every client knows it.
const GREETING_PLUGIN: &[u8] = b"mysql_native_password";

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
        encode(self)
    }
}

impl MySerialize for Greeting {
    fn serialize(&self, buf: &mut Vec<u8>) {
        let mut part_two = self.scramble[8..].to_vec();
        part_two.push(0);
        let mut part_one = [0u8; 8];
        part_one.copy_from_slice(&self.scramble[..8]);
        HandshakePacket::new(
            PROTOCOL_VERSION,
            self.server_version.as_bytes(),
            self.connection_id,
            part_one,
            Some(part_two),
            self.capabilities,
            self.collation,
            StatusFlags::SERVER_STATUS_AUTOCOMMIT,
            Some(GREETING_PLUGIN),
        )
        .serialize(buf);
    }
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

#[cfg(test)]
mod tests {
    use super::super::decode;
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
        let decoded: HandshakePacket<'_> = decode(&payload, ()).unwrap();
        assert_eq!(decoded.server_version_str(), "8.0.0-Deadbolt");
        assert_eq!(decoded.connection_id(), 1 << 31);
        assert_eq!(decoded.nonce(), greeting.scramble);
        assert_eq!(decoded.capabilities(), greeting.capabilities);
        assert_eq!(decoded.auth_plugin_name_ref(), Some(GREETING_PLUGIN));
    }
}
