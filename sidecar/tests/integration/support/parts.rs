//! What the in-process proxy harnesses (PostgreSQL, MySQL, kube) share: a
//! lock view subscribed to the test operator, a gate over it that audits into
//! memory, a directory of client files holding the CA, serving on a free
//! loopback port, and, once served, user certificates written where clients
//! read them, catching up with the operator, and stopping.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::credential::CertIdentity;
use deadbolt_operator::ca::DeadboltCa;
use deadbolt_runtime::shutdown::{Shutdown, ShutdownTrigger};
use deadbolt_sidecar::audit::{AuditBuffer, AuditSink};
use deadbolt_sidecar::gate::Gate;
use deadbolt_sidecar::metrics::Metrics;
use deadbolt_sidecar::view::Enforcer;
use tempfile::TempDir;
use tokio::net::TcpListener;

use super::eventually;
use super::operator::Operator;

/// A proxy's parts before it serves.
pub struct ProxyParts {
    gate: Gate,
    /// Files for clients, starting with `ca.crt`.
    pub files: TempDir,
    view: Arc<Enforcer>,
    audit: AuditBuffer,
    metrics: Arc<Metrics>,
    ca: Arc<DeadboltCa>,
}

impl ProxyParts {
    /// The parts of a proxy named `server_id` with `labels`, subscribed to `operator`.
    pub fn new(operator: &Operator, server_id: &str, labels: &[(&str, &str)]) -> Self {
        let view = operator.subscribed_view_labelled(server_id, labels);
        let (sink, audit) = AuditSink::memory();
        let metrics = Arc::new(Metrics::new());
        let files = tempfile::tempdir().unwrap();
        std::fs::write(files.path().join("ca.crt"), operator.ca_pem()).unwrap();
        Self {
            gate: Gate {
                view: view.clone(),
                audit: sink,
                metrics: metrics.clone(),
            },
            files,
            view,
            audit,
            metrics,
            ca: operator.ca.clone(),
        }
    }

    /// The gate to build the proxy with.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Serves with `serve` on a free loopback port; returns once the view has
    /// its first snapshot.
    pub async fn serve<S, F>(self, serve: S) -> ServedProxy
    where
        S: FnOnce(TcpListener, Shutdown) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(serve(listener, shutdown));
        let served = ServedProxy {
            addr,
            view: self.view,
            audit: self.audit,
            metrics: self.metrics,
            files: self.files,
            ca: self.ca,
            trigger,
        };
        eventually("the first snapshot", || served.view.is_ready()).await;
        served
    }
}

/// A proxy serving on loopback.
pub struct ServedProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Its lock view.
    pub view: Arc<Enforcer>,
    /// Its audit events.
    pub audit: AuditBuffer,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// Files for clients: `ca.crt`, certificates and whatever a client writes.
    pub files: TempDir,
    ca: Arc<DeadboltCa>,
    trigger: ShutdownTrigger,
}

impl ServedProxy {
    /// The Deadbolt CA, PEM, as clients trust it.
    pub fn ca_path(&self) -> PathBuf {
        self.files.path().join("ca.crt")
    }

    /// Writes a user certificate for `identity`, the key readable by its
    /// owner only (libpq insists): (cert, key) paths.
    pub fn user_cert(&self, identity: &CertIdentity) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let issued = self
            .ca
            .issue_user_cert(identity, Duration::from_secs(3600))
            .unwrap();
        let cert = self.files.path().join(format!("{}.crt", identity.user));
        let key = self.files.path().join(format!("{}.key", identity.user));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        (cert, key)
    }

    /// Waits until the proxy has applied everything the operator's view holds.
    pub async fn catch_up(&self, operator: &Operator) {
        let revision = operator.store.revision();
        eventually("the proxy to catch up", || {
            self.view
                .revision()
                .is_some_and(|applied| applied >= revision)
        })
        .await;
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        self.trigger.trigger();
    }
}
