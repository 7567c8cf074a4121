//! An in-process Deadbolt PostgreSQL proxy subscribed to the test operator,
//! and the client credentials (Deadbolt user certificates) to reach it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::shutdown::{Shutdown, ShutdownTrigger};
use deadbolt_sidecar::audit::{AuditBuffer, AuditSink};
use deadbolt_sidecar::database::upstream::{Passwords, UpstreamConfig};
use deadbolt_sidecar::gate::Gate;
use deadbolt_sidecar::identity::Authenticator;
use deadbolt_sidecar::metrics::Metrics;
use deadbolt_sidecar::postgres::{self, PostgresProxy};
use deadbolt_sidecar::view::Enforcer;
use tempfile::TempDir;
use tokio::net::TcpListener;

use super::operator::Operator;
use deadbolt_testkit::postgres::Postgres;

/// A running proxy.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Its lock view.
    pub view: Arc<Enforcer>,
    /// Its audit events.
    pub audit: AuditBuffer,
    /// Files for clients: `ca.crt`, and `<user>.crt`/`<user>.key`.
    pub files: TempDir,
    ca: Arc<deadbolt_operator::ca::DeadboltCa>,
    trigger: ShutdownTrigger,
}

impl Proxy {
    /// A proxy named `server_id` in front of `postgres`, subscribed to `operator`;
    /// returns once its first snapshot has arrived.
    pub async fn start(operator: &Operator, postgres: &Postgres, server_id: &str) -> Self {
        Self::start_labelled(operator, postgres, server_id, &[]).await
    }

    /// The same, for a proxy with these labels (`--label`).
    pub async fn start_labelled(
        operator: &Operator,
        postgres: &Postgres,
        server_id: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        let view = operator.subscribed_view_labelled(server_id, labels);

        let tls_config = operator.proxy_tls(&[postgres::ALPN_POSTGRESQL]);
        let (audit_sink, audit) = AuditSink::memory();
        let proxy = Arc::new(PostgresProxy {
            gate: Gate {
                view: view.clone(),
                audit: audit_sink,
                metrics: Arc::new(Metrics::new()),
            },
            authenticator: Authenticator::new(None),
            tls: tls_config,
            upstream: UpstreamConfig {
                address: postgres.address(),
                tls: None,
                passwords: Passwords::parse(&Postgres::password_lines()).unwrap(),
            },
            allow_plaintext: false,
            cancel_keys: postgres::CancelKeys::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown): (ShutdownTrigger, Shutdown) = Shutdown::new();
        tokio::spawn(proxy.serve(listener, shutdown));

        let files = tempfile::tempdir().unwrap();
        std::fs::write(files.path().join("ca.crt"), operator.ca_pem()).unwrap();
        let started = Self {
            addr,
            view,
            audit,
            files,
            ca: operator.ca.clone(),
            trigger,
        };
        super::eventually("the first snapshot", || started.view.is_ready()).await;
        started
    }

    /// Writes a user certificate for `identity` and returns (cert, key) paths.
    pub fn user_cert(&self, identity: &CertIdentity) -> (PathBuf, PathBuf) {
        let issued = self
            .ca
            .issue_user_cert(identity, Duration::from_secs(3600))
            .unwrap();
        let cert = self.files.path().join(format!("{}.crt", identity.user));
        let key = self.files.path().join(format!("{}.key", identity.user));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        set_private(&key);
        (cert, key)
    }

    /// A libpq connection string for `identity` logging in as `login`.
    pub fn conninfo(&self, identity: &CertIdentity, login: &str) -> String {
        self.conninfo_for(identity, login, login)
    }

    /// A libpq connection string for `identity` logging in as `login` to `database`.
    pub fn conninfo_for(&self, identity: &CertIdentity, login: &str, database: &str) -> String {
        let (cert, key) = self.user_cert(identity);
        format!(
            "host=localhost port={} user={login} dbname={database} sslmode=verify-full sslrootcert={} sslcert={} sslkey={} connect_timeout=10",
            self.addr.port(),
            self.files.path().join("ca.crt").display(),
            cert.display(),
            key.display()
        )
    }

    /// Runs the real `psql` once with `sql`.
    pub fn psql(&self, identity: &CertIdentity, login: &str, sql: &str) -> Output {
        self.psql_with(&self.conninfo(identity, login), sql)
    }

    /// Runs the real `psql` once with `sql` on a connection string.
    pub fn psql_with(&self, conninfo: &str, sql: &str) -> Output {
        std::process::Command::new("psql")
            .arg(conninfo)
            .args(["-XAtc", sql])
            .env_remove("PGPASSWORD")
            .output()
            .expect("psql is not installed: run scripts/install-tools.sh")
    }

    /// Waits until the proxy has applied everything the operator's view holds.
    pub async fn catch_up(&self, operator: &Operator) {
        let revision = operator.store.revision();
        super::eventually("the proxy to catch up", || {
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

fn set_private(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A user identity for tests, in the group the test operator's `db-all` role is for.
pub fn user(name: &str) -> CertIdentity {
    CertIdentity {
        user: name.into(),
        groups: vec![super::operator::ENGINEERS.into()],
        ..Default::default()
    }
}
