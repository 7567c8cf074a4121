//! The client's answer to a greeting, both ways: the `SSLRequest` and
//! `HandshakeResponse41` a client sends the proxy, read with `mysql_common`'s
//! [`HandshakeResponse`] into a [`ClientHello`], and the
//! `HandshakeResponse41` the proxy logs in to the upstream with, a
//! [`LoginRequest`]. That one is written here rather than with
//! `mysql_common`'s builder, which picks the collation itself; the client's
//! must pass through.

use bytes::BufMut;
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::BufMutExt;
use mysql_common::packets::HandshakeResponse;
use mysql_common::proto::MySerialize;

use super::super::packet::WireError;
use super::{decode, encode};

/// The length of an `SSLRequest` payload.
pub const SSL_REQUEST_LENGTH: usize = 32;

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

/// The capabilities at the start of an `SSLRequest` or a handshake response.
pub fn client_capabilities(payload: &[u8]) -> Result<CapabilityFlags, WireError> {
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
    let response: HandshakeResponse<'_> = decode(payload, ())?;
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

/// The `HandshakeResponse41` the proxy logs in to the upstream with.
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
        encode(self)
    }
}

impl MySerialize for LoginRequest<'_> {
    fn serialize(&self, out: &mut Vec<u8>) {
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
        out.reserve(128);
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
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_error;
    use super::*;
    use deadbolt_testkit::Garbage;

    /// A login as `app` to `shop` with a native password, as MariaDB's
    /// client sends it, asking for `extra` capabilities too.
    fn login<'a>(
        extra: CapabilityFlags,
        auth_response: &'a [u8],
        attributes: &'a [(String, String)],
    ) -> LoginRequest<'a> {
        LoginRequest {
            capabilities: CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
                | CapabilityFlags::CLIENT_CONNECT_ATTRS
                | extra,
            max_packet_size: 1 << 24,
            collation: 45,
            user: "app",
            auth_response,
            database: Some("shop"),
            auth_plugin: b"mysql_native_password",
            attributes,
        }
    }

    #[test]
    fn login_requests_decode_with_mysql_common() {
        let attributes = vec![("_client_name".to_string(), "libmariadb".to_string())];
        let request = login(CapabilityFlags::CLIENT_DEPRECATE_EOF, &[7; 20], &attributes);
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
        let attributes = [("k".to_string(), "v".to_string())];
        let request = login(CapabilityFlags::empty(), &[7; 20], &attributes);
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
        let mut stream = Garbage::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..2000 {
            let garbage = stream.bytes(120);
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

    #[test]
    fn handshake_responses_become_hellos() {
        let attributes = vec![("_os".to_string(), "Linux".to_string())];
        let payload = login(CapabilityFlags::CLIENT_SSL, b"", &attributes).encode();
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
