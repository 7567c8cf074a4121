//! A fake kube-apiserver for the kube proxy's tests: TLS (its own cluster CA),
//! HTTP/1.1 and HTTP/2, discovery enough for kubectl (`/version`, `/api`,
//! `/apis`, `/api/v1`), ConfigMaps in namespace `shop` (get, list, watch), a
//! running Pod `shop/web` with exec (WebSocket and SPDY), port-forward and
//! followed logs. It accepts only the proxy's bearer token, and records every
//! request's headers so tests can assert what the proxy forwarded.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use deadbolt_runtime::body::ChannelBody;
use deadbolt_testkit::tls::TestCa;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::kube_spdy;

type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The namespace the fake serves.
pub const NAMESPACE: &str = "shop";
/// Its ConfigMaps.
pub const CONFIGMAPS: [&str; 2] = ["flags", "settings"];
/// Its one Pod.
pub const POD: &str = "web";

/// One request as the fake API server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: String,
    /// The query, without `?`.
    pub query: String,
    /// HTTP/1.1 or HTTP/2.
    pub version: Version,
    /// Every header.
    pub headers: HeaderMap,
}

impl Recorded {
    /// Every value of a header, as text.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<binary>").to_string())
            .collect()
    }

    /// The first value of a header.
    pub fn get(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }
}

struct State {
    token: String,
    requests: Mutex<Vec<Recorded>>,
    resource_version: AtomicU64,
    /// How long each watch waits between events.
    event_interval: Duration,
    /// Bytes of filler data in each watch event's ConfigMap.
    event_padding: usize,
}

