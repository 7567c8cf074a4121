//! Wires a proxy together from its flags: the lock view and its client, the
//! staleness watchdog, the operations listener, authentication, and the
//! protocol adapter; then runs until SIGTERM or SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadbolt_runtime::admin;
use deadbolt_runtime::listener;
use deadbolt_runtime::shutdown::{self, Shutdown};
use deadbolt_runtime::tls::{self, CertifiedKey, ClientAuth, ClientTls};
use deadbolt_runtime::token::{CachePolicy, CachingTokenChecker, TokenChecker, TokenReviewer};

#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::args::DatabaseArgs;
#[cfg(feature = "kube")]
use crate::args::KubeArgs;
use crate::args::{Cli, Command, CommonArgs};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::database::upstream::UpstreamTlsFlags;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::database::upstream::{Passwords, UpstreamConfig, UpstreamTls};
use crate::gate::Gate;
use crate::identity::Authenticator;
use crate::metrics::{Metrics, ProxyAdmin};
#[cfg(feature = "mysql")]
use crate::mysql::MysqlProxy;
#[cfg(feature = "postgres")]
use crate::postgres::{self, CancelKeys, PostgresProxy};
use crate::session::SessionRegistry;
use crate::view::{Enforcer, ViewClient, ViewClientConfig, ViewCredentials, staleness_watchdog};
use crate::workers::{self, Serve, Workers};

/// How often the watchdog checks the view's freshness.
const STALENESS_CHECK: Duration = Duration::from_millis(100);

/// Runs the chosen proxy until a stop signal.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    tls::install_default_provider();
    match cli.command {
        #[cfg(feature = "postgres")]
        Command::Postgres(args) => run_postgres(args).await,
        #[cfg(feature = "mysql")]
        Command::Mysql(args) => run_mysql(args).await,
        #[cfg(feature = "kube")]
        Command::Kube(args) => run_kube(args).await,
    }
}

/// What every proxy shares once started.
struct Started {
    gate: Gate,
    authenticator: Authenticator,
    serving: CertifiedKey,
    client_roots: Arc<rustls::RootCertStore>,
    shutdown: Shutdown,
    trigger: shutdown::ShutdownTrigger,
}

