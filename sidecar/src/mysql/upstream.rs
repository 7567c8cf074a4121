//! The proxy's own connection to the real MySQL or MariaDB server: TCP, the
//! server's greeting, optional TLS (verifying the server, optionally with a
//! client certificate), and the login as the client's database user with a
//! password from the password file: `mysql_native_password`,
//! `caching_sha2_password` (fast path, and full authentication over TLS or
//! with the server's RSA key), `sha256_password`, `client_ed25519` and
//! `mysql_clear_password`, switching plugins when the server asks. The final
//! OK is handed back, to be relayed to the client.

use mysql_common::auth::plugins::{AuthProc, ChallengeResponsePlugin, Context, Response};
use mysql_common::constants::CapabilityFlags;
use mysql_common::packets::{AuthPlugin, AuthSwitchRequest, HandshakePacket, SslRequest};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::messages::{
    self, ACCESS_DENIED, ErrorCode, LoginRequest, NOT_SUPPORTED, PROTOCOL_VERSION,
    UPSTREAM_UNREACHABLE, check_greeting, decode, parse_error,
};
use super::packet::{self, WireError};
use crate::database::upstream::{Unreachable, UpstreamConfig};
use crate::io::ByteStream;

/// The longest packet the upstream may send before the session starts (an
/// RSA public key is the largest).
const MAX_AUTH_PACKET: usize = 1 << 20;
/// Authentication exchanges are short; a server that keeps asking is broken.
const MAX_AUTH_ROUNDS: usize = 8;

/// What the upstream says about itself in its greeting, which the proxy's
/// own greeting mirrors so clients see the server they are really using.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerProfile {
    /// The version string, e.g. `5.5.5-10.11.6-MariaDB`.
    pub version: String,
    /// What the server can do.
    pub capabilities: CapabilityFlags,
    /// The server's default collation.
    pub collation: u8,
}

/// What the proxy logs in with, on the client's behalf.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    /// The database user.
    pub user: &'a str,
    /// The schema.
    pub database: Option<&'a str>,
    /// The session capabilities the client negotiated with the proxy; the
    /// upstream must speak all of them, or the relayed bytes would not mean
    /// the same to both.
    pub capabilities: CapabilityFlags,
    /// The largest packet the client accepts.
    pub max_packet_size: u32,
    /// The client's collation.
    pub collation: u8,
    /// Connection attributes to pass on.
    pub attributes: Vec<(String, String)>,
}

/// An upstream connection whose greeting has been read.
pub struct Greeted {
    tcp: TcpStream,
    handshake: HandshakePacket<'static>,
}

/// An authenticated upstream connection.
pub struct Upstream {
    /// The connection, positioned after the OK that ended authentication.
    pub stream: Box<dyn ByteStream>,
    /// That OK's payload, to relay to the client.
    pub ok: Vec<u8>,
}

/// Why the upstream session could not be set up. `Refused` carries the
/// server's own error, which the client sees as it is.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP or TLS failed.
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    /// The server refused (wrong password, unknown database, too many connections).
    #[error("{message}")]
    Refused {
        /// The server's code and SQLSTATE.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The server asked for something the proxy cannot do.
    #[error("the database asked for {0}, which the proxy does not support")]
    Unsupported(String),
    /// The server lacks a capability the client was promised.
    #[error(
        "the database does not support {0}, which this proxy offered the client; reconnect to get the database's capabilities"
    )]
    Incompatible(String),
    /// Malformed exchange.
    #[error("the database sent a {0}")]
    Wire(#[from] WireError),
}

impl UpstreamError {
    /// The code the client is told this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            UpstreamError::Refused { code, .. } => *code,
            UpstreamError::Unsupported(_) => ACCESS_DENIED,
            UpstreamError::Incompatible(_) => NOT_SUPPORTED,
            UpstreamError::Unreachable(_) | UpstreamError::Wire(_) => UPSTREAM_UNREACHABLE,
        }
    }
}