/// A running fake API server.
pub struct FakeApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The cluster CA that signed its serving certificate.
    pub ca: Arc<TestCa>,
    /// The only bearer token it accepts (the proxy's).
    pub token: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Starts serving on a free loopback port.
    pub async fn start() -> Self {
        Self::start_with_interval(Duration::from_millis(300)).await
    }

    /// Starts serving, with watch events every `event_interval`.
    pub async fn start_with_interval(event_interval: Duration) -> Self {
        Self::start_with(event_interval, 0).await
    }

    /// Starts serving, with watch events every `event_interval`, each padded
    /// with `event_padding` bytes of data (to fill a client that does not read).
    pub async fn start_with(event_interval: Duration, event_padding: usize) -> Self {
        let ca = Arc::new(TestCa::new());
        let config = ca.localhost_config(&[b"h2", b"http/1.1"]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = format!("proxy-token-{}", uuid::Uuid::new_v4());
        let state = Arc::new(State {
            token: token.clone(),
            requests: Mutex::default(),
            resource_version: AtomicU64::new(100),
            event_interval,
            event_padding,
        });
        let task = tokio::spawn(serve(listener, TlsAcceptor::from(config), state.clone()));
        Self {
            addr,
            ca,
            token,
            state,
            task,
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// A kubeconfig for the proxy: this server, its CA, and the proxy's token.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca.cert_pem());
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: upstream\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {ca}\nusers:\n- name: proxy\n  user:\n    token: {}\ncontexts:\n- name: upstream\n  context:\n    cluster: upstream\n    user: proxy\ncurrent-context: upstream\n",
            self.addr.port(),
            self.token
        );
        let path = dir.join("upstream.kubeconfig");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The `kube::Config` of [`FakeApiServer::kubeconfig`].
    pub async fn kube_config(&self, dir: &Path) -> kube::Config {
        deadbolt_sidecar::kube::upstream::load_config(Some(&self.kubeconfig(dir)), None)
            .await
            .unwrap()
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<State>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": reason, "message": message, "code": code.as_u16()}),
    )
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// A path decoded as Go's `url.URL.Path` is: `%XX` escapes, `+` kept.
fn decode_path(path: &str) -> String {
    decode(&path.replace('+', "%2B"))
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                }
                None => {
                    out.push(b'%');
                    i += 1;
                }
            },
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(state: Arc<State>, mut request: Request<Incoming>) -> Response<Body> {
    state.requests.lock().unwrap().push(Recorded {
        method: request.method().clone(),
        path: request.uri().path().to_string(),
        query: request.uri().query().unwrap_or_default().to_string(),
        version: request.version(),
        headers: request.headers().clone(),
    });
    let expected = format!("Bearer {}", state.token);
    if request
        .headers()
        .get(header::AUTHORIZATION)
        .is_none_or(|value| value.as_bytes() != expected.as_bytes())
    {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    if request.headers().get("impersonate-user").is_none() {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the fake API server only serves impersonated requests",
        );
    }
    // Routed on the decoded path, as the API server (Go's net/url) routes.
    let path = decode_path(request.uri().path());
    let query = query_pairs(request.uri().query().unwrap_or_default());
    let flag = |name: &str| {
        query
            .iter()
            .any(|(key, value)| key == name && value != "false" && value != "0")
    };
    // kubectl's human-readable output asks for server-side Tables.
    let table = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=Table"));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-deadbolt-fake",
                    "platform": "linux/amd64", "goVersion": "go1.24", "compiler": "gc",
                    "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z"}),
        ),
        ["api"] => json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}]}),
        ),
        ["apis"] => json_response(
            StatusCode::OK,
            &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        ),
        ["api", "v1"] => json_response(StatusCode::OK, &resource_list()),
        ["api", "v1", "namespaces", NAMESPACE, "configmaps"] if flag("watch") => {
            watch_response(&state, table)
        }
        ["api", "v1", "namespaces", NAMESPACE, "configmaps"] => {
            let version = state.resource_version.load(Ordering::SeqCst);
            if table {
                table_response(&table_of(&CONFIGMAPS, version))
            } else {
                json_response(
                    StatusCode::OK,
                    &json!({"kind": "ConfigMapList", "apiVersion": "v1",
                            "metadata": {"resourceVersion": version.to_string()},
                            "items": CONFIGMAPS.iter().map(|name| configmap(name, 100)).collect::<Vec<_>>()}),
                )
            }
        }
        ["api", "v1", "namespaces", NAMESPACE, "configmaps", name] => {
            if CONFIGMAPS.contains(name) && table {
                table_response(&table_of(&[name], 100))
            } else if CONFIGMAPS.contains(name) {
                json_response(StatusCode::OK, &configmap(name, 100))
            } else {
                status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("configmaps \"{name}\" not found"),
                )
            }
        }
        ["api", "v1", "namespaces", NAMESPACE, "pods", POD] => {
            json_response(StatusCode::OK, &pod())
        }
        ["api", "v1", "namespaces", NAMESPACE, "pods", POD, "log"] => log_response(flag("follow")),
        // The kubelet's own endpoints through `nodes/proxy`: here, a log that never ends.
        ["api", "v1", "nodes", NODE, "proxy", ..] => log_response(true),
        [
            "api",
            "v1",
            "namespaces",
            NAMESPACE,
            "pods",
            POD,
            "exec" | "attach",
        ] => {
            let exec = ExecRequest {
                commands: query
                    .iter()
                    .filter(|(key, _)| key == "command")
                    .map(|(_, value)| value.clone())
                    .collect(),
                stdin: flag("stdin"),
                stdout: flag("stdout"),
                stderr: flag("stderr"),
                tty: flag("tty"),
                port_forward: false,
            };
            upgrade(&mut request, exec)
        }
        [
            "api",
            "v1",
            "namespaces",
            NAMESPACE,
            "pods",
            POD,
            "portforward",
        ] => upgrade(
            &mut request,
            ExecRequest {
                port_forward: true,
                ..Default::default()
            },
        ),
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
        ),
    }
}

fn resource_list() -> Value {
    let resource = |name: &str, kind: &str, verbs: &[&str]| json!({"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": verbs});
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            resource("configmaps", "ConfigMap", &["create", "delete", "get", "list", "patch", "update", "watch"]),
            resource("pods", "Pod", &["create", "delete", "get", "list", "patch", "update", "watch"]),
            resource("pods/exec", "PodExecOptions", &["create", "get"]),
            resource("pods/attach", "PodAttachOptions", &["create", "get"]),
            resource("pods/portforward", "PodPortForwardOptions", &["create", "get"]),
            resource("pods/log", "Pod", &["get"]),
            {"name": "namespaces", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["get", "list"]},
        ]
    })
}

fn configmap(name: &str, resource_version: u64) -> Value {
    json!({
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("uid-{name}"),
                     "resourceVersion": resource_version.to_string(),
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "data": {"revision": resource_version.to_string()}
    })
}

