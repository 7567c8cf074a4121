//! The operator and the proxies as real processes, out of cluster: started
//! with the admin kubeconfig (or another one), ready once their `/readyz`
//! says so, their logs kept for when a scenario fails, killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::pki::{Issued, Pki};
use crate::{PATIENCE, admin_kubeconfig, bin, eventually, free_port, kubectl_command};

/// A plain HTTP GET on loopback, for `/readyz` and `/metrics`: the status
/// line's code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body)?;
    Some((code, body.to_string()))
}

/// A running child process, killed when dropped, its output in a log file.
pub struct Process {
    child: Option<Child>,
    log: PathBuf,
    /// The operations listener (`/metrics`, `/healthz`, `/readyz`).
    pub metrics: SocketAddr,
}

impl Process {
    fn spawn(mut command: Command, log: PathBuf, metrics: SocketAddr) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        Self {
            child: Some(child),
            log,
            metrics,
        }
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self, what: &str) {
        let metrics = self.metrics;
        let mut exited = None;
        eventually(what, PATIENCE, || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                exited = Some(status);
                return true;
            }
            http_get(metrics, "/readyz").is_some_and(|(code, _)| code == 200)
        });
        if let Some(status) = exited {
            panic!("{what}: the process exited with {status}:\n{}", self.log());
        }
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `/metrics` text.
    pub fn metrics_text(&self) -> String {
        http_get(self.metrics, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Stops the process at once (SIGKILL), as a crash or a node failure would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `deadbolt-operator --source kube`, out of cluster.
pub struct Operator {
    /// The process.
    pub process: Process,
    /// The lock-view stream.
    pub lockview: SocketAddr,
    /// The admission webhooks.
    pub webhook: SocketAddr,
    /// The MFA service.
    pub mfa: SocketAddr,
    /// This replica's identity (leader election, Events).
    pub identity: String,
}

impl Operator {
    /// An operator replica named `identity` in `namespace`, with the admin
    /// kubeconfig and `extra` flags; returns once it is ready.
    pub fn start(namespace: &str, identity: &str, logs: &Path, extra: &[String]) -> Self {
        Self::start_as(namespace, identity, logs, &admin_kubeconfig(), extra)
    }

    /// The same with another kubeconfig (the chart's ServiceAccount, say).
    pub fn start_as(
        namespace: &str,
        identity: &str,
        logs: &Path,
        kubeconfig: &Path,
        extra: &[String],
    ) -> Self {
        let lockview: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let webhook: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mfa: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new(bin("deadbolt-operator"));
        command
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_BACKTRACE", "1")
            .args(["--source", "kube", "--namespace", namespace])
            .args(["--listen", &lockview.to_string()])
            .args(["--webhook-listen", &webhook.to_string()])
            .args(["--mfa-listen", &mfa.to_string()])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(["--tls-sans", "localhost,127.0.0.1"])
            .args(["--pod-name", identity])
            .args(["--log-level", "info,kube=warn"])
            .args(extra);
        let mut process = Process::spawn(command, logs.join(format!("{identity}.log")), metrics);
        process.wait_ready(&format!("operator {identity} to be ready"));
        Self {
            process,
            lockview,
            webhook,
            mfa,
            identity: identity.to_string(),
        }
    }

    /// Whether this replica holds the leader Lease (its `/metrics` says so).
    pub fn is_leader(&self) -> bool {
        self.process
            .metrics_text()
            .lines()
            .any(|line| line.starts_with("deadbolt_leader ") && line.ends_with(" 1"))
    }

    /// The lock-view URL proxies subscribe at.
    pub fn view_url(&self) -> String {
        format!("https://localhost:{}", self.lockview.port())
    }

    /// The MFA service's URL.
    pub fn mfa_url(&self) -> String {
        format!("https://localhost:{}", self.mfa.port())
    }
}

/// A `deadbolt-sidecar` proxy subscribed to an operator with a proxy certificate.
pub struct Sidecar {
    /// The process.
    pub process: Process,
    /// Where clients connect.
    pub listen: SocketAddr,
}

/// How a sidecar subscribes to the lock view.
enum Subscription<'a> {
    /// A proxy certificate for its server id, issued from the CA.
    Certificate,
    /// A ServiceAccount token in a file (checked by the operator's TokenReview).
    Token(&'a Path),
}

impl Sidecar {
    fn start(
        kind: &str,
        pki: &Pki,
        view_url: &str,
        server_id: &str,
        subscription: Subscription<'_>,
        extra: &[String],
        logs: &Path,
    ) -> Self {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let Issued { cert, key } = pki.serving(&format!("serving-{server_id}"));
        let mut command = Command::new(bin("deadbolt-sidecar"));
        command
            .env("RUST_BACKTRACE", "1")
            .arg(kind)
            .args(["--listen", &listen.to_string(), "--server-id", server_id])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--ca")
            .arg(pki.ca_crt())
            .args(["--view-url", view_url]);
        match subscription {
            Subscription::Certificate => {
                let view = pki.proxy(server_id);
                command
                    .arg("--view-cert")
                    .arg(&view.cert)
                    .arg("--view-key")
                    .arg(&view.key);
            }
            Subscription::Token(file) => {
                command.arg("--view-token-file").arg(file);
            }
        }
        command
            .args(["--metrics-listen", &metrics.to_string()])
            .arg("--audit-log")
            .arg(logs.join(format!("{server_id}.audit")))
            .args(extra);
        let mut process = Process::spawn(command, logs.join(format!("{server_id}.log")), metrics);
        process.wait_ready(&format!("proxy {server_id} to have its first snapshot"));
        Self { process, listen }
    }

    /// A sidecar subscribed with a proxy certificate for `server_id`.
    fn certified(
        kind: &str,
        pki: &Pki,
        view_url: &str,
        server_id: &str,
        extra: &[String],
        logs: &Path,
    ) -> Self {
        let subscription = Subscription::Certificate;
        Self::start(kind, pki, view_url, server_id, subscription, extra, logs)
    }

    /// A `deadbolt-sidecar postgres` with no database behind it, subscribed
    /// with the ServiceAccount token in `token_file`: ready once the operator
    /// has accepted the token (by TokenReview) and sent a snapshot.
    pub fn subscribed_with_token(
        pki: &Pki,
        view_url: &str,
        server_id: &str,
        token_file: &Path,
        logs: &Path,
    ) -> Self {
        let extra = vec!["--upstream".to_string(), "127.0.0.1:9".to_string()];
        Self::start(
            "postgres",
            pki,
            view_url,
            server_id,
            Subscription::Token(token_file),
            &extra,
            logs,
        )
    }

    /// `deadbolt-sidecar kube` in front of the cluster in `upstream_kubeconfig`.
    pub fn kube(
        pki: &Pki,
        view_url: &str,
        server_id: &str,
        upstream_kubeconfig: &Path,
        logs: &Path,
    ) -> Self {
        Self::kube_labelled(pki, view_url, server_id, upstream_kubeconfig, &[], logs)
    }

    /// The same with `--label` flags (`key=value`).
    pub fn kube_labelled(
        pki: &Pki,
        view_url: &str,
        server_id: &str,
        upstream_kubeconfig: &Path,
        labels: &[&str],
        logs: &Path,
    ) -> Self {
        let mut extra = vec![
            "--upstream-kubeconfig".to_string(),
            upstream_kubeconfig.display().to_string(),
            "--token-review".to_string(),
        ];
        for label in labels {
            extra.push("--label".to_string());
            extra.push(label.to_string());
        }
        Self::certified("kube", pki, view_url, server_id, &extra, logs)
    }

    /// `deadbolt-sidecar postgres` in front of `upstream`, labelled `env=e2e`.
    pub fn postgres(
        pki: &Pki,
        view_url: &str,
        server_id: &str,
        upstream: &str,
        passwords: &Path,
        logs: &Path,
    ) -> Self {
        let extra = vec![
            "--upstream".to_string(),
            upstream.to_string(),
            "--upstream-password-file".to_string(),
            passwords.display().to_string(),
            "--label".to_string(),
            "env=e2e".to_string(),
        ];
        Self::certified("postgres", pki, view_url, server_id, &extra, logs)
    }

    /// A kubeconfig reaching this kube proxy with `user`'s certificate.
    pub fn kubeconfig_for(&self, pki: &Pki, user: &Issued, name: &str) -> PathBuf {
        let path = pki.dir().join(format!("{name}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: deadbolt\n  cluster:\n    server: https://localhost:{port}\n    certificate-authority: {ca}\nusers:\n- name: {name}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: deadbolt\n  context: {{cluster: deadbolt, user: {name}}}\ncurrent-context: deadbolt\n",
            port = self.listen.port(),
            ca = pki.ca_crt().display(),
            cert = user.cert.display(),
            key = user.key.display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The audit lines the proxy wrote.
    pub fn audit(&self, logs: &Path, server_id: &str) -> String {
        std::fs::read_to_string(logs.join(format!("{server_id}.audit"))).unwrap_or_default()
    }
}
/// Every line `child` prints on its (piped) standard output and error, as it
/// comes; the channel closes once both are closed.
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    let streams = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for stream in streams.into_iter().flatten() {
        let send = send.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
    }
    lines
}

/// A kubectl running in the background, everything it prints collected.
pub struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
    stdin: Option<std::process::ChildStdin>,
}

impl Running {
    /// Starts `kubectl --kubeconfig KUBECONFIG ARGS...`.
    pub fn start(kubeconfig: &std::path::Path, args: &[&str]) -> Self {
        let mut all = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut child = kubectl_command(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let lines = lines_of(&mut child);
        let collected = output.clone();
        std::thread::spawn(move || {
            for line in lines {
                let mut text = collected.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self {
            stdin: child.stdin.take(),
            child,
            output,
        }
    }

    /// Everything printed so far.
    pub fn text(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until it has printed `needle`.
    pub fn wait_for_text(&self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never printed {needle:?}: {}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to end; returns all it printed.
    /// Waits until it exits; returns everything it printed.
    pub fn wait_end(&mut self) -> String {
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "it was never cut: {}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        self.text()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