/// The MySQL side of [`UpstreamConfig`]: the server speaks first.
impl UpstreamConfig {
    /// Connects and reads the server's greeting.
    pub async fn greet(&self) -> Result<Greeted, UpstreamError> {
        let mut tcp = self.connect_tcp().await?;
        let packet = packet::read_expected(&mut tcp, 0, MAX_AUTH_PACKET).await?;
        if packet.payload.first() == Some(&0xff) {
            let (code, message) = parse_error(&packet.payload)?;
            return Err(UpstreamError::Refused { code, message });
        }
        check_greeting(&packet.payload)?;
        let handshake: HandshakePacket<'_> = decode(&packet.payload, ())?;
        if handshake.protocol_version() != PROTOCOL_VERSION {
            return Err(UpstreamError::Unsupported(format!(
                "protocol version {}",
                handshake.protocol_version()
            )));
        }
        let handshake = handshake.into_owned();
        if !handshake
            .capabilities()
            .contains(CapabilityFlags::CLIENT_PROTOCOL_41)
        {
            return Err(UpstreamError::Unsupported(
                "the pre-4.1 protocol".to_string(),
            ));
        }
        Ok(Greeted { tcp, handshake })
    }
}

impl Greeted {
    /// What the server said about itself.
    pub fn profile(&self) -> ServerProfile {
        ServerProfile {
            version: self.handshake.server_version_str().into_owned(),
            capabilities: self.handshake.capabilities(),
            collation: self.handshake.default_collation(),
        }
    }

    /// Logs in as `login.user`: TLS first when configured, then the
    /// handshake response and as many authentication rounds as the server's
    /// plugin needs.
    pub async fn login(
        self,
        config: &UpstreamConfig,
        login: &Login<'_>,
    ) -> Result<Upstream, UpstreamError> {
        let server = self.handshake.capabilities();
        let missing = login.capabilities.difference(server);
        if !missing.is_empty() {
            return Err(UpstreamError::Incompatible(format!("{missing:?}")));
        }
        let mut capabilities = login.capabilities
            | CapabilityFlags::CLIENT_LONG_PASSWORD
            | CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | server.intersection(
                CapabilityFlags::CLIENT_PLUGIN_AUTH
                    | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
                    | CapabilityFlags::CLIENT_CONNECT_ATTRS,
            );
        let mut seq = 1;
        let mut stream: Box<dyn ByteStream> = match &config.tls {
            None => Box::new(self.tcp),
            Some(tls) => {
                if !server.contains(CapabilityFlags::CLIENT_SSL) {
                    return Err(config.unreachable("the server does not accept TLS").into());
                }
                capabilities |= CapabilityFlags::CLIENT_SSL;
                let mut tcp = self.tcp;
                let request = messages::encode(&SslRequest::new(
                    capabilities,
                    login.max_packet_size,
                    login.collation,
                ));
                seq = packet::write_payload(&mut tcp, seq, &request)
                    .await
                    .map_err(WireError::Io)?;
                let stream = TlsConnector::from(tls.config.clone())
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|error| config.unreachable(format_args!("TLS: {error}")))?;
                Box::new(stream)
            }
        };

