//! The one HTTPS server loop of the operator's three client-facing listeners
//! (the lock-view stream, the admission webhooks, the MFA service): accept
//! until shutdown, a TLS handshake with a deadline, HTTP/2 (and HTTP/1.1
//! where a listener asks for it) within the listener's limits, idle
//! connections closed, and on shutdown a bounded drain of what is in flight.
//! Each listener says only how it answers a request on a [`Bound`] socket;
//! [`read_body`] is how each of them reads one.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_runtime::connection::{Activity, ConnectionLimits, close_when_idle};
use deadbolt_runtime::listener::{
    MAX_CONNECTIONS, accept_until, client_certificate, tls_handshake,
};
use http::{Request, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Bytes, Incoming};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::failure::Failure;
use crate::shutdown::Shutdown;

/// How long shutdown waits for requests and streams in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How one listener serves its connections.
#[derive(Clone, Copy, Debug)]
pub struct Listener {
    /// Names the listener in logs.
    pub name: &'static str,
    /// Deadlines and stream limits of each connection.
    pub limits: ConnectionLimits,
    /// Whether HTTP/1.1 is served besides HTTP/2.
    pub http1: bool,
    /// HTTP/2 keep-alive pings: how often, and how long one may go
    /// unanswered (HTTP/2-only listeners).
    pub keep_alive: Option<(Duration, Duration)>,
}

/// A listening socket with the TLS settings it serves and the shutdown it
/// serves until: what each listener's `serve` is handed.
pub struct Bound {
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shutdown: Shutdown,
}

impl Bound {
    /// A socket already bound (tests bind port 0 and read the address first).
    pub fn new(listener: TcpListener, tls: Arc<ServerConfig>, shutdown: Shutdown) -> Self {
        Self {
            listener,
            tls,
            shutdown,
        }
    }

    /// Binds `addr`; a failure names `flag`, the flag that chose the address.
    pub async fn bind(
        addr: SocketAddr,
        flag: &str,
        tls: Arc<ServerConfig>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Self> {
        let listener = deadbolt_runtime::listener::bind(addr, flag).await?;
        Ok(Self::new(listener, tls, shutdown.clone()))
    }

    /// The shutdown this socket is served until.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }
}

/// One accepted connection, as its requests are answered.
#[derive(Debug)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
    /// The first certificate of the chain rustls verified, if the client sent one.
    pub certificate: Option<CertificateDer<'static>>,
}

impl Listener {
    /// Serves `bound` until its shutdown, then drains. For each connection,
    /// once its TLS handshake is done, `connect` turns the [`Peer`] into the
    /// function that answers that connection's requests.
    pub async fn serve<C, H, Fut, B>(self, bound: Bound, connect: C)
    where
        C: Fn(Peer) -> H + Send + Sync + 'static,
        H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<B>> + Send + 'static,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Bound {
            listener,
            tls,
            ref shutdown,
        } = bound;
        let acceptor = TlsAcceptor::from(tls);
        let connect = Arc::new(connect);
        let graceful = GracefulShutdown::new();
        let name = self.name;
        accept_until(&listener, shutdown, name, MAX_CONNECTIONS, |tcp, remote| {
            let acceptor = acceptor.clone();
            let connect = connect.clone();
            let watcher = graceful.watcher();
            async move {
                let Some(tls) = tls_handshake(&acceptor, tcp, remote, name).await else {
                    return;
                };
                let certificate = client_certificate(&tls).cloned();
                let handler = Arc::new(connect(Peer {
                    remote,
                    certificate,
                }));
                let service = service_fn(move |request| {
                    let answer = handler(request);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let activity = Activity::new();
                let service = activity.track(service);
                let io = TokioIo::new(tls);
                let ended = if self.http1 {
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder
                        .http1()
                        .timer(TokioTimer::new())
                        .header_read_timeout(self.limits.first_request);
                    builder
                        .http2()
                        .timer(TokioTimer::new())
                        .max_concurrent_streams(self.limits.max_concurrent_streams);
                    let connection = builder.serve_connection(io, service).into_owned();
                    close_when_idle(watcher.watch(connection), activity, self.limits).await
                } else {
                    let mut builder = http2::Builder::new(TokioExecutor::new());
                    builder
                        .timer(TokioTimer::new())
                        .max_concurrent_streams(self.limits.max_concurrent_streams);
                    if let Some((interval, timeout)) = self.keep_alive {
                        builder
                            .keep_alive_interval(Some(interval))
                            .keep_alive_timeout(timeout);
                    }
                    let connection = builder.serve_connection(io, service);
                    close_when_idle(watcher.watch(connection), activity, self.limits)
                        .await
                        .map_err(Into::into)
                };
                if let Err(error) = ended {
                    tracing::debug!(%remote, %error, "{name} connection ended with an error");
                }
            }
        })
        .await;
        drop(listener);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("{name} connections did not drain in time; dropping them");
        }
    }
}

/// A request's whole body, or `too_large()` once it passes `limit` bytes, or
/// a 400 when the client stops sending halfway.
pub async fn read_body(
    body: Incoming,
    limit: usize,
    too_large: impl FnOnce() -> Failure,
) -> Result<Bytes, Failure> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => Err(Failure::bad_request(format!(
            "cannot read the request body: {error}"
        ))),
    }
}
