//! A Deadbolt proxy as a separate release process, for benches that measure
//! its memory: certificate files from the test operator's CA, the flags every
//! proxy takes, and a wait for `/readyz`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::operator::Operator;

/// A running `deadbolt-sidecar`; killed when dropped.
pub struct ProxyProcess {
    /// The process.
    pub child: Child,
    /// Where clients connect.
    pub listen: SocketAddr,
    /// `/readyz` and `/metrics`.
    pub metrics: SocketAddr,
    /// The full command line, for reports.
    pub command_line: String,
    log: PathBuf,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a file only its owner may read (keys).
pub fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl ProxyProcess {
    /// Writes the proxy's certificates into `dir` and starts
    /// `deadbolt-sidecar <subcommand>` named `server_id`, subscribed to
    /// `operator`, with `upstream_args` naming its upstream.
    pub fn spawn(
        operator: &Operator,
        server_id: &str,
        dir: &Path,
        subcommand: &str,
        upstream_args: &[String],
    ) -> Self {
        let serving = operator
            .ca
            .issue_serving_cert(
                &["localhost".into(), "127.0.0.1".into()],
                Duration::from_secs(3600),
            )
            .unwrap();
        let subscription = operator.proxy_cert(server_id);
        for (name, contents) in [
            ("tls.crt", serving.cert_pem.as_str()),
            ("tls.key", serving.key_pem.as_str()),
            ("ca.crt", operator.ca.cert_pem()),
            ("view.crt", subscription.cert_pem.as_str()),
            ("view.key", subscription.key_pem.as_str()),
        ] {
            write_private(&dir.join(name), contents);
        }
        let address =
            || -> SocketAddr { format!("127.0.0.1:{}", super::free_port()).parse().unwrap() };
        let (listen, metrics) = (address(), address());
        let path = |name: &str| dir.join(name).display().to_string();
        let mut args = vec![
            subcommand.to_string(),
            "--listen".into(),
            listen.to_string(),
            "--server-id".into(),
            server_id.into(),
            "--tls-cert".into(),
            path("tls.crt"),
            "--tls-key".into(),
            path("tls.key"),
            "--ca".into(),
            path("ca.crt"),
            "--view-url".into(),
            format!("https://localhost:{}", operator.addr.port()),
            "--view-cert".into(),
            path("view.crt"),
            "--view-key".into(),
            path("view.key"),
            "--metrics-listen".into(),
            metrics.to_string(),
            "--log-level".into(),
            "warn".into(),
            "--audit-log".into(),
            path("audit.log"),
        ];
        args.extend_from_slice(upstream_args);
        let binary = env!("CARGO_BIN_EXE_deadbolt-sidecar");
        let log = dir.join("proxy.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .args(&args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        Self {
            child,
            listen,
            metrics,
            command_line: format!("{binary} {}", args.join(" ")),
            log,
        }
    }

    /// Waits until `/readyz` answers 200 (the first snapshot arrived); panics
    /// with the proxy's log if it exits or takes longer than the harness's patience.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + super::PATIENCE;
        loop {
            let ready = async {
                let mut tcp = TcpStream::connect(self.metrics).await?;
                tcp.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await?;
                let mut response = String::new();
                tcp.read_to_string(&mut response).await?;
                Ok::<_, std::io::Error>(response.starts_with("HTTP/1.1 200"))
            };
            if ready.await.unwrap_or(false) {
                return;
            }
            let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the proxy exited ({status}):\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not become ready:\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CPU time the process's live threads have used, from each thread's
    /// `/proc/<pid>/task/<tid>/schedstat` (nanoseconds, unlike the 10 ms
    /// ticks of `/proc/<pid>/stat`).
    pub fn cpu_time(&self) -> Duration {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).unwrap();
        let nanos: u64 = tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_nanos(nanos)
    }

    /// The process's resident set, KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("no VmRSS in /proc/<pid>/status")
    }
}
