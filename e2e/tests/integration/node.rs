//! With a real node (the private API server started with `--node`): `kubectl
//! exec`, `attach`, `logs -f` and `port-forward` into a real pod through the
//! kube proxy are cut with the lock message, and a locked user's direct
//! `kubectl exec` is denied by the CONNECT webhook. Without a node these say
//! SKIPPED with the reason.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use deadbolt_e2e::process::Running;
use deadbolt_e2e::scenario::{Scenario, lock_manifest};
use deadbolt_e2e::webhook::{enforcing_operator, service_account_kubeconfig};
use deadbolt_e2e::{PATIENCE, apply, kubectl, node_kit, stderr, success};

const IMAGE: &str = "localhost/deadbolt-e2e-busybox:1";

/// Builds the pod image once per run (busybox from Debian, loaded into the node).
fn image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let (state, kit) = node_kit().expect("checked by the caller");
        let output = Command::new("bash")
            .arg(kit.join("image.sh"))
            .arg(&state)
            .arg(IMAGE)
            .args(["--deb", "busybox-static"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "image.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// A pod that prints a line a second, serves HTTP on 8080 and takes stdin.
fn start_pod(namespace: &str) {
    apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: {namespace}
spec:
  containers:
  - name: web
    image: {IMAGE}
    imagePullPolicy: Never
    stdin: true
    command: ["sh", "-c", "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && (httpd -f -p 8080 -h /tmp/www &) && while true; do echo tick; sleep 1; done"]
"#
    ));
    success(kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/web",
        "-n",
        namespace,
        "--timeout=120s",
    ]));
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn exec_attach_logs_and_port_forward_into_a_real_pod_are_cut() {
    if let Err(reason) = node_kit() {
        println!("SKIPPED: no node to run pods on: {reason}");
        return;
    }
    let mut scenario = Scenario::new("node");
    image();
    start_pod(scenario.ns());
    let kube = scenario.kube_proxy();
    let (pki, proxy) = (&kube.pki, &kube.proxy);
    let nina = scenario.name("nina");
    scenario.bind("edit", &nina);
    let config = proxy.kubeconfig_for(pki, &pki.user(&nina, &[]), "nina");
    let ns = scenario.ns().to_string();

    let mut exec = Running::start(
        &config,
        &[
            "exec",
            "-i",
            "web",
            "-n",
            &ns,
            "--",
            "sh",
            "-c",
            "echo ready; cat",
        ],
    );
    exec.wait_for_text("ready");
    let mut attach = Running::start(&config, &["attach", "web", "-n", &ns, "-c", "web"]);
    attach.wait_for_text("tick");
    let mut logs = Running::start(&config, &["logs", "-f", "web", "-n", &ns]);
    logs.wait_for_text("tick");
    let mut forward = Running::start(&config, &["port-forward", "web", ":8080", "-n", &ns]);
    forward.wait_for_text("Forwarding from 127.0.0.1:");
    let port: u16 = forward
        .text()
        .lines()
        .find_map(|line| line.strip_prefix("Forwarding from 127.0.0.1:"))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|port| port.parse().ok())
        .expect("a local port");
    // A forwarded connection held open mid-request.
    let mut held = TcpStream::connect(("127.0.0.1", port)).unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_secs(1));

    let lock = scenario.name("lock-nina");
    scenario.cleanup.add("locks.deadbolt.dev", &lock);
    apply(&lock_manifest(
        &lock,
        &format!("user: {nina}"),
        "Node test.",
        "",
    ));
    let message = "is in force: Node test.";
    for (what, running) in [
        ("exec", &mut exec),
        ("attach", &mut attach),
        ("logs -f", &mut logs),
        ("port-forward", &mut forward),
    ] {
        let printed = running.wait_end();
        assert!(
            printed.contains(message),
            "{what} was cut without the message: {printed}"
        );
    }
    let refused = kubectl(&[
        "--kubeconfig",
        config.to_str().unwrap(),
        "exec",
        "web",
        "-n",
        &ns,
        "--",
        "true",
    ]);
    assert!(stderr(&refused).contains(message), "{}", stderr(&refused));
    drop(held);
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn a_locked_users_direct_exec_is_denied_by_the_connect_webhook() {
    if let Err(reason) = node_kit() {
        println!("SKIPPED: no node to run pods on: {reason}");
        return;
    }
    let mut scenario = Scenario::new("connect");
    image();
    start_pod(scenario.ns());
    let _operator = enforcing_operator(&mut scenario, "e2e-connect");
    let ns = scenario.ns().to_string();
    let oscar = service_account_kubeconfig(&scenario, "oscar");
    let exec = || {
        kubectl(&[
            "--kubeconfig",
            oscar.to_str().unwrap(),
            "exec",
            "web",
            "-n",
            &ns,
            "--",
            "echo",
            "inside",
        ])
    };
    let deadline = Instant::now() + PATIENCE;
    while !exec().status.success() {
        assert!(Instant::now() < deadline, "oscar could never exec");
        std::thread::sleep(Duration::from_millis(250));
    }
    let lock = scenario.name("lock-oscar");
    scenario.cleanup.add("locks.deadbolt.dev", &lock);
    let user = format!("system:serviceaccount:{ns}:oscar");
    apply(&lock_manifest(
        &lock,
        &format!("user: {user}"),
        "No shells.",
        "",
    ));
    let message = format!(r#"lock targeting User:"{user}" is in force: No shells."#);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let output = exec();
        if !output.status.success() {
            assert!(stderr(&output).contains(&message), "{}", stderr(&output));
            break;
        }
        assert!(Instant::now() < deadline, "the exec was never denied");
        std::thread::sleep(Duration::from_millis(250));
    }
}
