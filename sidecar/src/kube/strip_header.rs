//! What headers cross the proxy, both ways. Towards the API server, as a
//! [`Guard`]: never the client's credentials (`Authorization`), never
//! anything that says who the caller is (`Impersonate-*`, and the
//! request-header authentication's `X-Remote-*`), no hop-by-hop headers
//! (except the `Connection`/`Upgrade` an upgrade needs), no `Host`; and
//! `X-Forwarded-For` is the client's real address, whatever the client sent.
//! Towards the client, [`returned_headers`] drops the upstream's hop-by-hop
//! headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use std::ops::ControlFlow;

use super::Peer;
use super::body::ProxyBody;
use super::classify::RequestKind;
use super::guard::Guard;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Prefixes of headers that claim an identity; only the proxy sets those upstream.
const IDENTITY_PREFIXES: [&str; 2] = ["impersonate-", "x-remote-"];

/// Cleans every request's headers before the inner service forwards it.
#[derive(Clone, Copy, Debug, Default)]
pub struct StripHeaders;

impl Guard for StripHeaders {
    fn check<B>(&self, request: &mut Request<B>) -> ControlFlow<Response<ProxyBody>> {
        let upgrade = matches!(
            request.extensions().get::<RequestKind>(),
            Some(RequestKind::Upgrade(_))
        );
        let remote = Peer::of(request).remote;
        let headers = forwarded_headers(request.headers(), upgrade, remote.ip());
        *request.headers_mut() = headers;
        ControlFlow::Continue(())
    }
}

/// The client's headers as forwarded.
pub fn forwarded_headers(client: &HeaderMap, upgrade: bool, remote: std::net::IpAddr) -> HeaderMap {
    let listed_in_connection: Vec<String> = client
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect();
    let forwarded_for = HeaderName::from_static("x-forwarded-for");
    let mut headers = HeaderMap::with_capacity(client.len() + 8);
    for (name, value) in client {
        let lowered = name.as_str();
        let hop =
            HOP_BY_HOP.contains(&lowered) || listed_in_connection.iter().any(|t| t == lowered);
        let upgrade_header = lowered == "connection" || lowered == "upgrade";
        if (hop && !(upgrade && upgrade_header))
            || *name == header::HOST
            || *name == header::AUTHORIZATION
            || *name == forwarded_for
            || IDENTITY_PREFIXES
                .iter()
                .any(|prefix| lowered.starts_with(prefix))
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if upgrade {
        // Only the upgrade tokens: `keep-alive` and friends describe the client's hop.
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    if let Ok(value) = HeaderValue::from_str(&remote.to_string()) {
        headers.insert(forwarded_for, value);
    }
    headers
}

/// The upstream's response headers as relayed to the client: without
/// hop-by-hop headers, except on a `101`, whose `Connection`/`Upgrade` complete
/// the client's handshake.
pub fn returned_headers(upstream: &HeaderMap, switching_protocols: bool) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        let lowered = name.as_str();
        let upgrade_header = lowered == "connection" || lowered == "upgrade";
        if HOP_BY_HOP.contains(&lowered) && !(switching_protocols && upgrade_header) {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn credentials_identities_and_hop_headers_stay_behind() {
        let client = headers(&[
            ("authorization", "Bearer user-token"),
            ("host", "proxy:8443"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("accept", "application/json"),
            ("x-forwarded-for", "10.0.0.1"),
            ("impersonate-user", "admin"),
            ("Impersonate-Extra-Scopes", "x"),
            ("x-remote-user", "admin"),
            ("X-Remote-Group", "system:masters"),
            ("x-remote-extra-scopes", "x"),
        ]);
        let remote = "192.0.2.7".parse().unwrap();
        let forwarded = forwarded_headers(&client, false, remote);
        let names: Vec<_> = forwarded.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept", "x-forwarded-for"]);
        assert_eq!(
            forwarded["x-forwarded-for"], "192.0.2.7",
            "the real peer, not what the client claimed"
        );

        let upgrade = headers(&[
            ("authorization", "Bearer user-token"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        ]);
        let forwarded = forwarded_headers(&upgrade, true, remote);
        assert_eq!(forwarded["connection"], "Upgrade");
        assert_eq!(forwarded["upgrade"], "websocket");
        assert!(forwarded.get("authorization").is_none());
    }

    #[test]
    fn responses_lose_hop_headers_unless_switching_protocols() {
        let upstream = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("transfer-encoding", "chunked"),
        ]);
        let plain = returned_headers(&upstream, false);
        assert_eq!(plain.len(), 1);
        let switching = returned_headers(&upstream, true);
        assert_eq!(switching.len(), 3);
    }
}
