//! An in-process Deadbolt PostgreSQL proxy subscribed to the test operator,
//! and the client credentials (Deadbolt user certificates) to reach it.

use std::process::Output;
use std::sync::Arc;

use deadbolt_api::credential::CertIdentity;
use deadbolt_sidecar::database::upstream::{Passwords, UpstreamConfig};
use deadbolt_sidecar::identity::Authenticator;
use deadbolt_sidecar::postgres::{self, PostgresProxy};

use super::operator::Operator;
use super::parts::{ProxyParts, ServedProxy};
use deadbolt_testkit::postgres::Postgres;

/// A running proxy; what every harness has comes from [`ServedProxy`].
pub struct Proxy {
    served: ServedProxy,
}

impl std::ops::Deref for Proxy {
    type Target = ServedProxy;

    fn deref(&self) -> &ServedProxy {
        &self.served
    }
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
        let parts = ProxyParts::new(operator, server_id, labels);
        let proxy = Arc::new(PostgresProxy {
            gate: parts.gate(),
            authenticator: Authenticator::new(None),
            tls: operator.proxy_tls(&[postgres::ALPN_POSTGRESQL]),
            upstream: UpstreamConfig {
                address: postgres.address(),
                tls: None,
                passwords: Passwords::parse(&Postgres::password_lines()).unwrap(),
            },
            allow_plaintext: false,
            cancel_keys: postgres::CancelKeys::default(),
        });
        Self {
            served: parts
                .serve(|listener, shutdown| proxy.serve(listener, shutdown))
                .await,
        }
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
}

/// A user identity for tests, in the group the test operator's `db-all` role is for.
pub fn user(name: &str) -> CertIdentity {
    CertIdentity {
        user: name.into(),
        groups: vec![super::operator::ENGINEERS.into()],
        ..Default::default()
    }
}
