//! An in-process Deadbolt MySQL proxy subscribed to the test operator, the
//! client credentials to reach it (Deadbolt user certificates, or bearer
//! tokens a fake TokenReview accepts), and the clients: the real `mysql`
//! and `mysql_async`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::credential::CertIdentity;
use deadbolt_runtime::shutdown::{Shutdown, ShutdownTrigger};
use deadbolt_sidecar::audit::{AuditBuffer, AuditSink};
use deadbolt_sidecar::database::upstream::{Passwords, UpstreamConfig, UpstreamTls};
use deadbolt_sidecar::gate::Gate;
use deadbolt_sidecar::identity::Authenticator;
use deadbolt_sidecar::metrics::Metrics;
use deadbolt_sidecar::mysql::MysqlProxy;
use deadbolt_sidecar::view::Enforcer;
use deadbolt_testkit::FakeTokens;
use tempfile::TempDir;
use tokio::net::TcpListener;

use super::mariadb::Mariadb;
use super::operator::Operator;

/// The bearer token the fake TokenReview knows: it belongs to `tom`, in
/// [`super::operator::ENGINEERS`].
pub const TOM_TOKEN: &str = "token-of-tom";

/// The fake TokenReview: [`TOM_TOKEN`] is `tom`, anything else is rejected.
fn token_review() -> FakeTokens {
    let tokens = FakeTokens::rejecting_unknown_with("the token is not valid");
    tokens.add(TOM_TOKEN, "tom", &[super::operator::ENGINEERS]);
    tokens
}

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
    /// The proxy itself.
    pub proxy: Arc<MysqlProxy>,
    ca: Arc<deadbolt_operator::ca::DeadboltCa>,
    trigger: ShutdownTrigger,
}

impl Proxy {
    /// A proxy named `server_id` in front of `mariadb`, subscribed to
    /// `operator`; returns once its first snapshot has arrived and it has
    /// read the upstream's greeting.
    pub async fn start(operator: &Operator, mariadb: &Mariadb, server_id: &str) -> Self {
        Self::start_with(operator, mariadb, server_id, None, &[]).await
    }

    /// The same, for a proxy with these labels (`--label`).
    pub async fn start_labelled(
        operator: &Operator,
        mariadb: &Mariadb,
        server_id: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        Self::start_with(operator, mariadb, server_id, None, labels).await
    }

    /// Like [`Proxy::start`], speaking TLS to the upstream when `upstream_tls` says so.
    pub async fn start_with(
        operator: &Operator,
        mariadb: &Mariadb,
        server_id: &str,
        upstream_tls: Option<UpstreamTls>,
        labels: &[(&str, &str)],
    ) -> Self {
        let view = operator.subscribed_view_labelled(server_id, labels);

        let tls_config = operator.proxy_tls(&[]);
        let (audit_sink, audit) = AuditSink::memory();
        let proxy = Arc::new(MysqlProxy::new(
            Gate {
                view: view.clone(),
                audit: audit_sink,
                metrics: Arc::new(Metrics::new()),
            },
            Authenticator::new(Some(token_review().checker())),
            tls_config,
            UpstreamConfig {
                address: mariadb.address(),
                tls: upstream_tls,
                passwords: Passwords::parse(&Mariadb::password_lines()).unwrap(),
            },
            false,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown): (ShutdownTrigger, Shutdown) = Shutdown::new();
        tokio::spawn(proxy.clone().serve(listener, shutdown));

        let files = tempfile::tempdir().unwrap();
        std::fs::write(files.path().join("ca.crt"), operator.ca_pem()).unwrap();
        let started = Self {
            addr,
            view,
            audit,
            files,
            proxy,
            ca: operator.ca.clone(),
            trigger,
        };
        super::eventually("the first snapshot", || started.view.is_ready()).await;
        super::eventually("the upstream's greeting", || {
            started.proxy.upstream_profile().is_some()
        })
        .await;
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
        (cert, key)
    }

    fn ca_file(&self) -> PathBuf {
        self.files.path().join("ca.crt")
    }

    /// Arguments for the real `mysql` client: TLS verifying the proxy,
    /// `identity`'s certificate, logging in as `login` to the schema `login`.
    pub fn mysql_args(&self, identity: &CertIdentity, login: &str) -> Vec<String> {
        let (cert, key) = self.user_cert(identity);
        let mut args = self.mysql_base_args(login);
        args.extend([
            format!("--ssl-cert={}", cert.display()),
            format!("--ssl-key={}", key.display()),
        ]);
        args
    }

    /// Arguments for the real `mysql` client with no certificate: the token
    /// is the password, which the proxy asks for with `mysql_clear_password`.
    /// MariaDB's client allows that plugin as it is (and warns that
    /// `--enable-cleartext-plugin`, which MySQL's client needs, is obsolete).
    pub fn mysql_token_args(&self, token: &str, login: &str) -> Vec<String> {
        let mut args = self.mysql_base_args(login);
        args.push(format!("--password={token}"));
        args
    }

    /// Runs the real `mysql` once with `sql`, as `identity` logging in as `login` to `database`.
    pub fn mysql_in(
        &self,
        identity: &CertIdentity,
        login: &str,
        database: &str,
        sql: &str,
    ) -> Output {
        let mut args = self.mysql_args(identity, login);
        for arg in args.iter_mut() {
            if arg.starts_with("--database=") {
                *arg = format!("--database={database}");
            }
        }
        run_mysql(&args, sql)
    }

    fn mysql_base_args(&self, login: &str) -> Vec<String> {
        vec![
            "--no-defaults".to_string(),
            "--protocol=TCP".to_string(),
            "--host=127.0.0.1".to_string(),
            format!("--port={}", self.addr.port()),
            format!("--user={login}"),
            format!("--database={login}"),
            format!("--ssl-ca={}", self.ca_file().display()),
            "--ssl-verify-server-cert".to_string(),
            "--connect-timeout=10".to_string(),
            "--batch".to_string(),
            "--skip-column-names".to_string(),
        ]
    }

    /// Runs the real `mysql` once with `sql`, as `identity` logging in as `login`.
    pub fn mysql(&self, identity: &CertIdentity, login: &str, sql: &str) -> Output {
        run_mysql(&self.mysql_args(identity, login), sql)
    }

    /// Runs the real `mysql` once with `sql`, authenticating with a bearer token.
    pub fn mysql_with_token(&self, token: &str, login: &str, sql: &str) -> Output {
        run_mysql(&self.mysql_token_args(token, login), sql)
    }

    /// A `mysql_async` connection as `identity` logging in as `login`.
    pub async fn connect(
        &self,
        identity: &CertIdentity,
        login: &str,
    ) -> mysql_async::Result<mysql_async::Conn> {
        let (cert, key) = self.user_cert(identity);
        let ssl = mysql_async::SslOpts::default()
            .with_root_certs(vec![self.ca_file().into()])
            .with_client_identity(Some(mysql_async::ClientIdentity::new(
                cert.into(),
                key.into(),
            )));
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("localhost")
            .tcp_port(self.addr.port())
            .prefer_socket(false)
            .user(Some(login))
            .db_name(Some(login))
            .ssl_opts(Some(ssl));
        mysql_async::Conn::new(opts).await
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

fn run_mysql(args: &[String], sql: &str) -> Output {
    Command::new("mysql")
        .args(args)
        .args(["-e", sql])
        .env_remove("MYSQL_PWD")
        .output()
        .expect("mysql is not installed: install mariadb-client")
}
