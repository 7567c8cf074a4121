//! The lock-view stream: `POST /v1/lockview` over HTTP/2 and TLS.
//!
//! Each connection is TLS-terminated here, each request is
//! authenticated ([`crate::auth`]) and routed ([`handler`]), and each accepted
//! subscriber gets a [`session`] that streams the view and reads its acks.

mod acks;
mod handler;
mod session;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_runtime::connection::{Activity, ConnectionLimits, close_when_idle};
use deadbolt_runtime::listener::{MAX_CONNECTIONS, accept_until, tls_handshake};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admin::{Metrics, Readiness};
use crate::auth::Authenticator;
use crate::shutdown::Shutdown;
use crate::subscribers::Subscribers;
use crate::view::ViewStore;
use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::certificate;

pub use deadbolt_api::protocol::{LOCKVIEW_PATH, NDJSON, SERVER_ID_HEADER};

/// How often a heartbeat is sent when nothing else is, and only while the
/// operator's own view is reliable (its watches healthy): an operator that
/// cannot see the cluster falls silent, so strict proxies fail closed.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// A proxy's connection: a stream within 10s of the handshake (the HTTP/2
/// preface included), closed after 90s with none open, a few streams at most.
const LIMITS: ConnectionLimits = ConnectionLimits {
    max_concurrent_streams: 8,
    ..ConnectionLimits::API
};

/// How long shutdown waits for streams to end before dropping them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a lock-view stream needs.
#[derive(Clone, Debug)]
pub struct StreamContext {
    /// The view to stream.
    pub store: ViewStore,
    /// Where subscribers and their acks are recorded.
    pub subscribers: Subscribers,
    /// Who may subscribe.
    pub authenticator: Authenticator,
    /// Whether the view is complete enough to serve.
    pub readiness: Readiness,
    /// Counters to bump.
    pub metrics: Arc<Metrics>,
    /// How often to send a heartbeat.
    pub heartbeat_interval: Duration,
    /// Streams one subscriber identity may have open at once.
    pub max_streams_per_subscriber: usize,
}

/// Streams one proxy identity may hold at once: a proxy needs one, and a
/// few more cover reconnects racing their predecessors' teardown.
pub const DEFAULT_MAX_STREAMS_PER_SUBSCRIBER: usize = 4;

/// One accepted TLS connection.
#[derive(Debug)]
struct Connection {
    remote: SocketAddr,
    /// The verified client certificate's subject, when one was presented.
    peer: Option<CertIdentity>,
}

/// Serves the lock-view stream on `listener` until `shutdown`, then ends every
/// stream cleanly (so proxies reconnect to another replica) and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    context: StreamContext,
    shutdown: Shutdown,
) {
    let acceptor = TlsAcceptor::from(tls);
    let context = Arc::new(context);
    let graceful = GracefulShutdown::new();
    accept_until(
        &listener,
        &shutdown.clone(),
        "lock-view",
        MAX_CONNECTIONS,
        |tcp, remote| {
            let acceptor = acceptor.clone();
            let context = context.clone();
            let shutdown = shutdown.clone();
            let watcher = graceful.watcher();
            async move {
                let Some(tls) = tls_handshake(&acceptor, tcp, remote, "lock-view").await else {
                    return;
                };
                let leaf = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first());
                let peer = match leaf.map(certificate::identity) {
                    None => None,
                    Some(Ok(peer)) => Some(peer),
                    Some(Err(error)) => {
                        // Verified by rustls but unreadable here: treat as a certificate
                        // without identity, which is refused with a clear 403.
                        tracing::warn!(%remote, %error, "unreadable client certificate");
                        Some(CertIdentity::default())
                    }
                };
                let connection = Arc::new(Connection { remote, peer });
                let service = service_fn(move |request| {
                    let context = context.clone();
                    let connection = connection.clone();
                    let shutdown = shutdown.clone();
                    async move {
                        let response =
                            handler::handle(&context, &connection, &shutdown, request).await;
                        Ok::<_, Infallible>(response)
                    }
                });
                let activity = Activity::new();
                let connection = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Some(Duration::from_secs(10)))
                    .keep_alive_timeout(Duration::from_secs(20))
                    .max_concurrent_streams(LIMITS.max_concurrent_streams)
                    .serve_connection(TokioIo::new(tls), activity.track(service));
                if let Err(error) =
                    close_when_idle(watcher.watch(connection), activity, LIMITS).await
                {
                    tracing::debug!(%remote, %error, "lock-view connection ended with an error");
                }
            }
        },
    )
    .await;
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("lock-view connections did not drain in time; dropping them");
    }
}
