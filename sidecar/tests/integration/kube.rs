//! The kube proxy with the real `kubectl` against a fake API server: requests
//! reach the API server with the proxy's credentials and exactly the expected
//! impersonation; clients cannot impersonate; locked users, roles and groups
//! get the lock message; watches and exec sessions (WebSocket and SPDY) are
//! cut with it while others carry on; a stale view is handled per locking mode.

use crate::support;

use std::time::Duration;

use deadbolt_api::TargetKind;
use deadbolt_api::credential::CertIdentity;
use deadbolt_api::protocol::{RoleRecord, ViewObject};
use deadbolt_api::resources::{AccessRoleSpec, LockingMode, RoleConditions};
use support::kube_proxy::{FakeTokens, KubeProxyHarness};
use support::kube_upstream::{FakeApiServer, NAMESPACE, POD, Recorded};
use support::operator::{Operator, target};
use support::{PATIENCE, eventually};

const SUSPICIOUS: &str = "Suspicious activity.";

async fn setup(
    server_id: &str,
    tokens: &FakeTokens,
) -> (FakeApiServer, Operator, KubeProxyHarness) {
    let upstream = FakeApiServer::start().await;
    let operator = Operator::start().await;
    let proxy = KubeProxyHarness::start(&operator, &upstream, server_id, tokens).await;
    (upstream, operator, proxy)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A role that `groups` receive, allowing `kubernetes_groups`.
fn role(name: &str, groups: &[&str], kubernetes_groups: &[&str]) -> ViewObject {
    ViewObject::Role(RoleRecord {
        name: name.into(),
        spec: AccessRoleSpec {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            allow: RoleConditions {
                kubernetes_groups: kubernetes_groups.iter().map(|g| g.to_string()).collect(),
                ..Default::default()
            },
            ..Default::default()
        },
    })
}

fn impersonation_headers(request: &Recorded) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("impersonate-"))
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                value.to_str().unwrap().to_string(),
            )
        })
        .collect();
    headers.sort();
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_the_api_server_as_the_user_with_the_proxys_credentials() {
    let tokens = FakeTokens::default();
    tokens.add(
        "alice-secret-token",
        "alice",
        &["developers", "system:authenticated"],
    );
    let (upstream, operator, proxy) = setup("kube-forward", &tokens).await;
    operator
        .store
        .upsert(role("dev", &["developers"], &["viewers", "editors"]));
    proxy.catch_up(&operator).await;

    let kubeconfig = proxy.kubeconfig_for_token("alice", "alice-secret-token");
    let output = proxy
        .kubectl_output(&kubeconfig, &["get", "configmaps", "-o", "name"])
        .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "configmap/flags\nconfigmap/settings\n"
    );

    let list = upstream.requests_to(&format!("/api/v1/namespaces/{NAMESPACE}/configmaps"));
    let list = list.last().expect("the list reached the API server");
    assert_eq!(
        list.version,
        http::Version::HTTP_2,
        "ordinary requests use HTTP/2"
    );
    assert_eq!(
        list.get("authorization").unwrap(),
        format!("Bearer {}", upstream.token)
    );
    // A short request is not a registered session: no session id goes along
    // (a watch's does: a_watch_is_cut_with_the_message_and_another_users_watch_carries_on).
    assert_eq!(
        impersonation_headers(list),
        vec![
            ("impersonate-group".to_string(), "developers".to_string()),
            ("impersonate-group".to_string(), "editors".to_string()),
            ("impersonate-group".to_string(), "viewers".to_string()),
            ("impersonate-user".to_string(), "alice".to_string()),
        ]
    );
    // The client's token never reaches the API server, in any header.
    for request in upstream.requests() {
        for (name, value) in &request.headers {
            assert!(
                !value.as_bytes().windows(12).any(|w| w == b"alice-secret"),
                "{name} carries the client's token"
            );
        }
    }

    // A Deadbolt certificate carries roles, an MFA device, a device and access requests.
    let bob = CertIdentity {
        user: "bob".into(),
        groups: vec!["sre".into()],
        roles: vec!["dev".into()],
        mfa_device: Some("d6c06a18-e147-4232-9dfe-6f83a28d5850".into()),
        device: Some("laptop-7".into()),
        access_requests: vec!["req-1".into(), "req-2".into()],
        ..Default::default()
    };
    let kubeconfig = proxy.kubeconfig_for_cert(&bob);
    let output = proxy
        .kubectl_output(&kubeconfig, &["get", "configmap", "settings", "-o", "name"])
        .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let get = upstream.requests_to(&format!(
        "/api/v1/namespaces/{NAMESPACE}/configmaps/settings"
    ));
    let get = get.last().unwrap();
    assert_eq!(get.get("impersonate-user").unwrap(), "bob");
    assert_eq!(get.all("impersonate-group"), ["editors", "sre", "viewers"]);
    assert_eq!(
        get.get("impersonate-extra-deadbolt.dev%2fmfa-device")
            .unwrap(),
        "d6c06a18-e147-4232-9dfe-6f83a28d5850"
    );
    assert_eq!(
        get.get("impersonate-extra-deadbolt.dev%2fdevice").unwrap(),
        "laptop-7"
    );
    assert_eq!(
        get.all("impersonate-extra-deadbolt.dev%2faccess-request"),
        ["req-1", "req-2"]
    );
    assert!(get.headers.get("x-forwarded-for").is_some());
    assert_eq!(
        get.get("authorization").unwrap(),
        format!("Bearer {}", upstream.token)
    );

    // Short requests are checked but not audited one by one.
    assert!(
        proxy
            .audit
            .json()
            .iter()
            .all(|event| event["event"] != "session.rejected")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_impersonate_through_the_proxy() {
    let tokens = FakeTokens::default();
    tokens.add("alice-token", "alice", &[]);
    let (upstream, _operator, proxy) = setup("kube-no-impersonation", &tokens).await;
    let kubeconfig = proxy.kubeconfig_for_token("alice", "alice-token");
    for extra in [
        &["--as=admin"][..],
        &["--as=admin", "--as-group=system:masters"],
        &[
            "--as=system:serviceaccount:kube-system:default",
            "--as-uid=1234",
        ],
    ] {
        let mut args = vec!["get", "configmaps", "-o", "name"];
        args.extend_from_slice(extra);
        let output = proxy.kubectl_output(&kubeconfig, &args).await;
        assert!(!output.status.success());
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("Error from server (Forbidden): impersonation is not allowed through the Deadbolt proxy"),
            "{extra:?}: {stderr}"
        );
    }
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| r.get("impersonate-user").as_deref() != Some("admin")),
        "an impersonation request reached the API server"
    );
    let rejected: Vec<_> = proxy
        .audit
        .json()
        .into_iter()
        .filter(|e| e["event"] == "session.rejected")
        .collect();
    assert!(!rejected.is_empty());
    assert!(rejected.iter().all(|e| e["user"] == "alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_users_roles_and_groups_see_the_lock_message() {
    let tokens = FakeTokens::default();
    tokens.add("carol-token", "carol", &["contractors"]);
    let (_upstream, operator, proxy) = setup("kube-refuse", &tokens).await;
    // A group is locked through the role it receives.
    operator
        .store
        .upsert(role("outsourced", &["contractors"], &[]));
    let mallory = CertIdentity {
        user: "mallory".into(),
        roles: vec!["intern".into()],
        ..Default::default()
    };
    let mallory_config = proxy.kubeconfig_for_cert(&mallory);
    let carol_config = proxy.kubeconfig_for_token("carol", "carol-token");
    let cases = [
        (
            TargetKind::User,
            "mallory",
            &mallory_config,
            r#"lock targeting User:"mallory" is in force: Suspicious activity."#,
        ),
        (
            TargetKind::Role,
            "intern",
            &mallory_config,
            r#"lock targeting Role:"intern" is in force: Suspicious activity."#,
        ),
        (
            TargetKind::Role,
            "outsourced",
            &carol_config,
            r#"lock targeting Role:"outsourced" is in force: Suspicious activity."#,
        ),
        (
            TargetKind::ServerId,
            "kube-refuse",
            &carol_config,
            r#"lock targeting ServerID:"kube-refuse" is in force: Suspicious activity."#,
        ),
    ];
    for (index, (kind, value, kubeconfig, message)) in cases.into_iter().enumerate() {
        let name = format!("lock-{index}");
        operator.lock(&name, target(kind, value), SUSPICIOUS);
        proxy.catch_up(&operator).await;
        let output = proxy
            .kubectl_output(kubeconfig, &["get", "configmaps", "-o", "name"])
            .await;
        assert!(!output.status.success());
        assert_eq!(
            text(&output.stderr).trim_end(),
            format!("Error from server (Forbidden): {message}"),
            "{kind:?}"
        );
        operator.unlock(&name);
        proxy.catch_up(&operator).await;
        // Deleting the lock lets the user back in.
        let output = proxy
            .kubectl_output(kubeconfig, &["get", "configmaps", "-o", "name"])
            .await;
        assert!(
            output.status.success(),
            "{kind:?}: {}",
            text(&output.stderr)
        );
    }
    let rejected: Vec<_> = proxy
        .audit
        .json()
        .into_iter()
        .filter(|e| e["event"] == "session.rejected" && e["lock"].is_string())
        .collect();
    assert!(rejected.len() >= 4, "{rejected:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_is_cut_with_the_message_and_another_users_watch_carries_on() {
    let tokens = FakeTokens::default();
    tokens.add("alice-token", "alice", &[]);
    tokens.add("bob-token", "bob", &[]);
    let (upstream, operator, proxy) = setup("kube-watch", &tokens).await;
    let alice_config = proxy.kubeconfig_for_token("alice", "alice-token");
    let bob_config = proxy.kubeconfig_for_token("bob", "bob-token");
    // Table output, as people run it: the list prints both, each watch event `settings` again.
    let args = ["get", "configmaps", "--watch"];
    let mut alice = proxy.kubectl_spawn(&alice_config, &args, &[]);
    let mut bob = proxy.kubectl_spawn(&bob_config, &args, &[]);
    alice.wait_for_lines("settings", 2).await;
    bob.wait_for_lines("settings", 2).await;
    eventually("both watches registered", || {
        proxy.view.registry().len() == 2
    })
    .await;

    operator.lock("alice", target(TargetKind::User, "alice"), SUSPICIOUS);
    // kubectl prints the ERROR event's Status as a table row and ends the watch.
    alice.wait().await;
    let message = r#"lock targeting User:"alice" is in force: Suspicious activity."#;
    let stdout = alice.stdout();
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("Failure") && last.contains("Forbidden") && last.ends_with(message),
        "stdout: {stdout} stderr: {}",
        alice.stderr()
    );
    // No event was torn: every other line is a whole row.
    assert!(
        stdout
            .lines()
            .rev()
            .skip(1)
            .all(|line| line.starts_with("NAME")
                || line.starts_with("flags")
                || line.starts_with("settings")
                || line.starts_with("STATUS")),
        "{stdout}"
    );

    let before = bob.stdout().lines().count();
    bob.wait_for_lines("settings", before + 2).await;
    assert!(bob.is_running());

    let audit = proxy.audit.json();
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "session.start" && e["user"] == "alice")
    );
    assert!(audit.iter().any(|e| e["event"] == "session.terminated"
        && e["user"] == "alice"
        && e["reason"] == message
        && e["lock"] == "alice"));
    let watch = upstream
        .requests()
        .into_iter()
        .rfind(|r| {
            r.query.contains("watch=") && r.get("impersonate-user").as_deref() == Some("alice")
        })
        .expect("alice's watch reached the API server");
    assert_eq!(watch.version, http::Version::HTTP_2);
    // The watch is a registered session: its id goes to the API server, so
    // the API server's audit log joins Deadbolt's.
    let started = audit
        .iter()
        .find(|e| e["event"] == "session.start" && e["user"] == "alice")
        .expect("alice's session.start");
    assert_eq!(
        watch.get("impersonate-extra-deadbolt.dev%2fsession-id"),
        started["sid"].as_str().map(str::to_string)
    );

    // While locked, a new watch is refused; after the lock is deleted it works again.
    let output = proxy.kubectl_output(&alice_config, &args).await;
    assert!(
        text(&output.stderr).contains(message),
        "{}",
        text(&output.stderr)
    );
    operator.unlock("alice");
    proxy.catch_up(&operator).await;
    let alice_again = proxy.kubectl_spawn(&alice_config, &args, &[]);
    alice_again.wait_for_lines("settings", 2).await;
}

