//! The lock-view stream: `POST /v1/lockview` over HTTP/2 and TLS.
//!
//! Each connection is TLS-terminated here, each request is
//! authenticated ([`crate::auth`]) and routed (`handler`), and each accepted
//! subscriber gets a `session` that streams the view and reads its acks.

mod acks;
mod handler;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_runtime::connection::ConnectionLimits;

use crate::admin::{Metrics, Readiness};
use crate::auth::Authenticator;
use crate::https::{Bound, Listener};
use crate::subscribers::Subscribers;
use crate::view::ViewStore;
use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::certificate;

pub use deadbolt_api::protocol::{LOCKVIEW_PATH, NDJSON, SERVER_ID_HEADER};

/// How often a heartbeat is sent when nothing else is, and only while the
/// operator's own view is reliable (its watches healthy): an operator that
/// cannot see the cluster falls silent, so strict proxies fail closed.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// A proxy's connection, HTTP/2 only: a stream within 10s of the handshake
/// (the preface included), closed after 90s with none open, a few streams at
/// most, and pinged every 10s so a vanished proxy is noticed within 30s.
const LISTENER: Listener = Listener {
    name: "lock-view",
    limits: ConnectionLimits {
        max_concurrent_streams: 8,
        ..ConnectionLimits::API
    },
    http1: false,
    keep_alive: Some((Duration::from_secs(10), Duration::from_secs(20))),
};

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

/// Serves the lock-view stream on `bound` until its shutdown, then ends every
/// stream cleanly (so proxies reconnect to another replica) and returns.
pub async fn serve(bound: Bound, context: StreamContext) {
    let context = Arc::new(context);
    let streams_end = bound.shutdown().clone();
    LISTENER
        .serve(bound, move |peer| {
            let identity = match peer.certificate.as_ref().map(certificate::identity) {
                None => None,
                Some(Ok(identity)) => Some(identity),
                Some(Err(error)) => {
                    // Verified by rustls but unreadable here: treat as a certificate
                    // without identity, which is refused with a clear 403.
                    tracing::warn!(remote = %peer.remote, %error, "unreadable client certificate");
                    Some(CertIdentity::default())
                }
            };
            let connection = Arc::new(Connection {
                remote: peer.remote,
                peer: identity,
            });
            let context = context.clone();
            let shutdown = streams_end.clone();
            move |request| {
                let context = context.clone();
                let connection = connection.clone();
                let shutdown = shutdown.clone();
                async move { handler::handle(&context, &connection, &shutdown, request).await }
            }
        })
        .await;
}
