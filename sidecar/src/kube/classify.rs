//! What kind of request this is, decided on the request as the API server
//! will route it ([`canonical`](super::canonical)), which decides how it is
//! relayed and cut: discovery passes without a lock check, short requests are
//! checked and forwarded, streams (watches, followed logs, `*/proxy/*` and
//! anything the proxy does not recognise) are checked and registered, and
//! exec, attach and port-forward are upgraded connections. Nothing the proxy
//! cannot classify is ever exempt: it is treated as a stream.

use std::ops::ControlFlow;
use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};

use super::body::ProxyBody;
use super::canonical::Target;
use super::guard::Guard;
use super::status;
use super::stream::StreamKind;
use crate::metrics::Metrics;

/// How a request is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// API discovery, matched exactly (`/api`, `/api/<v>`, `/apis`,
    /// `/apis/<group>`, `/apis/<group>/<v>`, `/version`, `/openapi/v2`,
    /// `/openapi/v3[/api/<v> | /apis/<group>[/<v>]]`, `GET` or `HEAD`):
    /// forwarded as the authenticated user without a lock check. It holds no
    /// object data (every authenticated user may read it), and kubectl must
    /// get past it to reach the request that shows the lock message.
    Discovery,
    /// A finite read or a write of API resources: checked, forwarded, not registered.
    Short,
    /// A response that may last: checked, registered, cut.
    Stream(StreamKind),
    /// A connection upgrade (exec, attach, port-forward, proxy).
    Upgrade(Upgrade),
    /// A request the API server might read differently from the proxy, or an
    /// upgrade it would not accept either: refused with 400.
    BadRequest(String),
}

/// The protocol an upgraded connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeProtocol {
    /// WebSocket (`v5.channel.k8s.io` and family; port-forward tunnels SPDY in it).
    WebSocket,
    /// SPDY/3.1, what older clients use.
    Spdy,
}

/// The subresource an upgrade is for, which decides where a cut's message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `pods/exec`.
    Exec,
    /// `pods/attach`.
    Attach,
    /// `pods/portforward`.
    PortForward,
    /// Anything else (`proxy` subresources, WebSocket watches).
    Other,
}

/// An upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    /// Its protocol.
    pub protocol: UpgradeProtocol,
    /// What it is for.
    pub subresource: Subresource,
}

impl Upgrade {
    /// Whether a cut can write to a remote-command error channel.
    pub fn has_error_channel(&self) -> bool {
        matches!(self.subresource, Subresource::Exec | Subresource::Attach)
    }
}

/// What an API path names, as the API server's request-info parsing reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Resource<'a> {
    /// The deprecated `/watch/` prefix.
    watch_prefix: bool,
    /// The deprecated `/proxy/` prefix.
    proxy_prefix: bool,
    resource: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

/// What the API server routes a decoded path to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route<'a> {
    Discovery,
    Api(Resource<'a>),
    /// Anything else (`/`, `/healthz`, `/logs/`, `/metrics`, ...).
    Other,
}

/// Classifies a request from its method, URI and headers.
pub fn classify(method: &Method, uri: &Uri, headers: &HeaderMap) -> RequestKind {
    let target = match Target::parse(uri.path(), uri.query()) {
        Ok(target) => target,
        Err(ambiguous) => return RequestKind::BadRequest(ambiguous.0),
    };
    let parts = target.parts();
    let route = route(&parts);
    if let Some(protocol) = upgrade_protocol(headers) {
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "websocket" => UpgradeProtocol::WebSocket,
            "spdy/3.1" => UpgradeProtocol::Spdy,
            // An h2c upgrade is an offer the API server ignores; so does the proxy.
            "h2c" => return classify_plain(method, &target, &route),
            _ => {
                return RequestKind::BadRequest(format!(
                    "unsupported upgrade protocol {protocol:?}: use websocket or SPDY/3.1"
                ));
            }
        };
        let subresource = match &route {
            Route::Api(Resource {
                subresource: Some("exec"),
                ..
            }) => Subresource::Exec,
            Route::Api(Resource {
                subresource: Some("attach"),
                ..
            }) => Subresource::Attach,
            Route::Api(Resource {
                subresource: Some("portforward"),
                ..
            }) => Subresource::PortForward,
            _ => Subresource::Other,
        };
        return RequestKind::Upgrade(Upgrade {
            protocol,
            subresource,
        });
    }
    classify_plain(method, &target, &route)
}

