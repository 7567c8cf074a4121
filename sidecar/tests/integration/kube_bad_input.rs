//! The kube proxy against input no kubectl sends: bad tokens, foreign or
//! proxy certificates, absurd headers, bad upgrades, garbage instead of TLS or
//! HTTP, and a client that stops reading. Each gets a clear error or a close;
//! nothing panics, and other clients carry on.

use crate::support;

use std::time::Duration;

use deadbolt_api::TargetKind;
use deadbolt_api::credential::CertIdentity;
use deadbolt_operator::ca::DeadboltCa;
use deadbolt_testkit::kube_client::{RawClient, get, get_h2, json};
use http::StatusCode;
use support::kube_proxy::{FakeTokens, KubeProxyHarness};
use support::kube_upstream::{FakeApiServer, NAMESPACE, POD};
use support::operator::{Operator, target};
use support::{PATIENCE, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIST: &str = "/api/v1/namespaces/shop/configmaps";

async fn setup(
    server_id: &str,
    upstream: FakeApiServer,
) -> (FakeApiServer, Operator, KubeProxyHarness, FakeTokens) {
    let tokens = FakeTokens::default();
    tokens.add("good-token", "alice", &["developers"]);
    let operator = Operator::start().await;
    let proxy = KubeProxyHarness::start(&operator, &upstream, server_id, &tokens).await;
    (upstream, operator, proxy, tokens)
}

fn client(proxy: &KubeProxyHarness, operator: &Operator) -> RawClient {
    RawClient::new(proxy.addr, operator.ca_pem().as_bytes(), None)
}

/// The proxy still serves a good request.
async fn still_serves(raw: &RawClient) {
    let mut sender = raw.http2().await;
    let response = sender
        .send_request(get_h2(LIST, &[("authorization", "Bearer good-token")]))
        .await
        .unwrap();
    assert_eq!(json(response).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_get_a_401_status_with_the_reason() {
    let (upstream, operator, proxy, _tokens) =
        setup("kube-bad-credentials", FakeApiServer::start().await).await;
    let raw = client(&proxy, &operator);
    let cases = [
        (
            vec![("authorization", "Bearer wrong-token")],
            "token rejected: token not found",
        ),
        (
            vec![("authorization", "Basic YWxpY2U6cGFzcw==")],
            "only bearer tokens",
        ),
        (vec![("authorization", "Bearer ")], "no credentials"),
        (vec![], "no credentials"),
        (
            vec![("authorization", "Bearer a"), ("authorization", "Bearer b")],
            "more than one Authorization header",
        ),
    ];
    for (headers, reason) in cases {
        let mut sender = raw.http1().await;
        let response = sender.send_request(get(LIST, &headers)).await.unwrap();
        let (status, body) = json(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "Unauthorized");
        assert!(
            body["message"].as_str().unwrap().contains(reason),
            "{headers:?}: {body}"
        );
    }

    // kubectl says so too.
    let kubeconfig = proxy.kubeconfig_for_token("mallory", "forged-token");
    let output = proxy
        .kubectl_output(&kubeconfig, &["get", "configmaps", "-o", "name"])
        .await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Unauthorized")
            || String::from_utf8_lossy(&output.stderr).contains("logged in"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // A proxy's certificate is not a user's.
    let proxy_cert = operator.proxy_cert("some-proxy");
    let as_proxy = RawClient::new(
        proxy.addr,
        operator.ca_pem().as_bytes(),
        Some(proxy_cert.certified_key().unwrap()),
    );
    let mut sender = as_proxy.http1().await;
    let (status, body) = json(sender.send_request(get(LIST, &[])).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("proxy certificate")
    );

    // A certificate from another CA fails the handshake.
    let foreign = DeadboltCa::generate().unwrap();
    let stranger = foreign
        .issue_user_cert(
            &CertIdentity {
                user: "alice".into(),
                ..Default::default()
            },
            Duration::from_secs(60),
        )
        .unwrap();
    let as_stranger = RawClient::new(
        proxy.addr,
        operator.ca_pem().as_bytes(),
        Some(stranger.certified_key().unwrap()),
    );
    let refused = async {
        let mut tls = as_stranger.connect(&[b"http/1.1"]).await?;
        // TLS 1.3 reports the client certificate's rejection on the first read.
        tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await?;
        let mut buffer = [0u8; 64];
        match tls.read(&mut buffer).await? {
            0 => Err(std::io::Error::other("closed")),
            _ => Ok(()),
        }
    };
    assert!(refused.await.is_err());

    // None of it reached the API server, and the audit log says why.
    assert!(upstream.requests_to(LIST).is_empty());
    let rejected = proxy
        .audit
        .json()
        .into_iter()
        .filter(|e| e["event"] == "session.rejected")
        .count();
    assert!(rejected >= 6, "{rejected}");
    still_serves(&raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_headers_of_any_kind_are_refused() {
    let (upstream, operator, proxy, _tokens) =
        setup("kube-bad-impersonation", FakeApiServer::start().await).await;
    let raw = client(&proxy, &operator);
    for header in [
        "impersonate-user",
        "impersonate-group",
        "impersonate-uid",
        "impersonate-extra-scopes",
        "Impersonate-Extra-Deadbolt.dev%2Fsession-Id",
    ] {
        let mut sender = raw.http1().await;
        let response = sender
            .send_request(get(
                LIST,
                &[("authorization", "Bearer good-token"), (header, "admin")],
            ))
            .await
            .unwrap();
        let (status, body) = json(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{header}");
        assert_eq!(body["reason"], "Forbidden");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&header.to_ascii_lowercase())
        );
    }
    assert!(upstream.requests_to(LIST).is_empty());
    // Discovery is served as the user, without the client's impersonation.
    let mut sender = raw.http1().await;
    let response = sender
        .send_request(get(
            "/api",
            &[
                ("authorization", "Bearer good-token"),
                ("impersonate-user", "admin"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(json(response).await.0, StatusCode::OK);
    let discovery = upstream.requests_to("/api").pop().unwrap();
    assert_eq!(discovery.all("impersonate-user"), ["alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_headers_are_refused_and_the_proxy_carries_on() {
    let (upstream, operator, proxy, _tokens) =
        setup("kube-bad-headers", FakeApiServer::start().await).await;
    let raw = client(&proxy, &operator);
    let huge = "x".repeat(1024 * 1024);

    // HTTP/1.1: 431, or the connection closes.
    let mut sender = raw.http1().await;
    let outcome = sender
        .send_request(get(
            LIST,
            &[("authorization", "Bearer good-token"), ("x-huge", &huge)],
        ))
        .await;
    if let Ok(response) = outcome {
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
    // HTTP/2: the stream or the connection is refused.
    let mut sender = raw.http2().await;
    let outcome = sender
        .send_request(get_h2(
            LIST,
            &[("authorization", "Bearer good-token"), ("x-huge", &huge)],
        ))
        .await;
    if let Ok(response) = outcome {
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    // Many headers.
    let mut sender = raw.http1().await;
    let mut request = get(LIST, &[("authorization", "Bearer good-token")]);
    for index in 0..500 {
        request.headers_mut().append(
            http::HeaderName::from_bytes(format!("x-h{index}").as_bytes()).unwrap(),
            http::HeaderValue::from_static("v"),
        );
    }
    if let Ok(response) = sender.send_request(request).await {
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    // A huge token is refused before any TokenReview.
    let token = format!("Bearer {}", "t".repeat(300 * 1024));
    let mut sender = raw.http1().await;
    if let Ok(response) = sender
        .send_request(get(LIST, &[("authorization", &token)]))
        .await
    {
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    assert!(upstream.requests_to(LIST).is_empty());
    still_serves(&raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upgrades_and_garbage_get_clear_errors() {
    let (_upstream, operator, proxy, _tokens) =
        setup("kube-bad-upgrades", FakeApiServer::start().await).await;
    let raw = client(&proxy, &operator);
    let exec = format!("/api/v1/namespaces/{NAMESPACE}/pods/{POD}/exec?command=echo&stdout=true");
    let auth = ("authorization", "Bearer good-token");

    let mut sender = raw.http1().await;
    let response = sender
        .send_request(get(
            &exec,
            &[auth, ("connection", "Upgrade"), ("upgrade", "gopher/1.0")],
        ))
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unsupported upgrade protocol")
    );

    // A WebSocket upgrade the API server refuses (no key) is relayed as refused.
    let mut sender = raw.http1().await;
    let response = sender
        .send_request(get(
            &exec,
            &[
                auth,
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "v5.channel.k8s.io"),
            ],
        ))
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "no Sec-WebSocket-Key");
    eventually("the refused upgrade's session to end", || {
        proxy.view.registry().is_empty()
    })
    .await;

    // Raw HTTP/1.0 upgrade.
    let mut tls = raw.connect(&[b"http/1.1"]).await.unwrap();
    tls.write_all(
        format!(
            "GET {exec} HTTP/1.0\r\nhost: x\r\nauthorization: Bearer good-token\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.0 400") || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // Garbage instead of TLS: the connection closes.
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the proxy kept a plaintext connection open");

    // Garbage instead of HTTP inside TLS: 400 or a close.
    let mut tls = raw.connect(&[b"http/1.1"]).await.unwrap();
    tls.write_all(b"\x00\x01\x02 not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // A WebSocket client that sends garbage frames: the upstream closes, the session ends.
    let mut tls = raw.connect(&[b"http/1.1"]).await.unwrap();
    tls.write_all(
        format!(
            "GET /api/v1/namespaces/{NAMESPACE}/pods/{POD}/exec?command=ticker&stdout=true HTTP/1.1\r\nhost: x\r\nauthorization: Bearer good-token\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-protocol: v5.channel.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 1024];
    let n = tls.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    tls.write_all(&[0xff; 64]).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut sink)).await;
    eventually("the garbled session to end", || {
        proxy.view.registry().is_empty()
    })
    .await;

    assert!(
        proxy
            .metrics_text()
            .contains("deadbolt_proxy_protocol_errors_total")
    );
    still_serves(&raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_and_others_carry_on() {
    // Events of 64 KiB every millisecond fill any buffer a non-reading client leaves.
    let upstream = FakeApiServer::start_with(Duration::from_millis(1), 64 * 1024).await;
    let (_upstream, operator, proxy, tokens) = setup("kube-stalled", upstream).await;
    tokens.add("bob-token", "bob", &[]);
    let raw = client(&proxy, &operator);

    // Alice's watch: headers read, body never.
    let mut sender = raw.http1().await;
    let response = sender
        .send_request(get(
            &format!("{LIST}?watch=true"),
            &[("authorization", "Bearer good-token")],
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Bob's watch, read as it comes.
    let mut bob = raw.http2().await;
    let bob_response = bob
        .send_request(get_h2(
            &format!("{LIST}?watch=true"),
            &[("authorization", "Bearer bob-token")],
        ))
        .await
        .unwrap();
    let mut bob_body = bob_response.into_body();
    eventually("both watches registered", || {
        proxy.view.registry().len() == 2
    })
    .await;
    // Let alice's buffers fill up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    operator.lock("alice", target(TargetKind::User, "alice"), "stalled");
    eventually("alice's stalled watch to be cut", || {
        proxy.view.registry().len() == 1
    })
    .await;
    let audit = proxy.audit.json();
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "session.terminated" && e["user"] == "alice")
    );
    // Bob's watch still delivers.
    use http_body_util::BodyExt;
    let mut received = 0;
    while received < 256 * 1024 {
        let frame = tokio::time::timeout(PATIENCE, bob_body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        received += frame.data_ref().map_or(0, |d| d.len());
    }
    drop(response);
}