        let plugin = self
            .handshake
            .auth_plugin()
            .filter(|_| server.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH))
            .map_or(AuthPlugin::MysqlNativePassword, AuthPlugin::into_owned);
        let password = config.passwords.for_user(login.user).unwrap_or_default();
        let mut auth = Authentication::start(
            plugin,
            self.handshake.nonce(),
            password,
            config.tls.is_some(),
        )?;
        let first = auth.respond(&auth.nonce.clone())?.unwrap_or_default();
        let request = LoginRequest {
            capabilities,
            max_packet_size: login.max_packet_size,
            collation: login.collation,
            user: login.user,
            auth_response: &first,
            database: login.database,
            auth_plugin: auth.plugin.as_bytes(),
            attributes: &login.attributes,
        };
        seq = packet::write_payload(&mut stream, seq, &request.encode())
            .await
            .map_err(WireError::Io)?;

        for _ in 0..MAX_AUTH_ROUNDS {
            let packet = packet::read_expected(&mut stream, seq, MAX_AUTH_PACKET).await?;
            seq = packet.seq.wrapping_add(1);
            let reply = match packet.payload.first() {
                Some(0x00) => {
                    return Ok(Upstream {
                        stream,
                        ok: packet.payload,
                    });
                }
                Some(0xff) => {
                    let (code, message) = parse_error(&packet.payload)?;
                    return Err(UpstreamError::Refused { code, message });
                }
                Some(0xfe) if packet.payload.len() == 1 => {
                    return Err(UpstreamError::Unsupported(
                        "mysql_old_password (a pre-4.1 password hash)".into(),
                    ));
                }
                Some(0xfe) => {
                    let switch: AuthSwitchRequest<'_> = decode(&packet.payload, ())?;
                    auth = Authentication::start(
                        switch.auth_plugin().into_owned(),
                        switch.plugin_data().to_vec(),
                        password,
                        config.tls.is_some(),
                    )?;
                    Some(auth.respond(&auth.nonce.clone())?.unwrap_or_default())
                }
                Some(0x01) => auth.respond(&packet.payload[1..])?,
                _ => {
                    return Err(WireError::Malformed(
                        "packet where an authentication step was expected".into(),
                    )
                    .into());
                }
            };
            if let Some(reply) = reply {
                seq = packet::write_payload(&mut stream, seq, &reply)
                    .await
                    .map_err(WireError::Io)?;
            }
        }
        Err(WireError::Malformed("authentication that does not end".into()).into())
    }
}

/// One authentication plugin's exchange with the upstream.
struct Authentication<'p> {
    plugin: AuthPlugin<'static>,
    process: AuthProc,
    nonce: Vec<u8>,
    password: &'p str,
    tls: bool,
}

/// What the plugins may know about the connection.
struct PluginContext<'a> {
    password: &'a [u8],
    nonce: &'a [u8],
    tls: bool,
}

impl Context for PluginContext<'_> {
    fn pass(&self) -> &[u8] {
        self.password
    }
    fn is_ipc_transport(&self) -> bool {
        false
    }
    fn is_tls_transport(&self) -> bool {
        self.tls
    }
    fn scramble(&self) -> &[u8] {
        self.nonce
    }
    /// None configured: without TLS, full `caching_sha2_password`
    /// authentication asks the server for its key, as `mysql
    /// --get-server-public-key` does.
    fn server_key_pem(&self) -> Option<&[u8]> {
        None
    }
}

impl<'p> Authentication<'p> {
    fn start(
        plugin: AuthPlugin<'static>,
        nonce: Vec<u8>,
        password: &'p str,
        tls: bool,
    ) -> Result<Self, UpstreamError> {
        let supported = matches!(
            plugin,
            AuthPlugin::MysqlNativePassword
                | AuthPlugin::CachingSha2Password
                | AuthPlugin::Sha256Password
                | AuthPlugin::Ed25519
                | AuthPlugin::MysqlClearPassword
        );
        let unsupported =
            || UpstreamError::Unsupported(String::from_utf8_lossy(plugin.as_bytes()).into_owned());
        if !supported {
            return Err(unsupported());
        }
        let process = plugin.init().map_err(|_| unsupported())?;
        Ok(Self {
            plugin,
            process,
            nonce,
            password,
            tls,
        })
    }

