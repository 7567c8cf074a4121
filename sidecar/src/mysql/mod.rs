//! The MySQL/MariaDB proxy: its own greeting, TLS, authentication by
//! Deadbolt certificate or bearer token (`mysql_clear_password` inside TLS),
//! the upstream login as the requested database user, then a packet-aware
//! relay that cuts the session with the lock's message in an `ERR` packet
//! when a lock arrives. The session's life (access and lock checks, audit)
//! is the shared driver's ([`crate::database`]); this module says how each
//! step looks on MySQL's wire.
//!
//! Clients without a certificate send their token as a cleartext password:
//! MySQL's `mysql` client needs `--enable-cleartext-plugin` for that (and
//! refuses it without TLS); MariaDB's client allows it as it is.

mod exchange;
mod handshake;
mod messages;
mod packet;
mod relay;
mod upstream;
pub mod wire;

/// Parsers of peer input that are otherwise private, for the fuzz targets in
/// `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::exchange::{ClientPacket, Exchange};
    pub use super::messages::{ClientHello, parse_hello};
}

pub use upstream::{ServerProfile, UpstreamError};

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadbolt_api::access::Refusal;
use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::shutdown::Shutdown;
use mysql_common::constants::CapabilityFlags;
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::audit::SessionFacts;
use crate::database::upstream::UpstreamConfig;
use crate::database::{self, DatabaseProtocol, LoggedIn, Login};
use crate::gate::{Ending, Gate, LiveSession};
use crate::identity::Authenticator;
use handshake::Opened;
use messages::{ACCESS_DENIED, ClientHello, Command, ErrorCode, Greeting, send_error};
use packet::WireError;

/// Connection attributes the proxy adds to the upstream login: who is behind
/// the session, for the database's own records (`performance_schema`).
const ATTRIBUTE_PREFIX: &str = "deadbolt_";
const ATTRIBUTE_USER: &str = "deadbolt_user";
const ATTRIBUTE_SESSION: &str = "deadbolt_session";
/// How long the upstream has to accept the login.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// What clients see as the server version until the upstream has greeted the proxy.
const DEFAULT_SERVER_VERSION: &str = "8.0.0";
/// Appended to the upstream's version, so `mysql` shows it is behind Deadbolt.
const VERSION_SUFFIX: &str = "-Deadbolt";
/// `utf8mb4_general_ci`, which MySQL 5.5.3+ and every MariaDB know.
const DEFAULT_COLLATION: u8 = 45;
/// Connection ids start in the upper half of the range, so a client's `KILL
/// <id>` (the `mysql` client's Ctrl-C) cannot name an unrelated upstream thread.
const FIRST_CONNECTION_ID: u32 = 1 << 31;

/// Capabilities of the proxy's own handshake with the client.
const HANDSHAKE_CAPABILITIES: CapabilityFlags = CapabilityFlags::CLIENT_LONG_PASSWORD
    .union(CapabilityFlags::CLIENT_CONNECT_WITH_DB)
    .union(CapabilityFlags::CLIENT_PROTOCOL_41)
    .union(CapabilityFlags::CLIENT_SSL)
    .union(CapabilityFlags::CLIENT_SECURE_CONNECTION)
    .union(CapabilityFlags::CLIENT_PLUGIN_AUTH)
    .union(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)
    .union(CapabilityFlags::CLIENT_CONNECT_ATTRS);

/// Capabilities of the session itself, which client and upstream must share
/// because the relay passes their bytes through: offered when the upstream
/// has them. Compression, query attributes and optional metadata are left
/// out, so every MySQL 5.7+ and MariaDB 10.2+ relays as it is.
const SESSION_CAPABILITIES: CapabilityFlags = CapabilityFlags::CLIENT_FOUND_ROWS
    .union(CapabilityFlags::CLIENT_LONG_FLAG)
    .union(CapabilityFlags::CLIENT_LOCAL_FILES)
    .union(CapabilityFlags::CLIENT_IGNORE_SPACE)
    .union(CapabilityFlags::CLIENT_INTERACTIVE)
    .union(CapabilityFlags::CLIENT_IGNORE_SIGPIPE)
    .union(CapabilityFlags::CLIENT_TRANSACTIONS)
    .union(CapabilityFlags::CLIENT_MULTI_STATEMENTS)
    .union(CapabilityFlags::CLIENT_MULTI_RESULTS)
    .union(CapabilityFlags::CLIENT_PS_MULTI_RESULTS)
    .union(CapabilityFlags::CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS)
    .union(CapabilityFlags::CLIENT_SESSION_TRACK)
    .union(CapabilityFlags::CLIENT_DEPRECATE_EOF);

/// Everything the MySQL proxy needs.
pub struct MysqlProxy {
    gate: Gate,
    authenticator: Authenticator,
    tls: Arc<ServerConfig>,
    upstream: UpstreamConfig,
    allow_plaintext: bool,
    /// What the upstream last said about itself.
    profile: RwLock<Option<ServerProfile>>,
    /// Set by the first `serve`: workers sharing this proxy greet the upstream once.
    greeting_asked: AtomicBool,
    next_connection_id: AtomicU32,
}