fn pod() -> Value {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": POD, "namespace": NAMESPACE, "uid": "uid-web", "resourceVersion": "7",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
        "status": {"phase": "Running",
                   "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "busybox",
                                          "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
    })
}

/// A `meta.k8s.io/v1` Table of ConfigMaps, as `kubectl get` prints them.
fn table_of(names: &[&str], resource_version: u64) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
            {"name": "Revision", "type": "string", "format": "", "description": "Revision", "priority": 0},
        ],
        "rows": names.iter().map(|name| json!({
            "cells": [name, resource_version.to_string()],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": {"name": name, "namespace": NAMESPACE,
                                    "resourceVersion": resource_version.to_string(),
                                    "creationTimestamp": "2026-01-01T00:00:00Z"}},
        })).collect::<Vec<_>>(),
    })
}

fn table_response(table: &Value) -> Response<Body> {
    let mut response = json_response(StatusCode::OK, table);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json;as=Table;v=v1;g=meta.k8s.io"
            .parse()
            .unwrap(),
    );
    response
}

/// A watch stream: a MODIFIED event for `settings` at once and then at every
/// interval, each written in two halves so the proxy sees events in flight.
fn watch_response(state: &Arc<State>, table: bool) -> Response<Body> {
    let (sender, body) = ChannelBody::channel(4);
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            let version = state.resource_version.fetch_add(1, Ordering::SeqCst) + 1;
            let object = if table {
                table_of(&["settings"], version)
            } else {
                let mut object = configmap("settings", version);
                if state.event_padding > 0 {
                    object["data"]["padding"] = json!("x".repeat(state.event_padding));
                }
                object
            };
            let mut event = json!({"type": "MODIFIED", "object": object})
                .to_string()
                .into_bytes();
            event.push(b'\n');
            let second_half = event.split_off(event.len() / 2);
            if sender.send(Ok(Bytes::from(event))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if sender.send(Ok(Bytes::from(second_half))).await.is_err() {
                return;
            }
            tokio::time::sleep(state.event_interval).await;
        }
    });
    let mut response = Response::new(body.map_err(Into::into).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

/// The fake cluster's one node.
pub const NODE: &str = "node-1";

/// Log lines; with `follow`, a new one every 100 ms, forever.
fn log_response(follow: bool) -> Response<Body> {
    if !follow {
        return Response::new(full("line 1\nline 2\n"));
    }
    let (sender, body) = ChannelBody::channel(4);
    tokio::spawn(async move {
        for number in 1.. {
            let line = format!("log line {number}\n");
            if sender.send(Ok(Bytes::from(line))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut response = Response::new(body.map_err(Into::into).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
    response
}

/// An exec, attach or port-forward: a WebSocket or SPDY/3.1 upgrade.
/// What an exec asked for.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub commands: Vec<String>,
    /// Streams requested.
    pub stdin: bool,
    /// Streams requested.
    pub stdout: bool,
    /// Streams requested.
    pub stderr: bool,
    /// A terminal (adds a resize stream).
    pub tty: bool,
    /// A port-forward rather than a command.
    pub port_forward: bool,
}

impl ExecRequest {
    /// How many SPDY streams the client opens: error plus each requested one.
    pub fn expected_streams(&self) -> usize {
        1 + [self.stdin, self.stdout, self.stderr, self.tty]
            .iter()
            .filter(|on| **on)
            .count()
    }
}

fn upgrade(request: &mut Request<Incoming>, exec: ExecRequest) -> Response<Body> {
    let headers = request.headers().clone();
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let on_upgrade = hyper::upgrade::on(request);
    match upgrade.as_str() {
        "websocket" => {
            let Some(key) = headers.get("sec-websocket-key") else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "no Sec-WebSocket-Key",
                );
            };
            let offered: Vec<String> = headers
                .get_all("sec-websocket-protocol")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|p| p.trim().to_string())
                .collect();
            let preferred = [
                "v5.channel.k8s.io",
                "v4.channel.k8s.io",
                "SPDY/3.1+portforward.k8s.io",
            ];
            let Some(protocol) = preferred
                .iter()
                .find(|p| offered.iter().any(|o| o == *p))
                .map(|p| p.to_string())
            else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "no supported subprotocol",
                );
            };
            let accept = derive_accept_key(key.as_bytes());
            let chosen = protocol.clone();
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                if protocol.starts_with("SPDY") {
                    // Port-forward tunnels SPDY in WebSocket binary messages.
                    let (near, far) = tokio::io::duplex(64 * 1024);
                    tokio::spawn(kube_spdy::serve_exec(far, exec));
                    tunnel_spdy(socket, near).await;
                } else {
                    websocket_exec(socket, exec.commands).await;
                }
            });
            let mut response = Response::new(full(""));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = response.headers_mut();
            h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
            h.insert(header::UPGRADE, "websocket".parse().unwrap());
            h.insert("sec-websocket-accept", accept.parse().unwrap());
            h.insert("sec-websocket-protocol", chosen.parse().unwrap());
            response
        }
        "spdy/3.1" => {
            let versions: Vec<String> = headers
                .get_all("x-stream-protocol-version")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|p| p.trim().to_string())
                .collect();
            let protocol = if exec.port_forward {
                "portforward.k8s.io"
            } else {
                "v4.channel.k8s.io"
            };
            if !versions.iter().any(|v| v == protocol) {
                return status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &format!("no supported stream protocol in {versions:?}"),
                );
            }
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                kube_spdy::serve_exec(TokioIo::new(upgraded), exec).await;
            });
            let mut response = Response::new(full(""));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = response.headers_mut();
            h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
            h.insert(header::UPGRADE, "SPDY/3.1".parse().unwrap());
            h.insert("x-stream-protocol-version", protocol.parse().unwrap());
            response
        }
        _ => status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Upgrade request required",
        ),
    }
}

