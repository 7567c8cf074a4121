//! An in-process Deadbolt kube proxy in front of the fake API server,
//! subscribed to the test operator; kubeconfigs for its clients (a Deadbolt
//! user certificate or a bearer token); and the real `kubectl` to drive it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadbolt_api::credential::CertIdentity;
use deadbolt_sidecar::identity::Authenticator;
use deadbolt_sidecar::kube::{self, KubeProxy};
pub use deadbolt_testkit::FakeTokens;
use deadbolt_testkit::poll;

use super::PATIENCE;
use super::kube_upstream::{FakeApiServer, NAMESPACE};
use super::operator::Operator;
use super::parts::{ProxyParts, ServedProxy};

/// A running kube proxy; what every harness has comes from [`ServedProxy`].
pub struct KubeProxyHarness {
    served: ServedProxy,
}

impl std::ops::Deref for KubeProxyHarness {
    type Target = ServedProxy;

    fn deref(&self) -> &ServedProxy {
        &self.served
    }
}

impl KubeProxyHarness {
    /// A proxy named `server_id` in front of `upstream`, subscribed to
    /// `operator`, accepting the bearer tokens `tokens` knows; returns once
    /// its first snapshot has arrived.
    pub async fn start(
        operator: &Operator,
        upstream: &FakeApiServer,
        server_id: &str,
        tokens: &FakeTokens,
    ) -> Self {
        Self::start_labelled(operator, upstream, server_id, tokens, &[]).await
    }

    /// The same, for a proxy with these labels (`--label`).
    pub async fn start_labelled(
        operator: &Operator,
        upstream: &FakeApiServer,
        server_id: &str,
        tokens: &FakeTokens,
        labels: &[(&str, &str)],
    ) -> Self {
        let parts = ProxyParts::new(operator, server_id, labels);
        let config = upstream.kube_config(parts.files.path()).await;
        let proxy = Arc::new(KubeProxy {
            gate: parts.gate(),
            authenticator: Authenticator::new(Some(tokens.checker())),
            tls: operator.proxy_tls(&kube::ALPN),
            upstream: kube::upstream::Upstream::from_kube_config(&config).unwrap(),
        });
        Self {
            served: parts
                .serve(|listener, shutdown| proxy.serve(listener, shutdown))
                .await,
        }
    }

    /// A kubeconfig for this proxy whose user is `user` (kubeconfig YAML, indented four spaces).
    pub fn kubeconfig(&self, name: &str, user: &str) -> PathBuf {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: deadbolt\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\nusers:\n- name: {name}\n  user:\n{user}contexts:\n- name: deadbolt\n  context:\n    cluster: deadbolt\n    user: {name}\n    namespace: {NAMESPACE}\ncurrent-context: deadbolt\n",
            self.addr.port(),
            self.ca_path().display(),
        );
        let path = self.files.path().join(format!("{name}.kubeconfig"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A kubeconfig that logs in with a Deadbolt certificate for `identity`.
    pub fn kubeconfig_for_cert(&self, identity: &CertIdentity) -> PathBuf {
        let (cert, key) = self.user_cert(identity);
        self.kubeconfig(
            &format!("cert-{}", identity.user),
            &format!(
                "    client-certificate: {}\n    client-key: {}\n",
                cert.display(),
                key.display()
            ),
        )
    }

    /// A kubeconfig that logs in with a bearer token.
    pub fn kubeconfig_for_token(&self, name: &str, token: &str) -> PathBuf {
        self.kubeconfig(&format!("token-{name}"), &format!("    token: {token}\n"))
    }

    /// A `kubectl` command against this proxy with `kubeconfig`.
    pub fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(kubectl_path());
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!(
                "--cache-dir={}",
                self.files.path().join("kube-cache").display()
            ))
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", self.files.path())
            .stdin(Stdio::null());
        command
    }

    /// Runs `kubectl` to completion (on a blocking thread).
    pub async fn kubectl_output(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.kubectl_output_with(kubeconfig, args, &[]).await
    }

    /// Runs `kubectl` with extra environment variables to completion.
    pub async fn kubectl_output_with(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Output {
        let mut command = self.kubectl(kubeconfig, args);
        command.envs(envs.iter().copied());
        let run = tokio::task::spawn_blocking(move || command.output().unwrap());
        tokio::time::timeout(PATIENCE * 2, run)
            .await
            .expect("kubectl did not finish")
            .unwrap()
    }

    /// Starts a long-running `kubectl` (a watch, an exec).
    pub fn kubectl_spawn(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Running {
        let mut command = self.kubectl(kubeconfig, args);
        command
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Running::spawn(command)
    }

    /// What `/metrics` would show.
    pub fn metrics_text(&self) -> String {
        use deadbolt_runtime::admin::AdminEndpoints;
        deadbolt_sidecar::metrics::ProxyAdmin {
            metrics: self.metrics.clone(),
            view: self.view.clone(),
            audit: self.audit.sink(),
        }
        .render_metrics()
    }
}

/// The `kubectl` on `PATH` (scripts/test.sh puts `.tools/bin` there).
pub fn kubectl_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            // Also look where scripts/install-tools.sh puts it.
            let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/kubectl");
            assert!(
                local.is_file(),
                "kubectl is not on PATH: run scripts/install-tools.sh (it installs kubectl 1.33 into .tools/bin), or run the tests through scripts/test.sh"
            );
            local
        })
}

/// A `kubectl` still running, with what it has printed so far.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("cannot start kubectl");
        let capture = |mut source: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = text.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = source.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            });
            text
        };
        let stdout = capture(Box::new(child.stdout.take().unwrap()));
        let stderr = capture(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Its standard output so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Its standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until its output has `count` lines containing `needle`.
    pub async fn wait_for_lines(&self, needle: &str, count: usize) {
        let printed = poll(PATIENCE, || {
            (self.stdout().lines().filter(|l| l.contains(needle)).count() >= count).then_some(())
        })
        .await;
        assert!(
            printed.is_some(),
            "kubectl never printed {count} lines with {needle:?}; stdout: {} stderr: {}",
            self.stdout(),
            self.stderr()
        );
    }

    /// Waits for it to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        let Some(status) = poll(PATIENCE, || self.child.try_wait().unwrap()).await else {
            panic!(
                "kubectl is still running; stdout: {} stderr: {}",
                self.stdout(),
                self.stderr()
            );
        };
        // Let the capture threads take the last bytes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        status
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