fn classify_plain(method: &Method, target: &Target, route: &Route<'_>) -> RequestKind {
    let read = *method == Method::GET || *method == Method::HEAD;
    let api = match route {
        Route::Discovery if read => return RequestKind::Discovery,
        Route::Api(api) => api,
        Route::Discovery | Route::Other => return RequestKind::Stream(StreamKind::Raw),
    };
    if api.proxy_prefix {
        return RequestKind::Stream(StreamKind::Raw);
    }
    match api.subresource {
        // Proxied to a pod, service or node: any method, any length.
        Some("proxy") => return RequestKind::Stream(StreamKind::Raw),
        // Without an upgrade the API server refuses these; if it ever did not, they stream.
        Some("exec" | "attach" | "portforward") => return RequestKind::Stream(StreamKind::Raw),
        _ => {}
    }
    if !read {
        return RequestKind::Short;
    }
    if api.watch_prefix || target.flag("watch") || target.flag("sendInitialEvents") {
        return RequestKind::Stream(StreamKind::Watch);
    }
    if api.subresource == Some("log") && target.flag("follow") {
        return RequestKind::Stream(StreamKind::FollowLogs);
    }
    RequestKind::Short
}

fn route<'a>(parts: &[&'a str]) -> Route<'a> {
    match parts {
        ["api"] | ["api", _] | ["apis"] | ["apis", _] | ["apis", _, _] | ["version"] => {
            Route::Discovery
        }
        ["openapi", "v2"] | ["openapi", "v3"] => Route::Discovery,
        ["openapi", "v3", "api", _]
        | ["openapi", "v3", "apis", _]
        | ["openapi", "v3", "apis", _, _] => Route::Discovery,
        ["api", _version, rest @ ..] => Route::Api(resource(rest)),
        ["apis", _group, _version, rest @ ..] => Route::Api(resource(rest)),
        _ => Route::Other,
    }
}

/// The API server's reading of the path after `/api/<v>` or `/apis/<g>/<v>`.
fn resource<'a>(mut rest: &[&'a str]) -> Resource<'a> {
    let mut found = Resource::default();
    match rest.first() {
        Some(&"watch") => {
            found.watch_prefix = true;
            rest = &rest[1..];
        }
        Some(&"proxy") => {
            found.proxy_prefix = true;
            rest = &rest[1..];
        }
        _ => {}
    }
    // `namespaces/<ns>/<resource>...`, except `namespaces/<ns>/status|finalize`,
    // which are subresources of the namespace itself.
    if let ["namespaces", _namespace, next, ..] = rest
        && *next != "status"
        && *next != "finalize"
    {
        rest = &rest[2..];
    }
    found.resource = rest.first().copied();
    found.name = rest.get(1).copied();
    found.subresource = rest.get(2).copied();
    found
}

/// Classifies every request, answering 400 for what the API server might
/// read differently, and puts the [`RequestKind`] into its extensions.
#[derive(Clone)]
pub struct Classify {
    metrics: Arc<Metrics>,
}

impl Classify {
    /// Counts refused requests as protocol errors in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl Guard for Classify {
    fn check<B>(&self, request: &mut Request<B>) -> ControlFlow<Response<ProxyBody>> {
        match classify(request.method(), request.uri(), request.headers()) {
            RequestKind::BadRequest(message) => {
                self.metrics.protocol_errors.inc();
                ControlFlow::Break(status::response(StatusCode::BAD_REQUEST, &message))
            }
            kind => {
                request.extensions_mut().insert(kind);
                ControlFlow::Continue(())
            }
        }
    }
}