/// Carries SPDY bytes in WebSocket binary messages, both ways.
async fn tunnel_spdy<S>(socket: WebSocketStream<S>, spdy: tokio::io::DuplexStream)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut sink, mut stream) = socket.split();
    let (mut reader, mut writer) = tokio::io::split(spdy);
    let inbound = async move {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Binary(bytes) = message
                && writer.write_all(&bytes).await.is_err()
            {
                break;
            }
        }
    };
    let outbound = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(n) = reader.read(&mut buffer).await {
            if n == 0
                || sink
                    .send(Message::Binary(buffer[..n].to_vec().into()))
                    .await
                    .is_err()
            {
                break;
            }
        }
    };
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}

/// What a command does, whatever the transport: lines to print, then an exit.
pub enum Script {
    /// Print these bytes and exit 0.
    Print(Vec<u8>),
    /// Print `tick N` every 100 ms until the connection ends.
    Ticker,
}

/// The fake commands: `echo ARGS...` and `ticker`.
pub fn script(commands: &[String]) -> Script {
    match commands.first().map(String::as_str) {
        Some("echo") => Script::Print(format!("{}\n", commands[1..].join(" ")).into_bytes()),
        Some("ticker") => Script::Ticker,
        other => Script::Print(format!("unknown command {other:?}\n").into_bytes()),
    }
}

/// The remote-command success `Status` (v4 error channel).
pub const SUCCESS: &str = r#"{"metadata":{},"status":"Success"}"#;

fn channel_message(channel: u8, data: &[u8]) -> Message {
    let mut payload = vec![channel];
    payload.extend_from_slice(data);
    Message::Binary(payload.into())
}

async fn websocket_exec<S>(mut socket: WebSocketStream<S>, commands: Vec<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match script(&commands) {
        Script::Print(output) => {
            let _ = socket.send(channel_message(1, &output)).await;
            let _ = socket.send(channel_message(3, SUCCESS.as_bytes())).await;
            let _ = socket
                .close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                }))
                .await;
            // Read until the client closes, answering its close.
            while let Some(Ok(_)) = socket.next().await {}
        }
        Script::Ticker => {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut number = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        number += 1;
                        let line = format!("tick {number}\n");
                        if socket.send(channel_message(1, line.as_bytes())).await.is_err() {
                            return;
                        }
                    }
                    incoming = socket.next() => match incoming {
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                }
            }
        }
    }
}

/// Counts of what the fake has seen, for tests that want more than headers.
pub fn count_by_path(requests: &[Recorded]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in requests {
        *counts.entry(request.path.clone()).or_insert(0) += 1;
    }
    counts
}
