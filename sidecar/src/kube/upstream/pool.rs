//! The connections requests travel on: a pool of HTTP/2 connections (a new
//! one once each holds [`STREAMS_PER_CONNECTION`] streams), a connection of
//! its own per request when the API server speaks only HTTP/1.1, TCP and TLS
//! with the kubeconfig's timeout, and the response body that keeps its
//! stream counted until dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Upstream, UpstreamBody, UpstreamError};
use crate::kube::body::{ProxyBody, boxed};

/// Concurrent streams per pooled HTTP/2 connection before another is opened.
/// The API server allows far more (`--http2-max-streams-per-connection`,
/// 1000 by default); staying well below spreads 10,000 watches over a few
/// connections instead of queueing them behind one.
const STREAMS_PER_CONNECTION: usize = 100;
/// HTTP/2 pings keep idle watch connections alive through load balancers.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub(super) struct PooledConnection {
    sender: http2::SendRequest<UpstreamBody>,
    streams: Arc<AtomicUsize>,
}

/// Where a request goes: a pooled HTTP/2 stream, or a connection of its own.
pub(super) enum Route {
    Http2(http2::SendRequest<UpstreamBody>, StreamGuard),
    Http1(Box<dyn Io>),
}

impl Upstream {
    /// A pooled HTTP/2 stream, or a new connection when the API server only
    /// speaks HTTP/1.1 (or plain HTTP).
    pub(super) async fn route(&self) -> Result<Route, UpstreamError> {
        if self.speaks_http1_only.load(Ordering::Relaxed) {
            return Ok(Route::Http1(
                self.connect(self.any_version.as_ref()).await?.0,
            ));
        }
        if let Some(route) = self.pooled_stream() {
            return Ok(route);
        }
        let _connecting = self.connecting.lock().await;
        // Another request may have opened a connection meanwhile.
        if let Some(route) = self.pooled_stream() {
            return Ok(route);
        }
        let (io, http2) = self.connect(self.any_version.as_ref()).await?;
        if !http2 {
            tracing::warn!(upstream = %self.endpoint(), "the API server does not offer HTTP/2: one connection per request");
            self.speaks_http1_only.store(true, Ordering::Relaxed);
            return Ok(Route::Http1(io));
        }
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEP_ALIVE)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(io))
            .await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream HTTP/2 connection ended");
            }
        });
        let streams = Arc::new(AtomicUsize::new(0));
        let guard = StreamGuard::new(&streams);
        self.lock_pool().push(PooledConnection {
            sender: sender.clone(),
            streams,
        });
        Ok(Route::Http2(sender, guard))
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Vec<PooledConnection>> {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A stream on a live pooled connection with room for it.
    fn pooled_stream(&self) -> Option<Route> {
        let mut pool = self.lock_pool();
        pool.retain(|connection| !connection.sender.is_closed());
        pool.iter()
            .find(|connection| connection.streams.load(Ordering::Relaxed) < STREAMS_PER_CONNECTION)
            .map(|connection| {
                Route::Http2(
                    connection.sender.clone(),
                    StreamGuard::new(&connection.streams),
                )
            })
    }

    /// TCP, then TLS when the API server is `https`. Returns whether ALPN chose `h2`.
    pub(super) async fn connect(
        &self,
        tls: Option<&TlsConnector>,
    ) -> Result<(Box<dyn Io>, bool), UpstreamError> {
        let failed = |reason: String| UpstreamError::Connect {
            endpoint: self.endpoint(),
            reason,
        };
        let connecting = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|error| failed(error.to_string()))?;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => Ok((Box::new(tcp) as Box<dyn Io>, false)),
                Some(connector) => {
                    let stream = connector
                        .connect(self.server_name.clone(), tcp)
                        .await
                        .map_err(|error| failed(format!("TLS: {error}")))?;
                    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    Ok((Box::new(stream) as Box<dyn Io>, http2))
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| failed(format!("no connection within {:?}", self.connect_timeout)))?
    }
}

/// Counts a stream against its pooled connection until dropped.
pub(super) struct StreamGuard(Arc<AtomicUsize>);

impl StreamGuard {
    fn new(streams: &Arc<AtomicUsize>) -> Self {
        streams.fetch_add(1, Ordering::Relaxed);
        Self(streams.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream response body that holds its stream's place in the pool.
pub struct Guarded {
    pub(super) body: Incoming,
    pub(super) _guard: Option<StreamGuard>,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Boxes an upstream body for the client.
pub fn relay_body(body: Guarded) -> ProxyBody {
    boxed(body)
}
