//! Wires a proxy together from its flags: the lock view and its client, the
//! staleness watchdog, the operations listener, authentication, and the
//! protocol adapter; then runs until SIGTERM or SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadbolt_runtime::admin;
use deadbolt_runtime::shutdown::{self, Shutdown};
use deadbolt_runtime::tls::{self, CertifiedKey, ClientAuth, ClientTls};
use deadbolt_runtime::token::{CacheTtls, CachingTokenChecker, TokenChecker, TokenReviewer};
use rustls::pki_types::ServerName;
use tokio::net::TcpListener;

use crate::args::{Cli, Command, CommonArgs, PostgresArgs};
use crate::audit::AuditSink;
use crate::gate::Gate;
use crate::identity::Authenticator;
use crate::metrics::{Metrics, ProxyAdmin};
use crate::postgres::{self, Passwords, PostgresProxy, UpstreamConfig, UpstreamTls};
use crate::session::SessionRegistry;
use crate::view::{ViewClient, ViewClientConfig, ViewCredentials, ViewState, staleness_watchdog};

/// How often the watchdog checks the view's freshness.
const STALENESS_CHECK: Duration = Duration::from_millis(100);

/// Runs the chosen proxy until a stop signal.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    tls::install_default_provider();
    match cli.command {
        Command::Postgres(args) => run_postgres(args).await,
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

async fn start(common: &CommonArgs) -> anyhow::Result<Started> {
    let roots = tls::root_store_from_file(&common.ca)?;
    let registry = SessionRegistry::default();
    let view = Arc::new(ViewState::new(common.server_id.clone(), registry));
    let metrics = Arc::new(Metrics::new());
    let audit = match &common.audit_log {
        Some(path) => AuditSink::file(path)
            .with_context(|| format!("cannot open --audit-log {}", path.display()))?,
        None => AuditSink::stdout(),
    };

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
    let admin_listener = TcpListener::bind(common.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on --metrics-listen {}",
                common.metrics_listen
            )
        })?;
    tokio::spawn(admin::serve(
        admin_listener,
        Arc::new(ProxyAdmin {
            metrics: metrics.clone(),
            view: view.clone(),
        }),
        shutdown.clone(),
    ));

    let tokens: Option<Arc<dyn TokenChecker>> = if common.token_review {
        let client = kube::Client::try_default()
            .await
            .context("--token-review needs Kubernetes credentials (in-cluster or a kubeconfig)")?;
        Some(Arc::new(CachingTokenChecker::new(
            TokenReviewer::for_api_server(client),
            CacheTtls::default(),
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

async fn run_postgres(args: PostgresArgs) -> anyhow::Result<()> {
    let started = start(&args.common).await?;
    let tls_config = tls::server_config(
        started.serving.clone(),
        ClientAuth::Optional(started.client_roots.clone()),
        &[postgres::ALPN_POSTGRESQL],
    )?;
    let upstream = UpstreamConfig {
        address: args.upstream.clone(),
        tls: upstream_tls(&args)?,
        passwords: match &args.upstream_password_file {
            Some(path) => Passwords::from_file(path).map_err(anyhow::Error::msg)?,
            None => Passwords::default(),
        },
    };
    let listener = TcpListener::bind(args.common.listen)
        .await
        .with_context(|| format!("cannot listen on --listen {}", args.common.listen))?;
    tracing::info!(listen = %args.common.listen, upstream = %args.upstream,
        server_id = %args.common.server_id, "deadbolt-sidecar postgres started");
    let proxy = Arc::new(PostgresProxy {
        gate: started.gate,
        authenticator: started.authenticator,
        tls: tls_config,
        upstream,
        allow_plaintext: args.common.allow_plaintext,
    });
    let serving = tokio::spawn(proxy.serve(listener, started.shutdown.clone()));
    let signal = shutdown::signal().await?;
    tracing::info!(signal, "stopping");
    started.trigger.trigger();
    let _ = serving.await;
    Ok(())
}

fn upstream_tls(args: &PostgresArgs) -> anyhow::Result<Option<UpstreamTls>> {
    let Some(ca) = &args.upstream_ca else {
        return Ok(None);
    };
    let identity = match (&args.upstream_cert, &args.upstream_key) {
        (Some(cert), Some(key)) => Some(CertifiedKey::from_files(cert, key)?),
        _ => None,
    };
    let config = ClientTls {
        roots: tls::root_store_from_file(ca)?,
        identity,
    }
    .config(&[])?;
    let host = args.upstream_server_name.clone().unwrap_or_else(|| {
        args.upstream
            .rsplit_once(':')
            .map_or(args.upstream.clone(), |(h, _)| h.to_string())
    });
    let server_name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .with_context(|| format!("invalid upstream server name {host:?}"))?;
    Ok(Some(UpstreamTls {
        config,
        server_name,
    }))
}
