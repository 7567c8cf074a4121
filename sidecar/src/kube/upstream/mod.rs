//! The upstream API server: where it is and the requests the proxy sends it.
//! Each concern has its file: `credentials` (how the proxy proves who it
//! is), `pool` (the connections requests travel on: pooled HTTP/2 for
//! ordinary requests and watches, a fresh HTTP/1.1 connection per upgrade)
//! and `target` (pointing a client's request at the API server's URL).

mod credentials;
mod pool;
mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use kube::client::ConfigExt;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::body::ProxyBody;

pub use credentials::load_config;
pub use pool::{Guarded, relay_body};

use credentials::AuthorizationSource;
use pool::{PooledConnection, Route};

/// What the proxy sends upstream as a request body.
pub type UpstreamBody = ProxyBody;

/// Used when the kubeconfig sets no connect timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
        let authorization = credentials::authorization_source(config)?;
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

    /// The same API server and credentials with a connection pool of its
    /// own, for another worker ([`crate::workers`]): a pooled connection is
    /// driven on the thread that opened it, so requests do not cross threads.
    pub fn for_worker(&self) -> Self {
        Self {
            scheme: self.scheme.clone(),
            authority: self.authority.clone(),
            base_path: self.base_path.clone(),
            host: self.host.clone(),
            port: self.port,
            server_name: self.server_name.clone(),
            any_version: self.any_version.clone(),
            http1_only: self.http1_only.clone(),
            authorization: self.authorization.clone(),
            connect_timeout: self.connect_timeout,
            pool: std::sync::Mutex::default(),
            connecting: tokio::sync::Mutex::default(),
            speaks_http1_only: AtomicBool::new(self.speaks_http1_only.load(Ordering::Relaxed)),
        }
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
}