/// Starts what every proxy shares. With `--token-review`, passwords that are
/// bearer tokens are reviewed for `token_audience` (the API server's own
/// audiences when `None`).
async fn start(common: &CommonArgs, token_audience: Option<&str>) -> anyhow::Result<Started> {
    let roots = tls::root_store_from_file(&common.ca)?;
    let registry = SessionRegistry::default();
    let view = Arc::new(
        Enforcer::new(common.server_id.clone(), registry).with_labels(common.labels.clone()),
    );
    let metrics = Arc::new(Metrics::new());
    let audit = common.output.audit_sink().map_err(anyhow::Error::msg)?;

    let identity = match (&common.view_cert, &common.view_key) {
        (Some(cert), Some(key)) => Some(CertifiedKey::from_files(cert, key)?),
        _ => None,
    };
    let credentials = match (&identity, &common.view_token_file) {
        (Some(_), _) => ViewCredentials::Certificate,
        (None, Some(path)) => ViewCredentials::TokenFile(path.clone()),
        (None, None) => anyhow::bail!(
            "the lock-view subscription needs --view-cert/--view-key or --view-token-file"
        ),
    };
    let client = ViewClient::new(
        ViewClientConfig {
            endpoint: common.view_url.clone(),
            server_id: common.server_id.clone(),
            tls: ClientTls {
                roots: roots.clone(),
                identity,
            },
            credentials,
        },
        view.clone(),
    )?;
    tokio::spawn(client.run());
    tokio::spawn(staleness_watchdog(view.clone(), STALENESS_CHECK));

    let (trigger, shutdown) = Shutdown::new();
    let admin_listener = listener::bind(common.metrics_listen, "--metrics-listen").await?;
    tokio::spawn(admin::serve(
        admin_listener,
        Arc::new(ProxyAdmin {
            metrics: metrics.clone(),
            view: view.clone(),
            audit: audit.clone(),
        }),
        shutdown.clone(),
    ));

    let tokens: Option<Arc<dyn TokenChecker>> = if common.token_review {
        let client = kube::Client::try_default()
            .await
            .context("--token-review needs Kubernetes credentials (in-cluster or a kubeconfig)")?;
        let reviewer = match token_audience {
            Some(audience) => TokenReviewer::new(client, audience),
            None => TokenReviewer::for_api_server(client),
        };
        Some(Arc::new(CachingTokenChecker::new(
            reviewer,
            CachePolicy::default(),
        )))
    } else {
        None
    };
    if common.allow_plaintext {
        tracing::warn!(
            "--allow-plaintext: clients may connect without TLS; their credentials travel in the clear"
        );
    }
    Ok(Started {
        gate: Gate {
            view,
            audit,
            metrics,
        },
        authenticator: Authenticator::new(tokens),
        serving: CertifiedKey::from_files(&common.tls_cert, &common.tls_key)?,
        client_roots: roots,
        shutdown,
        trigger,
    })
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl DatabaseArgs {
    /// The upstream server, its TLS and the logins' passwords.
    fn upstream_config(&self) -> anyhow::Result<UpstreamConfig> {
        let tls = UpstreamTls::from_flags(UpstreamTlsFlags {
            upstream: &self.upstream,
            ca: self.upstream_ca.as_deref(),
            cert: self.upstream_cert.as_deref(),
            key: self.upstream_key.as_deref(),
            server_name: self.upstream_server_name.as_deref(),
        })?;
        let passwords = match &self.upstream_password_file {
            Some(path) => Passwords::from_file(path).map_err(anyhow::Error::msg)?,
            None => Passwords::default(),
        };
        Ok(UpstreamConfig {
            address: self.upstream.clone(),
            tls,
            passwords,
        })
    }
}

/// Serves on `--worker-threads` workers ([`workers`]) until SIGTERM or
/// SIGINT, then stops them gracefully.
async fn serve_until_signal(
    started: Started,
    common: &CommonArgs,
    serve: Serve,
) -> anyhow::Result<()> {
    let count = workers::count(common.worker_threads);
    let (listener, workers) = Workers::start(common.listen, count, &serve, &started.shutdown)?;
    tracing::info!(workers = count, "serving");
    let serving = tokio::spawn(serve(listener, started.shutdown.clone()));
    let signal = shutdown::signal().await?;
    tracing::info!(signal, "stopping");
    started.trigger.trigger();
    let _ = serving.await;
    let _ = tokio::task::spawn_blocking(move || workers.join()).await;
    let audit = started.gate.audit.clone();
    let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    Ok(())
}

/// What a database proxy starts with: what every proxy shares, the TLS it
/// serves clients, and its upstream.
#[cfg(any(feature = "postgres", feature = "mysql"))]
struct DatabaseStart {
    started: Started,
    tls: Arc<rustls::ServerConfig>,
    upstream: UpstreamConfig,
}

/// Starts a database proxy for `protocol` (offering `alpn` in TLS).
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn start_database(
    args: &DatabaseArgs,
    protocol: &'static str,
    alpn: &[&[u8]],
) -> anyhow::Result<DatabaseStart> {
    let started = start(&args.common, Some(&args.token_audience)).await?;
    let tls = tls::server_config(
        started.serving.clone(),
        ClientAuth::Optional(started.client_roots.clone()),
        alpn,
    )?;
    let upstream = args.upstream_config()?;
    tracing::info!(protocol, listen = %args.common.listen, upstream = %args.upstream,
        server_id = %args.common.server_id, "deadbolt-sidecar started");
    Ok(DatabaseStart {
        started,
        tls,
        upstream,
    })
}

#[cfg(feature = "postgres")]
async fn run_postgres(args: DatabaseArgs) -> anyhow::Result<()> {
    let DatabaseStart {
        started,
        tls,
        upstream,
    } = start_database(&args, "postgres", &[postgres::ALPN_POSTGRESQL]).await?;
    let proxy = Arc::new(PostgresProxy {
        gate: started.gate.clone(),
        authenticator: started.authenticator.clone(),
        tls,
        upstream,
        allow_plaintext: args.common.allow_plaintext,
        cancel_keys: CancelKeys::default(),
    });
    // The workers share one proxy: a cancel request may reach another worker
    // than the session it cancels.
    let serve: Serve =
        Arc::new(move |listener, shutdown| Box::pin(proxy.clone().serve(listener, shutdown)));
    serve_until_signal(started, &args.common, serve).await
}

#[cfg(feature = "mysql")]
async fn run_mysql(args: DatabaseArgs) -> anyhow::Result<()> {
    let DatabaseStart {
        started,
        tls,
        upstream,
    } = start_database(&args, "mysql", &[]).await?;
    let proxy = Arc::new(MysqlProxy::new(
        started.gate.clone(),
        started.authenticator.clone(),
        tls,
        upstream,
        args.common.allow_plaintext,
    ));
    let serve: Serve =
        Arc::new(move |listener, shutdown| Box::pin(proxy.clone().serve(listener, shutdown)));
    serve_until_signal(started, &args.common, serve).await
}

#[cfg(feature = "kube")]
async fn run_kube(args: KubeArgs) -> anyhow::Result<()> {
    let config = crate::kube::upstream::load_config(
        args.upstream_kubeconfig.as_deref(),
        args.upstream_context.as_deref(),
    )
    .await?;
    // Tokens are reviewed by the upstream cluster, with the proxy's upstream
    // credentials, not by whatever cluster the default kubeconfig names.
    let mut common = args.common.clone();
    common.token_review = false;
    let mut started = start(&common, None).await?;
    if args.common.token_review {
        let client = kube::Client::try_from(config.clone())
            .context("cannot build a TokenReview client from the upstream credentials")?;
        started.authenticator = Authenticator::new(Some(Arc::new(CachingTokenChecker::new(
            TokenReviewer::for_api_server(client),
            CachePolicy::default(),
        ))));
    }
    let tls_config = tls::server_config(
        started.serving.clone(),
        ClientAuth::Optional(started.client_roots.clone()),
        &crate::kube::ALPN,
    )?;
    let upstream = crate::kube::upstream::Upstream::from_kube_config(&config)?;
    tracing::info!(listen = %args.common.listen, upstream = %upstream.endpoint(),
        server_id = %args.common.server_id, protocol = "kube", "deadbolt-sidecar started");
    if args.common.allow_plaintext {
        tracing::warn!("--allow-plaintext has no effect on the kube proxy: it always serves TLS");
    }
    // Each worker has its own upstream connections, driven on its thread.
    let (gate, authenticator) = (started.gate.clone(), started.authenticator.clone());
    let serve: Serve = Arc::new(move |listener, shutdown| {
        let proxy = Arc::new(crate::kube::KubeProxy {
            gate: gate.clone(),
            authenticator: authenticator.clone(),
            tls: tls_config.clone(),
            upstream: upstream.for_worker(),
        });
        Box::pin(proxy.serve(listener, shutdown))
    });
    serve_until_signal(started, &args.common, serve).await
}
