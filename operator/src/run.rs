//! Wiring: builds the store, source, CA, TLS and listeners from [`Args`] and
//! runs them until a signal arrives.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState, Metrics, Readiness};
use crate::args::Args;
use crate::auth::{Authenticator, CacheTtls, CachingTokenChecker, TokenReviewer};
use crate::ca::{self, Created, DeadboltCa, DirCaStore, SecretCaStore};
use crate::shutdown::{self, Shutdown};
use crate::source::{self, DirOptions, DirSource, SourceSpec};
use crate::stream::{self, StreamContext};
use crate::subscribers::Subscribers;
use crate::view::ViewStore;
use deadbolt_runtime::tls::{self, CertifiedKey, ClientAuth};

/// How long an issued serving certificate is valid. It is issued at start-up,
/// so a restart within this period renews it.
const SERVING_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long to wait for tasks to finish after shutdown begins.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the source part of start-up produced.
struct Started {
    ca: DeadboltCa,
    authenticator: Authenticator,
    cluster_names: Vec<String>,
    task: JoinHandle<()>,
}

/// Runs the operator until SIGTERM or SIGINT, then stops gracefully.
pub async fn run(args: Args) -> anyhow::Result<()> {
    tls::install_default_provider();
    let (trigger, shutdown) = Shutdown::new();
    let store = ViewStore::default();
    let subscribers = Subscribers::new();
    let readiness = Readiness::new();
    let metrics = Arc::new(Metrics::new());

    let started = match &args.source {
        SourceSpec::Kube => start_kube(&args, &store, &readiness, &metrics, &shutdown).await?,
        SourceSpec::Dir(path) => {
            start_dir(&args, path, &store, &readiness, &metrics, &shutdown).await?
        }
    };

    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => CertifiedKey::from_files(cert, key)?,
        _ => {
            let mut names = args.tls_sans.clone();
            names.extend(started.cluster_names.iter().cloned());
            names.dedup();
            let issued = started
                .ca
                .issue_serving_cert(&names, SERVING_CERT_VALIDITY)?;
            tracing::info!(?names, "issued a serving certificate from the Deadbolt CA");
            issued.certified_key()?
        }
    };
    let tls_config = tls::server_config(
        identity,
        ClientAuth::Optional(started.ca.root_store()?),
        &[b"h2"],
    )?;

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on --listen {}", args.listen))?;
    let admin_listener = TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on --metrics-listen {}", args.metrics_listen))?;
    tracing::info!(listen = %args.listen, metrics = %args.metrics_listen, source = %args.source,
        "deadbolt-operator started");

    let stream_task = tokio::spawn(stream::serve(
        listener,
        tls_config,
        StreamContext {
            store: store.clone(),
            subscribers: subscribers.clone(),
            authenticator: started.authenticator,
            readiness: readiness.clone(),
            metrics: metrics.clone(),
            heartbeat_interval: args.heartbeat_interval,
        },
        shutdown.clone(),
    ));
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        Arc::new(AdminState {
            metrics,
            store,
            subscribers,
            readiness,
        }),
        shutdown.clone(),
    ));

    let signal = shutdown::signal()
        .await
        .context("cannot listen for signals")?;
    tracing::info!(signal, "shutting down");
    trigger.trigger();
    let all = futures::future::join3(started.task, stream_task, admin_task);
    if tokio::time::timeout(STOP_TIMEOUT, all).await.is_err() {
        tracing::warn!("some tasks did not stop in time");
    }
    Ok(())
}

async fn start_kube(
    args: &Args,
    store: &ViewStore,
    readiness: &Readiness,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> anyhow::Result<Started> {
    let client = kube::Client::try_default().await.context(
        "cannot reach Kubernetes (run with --source dir:PATH to use a directory of manifests instead)",
    )?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let (ca, created) = ca::load_or_create(&SecretCaStore::new(client.clone(), &namespace)).await?;
    log_ca(&format!("Secret {namespace}/{}", ca::SECRET_NAME), created);
    let reviewer = TokenReviewer::new(client.clone(), &args.token_audience);
    let tokens = CachingTokenChecker::new(reviewer, CacheTtls::default());
    let service = &args.service_name;
    let cluster_names = vec![
        service.clone(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    let task = tokio::spawn(source::kube::run(
        client,
        store.clone(),
        readiness.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    Ok(Started {
        ca,
        authenticator: Authenticator::new(Some(Arc::new(tokens))),
        cluster_names,
        task,
    })
}

async fn start_dir(
    args: &Args,
    path: &std::path::Path,
    store: &ViewStore,
    readiness: &Readiness,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> anyhow::Result<Started> {
    let ca_dir = args.ca_dir.as_ref().context(
        "--source dir:PATH needs --ca-dir DIR, where the Deadbolt CA (ca.crt, ca.key) is kept or created",
    )?;
    let (ca, created) = ca::load_or_create(&DirCaStore::new(ca_dir)).await?;
    log_ca(&ca_dir.display().to_string(), created);
    let mut source = DirSource::new(
        path,
        store.clone(),
        readiness.clone(),
        metrics.clone(),
        DirOptions::default(),
    );
    let report = source.load()?;
    tracing::info!(dir = %path.display(), files = report.files, failed = report.failed.len(),
        revision = store.revision(), "manifest directory loaded");
    let task = tokio::spawn(source.run(shutdown.clone()));
    Ok(Started {
        ca,
        // No API server to review tokens with: client certificates only.
        authenticator: Authenticator::new(None),
        cluster_names: Vec::new(),
        task,
    })
}

fn log_ca(location: &str, created: Created) {
    match created {
        Created::Yes => tracing::info!(location, "created a new Deadbolt CA"),
        Created::AlreadyExists => tracing::info!(location, "loaded the Deadbolt CA"),
    }
}