impl MysqlProxy {
    /// A proxy serving clients with `tls` (optional client certificates, no
    /// ALPN) in front of `upstream`; plaintext clients are refused unless
    /// `allow_plaintext`.
    pub fn new(
        gate: Gate,
        authenticator: Authenticator,
        tls: Arc<ServerConfig>,
        upstream: UpstreamConfig,
        allow_plaintext: bool,
    ) -> Self {
        Self {
            gate,
            authenticator,
            tls,
            upstream,
            allow_plaintext,
            profile: RwLock::new(None),
            greeting_asked: AtomicBool::new(false),
            next_connection_id: AtomicU32::new(FIRST_CONNECTION_ID),
        }
    }

    /// What the upstream last said about itself, once it has greeted the proxy.
    pub fn upstream_profile(&self) -> Option<ServerProfile> {
        self.profile
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn remember(&self, profile: ServerProfile) {
        *self
            .profile
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(profile);
    }

    /// Reads the upstream's greeting once, so the first client already sees
    /// the real server's version and capabilities. Failing is not fatal: the
    /// first login tries again.
    pub async fn learn_upstream(&self) {
        match self.upstream.greet().await {
            Ok(greeted) => self.remember(greeted.profile()),
            Err(error) => {
                tracing::warn!(%error, "cannot read the upstream's greeting yet");
            }
        }
    }

    /// Accepts connections until shutdown; the first call also reads the
    /// upstream's greeting, which new clients' greetings mirror.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        if !self.greeting_asked.swap(true, Ordering::Relaxed) {
            let learning = self.clone();
            tokio::spawn(async move { learning.learn_upstream().await });
        }
        let gate = self.gate.clone();
        database::serve(self, gate, listener, shutdown).await;
    }

    /// The greeting for a new client, mirroring the upstream when known.
    fn greeting(&self) -> Greeting {
        let profile = self.upstream_profile();
        let session = profile.as_ref().map_or(SESSION_CAPABILITIES, |profile| {
            SESSION_CAPABILITIES.intersection(profile.capabilities)
        });
        Greeting {
            server_version: format!(
                "{}{VERSION_SUFFIX}",
                profile
                    .as_ref()
                    .map_or(DEFAULT_SERVER_VERSION, |profile| profile.version.as_str())
            ),
            connection_id: self.next_connection_id.fetch_add(1, Ordering::Relaxed)
                | FIRST_CONNECTION_ID,
            scramble: Greeting::random_scramble(),
            capabilities: HANDSHAKE_CAPABILITIES | session,
            collation: profile.map_or(DEFAULT_COLLATION, |profile| profile.collation),
        }
    }

    /// Logs in to the upstream as the client's database user, with the
    /// client's schema, collation and connection attributes (plus who is
    /// behind the session, for the database's own records; a client cannot
    /// set those attributes itself).
    async fn login_upstream(
        &self,
        hello: &ClientHello,
        capabilities: CapabilityFlags,
        principal: &CertIdentity,
        sid: &str,
    ) -> Result<upstream::Upstream, UpstreamError> {
        let attributes = upstream_attributes(&hello.attributes, &principal.user, sid);
        let login = upstream::Login {
            user: &hello.user,
            database: hello.database.as_deref(),
            capabilities,
            max_packet_size: hello.max_packet_size,
            collation: hello.collation,
            attributes,
        };
        let login = async {
            let greeted = self.upstream.greet().await?;
            self.remember(greeted.profile());
            greeted.login(&self.upstream, &login).await
        };
        tokio::time::timeout(UPSTREAM_TIMEOUT, login)
            .await
            .unwrap_or_else(|_| Err(self.upstream.unreachable("the login timed out").into()))
    }

    /// Refuses a login: tells the client, audits, and says why.
    async fn refuse_login(
        &self,
        opened: &mut Opened,
        facts: &SessionFacts,
        code: ErrorCode,
        reason: String,
    ) -> Login<Client> {
        send_error(&mut opened.stream, opened.next_seq, code, &reason).await;
        self.gate.reject(facts, &reason);
        Login::Refused(reason)
    }
}

/// The connection attributes of the upstream login: the client's, except
/// any that claim to be the proxy's own (`deadbolt_*`, in any case), then who
/// is behind the session.
fn upstream_attributes(
    client: &[(String, String)],
    user: &str,
    sid: &str,
) -> Vec<(String, String)> {
    let mut attributes: Vec<(String, String)> = client
        .iter()
        .filter(|(name, _)| {
            let forged = name
                .trim()
                .to_ascii_lowercase()
                .starts_with(ATTRIBUTE_PREFIX);
            if forged {
                tracing::info!(attribute = %name, "dropped a client connection attribute that only the proxy may set");
            }
            !forged
        })
        .cloned()
        .collect();
    attributes.push((ATTRIBUTE_USER.into(), user.to_string()));
    attributes.push((ATTRIBUTE_SESSION.into(), sid.to_string()));
    attributes
}

