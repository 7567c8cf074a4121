//! One session driver for every database proxy. A connection goes through
//! the same steps whatever the wire protocol: accept, log in (TLS, startup,
//! client authentication) within a deadline, authorize and admit (the caller's
//! roles, then the lock view), open the upstream session, relay, finish. The
//! protocol adapters (`postgres`, `mysql`) only say how each step looks on
//! their wire, so the access and lock checks live here once. What the two
//! protocols share around the driver is here too: how a client's opening
//! fails ([`opening`]) and how the upstream is reached ([`upstream`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::access::Refusal;
use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::listener::{MAX_CONNECTIONS, accept_until};
use deadbolt_runtime::shutdown::Shutdown;
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

pub mod opening;
pub mod upstream;

use crate::audit::SessionFacts;
use crate::gate::{Ending, Gate, LiveSession};
use crate::view::Reach;

/// How long a client has from connecting to being authenticated; a
/// half-finished handshake is closed after it.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A client that has logged in: who it is and what it asks for.
pub struct LoggedIn<C> {
    /// The adapter's client state (its stream, and what the protocol needs later).
    pub client: C,
    /// The authenticated principal.
    pub principal: CertIdentity,
    /// The database user it asks for: the session's login.
    pub login: String,
    /// The database it opens, where the protocol fixes one at connect time.
    pub db_name: Option<String>,
}

/// How a login attempt ended.
pub enum Login<C> {
    /// A client ready for its session.
    Session(Box<LoggedIn<C>>),
    /// Not a session (a PostgreSQL `CancelRequest`): the adapter has dealt with it.
    Handled,
    /// Refused: the client has been told when it could be, and the refusal audited.
    Refused(String),
}

/// One database wire protocol, as the driver needs it.
pub trait DatabaseProtocol: Send + Sync + 'static {
    /// The client connection once logged in.
    type Client: Send;
    /// The authenticated upstream session.
    type Upstream: Send;
    /// Why the upstream session could not be opened.
    type UpstreamError: std::fmt::Display + Send;

    /// The listener's name in logs.
    const NAME: &'static str;

    /// TLS, startup and client authentication. Fills `facts` (login,
    /// database) as it learns them; audits what it refuses.
    fn login(
        &self,
        tcp: TcpStream,
        facts: &mut SessionFacts,
    ) -> impl Future<Output = Login<Self::Client>> + Send;

    /// Tells the client that the lock view or its roles refuse the session.
    fn refuse(
        &self,
        client: &mut Self::Client,
        refusal: &Refusal,
    ) -> impl Future<Output = ()> + Send;

    /// Logs in to the real server as the client's database user.
    fn open_upstream(
        &self,
        client: &mut Self::Client,
        principal: &CertIdentity,
        session: &LiveSession,
    ) -> impl Future<Output = Result<Self::Upstream, Self::UpstreamError>> + Send;

    /// Tells the client that the real server could not be reached or refused.
    fn refuse_upstream(
        &self,
        client: &mut Self::Client,
        error: &Self::UpstreamError,
    ) -> impl Future<Output = ()> + Send;

    /// Ends an upstream session that will not be relayed (a lock arrived
    /// while it was being opened).
    fn abandon(&self, upstream: Self::Upstream) -> impl Future<Output = ()> + Send;

    /// Tells the client its login succeeded, relaying what the server said.
    fn accept(
        &self,
        client: &mut Self::Client,
        upstream: &mut Self::Upstream,
    ) -> impl Future<Output = std::io::Result<()>> + Send;

    /// Relays the session until either side ends it or it is cut.
    fn relay(
        &self,
        client: Self::Client,
        upstream: Self::Upstream,
        session: &mut LiveSession,
    ) -> impl Future<Output = Ending> + Send;
}

/// Accepts connections until shutdown; each runs in its own task, so one
/// client's bad input never touches another's session.
pub async fn serve<P: DatabaseProtocol>(
    protocol: Arc<P>,
    gate: Gate,
    listener: TcpListener,
    shutdown: Shutdown,
) {
    accept_until(
        &listener,
        &shutdown,
        P::NAME,
        MAX_CONNECTIONS,
        |tcp, remote| {
            let protocol = protocol.clone();
            let gate = gate.clone();
            async move { drive(protocol.as_ref(), &gate, tcp, remote).await }
        },
    )
    .await;
}

/// One connection, from accept to finish.
pub async fn drive<P: DatabaseProtocol>(
    protocol: &P,
    gate: &Gate,
    tcp: TcpStream,
    remote: SocketAddr,
) {
    let mut facts = SessionFacts::new(gate.view.server_id(), Some(remote));
    let logged_in = match tokio::time::timeout(LOGIN_TIMEOUT, protocol.login(tcp, &mut facts)).await
    {
        Ok(Login::Session(logged_in)) => *logged_in,
        Ok(Login::Handled) => return,
        Ok(Login::Refused(reason)) => {
            tracing::info!(%remote, %reason, "connection refused");
            return;
        }
        Err(_) => {
            gate.metrics.protocol_errors.inc();
            tracing::info!(%remote, "login timed out");
            return;
        }
    };
    let LoggedIn {
        mut client,
        principal,
        login,
        db_name,
    } = logged_in;
    let reach = Reach::Database {
        login: &login,
        db_name: db_name.as_deref(),
    };
    let session = match gate.admit(&mut facts, &principal, reach) {
        Ok(session) => session,
        Err(refusal) => {
            tracing::info!(%remote, user = %principal.user, %login, reason = %refusal.reason(),
                "session refused");
            protocol.refuse(&mut client, &refusal).await;
            return;
        }
    };
    let span = session.span().clone();
    run(protocol, client, &principal, session)
        .instrument(span)
        .await;
}

/// An admitted session, from the upstream login to its end, in its span.
async fn run<P: DatabaseProtocol>(
    protocol: &P,
    mut client: P::Client,
    principal: &CertIdentity,
    mut session: LiveSession,
) {
    let mut upstream = match protocol
        .open_upstream(&mut client, principal, &session)
        .await
    {
        Ok(upstream) => upstream,
        Err(error) => {
            protocol.refuse_upstream(&mut client, &error).await;
            session.finish(Ending::Failed(error.to_string()));
            return;
        }
    };
    // A lock that arrived during the upstream login refuses the session
    // before it starts.
    if let Some(denial) = session.admission.handle.cut_reason() {
        protocol.abandon(upstream).await;
        protocol
            .refuse(&mut client, &Refusal::Locked(denial.clone()))
            .await;
        session.finish(Ending::Cut(denial));
        return;
    }
    if let Err(error) = protocol.accept(&mut client, &mut upstream).await {
        session.finish(Ending::Failed(error.to_string()));
        return;
    }
    let ending = protocol.relay(client, upstream, &mut session).await;
    session.finish(ending);
}