async fn exec_is_cut(server_id: &str, envs: &[(&str, &str)], upgrade: &str) {
    let tokens = FakeTokens::default();
    let (upstream, operator, proxy) = setup(server_id, &tokens).await;
    let dave = CertIdentity {
        user: "dave".into(),
        ..Default::default()
    };
    let kubeconfig = proxy.kubeconfig_for_cert(&dave);

    // A command that ends by itself.
    let output = proxy
        .kubectl_output_with(
            &kubeconfig,
            &["exec", POD, "--", "echo", "hello", "world"],
            envs,
        )
        .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "hello world\n");

    // A command that runs until the lock cuts it.
    let mut exec = proxy.kubectl_spawn(&kubeconfig, &["exec", POD, "--", "ticker"], envs);
    exec.wait_for_lines("tick", 3).await;
    operator.lock("dave", target(TargetKind::User, "dave"), SUSPICIOUS);
    let status = exec.wait().await;
    assert!(!status.success());
    let message = r#"lock targeting User:"dave" is in force: Suspicious activity."#;
    assert!(exec.stderr().contains(message), "stderr: {}", exec.stderr());
    assert!(
        exec.stdout().lines().all(|line| line.starts_with("tick ")),
        "a frame was torn: {}",
        exec.stdout()
    );

    let execs: Vec<_> = upstream
        .requests_to(&format!("/api/v1/namespaces/{NAMESPACE}/pods/{POD}/exec"))
        .into_iter()
        .filter(|r| r.query.contains("ticker"))
        .collect();
    let exec_request = execs.last().expect("the exec reached the API server");
    assert_eq!(exec_request.version, http::Version::HTTP_11);
    assert_eq!(
        exec_request.get("upgrade").unwrap().to_ascii_lowercase(),
        upgrade
    );
    assert_eq!(exec_request.get("impersonate-user").unwrap(), "dave");
    assert!(
        exec_request
            .get("authorization")
            .unwrap()
            .contains(&upstream.token)
    );
    eventually("the session to end", || proxy.view.registry().is_empty()).await;
    let audit = proxy.audit.json();
    assert!(
        audit
            .iter()
            .any(|e| e["event"] == "session.terminated" && e["user"] == "dave")
    );

    // A new exec is refused with the message.
    let output = proxy
        .kubectl_output_with(&kubeconfig, &["exec", POD, "--", "echo", "again"], envs)
        .await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains(message),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_websocket_is_cut_with_the_message() {
    exec_is_cut("kube-exec-ws", &[], "websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_spdy_is_cut_with_the_message() {
    exec_is_cut(
        "kube-exec-spdy",
        &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")],
        "spdy/3.1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_logs_end_with_the_message() {
    let tokens = FakeTokens::default();
    tokens.add("erin-token", "erin", &[]);
    let (_upstream, operator, proxy) = setup("kube-logs", &tokens).await;
    let kubeconfig = proxy.kubeconfig_for_token("erin", "erin-token");
    let mut logs = proxy.kubectl_spawn(&kubeconfig, &["logs", "-f", POD], &[]);
    logs.wait_for_lines("log line", 3).await;
    operator.lock("erin", target(TargetKind::User, "erin"), SUSPICIOUS);
    logs.wait().await;
    let message = r#"lock targeting User:"erin" is in force: Suspicious activity."#;
    let stdout = logs.stdout();
    assert_eq!(stdout.lines().last(), Some(message), "{stdout}");
    assert!(
        stdout
            .lines()
            .rev()
            .skip(1)
            .all(|line| line.starts_with("log line "))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_cuts_and_refuses_on_a_stale_view() {
    let tokens = FakeTokens::default();
    tokens.add("frank-token", "frank", &[]);
    let (_upstream, mut operator, proxy) = setup("kube-stale", &tokens).await;
    operator.configure(LockingMode::Strict, Duration::from_secs(1));
    proxy.catch_up(&operator).await;
    let kubeconfig = proxy.kubeconfig_for_token("frank", "frank-token");
    let args = ["get", "configmaps", "--watch"];
    let mut watch = proxy.kubectl_spawn(&kubeconfig, &args, &[]);
    watch.wait_for_lines("settings", 2).await;

    operator.stop().await;
    watch.wait().await;
    let stale = "preventive lock-out due to local lock view becoming unreliable";
    assert!(
        watch.stdout().trim_end().ends_with(stale),
        "{}",
        watch.stdout()
    );
    let output = proxy
        .kubectl_output(&kubeconfig, &["get", "configmaps", "-o", "name"])
        .await;
    assert_eq!(
        text(&output.stderr).trim_end(),
        format!("Error from server (Forbidden): {stale}")
    );

    operator.restart().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let output = proxy
            .kubectl_output(&kubeconfig, &["get", "configmaps", "-o", "name"])
            .await;
        if output.status.success() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            text(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn port_forward_is_cut(server_id: &str, envs: &[(&str, &str)], upgrade: &str) -> String {
    let tokens = FakeTokens::default();
    let (upstream, operator, proxy) = setup(server_id, &tokens).await;
    let gina = CertIdentity {
        user: "gina".into(),
        ..Default::default()
    };
    let kubeconfig = proxy.kubeconfig_for_cert(&gina);
    let pod = format!("pod/{POD}");
    let mut forward = proxy.kubectl_spawn(&kubeconfig, &["port-forward", &pod, ":8080"], envs);
    forward
        .wait_for_lines("Forwarding from 127.0.0.1:", 1)
        .await;
    let stdout = forward.stdout();
    let port: u16 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Forwarding from 127.0.0.1:"))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no local port in {stdout}"));

    // The pod's port echoes: bytes go through kubectl, the proxy and the API server.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut local = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    local.write_all(b"ping\n").await.unwrap();
    let mut echoed = [0u8; 5];
    tokio::time::timeout(PATIENCE, local.read_exact(&mut echoed))
        .await
        .expect("no echo")
        .unwrap();
    assert_eq!(&echoed, b"ping\n");
    eventually("the port-forward registered", || {
        proxy.view.registry().len() == 1
    })
    .await;

    operator.lock("gina", target(TargetKind::User, "gina"), SUSPICIOUS);
    let status = forward.wait().await;
    assert!(!status.success(), "{}", forward.stderr());
    assert!(
        forward.stderr().contains("lost connection"),
        "{}",
        forward.stderr()
    );
    let stderr = forward.stderr();
    eventually("the session to end", || proxy.view.registry().is_empty()).await;
    let forwards = upstream.requests_to(&format!(
        "/api/v1/namespaces/{NAMESPACE}/pods/{POD}/portforward"
    ));
    let request = forwards
        .last()
        .expect("the port-forward reached the API server");
    assert_eq!(
        request.get("upgrade").unwrap().to_ascii_lowercase(),
        upgrade
    );
    assert_eq!(request.get("impersonate-user").unwrap(), "gina");
    assert!(
        proxy
            .audit
            .json()
            .iter()
            .any(|e| e["event"] == "session.terminated"
                && e["user"] == "gina"
                && e["lock"] == "gina")
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_websocket_is_cut() {
    port_forward_is_cut("kube-forward-ws", &[], "websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_spdy_is_cut_with_the_message() {
    let stderr = port_forward_is_cut(
        "kube-forward-spdy",
        &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
        "spdy/3.1",
    )
    .await;
    // The message arrives on the forwarded connection's error stream; kubectl
    // logs it (klog escapes its quotes).
    assert!(
        stderr.contains("an error occurred forwarding")
            && stderr.contains(&format!(
                r#"lock targeting User:\"gina\" is in force: {SUSPICIOUS}"#
            )),
        "{stderr}"
    );
}
