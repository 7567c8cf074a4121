//! The PostgreSQL proxy: TLS, authentication by Deadbolt certificate or bearer
//! token, the startup parameters it passes on, the upstream login, then a
//! frame-aware relay that cuts the session with the lock's message when a
//! lock arrives. The session's life (access and lock checks, audit) is the
//! shared driver's ([`crate::database`]); this module says how each step
//! looks on PostgreSQL's wire.

mod cancel;
mod negotiate;
mod relay;
mod startup;
mod upstream;
pub mod wire;

pub use cancel::CancelKeys;
pub use negotiate::ALPN_POSTGRESQL;

use std::sync::Arc;

use deadbolt_api::access::Refusal;
use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::shutdown::Shutdown;
use pgwire::messages::startup::{Authentication, Password, Startup};
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::audit::SessionFacts;
use crate::database::upstream::UpstreamConfig;
use crate::database::{self, DatabaseProtocol, LoggedIn, Login};
use crate::gate::{Ending, Gate, LiveSession};
use crate::identity::Authenticator;
use crate::io::ByteStream;
use negotiate::Opening;
use upstream::UpstreamError;
use wire::WireError;

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
    /// The backend keys of the sessions relayed now, which alone may be cancelled.
    pub cancel_keys: CancelKeys,
}

/// A logged-in PostgreSQL client.
pub struct Client {
    stream: Box<dyn ByteStream>,
    startup: Startup,
}

/// An upstream session, its backend key registered for cancellation.
pub struct Upstream {
    session: upstream::Upstream,
    _cancel_key: Option<cancel::KeyGuard>,
}

impl PostgresProxy {
    /// Accepts connections until shutdown.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        let gate = self.gate.clone();
        database::serve(self, gate, listener, shutdown).await;
    }

    /// Forwards a `CancelRequest` when it names a session this proxy relays.
    async fn cancel(&self, packet: &[u8]) {
        if !self.cancel_keys.is_live(packet) {
            self.gate.metrics.protocol_errors.inc();
            tracing::info!("dropped a cancel request for a backend this proxy does not relay");
            return;
        }
        if let Err(error) = upstream::forward_cancel(&self.upstream, packet).await {
            tracing::warn!(%error, "cannot forward a cancel request");
        }
    }

    /// Refuses a login: tells the client, audits, and says why.
    async fn refuse_login<C>(
        &self,
        stream: &mut Box<dyn ByteStream>,
        facts: &SessionFacts,
        code: &str,
        reason: String,
    ) -> Login<C> {
        wire::send_fatal(stream, code, &reason).await;
        self.gate.reject(facts, &reason);
        Login::Refused(reason)
    }
}

impl DatabaseProtocol for PostgresProxy {
    type Client = Client;
    type Upstream = Upstream;
    type UpstreamError = UpstreamError;
    const NAME: &'static str = "postgres";

    /// TLS, startup and client authentication.
    async fn login(&self, tcp: TcpStream, facts: &mut SessionFacts) -> Login<Client> {
        let opening = match negotiate::open(tcp, self.tls.clone(), self.allow_plaintext).await {
            Ok(opening) => opening,
            Err(error) => {
                self.gate.metrics.protocol_errors.inc();
                return Login::Refused(error.to_string());
            }
        };
        let (mut stream, certificate, startup) = match opening {
            Opening::Cancel(packet) => {
                self.cancel(&packet).await;
                return Login::Handled;
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
            let reason = "the startup message names no user".to_string();
            return self
                .refuse_login(&mut stream, facts, wire::SQLSTATE_PROTOCOL, reason)
                .await;
        };
        let db_name = startup
            .parameters
            .get("database")
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| login.clone());
        facts.db = Some(db_name.clone());
        facts.login = Some(login.clone());
        if let Err(reason) = startup::check(&startup.parameters) {
            return self
                .refuse_login(&mut stream, facts, wire::SQLSTATE_LOCKED, reason)
                .await;
        }

        let identity = match self
            .authenticator
            .certificate_or_password(
                certificate.as_ref(),
                facts.remote,
                read_password(&mut stream),
            )
            .await
        {
            Ok(identity) => identity,
            Err(error) => {
                self.gate.metrics.protocol_errors.inc();
                return Login::Refused(error.to_string());
            }
        };
        match identity {
            Ok(principal) => Login::Session(Box::new(LoggedIn {
                client: Client { stream, startup },
                principal,
                login,
                db_name: Some(db_name),
            })),
            Err(error) => {
                self.refuse_login(
                    &mut stream,
                    facts,
                    wire::SQLSTATE_BAD_PASSWORD,
                    error.to_string(),
                )
                .await
            }
        }
    }

    async fn refuse(&self, client: &mut Client, refusal: &Refusal) {
        wire::send_fatal(
            &mut client.stream,
            wire::SQLSTATE_LOCKED,
            &refusal.message(),
        )
        .await;
    }

    async fn open_upstream(
        &self,
        client: &mut Client,
        _principal: &CertIdentity,
        _session: &LiveSession,
    ) -> Result<Upstream, UpstreamError> {
        let session = self.upstream.open(&client.startup).await?;
        let cancel_key = self.cancel_keys.register(&session.greeting);
        Ok(Upstream {
            session,
            _cancel_key: cancel_key,
        })
    }

    async fn refuse_upstream(&self, client: &mut Client, error: &UpstreamError) {
        wire::send_fatal(
            &mut client.stream,
            wire::SQLSTATE_UPSTREAM,
            &error.to_string(),
        )
        .await;
    }

    async fn abandon(&self, mut upstream: Upstream) {
        let _ = upstream.session.stream.write_all(&relay::TERMINATE).await;
        let _ = upstream.session.stream.shutdown().await;
    }

    async fn accept(&self, client: &mut Client, upstream: &mut Upstream) -> std::io::Result<()> {
        let mut hello = wire::encode(&Authentication::Ok);
        hello.extend_from_slice(&upstream.session.greeting);
        client.stream.write_all(&hello).await
    }

    async fn relay(
        &self,
        mut client: Client,
        upstream: Upstream,
        session: &mut LiveSession,
    ) -> Ending {
        let Upstream {
            session: upstream,
            _cancel_key,
        } = upstream;
        relay::relay(&mut client.stream, upstream.stream, session).await
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
