//! An in-process Deadbolt MySQL proxy subscribed to the test operator, the
//! client credentials to reach it (Deadbolt user certificates, or bearer
//! tokens a fake TokenReview accepts), and the clients: the real `mysql`
//! and `mysql_async`.

use std::process::{Command, Output};
use std::sync::Arc;

use deadbolt_api::credential::CertIdentity;
use deadbolt_sidecar::database::upstream::{Passwords, UpstreamConfig, UpstreamTls};
use deadbolt_sidecar::identity::Authenticator;
use deadbolt_sidecar::mysql::MysqlProxy;
use deadbolt_testkit::FakeTokens;

use super::mariadb::Mariadb;
use super::operator::Operator;
use super::parts::{ProxyParts, ServedProxy};

/// The bearer token the fake TokenReview knows: it belongs to `tom`, in
/// [`super::operator::ENGINEERS`].
pub const TOM_TOKEN: &str = "token-of-tom";

/// The fake TokenReview: [`TOM_TOKEN`] is `tom`, anything else is rejected.
fn token_review() -> FakeTokens {
    let tokens = FakeTokens::rejecting_unknown_with("the token is not valid");
    tokens.add(TOM_TOKEN, "tom", &[super::operator::ENGINEERS]);
    tokens
}

/// A running proxy; what every harness has comes from [`ServedProxy`].
pub struct Proxy {
    /// The proxy itself.
    pub proxy: Arc<MysqlProxy>,
    served: ServedProxy,
}

impl std::ops::Deref for Proxy {
    type Target = ServedProxy;

    fn deref(&self) -> &ServedProxy {
        &self.served
    }
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
        let parts = ProxyParts::new(operator, server_id, labels);
        let proxy = Arc::new(MysqlProxy::new(
            parts.gate(),
            Authenticator::new(Some(token_review().checker())),
            operator.proxy_tls(&[]),
            UpstreamConfig {
                address: mariadb.address(),
                tls: upstream_tls,
                passwords: Passwords::parse(&Mariadb::password_lines()).unwrap(),
            },
            false,
        ));
        let serving = proxy.clone();
        let started = Self {
            served: parts
                .serve(|listener, shutdown| serving.serve(listener, shutdown))
                .await,
            proxy,
        };
        super::eventually("the upstream's greeting", || {
            started.proxy.upstream_profile().is_some()
        })
        .await;
        started
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
            format!("--ssl-ca={}", self.ca_path().display()),
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
            .with_root_certs(vec![self.ca_path().into()])
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
}

fn run_mysql(args: &[String], sql: &str) -> Output {
    Command::new("mysql")
        .args(args)
        .args(["-e", sql])
        .env_remove("MYSQL_PWD")
        .output()
        .expect("mysql is not installed: install mariadb-client")
}
