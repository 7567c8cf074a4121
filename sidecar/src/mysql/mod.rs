//! The MySQL/MariaDB proxy: its own greeting, TLS, authentication by
//! Deadbolt certificate or bearer token (`mysql_clear_password` inside TLS),
//! the lock check, the upstream login as the requested database user, then a
//! packet-aware relay that cuts the session with the lock's message in an
//! `ERR` packet when a lock arrives.
//!
//! Clients without a certificate send their token as a cleartext password:
//! MySQL's `mysql` client needs `--enable-cleartext-plugin` for that (and
//! refuses it without TLS); MariaDB's client allows it as it is.

mod exchange;
mod handshake;
mod relay;
mod upstream;
pub mod wire;

/// Parsers of peer input that are otherwise private, for the fuzz targets in
/// `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::exchange::{ClientPacket, Exchange};
    pub use super::handshake::{ClientHello, parse_hello};
}

pub use upstream::{ServerProfile, UpstreamConfig, UpstreamError};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadbolt_api::credential::CertIdentity;
use mysql_common::constants::CapabilityFlags;
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::audit::SessionFacts;
use crate::gate::{Ending, Gate};
use crate::identity::Authenticator;
use deadbolt_runtime::listener::accept_until;
use deadbolt_runtime::shutdown::Shutdown;
use handshake::{Greeting, Opened};
use upstream::Login;

/// How long a client has from connecting to being authenticated; a
/// half-finished handshake is closed after it.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
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

    /// Accepts connections until shutdown; each runs in its own task, so one
    /// client's bad input never touches another's session.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        let learning = self.clone();
        tokio::spawn(async move { learning.learn_upstream().await });
        accept_until(&listener, &shutdown, "mysql", |tcp, remote| {
            let proxy = self.clone();
            async move { proxy.handle(tcp, remote).await }
        })
        .await;
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

    async fn handle(&self, tcp: TcpStream, remote: SocketAddr) {
        let mut facts = SessionFacts::new(self.gate.view.server_id(), Some(remote));
        let greeting = self.greeting();
        let login =
            tokio::time::timeout(LOGIN_TIMEOUT, self.login(tcp, &greeting, &mut facts)).await;
        let (mut client, principal) = match login {
            Ok(Ok(login)) => login,
            Ok(Err(reason)) => {
                tracing::info!(%remote, %reason, "connection refused");
                return;
            }
            Err(_) => {
                self.gate.metrics.protocol_errors.inc();
                tracing::info!(%remote, "login timed out");
                return;
            }
        };
        let mut session = match self.gate.admit(&mut facts, &principal) {
            Ok(session) => session,
            Err(denial) => {
                wire::send_error(
                    &mut client.stream,
                    client.next_seq,
                    wire::ACCESS_DENIED,
                    denial.message(),
                )
                .await;
                return;
            }
        };
        let hello = &client.hello;
        let capabilities = hello
            .capabilities
            .intersection(greeting.capabilities)
            .intersection(SESSION_CAPABILITIES);
        let opened = self
            .open_upstream(hello, capabilities, &principal, &session.facts().sid)
            .await;
        let mut upstream = match opened {
            Ok(upstream) => upstream,
            Err(error) => {
                let message = error.to_string();
                wire::send_error(&mut client.stream, client.next_seq, error.code(), &message).await;
                session.finish(Ending::Failed(message));
                return;
            }
        };
        // A lock that arrived during the upstream login refuses the session
        // before it starts.
        if let Some(denial) = session.admission.handle.cut_reason() {
            let (quit, _) = wire::frame(0, &[exchange::COM_QUIT]);
            let _ = upstream.stream.write_all(&quit).await;
            wire::send_error(
                &mut client.stream,
                client.next_seq,
                wire::ACCESS_DENIED,
                denial.message(),
            )
            .await;
            session.finish(Ending::Cut(denial));
            return;
        }
        if let Err(error) =
            wire::write_payload(&mut client.stream, client.next_seq, &upstream.ok).await
        {
            session.finish(Ending::Failed(error.to_string()));
            return;
        }
        let ending = relay::relay(
            &mut client.stream,
            &mut upstream.stream,
            &mut session,
            capabilities,
        )
        .await;
        let was_cut = matches!(ending, Ending::Cut(_));
        session.finish(ending);
        if was_cut {
            relay::linger(&mut client.stream).await;
        }
    }

    /// Logs in to the upstream as the client's database user, with the
    /// client's schema, collation and connection attributes (plus who is
    /// behind the session, for the database's own records).
    async fn open_upstream(
        &self,
        hello: &handshake::ClientHello,
        capabilities: CapabilityFlags,
        principal: &CertIdentity,
        sid: &str,
    ) -> Result<upstream::Upstream, UpstreamError> {
        let mut attributes = hello.attributes.clone();
        attributes.push(("deadbolt_user".into(), principal.user.clone()));
        attributes.push(("deadbolt_session".into(), sid.to_string()));
        let login = Login {
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
            .unwrap_or_else(|_| {
                Err(UpstreamError::Unreachable {
                    address: self.upstream.address.clone(),
                    reason: "the login timed out".into(),
                })
            })
    }

    /// Greeting, TLS, handshake response and client authentication. `Err`
    /// when refused (the client was told when it could be).
    async fn login(
        &self,
        tcp: TcpStream,
        greeting: &Greeting,
        facts: &mut SessionFacts,
    ) -> Result<(Opened, CertIdentity), String> {
        let mut opened = handshake::open(tcp, self.tls.clone(), self.allow_plaintext, greeting)
            .await
            .map_err(|error| {
                self.gate.metrics.protocol_errors.inc();
                error.to_string()
            })?;
        if opened.hello.user.is_empty() {
            let reason = "the handshake response names no user";
            wire::send_error(
                &mut opened.stream,
                opened.next_seq,
                wire::ACCESS_DENIED,
                reason,
            )
            .await;
            self.gate.reject(facts, reason);
            return Err(reason.into());
        }
        facts.login = Some(opened.hello.user.clone());
        facts.db = opened.hello.database.clone();

        let identity = match opened.certificate.take() {
            Some(certificate) => self.authenticator.from_certificate(&certificate),
            None => match handshake::read_clear_password(&mut opened, &greeting.scramble).await {
                Ok(password) => self.authenticator.from_password(&password).await,
                Err(error) => {
                    self.gate.metrics.protocol_errors.inc();
                    let reason = error.to_string();
                    if !matches!(error, wire::WireError::Closed | wire::WireError::Io(_)) {
                        wire::send_error(
                            &mut opened.stream,
                            opened.next_seq,
                            error.code(),
                            &reason,
                        )
                        .await;
                    }
                    return Err(reason);
                }
            },
        };
        match identity {
            Ok(identity) => Ok((opened, identity)),
            Err(error) => {
                let reason = error.to_string();
                wire::send_error(
                    &mut opened.stream,
                    opened.next_seq,
                    wire::ACCESS_DENIED,
                    &reason,
                )
                .await;
                self.gate.reject(facts, &reason);
                Err(reason)
            }
        }
    }
}