    /// The plugin's answer to a challenge, if it has one. Plugins parse what
    /// the server sends (an RSA key, say), so a panic in them is caught.
    fn respond(&mut self, challenge: &[u8]) -> Result<Option<Vec<u8>>, UpstreamError> {
        let context = PluginContext {
            password: self.password.as_bytes(),
            nonce: &self.nonce,
            tls: self.tls,
        };
        let process = &mut self.process;
        let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process.run(context, challenge)
        }))
        .map_err(|_| WireError::Malformed("authentication challenge it cannot read".into()))?
        .map_err(|error| {
            WireError::Malformed(format!(
                "{} challenge the proxy cannot answer: {error}",
                String::from_utf8_lossy(self.plugin.as_bytes())
            ))
        })?;
        Ok(match response {
            Response::Next { packet } | Response::Last { packet } => packet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::upstream::Passwords;
    use mysql_common::packets::HandshakeResponse;
    use mysql_common::proto::MyDeserialize as _;
    use mysql_common::proto::MySerialize;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const NONCE: &[u8; 20] = b"abcdefghijklmnopqrst";

    fn greeting(plugin: &[u8], capabilities: CapabilityFlags) -> Vec<u8> {
        let mut payload = Vec::new();
        HandshakePacket::new(
            10,
            &b"8.0.36"[..],
            7,
            NONCE[..8].try_into().unwrap(),
            Some(&[&NONCE[8..], &[0][..]].concat()[..]),
            capabilities,
            255,
            mysql_common::constants::StatusFlags::SERVER_STATUS_AUTOCOMMIT,
            Some(plugin),
        )
        .serialize(&mut payload);
        payload
    }

    fn server_capabilities() -> CapabilityFlags {
        CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
            | CapabilityFlags::CLIENT_CONNECT_WITH_DB
            | CapabilityFlags::CLIENT_DEPRECATE_EOF
    }

    fn config(address: String) -> UpstreamConfig {
        UpstreamConfig {
            address,
            tls: None,
            passwords: Passwords::parse("app:secret\n").unwrap(),
        }
    }

    fn login() -> Login<'static> {
        Login {
            user: "app",
            database: Some("shop"),
            capabilities: CapabilityFlags::CLIENT_DEPRECATE_EOF,
            max_packet_size: 1 << 24,
            collation: 45,
            attributes: vec![],
        }
    }

    /// A fake server that greets, reads the handshake response and plays
    /// `script`: (what it sends, whether it then reads a reply).
    async fn fake_server(
        plugin: &'static [u8],
        script: Vec<(Vec<u8>, bool)>,
    ) -> (String, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut seq =
                packet::write_payload(&mut tcp, 0, &greeting(plugin, server_capabilities()))
                    .await
                    .unwrap();
            let mut received = Vec::new();
            let Ok(response) = packet::read_expected(&mut tcp, seq, 1 << 20).await else {
                return received;
            };
            seq = response.seq.wrapping_add(1);
            received.push(response.payload);
            for (payload, read_reply) in script {
                seq = packet::write_payload(&mut tcp, seq, &payload)
                    .await
                    .unwrap();
                if read_reply {
                    let Ok(reply) = packet::read_expected(&mut tcp, seq, 1 << 20).await else {
                        return received;
                    };
                    seq = reply.seq.wrapping_add(1);
                    received.push(reply.payload);
                }
            }
            let _ = tcp.shutdown().await;
            received
        });
        (address, task)
    }

    fn ok() -> Vec<u8> {
        vec![0, 0, 0, 2, 0, 0, 0]
    }

    #[tokio::test]
    async fn native_passwords_are_scrambled_with_the_greeting_nonce() {
        let (address, server) = fake_server(b"mysql_native_password", vec![(ok(), false)]).await;
        let config = config(address);
        let upstream = config.greet().await.unwrap();
        assert_eq!(upstream.profile().version, "8.0.36");
        let upstream = upstream.login(&config, &login()).await.unwrap();
        assert_eq!(upstream.ok, ok());
        let received = server.await.unwrap();
        let response: HandshakeResponse<'_> =
            HandshakeResponse::deserialize((), &mut mysql_common::io::ParseBuf(&received[0]))
                .unwrap();
        assert_eq!(response.user(), b"app");
        assert_eq!(response.db_name(), Some(&b"shop"[..]));
        assert_eq!(response.collation(), 45);
        assert_eq!(
            response.scramble_buf(),
            mysql_common::auth::plugins::mysql_native_password::scramble_native(NONCE, b"secret")
                .unwrap()
        );
    }

    #[tokio::test]
    async fn caching_sha2_fast_path_and_full_authentication() {
        // Fast path: the server has the password cached.
        let (address, server) = fake_server(
            b"caching_sha2_password",
            vec![(vec![1, 3], false), (ok(), false)],
        )
        .await;
        let config = config(address);
        let upstream = config.greet().await.unwrap();
        upstream.login(&config, &login()).await.unwrap();
        let received = server.await.unwrap();
        assert_eq!(received.len(), 1);

        // Full authentication without TLS: the proxy asks for the key; a
        // key that is not one is an error, not a panic.
        let (address, server) = fake_server(
            b"caching_sha2_password",
            vec![
                (vec![1, 4], true),
                (
                    b"\x01-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"
                        .to_vec(),
                    false,
                ),
            ],
        )
        .await;
        let config = super::tests::config(address);
        let upstream = config.greet().await.unwrap();
        let error = upstream.login(&config, &login()).await.err().unwrap();
        assert!(matches!(error, UpstreamError::Wire(_)), "{error}");
        let received = server.await.unwrap();
        assert_eq!(received[1], vec![2], "the proxy asks for the public key");
    }

    #[test]
    fn caching_sha2_full_authentication_over_tls_sends_the_password() {
        let mut auth = Authentication::start(
            AuthPlugin::CachingSha2Password,
            NONCE.to_vec(),
            "secret",
            true,
        )
        .unwrap();
        let scramble = auth.respond(NONCE).unwrap().unwrap();
        assert_eq!(scramble.len(), 32);
        assert_eq!(auth.respond(&[4]).unwrap(), Some(b"secret\0".to_vec()));
    }

    #[tokio::test]
    async fn auth_switches_and_refusals() {
        let mut switch = vec![0xfe];
        switch.extend(b"mysql_native_password\0");
        switch.extend(b"zyxwvutsrqponmlkjihg\0");
        let refusal = b"\xff\x15\x04#28000Access denied for user 'app'".to_vec();
        let (address, server) = fake_server(
            b"caching_sha2_password",
            vec![(switch, true), (refusal, false)],
        )
        .await;
        let config = config(address);
        let upstream = config.greet().await.unwrap();
        let error = upstream.login(&config, &login()).await.err().unwrap();
        match &error {
            UpstreamError::Refused { code, message } => {
                assert_eq!(code.code, 1045);
                assert_eq!(message, "Access denied for user 'app'");
            }
            other => panic!("{other:?}"),
        }
        let received = server.await.unwrap();
        assert_eq!(
            received[1],
            mysql_common::auth::plugins::mysql_native_password::scramble_native(
                b"zyxwvutsrqponmlkjihg",
                b"secret"
            )
            .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_plugins_and_missing_capabilities_are_clear_errors() {
        let (address, _server) = fake_server(b"auth_gssapi_client", vec![]).await;
        let config = config(address);
        let error = config
            .greet()
            .await
            .unwrap()
            .login(&config, &login())
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("auth_gssapi_client"), "{error}");

        let (address, _server) = fake_server(b"mysql_native_password", vec![]).await;
        let config = super::tests::config(address);
        let mut wants_more = login();
        wants_more.capabilities |= CapabilityFlags::CLIENT_SESSION_TRACK;
        let error = config
            .greet()
            .await
            .unwrap()
            .login(&config, &wants_more)
            .await
            .err()
            .unwrap();
        assert!(matches!(error, UpstreamError::Incompatible(_)), "{error}");
    }
}
