//! A raw HTTP client for the kube proxy, for what kubectl would never send:
//! TLS to the proxy (optionally with a client certificate), then HTTP/1.1 or
//! HTTP/2 by hand, or bytes written straight onto the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use deadbolt_runtime::tls::{CertifiedKey, ClientTls, root_store};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How the client reaches the proxy.
#[derive(Clone)]
pub struct RawClient {
    addr: SocketAddr,
    tls: ClientTls,
}

impl RawClient {
    /// A client trusting `ca_pem`, presenting `identity` if given.
    pub fn new(addr: SocketAddr, ca_pem: &[u8], identity: Option<CertifiedKey>) -> Self {
        Self {
            addr,
            tls: ClientTls {
                roots: root_store(ca_pem).unwrap(),
                identity,
            },
        }
    }

    /// TCP and TLS with the given ALPN protocols.
    pub async fn connect(&self, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
        let config = self.tls.config(alpn).unwrap();
        let tcp = TcpStream::connect(self.addr).await?;
        TlsConnector::from(Arc::clone(&config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// An HTTP/1.1 connection (with upgrades).
    pub async fn http1(&self) -> http1::SendRequest<Full<Bytes>> {
        let tls = self.connect(&[b"http/1.1"]).await.unwrap();
        let (sender, connection) = http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(connection.with_upgrades());
        sender
    }

    /// An HTTP/2 connection.
    pub async fn http2(&self) -> http2::SendRequest<Full<Bytes>> {
        let tls = self.connect(&[b"h2"]).await.unwrap();
        let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        sender
    }
}

/// A GET of `path` with these headers, for HTTP/1.1.
pub fn get(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::get(path).header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

/// The same with an absolute URI, for HTTP/2.
pub fn get_h2(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::get(format!("https://localhost{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

/// The status and the body parsed as JSON (`Null` when it is not JSON).
pub async fn json(response: Response<Incoming>) -> (StatusCode, serde_json::Value) {
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// Sends a watch request and returns a task that resolves when its `ERROR`
/// event arrives (a cut): the instant and the event line.
pub async fn watch_until_error<B>(
    sender: &mut http2::SendRequest<B>,
    request: Request<B>,
) -> tokio::task::JoinHandle<Result<(std::time::Instant, String), String>>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    tokio::spawn(async move {
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if line.windows(14).any(|w| w == br#""type":"ERROR""#) {
                    return Ok((
                        std::time::Instant::now(),
                        String::from_utf8_lossy(&line).into_owned(),
                    ));
                }
            }
        }
        Err("the watch ended without an ERROR event".into())
    })
}
