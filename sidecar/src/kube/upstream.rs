//! The upstream API server: where it is, how the proxy proves who it is (its
//! own ServiceAccount or kubeconfig credentials, read through kube's
//! `Config`: CA, client certificate, token, token file, exec plugin), and the
//! connections requests travel on — a pool of HTTP/2 connections for ordinary
//! requests and watches, and a fresh HTTP/1.1 connection per upgrade.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::Empty;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kube::client::ConfigExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use super::body::{BoxError, ProxyBody, boxed};

/// What the proxy sends upstream as a request body.
pub type UpstreamBody = ProxyBody;

/// Concurrent streams per pooled HTTP/2 connection before another is opened.
/// The API server allows far more (`--http2-max-streams-per-connection`,
/// 1000 by default); staying well below spreads 10,000 watches over a few
/// connections instead of queueing them behind one.
const STREAMS_PER_CONNECTION: usize = 100;
/// Used when the kubeconfig sets no connect timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings keep idle watch connections alive through load balancers.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Why a request could not be sent upstream. The client gets a 503 (or 502) `Status`.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP or TLS failed.
    #[error("cannot reach the Kubernetes API server at {endpoint}: {reason}")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// The cause.
        reason: String,
    },
    /// The proxy's own credentials could not be produced (a token file, an exec plugin).
    #[error("cannot get the proxy's Kubernetes credentials: {0}")]
    Credentials(String),
    /// HTTP failed mid-request.
    #[error("the Kubernetes API server connection failed: {0}")]
    Http(#[from] hyper::Error),
}

/// Produces the proxy's `Authorization` header: kube's auth layer over a
/// service that answers with the header the layer set.
type AuthorizationSource =
    BoxCloneSyncService<Request<Empty<Bytes>>, Response<Empty<Bytes>>, BoxError>;

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

struct PooledConnection {
    sender: http2::SendRequest<UpstreamBody>,
    streams: Arc<AtomicUsize>,
}

/// Where a request goes: a pooled HTTP/2 stream, or a connection of its own.
enum Route {
    Http2(http2::SendRequest<UpstreamBody>, StreamGuard),
    Http1(Box<dyn Io>),
}