/// A logged-in MySQL client.
pub struct Client {
    opened: Opened,
    /// The session capabilities both sides speak.
    capabilities: CapabilityFlags,
}

impl DatabaseProtocol for MysqlProxy {
    type Client = Client;
    type Upstream = upstream::Upstream;
    type UpstreamError = UpstreamError;
    const NAME: &'static str = "mysql";

    /// Greeting, TLS, handshake response and client authentication.
    async fn login(&self, tcp: TcpStream, facts: &mut SessionFacts) -> Login<Client> {
        let greeting = self.greeting();
        let mut opened =
            match handshake::open(tcp, self.tls.clone(), self.allow_plaintext, &greeting).await {
                Ok(opened) => opened,
                Err(error) => {
                    self.gate.metrics.protocol_errors.inc();
                    return Login::Refused(error.to_string());
                }
            };
        if opened.hello.user.is_empty() {
            let reason = "the handshake response names no user".to_string();
            return self
                .refuse_login(&mut opened, facts, ACCESS_DENIED, reason)
                .await;
        }
        let login = opened.hello.user.clone();
        let db_name = opened.hello.database.clone().filter(|db| !db.is_empty());
        facts.login = Some(login.clone());
        facts.db = db_name.clone();

        let certificate = opened.certificate.take();
        let password = handshake::read_clear_password(&mut opened, &greeting.scramble);
        let identity = match self
            .authenticator
            .certificate_or_password(certificate.as_ref(), facts.remote, password)
            .await
        {
            Ok(identity) => identity,
            Err(error) => {
                self.gate.metrics.protocol_errors.inc();
                let reason = error.to_string();
                if !matches!(error, WireError::Closed | WireError::Io(_)) {
                    send_error(&mut opened.stream, opened.next_seq, error.code(), &reason).await;
                }
                return Login::Refused(reason);
            }
        };
        match identity {
            Ok(principal) => {
                let capabilities = opened
                    .hello
                    .capabilities
                    .intersection(greeting.capabilities)
                    .intersection(SESSION_CAPABILITIES);
                Login::Session(Box::new(LoggedIn {
                    client: Client {
                        opened,
                        capabilities,
                    },
                    principal,
                    login,
                    db_name,
                }))
            }
            Err(error) => {
                self.refuse_login(&mut opened, facts, ACCESS_DENIED, error.to_string())
                    .await
            }
        }
    }

    async fn refuse(&self, client: &mut Client, refusal: &Refusal) {
        let opened = &mut client.opened;
        send_error(
            &mut opened.stream,
            opened.next_seq,
            ACCESS_DENIED,
            &refusal.message(),
        )
        .await;
    }

    async fn open_upstream(
        &self,
        client: &mut Client,
        principal: &CertIdentity,
        session: &LiveSession,
    ) -> Result<upstream::Upstream, UpstreamError> {
        self.login_upstream(
            &client.opened.hello,
            client.capabilities,
            principal,
            &session.facts().sid,
        )
        .await
    }

    async fn refuse_upstream(&self, client: &mut Client, error: &UpstreamError) {
        let opened = &mut client.opened;
        send_error(
            &mut opened.stream,
            opened.next_seq,
            error.code(),
            &error.to_string(),
        )
        .await;
    }

    async fn abandon(&self, mut upstream: upstream::Upstream) {
        let (quit, _) = packet::frame(0, &[Command::COM_QUIT as u8]);
        let _ = upstream.stream.write_all(&quit).await;
        let _ = upstream.stream.shutdown().await;
    }

    async fn accept(
        &self,
        client: &mut Client,
        upstream: &mut upstream::Upstream,
    ) -> std::io::Result<()> {
        let opened = &mut client.opened;
        packet::write_payload(&mut opened.stream, opened.next_seq, &upstream.ok)
            .await
            .map(|_| ())
    }

    async fn relay(
        &self,
        mut client: Client,
        mut upstream: upstream::Upstream,
        session: &mut LiveSession,
    ) -> Ending {
        let ending = relay::relay(
            &mut client.opened.stream,
            &mut upstream.stream,
            session,
            client.capabilities,
        )
        .await;
        if matches!(ending, Ending::Cut(_)) {
            relay::linger(&mut client.opened.stream).await;
        }
        ending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_cannot_set_the_proxys_attribution_attributes() {
        let client = vec![
            ("_client_name".to_string(), "libmariadb".to_string()),
            ("deadbolt_user".to_string(), "admin".to_string()),
            (" DEADBOLT_Session".to_string(), "forged".to_string()),
            ("program_name".to_string(), "mysql".to_string()),
        ];
        let attributes = upstream_attributes(&client, "alice", "sid-1");
        assert_eq!(
            attributes,
            [
                ("_client_name".to_string(), "libmariadb".to_string()),
                ("program_name".to_string(), "mysql".to_string()),
                ("deadbolt_user".to_string(), "alice".to_string()),
                ("deadbolt_session".to_string(), "sid-1".to_string()),
            ]
        );
    }
}