/// The protocol of an upgrade request: `Connection` names `upgrade` and
/// `Upgrade` is set. A lone `Upgrade` header is not an upgrade.
fn upgrade_protocol(headers: &HeaderMap) -> Option<&str> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    let upgrade = headers.get(header::UPGRADE)?;
    Some(upgrade.to_str().unwrap_or("<not ASCII>").trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn kind(method: Method, uri: &str, headers: &[(&str, &str)]) -> RequestKind {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        classify(&method, &uri.parse().unwrap(), &map)
    }

    #[test]
    fn watches_in_every_spelling() {
        for uri in [
            "/api/v1/namespaces/a/configmaps?watch=true",
            "/api/v1/namespaces/a/configmaps?resourceVersion=5&watch=1",
            "/api/v1/configmaps?watch",
            "/apis/apps/v1/deployments?watch=True",
            "/api/v1/watch/namespaces/a/configmaps",
            "/apis/apps/v1/watch/deployments",
            "/api/v1/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
            "/api/v1/configmaps?sendInitialEvents=true",
        ] {
            assert_eq!(
                kind(Method::GET, uri, &[]),
                RequestKind::Stream(StreamKind::Watch),
                "{uri}"
            );
        }
        for uri in [
            "/api/v1/namespaces/a/configmaps",
            "/api/v1/configmaps?watch=false",
            "/api/v1/configmaps?watch=0",
            "/api/v1/namespaces/watch/configmaps",
            "/apis/watch/v1/things/x",
        ] {
            assert_eq!(kind(Method::GET, uri, &[]), RequestKind::Short, "{uri}");
        }
        assert_eq!(
            kind(Method::DELETE, "/api/v1/configmaps?watch=true", &[]),
            RequestKind::Short
        );
    }

    #[test]
    fn discovery_is_told_apart_from_resources() {
        for uri in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1/",
            "/version",
            "/openapi/v3/apis/apps/v1?hash=1",
        ] {
            assert_eq!(kind(Method::GET, uri, &[]), RequestKind::Discovery, "{uri}");
        }
        for uri in ["/api/v1/pods", "/apis/apps/v1/deployments"] {
            assert_eq!(kind(Method::GET, uri, &[]), RequestKind::Short, "{uri}");
        }
        // Not discovery, and not anything the proxy knows: lock-checked and registered.
        for uri in [
            "/versions",
            "/openapi/v3/apis/apps/v1/extra",
            "/openapi/../api/v1/pods",
            "/",
            "/healthz",
            "/logs/kube-apiserver.log",
        ] {
            assert_ne!(kind(Method::GET, uri, &[]), RequestKind::Discovery, "{uri}");
        }
        assert_eq!(
            kind(Method::GET, "/logs/kube-apiserver.log", &[]),
            RequestKind::Stream(StreamKind::Raw)
        );
        assert_eq!(
            kind(Method::POST, "/api", &[]),
            RequestKind::Stream(StreamKind::Raw)
        );
    }

    #[test]
    fn followed_logs_are_streams() {
        assert_eq!(
            kind(
                Method::GET,
                "/api/v1/namespaces/a/pods/p/log?follow=true&container=c",
                &[]
            ),
            RequestKind::Stream(StreamKind::FollowLogs)
        );
        assert_eq!(
            kind(Method::GET, "/api/v1/namespaces/a/pods/p/log", &[]),
            RequestKind::Short
        );
    }

    #[test]
    fn upgrades_name_their_protocol_and_subresource() {
        let websocket = [("connection", "Upgrade"), ("upgrade", "websocket")];
        assert_eq!(
            kind(
                Method::GET,
                "/api/v1/namespaces/a/pods/p/exec?command=sh",
                &websocket
            ),
            RequestKind::Upgrade(Upgrade {
                protocol: UpgradeProtocol::WebSocket,
                subresource: Subresource::Exec,
            })
        );
        let spdy = [
            ("connection", "keep-alive, upgrade"),
            ("upgrade", "SPDY/3.1"),
        ];
        assert_eq!(
            kind(
                Method::POST,
                "/api/v1/namespaces/a/pods/p/portforward",
                &spdy
            ),
            RequestKind::Upgrade(Upgrade {
                protocol: UpgradeProtocol::Spdy,
                subresource: Subresource::PortForward,
            })
        );
        let bad = [("connection", "upgrade"), ("upgrade", "gopher")];
        assert!(matches!(
            kind(Method::GET, "/api/v1/namespaces/a/pods/p/exec", &bad),
            RequestKind::BadRequest(message) if message.contains("gopher")
        ));
        // A lone Upgrade header is no upgrade; exec without one still streams if it ever ran.
        let lone = [("upgrade", "websocket")];
        assert_eq!(
            kind(Method::GET, "/api/v1/namespaces/a/pods/p/exec", &lone),
            RequestKind::Stream(StreamKind::Raw)
        );
        let h2c = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ];
        assert_eq!(
            kind(Method::GET, "/api/v1/pods?watch=1", &h2c),
            RequestKind::Stream(StreamKind::Watch)
        );
    }

    #[test]
    fn encodings_are_read_as_the_api_server_reads_them() {
        for uri in [
            "/api/v1/namespaces/a/configmaps?%77atch=true",
            "/api/v1/namespaces/a/configmaps?w%61tch=1",
            "/api/v1/namespaces/a/config%6Daps?watch",
            "/api/v1/%77atch/namespaces/a/configmaps",
            "/api/v1/configmaps?watch=+1",
        ] {
            assert_eq!(
                kind(Method::GET, uri, &[]),
                RequestKind::Stream(StreamKind::Watch),
                "{uri}"
            );
        }
        assert_eq!(
            kind(
                Method::GET,
                "/api/v1/namespaces/a/pods/p/log?fol%6Cow=true",
                &[]
            ),
            RequestKind::Stream(StreamKind::FollowLogs)
        );
        for uri in ["/%61pi", "/ap%69/v1", "/api/v1/", "/apis/apps/v1/"] {
            assert_eq!(kind(Method::GET, uri, &[]), RequestKind::Discovery, "{uri}");
        }
        for uri in [
            "/api%2Fv1/pods",
            "/api/v1/namespaces/a/pods/p%2Flog?follow=1",
            "/api/v1/namespaces/a/%2e%2e/b/pods",
            "/api/v1/configmaps?watch=1;x=1",
            "/api/v1/configmaps?%zz=1",
        ] {
            assert!(
                matches!(kind(Method::GET, uri, &[]), RequestKind::BadRequest(_)),
                "{uri}"
            );
        }
    }

    #[test]
    fn proxies_and_unknown_forms_stream() {
        for (method, uri) in [
            (Method::GET, "/api/v1/nodes/n1/proxy/logs/"),
            (Method::POST, "/api/v1/namespaces/a/pods/p:8080/proxy/x"),
            (Method::GET, "/api/v1/namespaces/a/services/s/proxy"),
            (Method::GET, "/api/v1/proxy/namespaces/a/pods/p"),
            (Method::POST, "/api/v1/namespaces/a/pods/p/exec?command=sh"),
            (Method::GET, "/metrics"),
        ] {
            assert_eq!(
                kind(method.clone(), uri, &[]),
                RequestKind::Stream(StreamKind::Raw),
                "{method} {uri}"
            );
        }
        assert_eq!(
            kind(Method::GET, "/api/v1/namespaces/a/status", &[]),
            RequestKind::Short
        );
        assert_eq!(
            kind(Method::PUT, "/api/v1/namespaces/a/finalize", &[]),
            RequestKind::Short
        );
    }
}