/// The upstream API server and the proxy's credentials for it.
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    /// ALPN `h2` and `http/1.1`: ordinary requests.
    any_version: Option<TlsConnector>,
    /// ALPN `http/1.1` only: upgrades.
    http1_only: Option<TlsConnector>,
    authorization: AuthorizationSource,
    connect_timeout: Duration,
    pool: std::sync::Mutex<Vec<PooledConnection>>,
    /// Held while a new pooled connection is made, so a burst opens one, not many.
    connecting: tokio::sync::Mutex<()>,
    speaks_http1_only: AtomicBool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("base_path", &self.base_path)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The API server of `config` (a kubeconfig context or the in-cluster
    /// ServiceAccount), with its TLS trust and the proxy's credentials.
    pub fn from_kube_config(config: &kube::Config) -> anyhow::Result<Self> {
        let url = &config.cluster_url;
        let scheme = url.scheme().cloned().unwrap_or(Scheme::HTTPS);
        let https = scheme == Scheme::HTTPS;
        if !https && scheme != Scheme::HTTP {
            anyhow::bail!("the API server URL {url} is neither https:// nor http://");
        }
        let authority = url
            .authority()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the API server URL {url} has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let name = config
            .tls_server_name
            .clone()
            .unwrap_or_else(|| host.clone());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| anyhow::anyhow!("invalid API server name {name:?}"))?;
        let (any_version, http1_only) = if https {
            let tls = config
                .rustls_client_config()
                .map_err(|error| anyhow::anyhow!("upstream TLS: {error}"))?;
            let with_alpn = |alpn: &[&[u8]]| {
                let mut tls = tls.clone();
                tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
                TlsConnector::from(Arc::new(tls))
            };
            (
                Some(with_alpn(&[b"h2", b"http/1.1"])),
                Some(with_alpn(&[b"http/1.1"])),
            )
        } else {
            tracing::warn!(%url, "the upstream API server is plain HTTP: the proxy's credentials travel in the clear");
            (None, None)
        };
        if config.auth_info.impersonate.is_some() || config.auth_info.impersonate_groups.is_some() {
            tracing::warn!(
                "the upstream kubeconfig's impersonation (`as`, `as-groups`) is ignored: the proxy impersonates each client"
            );
        }
        if config.proxy_url.is_some() {
            tracing::warn!(
                "the upstream kubeconfig's proxy-url is ignored: the proxy connects directly"
            );
        }
        let auth_layer = config
            .auth_layer()
            .map_err(|error| anyhow::anyhow!("upstream credentials: {error}"))?;
        let authorization = BoxCloneSyncService::new(
            tower::ServiceBuilder::new()
                .option_layer(auth_layer)
                .service_fn(|request: Request<Empty<Bytes>>| async move {
                    let mut answer = Response::new(Empty::new());
                    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
                        answer
                            .headers_mut()
                            .insert(header::AUTHORIZATION, value.clone());
                    }
                    Ok::<_, BoxError>(answer)
                }),
        );
        Ok(Self {
            scheme,
            authority,
            base_path: url.path().trim_end_matches('/').to_string(),
            host,
            port,
            server_name,
            any_version,
            http1_only,
            authorization,
            connect_timeout: config.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            pool: std::sync::Mutex::default(),
            connecting: tokio::sync::Mutex::default(),
            speaks_http1_only: AtomicBool::new(!https),
        })
    }

    /// `host:port` of the API server, for messages.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Sends an ordinary request (or a watch) and returns the response, whose
    /// body keeps its HTTP/2 stream counted until dropped.
    pub async fn send(
        &self,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<Guarded>, UpstreamError> {
        self.authorize(request.headers_mut()).await?;
        match self.route().await? {
            Route::Http2(mut sender, guard) => {
                self.target(&mut request, Version::HTTP_2)?;
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                Ok(response.map(|body| Guarded {
                    body,
                    _guard: Some(guard),
                }))
            }
            Route::Http1(io) => {
                let (mut sender, connection) = http1::handshake(TokioIo::new(io)).await?;
                tokio::spawn(connection);
                self.target(&mut request, Version::HTTP_11)?;
                let response = sender.send_request(request).await?;
                Ok(response.map(|body| Guarded { body, _guard: None }))
            }
        }
    }

    /// Sends an upgrade request on a fresh HTTP/1.1 connection. On `101` the
    /// caller takes the connection with `hyper::upgrade::on`.
    pub async fn upgrade(
        &self,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.authorize(request.headers_mut()).await?;
        let io = self.connect(self.http1_only.as_ref()).await?.0;
        let (mut sender, connection) = http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(connection.with_upgrades());
        self.target(&mut request, Version::HTTP_11)?;
        Ok(sender.send_request(request).await?)
    }

    /// Sets the proxy's `Authorization` (none with certificate credentials).
    async fn authorize(&self, headers: &mut HeaderMap) -> Result<(), UpstreamError> {
        let probe = self
            .authorization
            .clone()
            .oneshot(Request::new(Empty::new()))
            .await
            .map_err(|error| UpstreamError::Credentials(error.to_string()))?;
        headers.remove(header::AUTHORIZATION);
        if let Some(value) = probe.headers().get(header::AUTHORIZATION) {
            let mut value = value.clone();
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        Ok(())
    }

    /// Points the request at the API server: an absolute URI for HTTP/2, the
    /// path and a `Host` header for HTTP/1.1.
    fn target(
        &self,
        request: &mut Request<UpstreamBody>,
        version: Version,
    ) -> Result<(), UpstreamError> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", PathAndQuery::as_str);
        let path: PathAndQuery = format!("{}{path}", self.base_path)
            .parse()
            .map_err(|error| UpstreamError::Credentials(format!("invalid path: {error}")))?;
        let mut parts = http::uri::Parts::default();
        parts.path_and_query = Some(path);
        if version == Version::HTTP_2 {
            parts.scheme = Some(self.scheme.clone());
            parts.authority = Some(self.authority.clone());
            request.headers_mut().remove(header::HOST);
        } else if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
            request.headers_mut().insert(header::HOST, host);
        }
        *request.uri_mut() = Uri::from_parts(parts)
            .map_err(|error| UpstreamError::Credentials(format!("invalid URI: {error}")))?;
        *request.version_mut() = version;
        Ok(())
    }

    /// A pooled HTTP/2 stream, or a new connection when the API server only
    /// speaks HTTP/1.1 (or plain HTTP).
    async fn route(&self) -> Result<Route, UpstreamError> {
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
    async fn connect(
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

/// The upstream's `kube::Config`: from `kubeconfig` (and `context`) when
/// given, else inferred (`KUBECONFIG`, `~/.kube/config`, in-cluster).
pub async fn load_config(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Config> {
    use anyhow::Context as _;
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read --upstream-kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("unusable --upstream-kubeconfig {}", path.display()))
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("cannot load the kubeconfig for --upstream-context"),
        None => kube::Config::infer()
            .await
            .context("no upstream API server: give --upstream-kubeconfig, or run in a cluster"),
    }
}

/// Counts a stream against its pooled connection until dropped.
struct StreamGuard(Arc<AtomicUsize>);

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
    body: Incoming,
    _guard: Option<StreamGuard>,
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
