//! The sidecar's flags. Every flag can also be set by an environment variable,
//! as a Pod spec usually does.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use deadbolt_runtime::output::OutputArgs;

/// `deadbolt-sidecar`: one proxy per process.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "deadbolt-sidecar",
    version,
    about = "Deadbolt proxies: refuse locked identities and cut their live sessions."
)]
pub struct Cli {
    /// Which proxy to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The proxies.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// A PostgreSQL proxy.
    #[cfg(feature = "postgres")]
    Postgres(DatabaseArgs),
    /// A MySQL/MariaDB proxy.
    #[cfg(feature = "mysql")]
    Mysql(DatabaseArgs),
    /// A Kubernetes API proxy (kubectl's server): impersonates the
    /// authenticated user upstream, cuts watches, exec and port-forwards.
    #[cfg(feature = "kube")]
    Kube(KubeArgs),
}

impl Command {
    /// The flags every proxy has.
    pub fn common(&self) -> &CommonArgs {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(args) => &args.common,
            #[cfg(feature = "mysql")]
            Self::Mysql(args) => &args.common,
            #[cfg(feature = "kube")]
            Self::Kube(args) => &args.common,
        }
    }
}

/// What every proxy needs: where it listens, who it is, where its lock view
/// comes from, and how it reports.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Address clients connect to.
    #[arg(long, env = "DEADBOLT_LISTEN")]
    pub listen: SocketAddr,
    /// This proxy's server id: a lock on it makes the proxy refuse everything.
    #[arg(long, env = "DEADBOLT_SERVER_ID")]
    pub server_id: String,
    /// Labels of this proxy (`key=value`), matched by roles' label rules.
    #[arg(long = "label", env = "DEADBOLT_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Serving certificate (PEM) presented to clients.
    #[arg(long, env = "DEADBOLT_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// Key of the serving certificate (PEM).
    #[arg(long, env = "DEADBOLT_TLS_KEY")]
    pub tls_key: PathBuf,
    /// The Deadbolt CA (PEM): verifies client certificates and the operator's serving certificate.
    #[arg(long, env = "DEADBOLT_CA")]
    pub ca: PathBuf,
    /// The operator's lock-view endpoint, e.g. `https://deadbolt-operator:8443`.
    #[arg(long, env = "DEADBOLT_VIEW_URL")]
    pub view_url: http::Uri,
    /// Client certificate (PEM) to subscribe with, issued by the Deadbolt CA for this server id.
    #[arg(
        long,
        env = "DEADBOLT_VIEW_CERT",
        requires = "view_key",
        conflicts_with = "view_token_file"
    )]
    pub view_cert: Option<PathBuf>,
    /// Key of `--view-cert`.
    #[arg(long, env = "DEADBOLT_VIEW_KEY", requires = "view_cert")]
    pub view_key: Option<PathBuf>,
    /// Projected ServiceAccount token (audience `deadbolt`) to subscribe with instead of a certificate.
    #[arg(long, env = "DEADBOLT_VIEW_TOKEN_FILE")]
    pub view_token_file: Option<PathBuf>,
    /// Accept Kubernetes bearer tokens as passwords, checked with TokenReview
    /// (in-cluster credentials, or the kubeconfig).
    #[arg(long, env = "DEADBOLT_TOKEN_REVIEW")]
    pub token_review: bool,
    /// Accept clients that do not ask for TLS. Insecure; for local experiments only.
    #[arg(long, env = "DEADBOLT_ALLOW_PLAINTEXT")]
    pub allow_plaintext: bool,
    /// Threads that serve clients (default: one per core this process may
    /// use). Each is a runtime of its own with its own listener on
    /// `--listen`, and a connection stays on the thread that accepted it.
    #[arg(long, env = "DEADBOLT_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: Option<u16>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (plain HTTP).
    #[arg(long, env = "DEADBOLT_METRICS_LISTEN", default_value = "0.0.0.0:9091")]
    pub metrics_listen: SocketAddr,
    /// Logs and the audit log (session.start, session.end, session.rejected,
    /// session.terminated).
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The database proxies' flags (`postgres` and `mysql`). Clients without a
/// certificate send a bearer token as the password (MySQL's own client needs
/// `--enable-cleartext-plugin` for that; MariaDB's does not).
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Listener, identity, lock view and reporting.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The real server, `host:port`.
    #[arg(long, env = "DEADBOLT_UPSTREAM")]
    pub upstream: String,
    /// CA (PEM) of the upstream's certificate; enables TLS to the upstream.
    #[arg(long, env = "DEADBOLT_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// The name the upstream's certificate must carry (default: the upstream host).
    #[arg(long, env = "DEADBOLT_UPSTREAM_SERVER_NAME")]
    pub upstream_server_name: Option<String>,
    /// Client certificate (PEM) for certificate authentication to the upstream.
    #[arg(
        long,
        env = "DEADBOLT_UPSTREAM_CERT",
        requires = "upstream_key",
        requires = "upstream_ca"
    )]
    pub upstream_cert: Option<PathBuf>,
    /// Key of `--upstream-cert`.
    #[arg(long, env = "DEADBOLT_UPSTREAM_KEY", requires = "upstream_cert")]
    pub upstream_key: Option<PathBuf>,
    /// File of `user:password` lines (`*` for any user) for the upstream logins
    /// (PostgreSQL: password, md5, SCRAM; MySQL: native, caching_sha2, ed25519).
    #[arg(long, env = "DEADBOLT_UPSTREAM_PASSWORD_FILE")]
    pub upstream_password_file: Option<PathBuf>,
    /// With `--token-review`: the audience a token used as a password must be
    /// minted for (`kubectl create token SA --audience deadbolt`), so a pod's
    /// ordinary API token is not a database password.
    #[arg(long, env = "DEADBOLT_TOKEN_AUDIENCE", default_value = deadbolt_runtime::token::DEFAULT_AUDIENCE)]
    pub token_audience: String,
}

/// The kube-API proxy's flags. Its upstream credentials need permission to
/// impersonate users, groups and `userextras` (and, with `--token-review`, to
/// create TokenReviews).
#[derive(Args, Debug, Clone)]
pub struct KubeArgs {
    /// Listener, identity, lock view and reporting.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Kubeconfig for the upstream API server and the proxy's own credentials
    /// (default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster ServiceAccount).
    #[arg(long, env = "DEADBOLT_UPSTREAM_KUBECONFIG")]
    pub upstream_kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, env = "DEADBOLT_UPSTREAM_CONTEXT")]
    pub upstream_context: Option<String>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("label {text:?} is not key=value"))?;
    if key.is_empty() {
        return Err(format!("label {text:?} has an empty key"));
    }
    Ok((key.to_string(), value.to_string()))
}
