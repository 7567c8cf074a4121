//! An in-process operator serving the lock view over TLS, with a view store
//! the test edits directly (as the operator's sources would).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::protocol::{ClusterConfig, ObjectKey, RoleRecord, ViewObject};
use deadbolt_api::resources::{LockTargetSpec, LockingMode};
use deadbolt_operator::admin::{Metrics, Readiness};
use deadbolt_operator::auth::Authenticator;
use deadbolt_operator::ca::{DeadboltCa, IssuedCert};
use deadbolt_operator::https::Bound;
use deadbolt_operator::shutdown::{Shutdown, ShutdownTrigger};
use deadbolt_operator::stream::{self, StreamContext};
use deadbolt_operator::subscribers::Subscribers;
use deadbolt_operator::view::ViewStore;
use deadbolt_runtime::clock::{Clock, SystemClock};
use deadbolt_runtime::tls::{self, ClientAuth, ClientTls};
use deadbolt_sidecar::session::SessionRegistry;
use deadbolt_sidecar::view::{
    Enforcer, ViewClient, ViewClientConfig, ViewCredentials, staleness_watchdog,
};
use deadbolt_testkit::lock_entry;
use jiff::{SignedDuration, Timestamp};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The role builder the suites and benches give [`Operator::role`].
#[allow(unused_imports)]
pub use deadbolt_testkit::role::any_database_role;
/// Targets for [`Operator::lock`], where the suites and benches import them.
pub use deadbolt_testkit::target;

/// The group whose members the test operator's `db-all` role lets reach any
/// database user and database on any proxy ([`super::proxy::user`] puts users in it).
pub const ENGINEERS: &str = "engineers";

/// A running lock-view server.
pub struct Operator {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The Deadbolt CA: it signs the operator's, the proxies' and the users' certificates.
    pub ca: Arc<DeadboltCa>,
    /// The view; edit it to push changes.
    pub store: ViewStore,
    /// Whether the operator's own view is complete and its watches healthy;
    /// heartbeats stop while it is not, as when its API server is unreachable.
    pub readiness: Readiness,
    /// The wall clock of the proxies' views subscribed from now on.
    pub view_clock: Arc<dyn Clock>,
    trigger: Option<ShutdownTrigger>,
    task: Option<JoinHandle<()>>,
}

impl Operator {
    /// A ready server heartbeating every 200 ms, whose view holds the
    /// `db-all` role for [`ENGINEERS`].
    pub async fn start() -> Self {
        let ca = Arc::new(DeadboltCa::generate().unwrap());
        let store = ViewStore::default();
        store.upsert(ViewObject::Role(any_database_role("db-all", ENGINEERS)));
        let mut operator = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            ca,
            store,
            readiness: Readiness::new(),
            view_clock: Arc::new(SystemClock),
            trigger: None,
            task: None,
        };
        operator.readiness.set_ready();
        operator.serve().await;
        operator
    }

    async fn serve(&mut self) {
        // Served as a proxy serves its clients: the same certificate and client roots.
        let config = self.proxy_tls(&[b"h2"]);
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let readiness = self.readiness.clone();
        let (trigger, shutdown) = Shutdown::new();
        let context = StreamContext {
            store: self.store.clone(),
            subscribers: Subscribers::new(),
            authenticator: Authenticator::new(None),
            readiness,
            metrics: Arc::new(Metrics::new()),
            heartbeat_interval: Duration::from_millis(200),
            max_streams_per_subscriber: 4,
        };
        self.trigger = Some(trigger);
        self.task = Some(tokio::spawn(stream::serve(
            Bound::new(listener, config, shutdown),
            context,
        )));
    }

    /// Stops serving: subscribed proxies stop hearing from it.
    pub async fn stop(&mut self) {
        if let Some(trigger) = self.trigger.take() {
            trigger.trigger();
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serves again on the same address.
    pub async fn restart(&mut self) {
        self.serve().await;
    }

    /// A proxy's client certificate.
    pub fn proxy_cert(&self, server_id: &str) -> IssuedCert {
        self.ca
            .issue_proxy_cert(server_id, Duration::from_secs(3600))
            .unwrap()
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem().to_string()
    }

    /// Pushes a lock with this target and message.
    pub fn lock(&self, name: &str, target: LockTargetSpec, message: &str) {
        self.store.upsert(
            lock_entry(name, target)
                .message(message)
                .created(Timestamp::now())
                .object(),
        );
    }

    /// Pushes a lock that expires `after` from now.
    pub fn lock_until(&self, name: &str, target: LockTargetSpec, after: Duration) {
        self.store.upsert(
            lock_entry(name, target)
                .created(Timestamp::now())
                .expires_at(Timestamp::now() + SignedDuration::try_from(after).unwrap())
                .object(),
        );
    }

    /// Deletes a lock.
    pub fn unlock(&self, name: &str) {
        self.store.delete(&ObjectKey::Lock(name.into()));
    }

    /// Pushes a role.
    pub fn role(&self, role: RoleRecord) {
        self.store.upsert(ViewObject::Role(role));
    }

    /// Pushes a user.
    pub fn user(&self, name: &str, spec: deadbolt_api::resources::UserSpec) {
        self.store
            .upsert(ViewObject::User(deadbolt_api::protocol::UserRecord {
                name: name.into(),
                spec,
            }));
    }

    /// Sets the cluster's locking mode and staleness bound.
    pub fn configure(&self, mode: LockingMode, max_staleness: Duration) {
        self.store.upsert(ViewObject::Config(ClusterConfig {
            locking_mode: mode,
            max_lock_staleness_ms: max_staleness.as_millis() as u64,
            ..Default::default()
        }));
    }
}

impl Operator {
    /// A proxy's lock view named `server_id`, subscribed to this operator with
    /// a proxy certificate, with a watchdog fast enough for staleness tests.
    pub fn subscribed_view(&self, server_id: &str) -> Arc<Enforcer> {
        self.subscribed_view_labelled(server_id, &[])
    }

    /// The same, for a proxy with these labels (`--label`).
    pub fn subscribed_view_labelled(
        &self,
        server_id: &str,
        labels: &[(&str, &str)],
    ) -> Arc<Enforcer> {
        let view = Arc::new(
            Enforcer::new(server_id, SessionRegistry::default())
                .with_labels(
                    labels
                        .iter()
                        .map(|(key, value)| (key.to_string(), value.to_string())),
                )
                .with_clock(self.view_clock.clone()),
        );
        let client = ViewClient::new(
            ViewClientConfig {
                endpoint: format!("https://localhost:{}", self.addr.port())
                    .parse()
                    .unwrap(),
                server_id: server_id.into(),
                tls: ClientTls {
                    roots: self.roots(),
                    identity: Some(self.proxy_cert(server_id).certified_key().unwrap()),
                },
                credentials: ViewCredentials::Certificate,
            },
            view.clone(),
        )
        .unwrap();
        tokio::spawn(client.run());
        tokio::spawn(staleness_watchdog(view.clone(), Duration::from_millis(20)));
        view
    }

    /// What a proxy serves clients with: a certificate for localhost from
    /// this operator's CA, client certificates from the same CA, and `alpn`.
    pub fn proxy_tls(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let serving = self
            .ca
            .issue_serving_cert(
                &["localhost".into(), "127.0.0.1".into()],
                Duration::from_secs(3600),
            )
            .unwrap();
        tls::server_config(
            serving.certified_key().unwrap(),
            ClientAuth::Optional(self.roots()),
            alpn,
        )
        .unwrap()
    }

    /// The Deadbolt CA as a root store.
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        tls::root_store(self.ca_pem().as_bytes()).unwrap()
    }
}
