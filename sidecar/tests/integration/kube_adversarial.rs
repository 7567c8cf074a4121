//! The kube proxy against a locked user who knows how the API server reads
//! requests: percent-encoded paths and query keys, dot segments, encoded
//! slashes, `;` separators, `nodes/proxy` streams, and an HTTP/2 connection
//! held open past its certificate's expiry. Each is refused or cut; none
//! ever reaches data. The fake API server routes on the decoded path, as the
//! real one does, so anything the proxy let through would be served.

use crate::support;

use std::time::Duration;

use deadbolt_api::TargetKind;
use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::tls::CertifiedKey;
use deadbolt_testkit::kube_client::{RawClient, get_h2, json};
use http::StatusCode;
use http_body_util::BodyExt;
use support::kube_proxy::{FakeTokens, KubeProxyHarness};
use support::kube_upstream::{FakeApiServer, NODE};
use support::operator::{Operator, target};
use support::{PATIENCE, eventually};

const LOCKED: &str = r#"lock targeting User:"mallory" is in force: Suspicious activity."#;

async fn setup(server_id: &str) -> (FakeApiServer, Operator, KubeProxyHarness) {
    let upstream = FakeApiServer::start().await;
    let tokens = FakeTokens::default();
    tokens.add("mallory-token", "mallory", &["developers"]);
    tokens.add("alice-token", "alice", &["developers"]);
    let operator = Operator::start().await;
    let proxy = KubeProxyHarness::start(&operator, &upstream, server_id, &tokens).await;
    (upstream, operator, proxy)
}

fn client(
    proxy: &KubeProxyHarness,
    operator: &Operator,
    identity: Option<CertifiedKey>,
) -> RawClient {
    RawClient::new(proxy.addr, operator.ca_pem().as_bytes(), identity)
}

/// Every way to ask for data the API server would serve, written so that a
/// proxy reading the raw text would see something else.
const DISGUISED: [&str; 14] = [
    "/api/v1/namespaces/shop/configmaps",
    "/api/v1/namespaces/shop/config%6Daps",
    "/ap%69/v1/namespaces/shop/configmaps",
    "/api/v1/namespaces%2Fshop%2Fconfigmaps",
    "/api%2Fv1%2Fnamespaces%2Fshop%2Fconfigmaps",
    "/api/v1/namespaces/shop/configmaps?%77atch=1",
    "/api/v1/namespaces/shop/configmaps?w%61tch=true&x=1",
    "/api/v1/namespaces/shop/configmaps?watch=1;x=1",
    "/api/v1/namespaces/shop/configmaps/settings/%2e%2e/settings",
    "/apis/%2e%2e/api/v1/namespaces/shop/configmaps",
    "/api/v1/namespaces/shop/pods/web/log?fol%6Cow=true",
    "/api/v1/namespaces/shop/pods/web/log?follow=1",
    "/api/v1/nodes/node-1/proxy/logs/",
    "/api/v1/nodes/node-1/pr%6Fxy/logs/",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_user_reaches_no_data_whatever_the_encoding() {
    let (upstream, operator, proxy) = setup("kube-adversarial-refused").await;
    operator.lock(
        "mallory",
        target(TargetKind::User, "mallory"),
        "Suspicious activity.",
    );
    proxy.catch_up(&operator).await;
    let raw = client(&proxy, &operator, None);
    let before = upstream.requests().len();
    for path in DISGUISED {
        let mut sender = raw.http2().await;
        let response = sender
            .send_request(get_h2(path, &[("authorization", "Bearer mallory-token")]))
            .await
            .unwrap();
        let (status, body) = json(response).await;
        match status {
            StatusCode::FORBIDDEN => assert_eq!(body["message"], LOCKED, "{path}"),
            StatusCode::BAD_REQUEST => assert_eq!(body["reason"], "BadRequest", "{path}"),
            other => panic!("{path} was answered {other}: {body}"),
        }
    }
    assert_eq!(
        upstream.requests().len(),
        before,
        "nothing reached the API server"
    );
    // The proxy itself still serves everyone else.
    let mut sender = raw.http2().await;
    let response = sender
        .send_request(get_h2(
            DISGUISED[1],
            &[("authorization", "Bearer alice-token")],
        ))
        .await
        .unwrap();
    assert_eq!(json(response).await.0, StatusCode::OK);
}

/// Reads a streamed response until it ends, returning what it carried and
/// whether it ended cleanly (a reset is an error).
async fn read_to_end(body: hyper::body::Incoming) -> (String, bool) {
    let mut body = body;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    seen.extend_from_slice(&data);
                }
            }
            Ok(Some(Err(_))) => return (String::from_utf8_lossy(&seen).into_owned(), false),
            Ok(None) => return (String::from_utf8_lossy(&seen).into_owned(), true),
            Err(_) => panic!(
                "the stream was never cut: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disguised_streams_are_registered_and_cut() {
    let (_upstream, operator, proxy) = setup("kube-adversarial-cut").await;
    let raw = client(&proxy, &operator, None);
    let mut sender = raw.http2().await;
    let mut open = Vec::new();
    for path in [
        "/api/v1/namespaces/shop/configmaps?%77atch=1",
        "/api/v1/namespaces/shop/pods/web/log?fol%6Cow=true",
        &format!("/api/v1/nodes/{NODE}/proxy/logs/"),
    ] {
        let response = sender
            .send_request(get_h2(path, &[("authorization", "Bearer mallory-token")]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        open.push((path.to_string(), response.into_body()));
    }
    eventually("three registered streams", || {
        proxy.view.registry().len() == 3
    })
    .await;

    operator.lock(
        "mallory",
        target(TargetKind::User, "mallory"),
        "Suspicious activity.",
    );
    let mut endings = Vec::new();
    for (path, body) in open {
        endings.push((path, read_to_end(body).await));
    }
    let (watch, (events, _)) = &endings[0];
    let status = events
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["type"] == "ERROR")
        .unwrap_or_else(|| panic!("{watch}: no ERROR event in {events}"));
    assert_eq!(status["object"]["message"], LOCKED, "{watch}");
    let (logs, (lines, _)) = &endings[1];
    assert!(lines.trim_end().ends_with(LOCKED), "{logs}: {lines}");
    let (node, (_, clean)) = &endings[2];
    assert!(
        !clean,
        "{node}: a proxied stream is reset, not ended as if complete"
    );
    eventually("every stream to end", || proxy.view.registry().is_empty()).await;
    let terminated = proxy
        .audit
        .json()
        .into_iter()
        .filter(|event| event["event"] == "session.terminated" && event["user"] == "mallory")
        .count();
    assert_eq!(terminated, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_cannot_make_a_new_request_on_an_open_connection() {
    let (_upstream, operator, proxy) = setup("kube-adversarial-expiry").await;
    let carol = CertIdentity {
        user: "carol".into(),
        ..Default::default()
    };
    // Valid for two seconds: long enough to connect and make one request.
    let issued = operator
        .ca
        .issue_user_cert(&carol, Duration::from_secs(2))
        .unwrap();
    let raw = client(&proxy, &operator, Some(issued.certified_key().unwrap()));
    let mut sender = raw.http2().await;
    let response = sender
        .send_request(get_h2("/api/v1/namespaces/shop/configmaps", &[]))
        .await
        .unwrap();
    assert_eq!(json(response).await.0, StatusCode::OK);
    // Outlive the certificate on the same connection.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let response = sender
        .send_request(get_h2("/api/v1/namespaces/shop/configmaps", &[]))
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("certificate")),
        "{body}"
    );
}
