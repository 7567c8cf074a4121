//! What kind of request this is, which decides how it is relayed and cut:
//! short requests are checked and forwarded; watches and followed logs are
//! registered streams; exec, attach and port-forward are upgraded connections.

use http::{HeaderMap, Method, Uri, header};

/// How a request is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// API discovery (`/api`, `/apis/<group>/<version>`, `/version`,
    /// `/openapi/...`): forwarded as the authenticated user without a lock
    /// check. It holds no object data (every authenticated user may read it),
    /// and kubectl must get past it to reach the request that shows the lock message.
    Discovery,
    /// Checked, forwarded, not registered.
    Short,
    /// A watch (`?watch=true`, a `/watch/` path, or a watch-list): cut with an `ERROR` event.
    Watch,
    /// `pods/log` with `follow`: cut by appending the message as a last line.
    FollowLogs,
    /// A connection upgrade (exec, attach, port-forward, proxy).
    Upgrade(Upgrade),
    /// An upgrade the API server would not accept either.
    BadUpgrade(String),
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
    /// Anything else (`proxy` subresources).
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

/// Classifies a request from its method, URI and headers.
pub fn classify(method: &Method, uri: &Uri, headers: &HeaderMap) -> RequestKind {
    let path = uri.path();
    let query = uri.query().unwrap_or_default();
    if let Some(protocol) = upgrade_protocol(headers) {
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "websocket" => UpgradeProtocol::WebSocket,
            "spdy/3.1" => UpgradeProtocol::Spdy,
            // An h2c upgrade is an offer the API server ignores; so does the proxy.
            "h2c" => return classify_plain(method, path, query),
            _ => {
                return RequestKind::BadUpgrade(format!(
                    "unsupported upgrade protocol {protocol:?}: use websocket or SPDY/3.1"
                ));
            }
        };
        let subresource = match path.trim_end_matches('/').rsplit('/').next() {
            Some("exec") => Subresource::Exec,
            Some("attach") => Subresource::Attach,
            Some("portforward") => Subresource::PortForward,
            _ => Subresource::Other,
        };
        return RequestKind::Upgrade(Upgrade {
            protocol,
            subresource,
        });
    }
    classify_plain(method, path, query)
}

fn classify_plain(method: &Method, path: &str, query: &str) -> RequestKind {
    if *method != Method::GET && *method != Method::HEAD {
        return RequestKind::Short;
    }
    if is_discovery(path) {
        return RequestKind::Discovery;
    }
    let watch_path = path
        .split('/')
        .nth(if path.starts_with("/api/") { 3 } else { 4 })
        .is_some_and(|segment| segment == "watch");
    if watch_path || query_flag(query, "watch") || query_flag(query, "sendInitialEvents") {
        return RequestKind::Watch;
    }
    if path.ends_with("/log") && query_flag(query, "follow") {
        return RequestKind::FollowLogs;
    }
    RequestKind::Short
}

/// Discovery documents: `/api`, `/api/<version>`, `/apis`, `/apis/<group>`,
/// `/apis/<group>/<version>`, `/version`, `/openapi/...` — what the
/// `system:discovery` and `system:public-info-viewer` roles let any user read.
fn is_discovery(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    matches!(
        segments.as_slice(),
        ["api"]
            | ["api", _]
            | ["apis"]
            | ["apis", _]
            | ["apis", _, _]
            | ["version"]
            | ["openapi", ..]
    )
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

/// A boolean query parameter the way the API server reads it: present, and
/// its first value is neither `0` nor `false` (an empty value counts as true).
fn query_flag(query: &str, name: &str) -> bool {
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
        .next()
        .is_some_and(|value| value != "0" && !value.eq_ignore_ascii_case("false"))
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
            assert_eq!(kind(Method::GET, uri, &[]), RequestKind::Watch, "{uri}");
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
        for uri in ["/api/v1/pods", "/apis/apps/v1/deployments", "/versions"] {
            assert_eq!(kind(Method::GET, uri, &[]), RequestKind::Short, "{uri}");
        }
        assert_eq!(kind(Method::POST, "/api", &[]), RequestKind::Short);
    }

    #[test]
    fn followed_logs_are_streams() {
        assert_eq!(
            kind(
                Method::GET,
                "/api/v1/namespaces/a/pods/p/log?follow=true&container=c",
                &[]
            ),
            RequestKind::FollowLogs
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
            RequestKind::BadUpgrade(message) if message.contains("gopher")
        ));
        let lone = [("upgrade", "websocket")];
        assert_eq!(
            kind(Method::GET, "/api/v1/namespaces/a/pods/p/exec", &lone),
            RequestKind::Short
        );
        let h2c = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ];
        assert_eq!(
            kind(Method::GET, "/api/v1/pods?watch=1", &h2c),
            RequestKind::Watch
        );
    }
}
