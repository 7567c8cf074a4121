//! The PostgreSQL proxy: TLS, authentication by Deadbolt certificate or bearer
//! token, the lock check, the upstream login, then a frame-aware relay that
//! cuts the session with the lock's message when a lock arrives.

mod negotiate;
mod relay;
mod upstream;
pub mod wire;

pub use negotiate::ALPN_POSTGRESQL;
pub use upstream::{Passwords, UpstreamConfig, UpstreamTls};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::credential::CertIdentity;
use pgwire::messages::startup::{Authentication, Password, Startup};
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::audit::SessionFacts;
use crate::gate::{Ending, Gate};
use crate::identity::Authenticator;
use crate::io::ByteStream;
use deadbolt_runtime::listener::accept_until;
use deadbolt_runtime::shutdown::Shutdown;
use negotiate::Opening;
use wire::WireError;

/// How long a client has from connecting to being authenticated; a
/// half-finished handshake is closed after it.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Tokens are longer than passwords, but not this long.
const MAX_PASSWORD_MESSAGE: usize = 64 * 1024;

/// Everything the PostgreSQL proxy needs.
pub struct PostgresProxy {
    /// Lock checks, audit and metrics.
    pub gate: Gate,
    /// Identifies clients.
    pub authenticator: Authenticator,
    /// The TLS config clients are served with (ALPN `postgresql`, optional client certificates).
    pub tls: Arc<ServerConfig>,
    /// The real server.
    pub upstream: UpstreamConfig,
    /// Accept clients that do not ask for TLS (off unless a flag says so).
    pub allow_plaintext: bool,
}

impl PostgresProxy {
    /// Accepts connections until shutdown; each runs in its own task, so one
    /// client's bad input never touches another's session.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        accept_until(&listener, &shutdown, "postgres", |tcp, remote| {
            let proxy = self.clone();
            async move { proxy.handle(tcp, remote).await }
        })
        .await;
    }

    async fn handle(&self, tcp: TcpStream, remote: SocketAddr) {
        let mut facts = SessionFacts::new(self.gate.view.server_id(), Some(remote));
        let login = tokio::time::timeout(LOGIN_TIMEOUT, self.login(tcp, &mut facts)).await;
        let (mut client, principal, startup) = match login {
            Ok(Ok(Some(login))) => login,
            Ok(Ok(None)) => return,
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
                wire::send_fatal(&mut client, wire::SQLSTATE_LOCKED, denial.message()).await;
                return;
            }
        };
        let upstream = match self.upstream.open(&startup).await {
            Ok(upstream) => upstream,
            Err(error) => {
                wire::send_fatal(&mut client, wire::SQLSTATE_UPSTREAM, &error.to_string()).await;
                session.finish(Ending::Failed(error.to_string()));
                return;
            }
        };
        let mut hello = wire::encode(&Authentication::Ok);
        hello.extend_from_slice(&upstream.greeting);
        if let Err(error) = client.write_all(&hello).await {
            session.finish(Ending::Failed(error.to_string()));
            return;
        }
        let ending = relay::relay(&mut client, upstream.stream, &mut session).await;
        session.finish(ending);
    }

    /// TLS, startup and client authentication. `Ok(None)` when the connection
    /// was a cancel request; `Err` when it was refused (the client was told).
    async fn login(
        &self,
        tcp: TcpStream,
        facts: &mut SessionFacts,
    ) -> Result<Option<(Box<dyn ByteStream>, CertIdentity, Startup)>, String> {
        let opening = negotiate::open(tcp, self.tls.clone(), self.allow_plaintext)
            .await
            .map_err(|error| {
                self.gate.metrics.protocol_errors.inc();
                error.to_string()
            })?;
        let (mut stream, certificate, startup) = match opening {
            Opening::Cancel(packet) => {
                if let Err(error) = upstream::forward_cancel(&self.upstream, &packet).await {
                    tracing::warn!(%error, "cannot forward a cancel request");
                }
                return Ok(None);
            }
            Opening::Session {
                stream,
                certificate,
                startup,
            } => (stream, certificate, startup),
        };
        let Some(login) = startup
            .parameters
            .get("user")
            .filter(|u| !u.is_empty())
            .cloned()
        else {
            let reason = "the startup message names no user";
            wire::send_fatal(&mut stream, wire::SQLSTATE_PROTOCOL, reason).await;
            self.gate.reject(facts, reason);
            return Err(reason.into());
        };
        facts.db = Some(
            startup
                .parameters
                .get("database")
                .cloned()
                .unwrap_or_else(|| login.clone()),
        );
        facts.login = Some(login);

        let identity = match certificate {
            Some(certificate) => self.authenticator.from_certificate(&certificate),
            None => match read_password(&mut stream).await {
                Ok(password) => self.authenticator.from_password(&password).await,
                Err(error) => {
                    self.gate.metrics.protocol_errors.inc();
                    return Err(error.to_string());
                }
            },
        };
        match identity {
            Ok(identity) => Ok(Some((stream, identity, startup))),
            Err(error) => {
                let reason = error.to_string();
                wire::send_fatal(&mut stream, wire::SQLSTATE_BAD_PASSWORD, &reason).await;
                self.gate.reject(facts, &reason);
                Err(reason)
            }
        }
    }
}

/// Asks for a cleartext password (safe: the channel is TLS) and reads it.
async fn read_password(stream: &mut Box<dyn ByteStream>) -> Result<String, WireError> {
    stream
        .write_all(&wire::encode(&Authentication::CleartextPassword))
        .await?;
    let message = wire::read_message(stream, MAX_PASSWORD_MESSAGE).await?;
    if message[0] != b'p' {
        return Err(WireError::Unexpected(message[0] as char));
    }
    let password: Password = wire::decode::<Password>(message)?;
    Ok(password.password)
}
