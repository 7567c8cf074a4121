//! Wiring: builds the store, source, CA, TLS and listeners from [`Args`] and
//! runs them until a signal arrives.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadbolt_runtime::listener;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState, Metrics, Readiness};
use crate::admission;
use crate::args::Args;
use crate::auth::{Authenticator, CachePolicy, CachingTokenChecker, TokenChecker, TokenReviewer};
use crate::ca::{self, Created, DeadboltCa, DirCaStore, SecretCaStore};
use crate::controller::{self, AuditSink, Settings};
use crate::https::Bound;
use crate::leader::{self, ElectionConfig, Leadership};
use crate::mfa::{
    self, DeviceStore, KubeDevices, LeaseLockout, LockoutStore, MemoryDevices, MemoryLockout,
    MfaService,
};
use crate::ownership;
use crate::shutdown::{self, Shutdown};
use crate::source::{self, DirOptions, DirSource, SourceSpec};
use crate::stream::{self, StreamContext};
use crate::subscribers::Subscribers;
use crate::view::ViewStore;
use deadbolt_runtime::clock::SystemClock;
use deadbolt_runtime::tls::{self, CertifiedKey, ClientAuth};

/// How long an issued serving certificate is valid. It is issued at start-up,
/// so a restart within this period renews it.
const SERVING_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long to wait for tasks to finish after shutdown begins.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the source part of start-up produced.
struct Started {
    ca: DeadboltCa,
    /// Where MFA devices are kept.
    devices: Arc<dyn DeviceStore>,
    /// Where failed MFA checks are counted: shared by every replica.
    lockout: Arc<dyn LockoutStore>,
    /// Checks callers' bearer tokens (Kubernetes source only).
    tokens: Option<Arc<dyn TokenChecker>>,
    /// The namespace the operator runs in (Kubernetes source only).
    namespace: Option<String>,
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
    let audit = args.output.audit_sink().map_err(anyhow::Error::msg)?;

    let started = match &args.source {
        SourceSpec::Kube => {
            let context = (&store, &subscribers, &readiness, &metrics, &audit);
            start_kube(&args, context, &shutdown).await?
        }
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
    let webhook_task = match &started.namespace {
        Some(namespace) => {
            let webhook_tls =
                tls::server_config(identity.clone(), ClientAuth::None, admission::ALPN)?;
            let bound = Bound::bind(
                args.webhook_listen,
                "--webhook-listen",
                webhook_tls,
                &shutdown,
            )
            .await?;
            let webhook = admission::Webhook::new(
                store.clone(),
                readiness.clone(),
                admission::WebhookSettings {
                    operator_username: Some(admission::service_account_username(
                        namespace,
                        &args.service_account,
                    )),
                    idp_sync_users: args.idp_sync_users.clone(),
                    exempt_users: args.lock_exempt_users.clone(),
                    exempt_groups: args.lock_exempt_groups.clone(),
                    injection: args
                        .inject_image
                        .clone()
                        .zip(args.inject_view_url.clone())
                        .map(|(image, view_url)| admission::InjectSettings { image, view_url }),
                },
            );
            tracing::info!(listen = %args.webhook_listen, "admission webhooks started");
            tokio::spawn(admission::serve(bound, webhook))
        }
        None => tokio::spawn(async {}),
    };
    let mfa_tls = tls::server_config(
        identity.clone(),
        ClientAuth::Optional(started.ca.root_store()?),
        mfa::ALPN,
    )?;
    let mfa_bound = Bound::bind(args.mfa_listen, "--mfa-listen", mfa_tls, &shutdown).await?;
    let ca = Arc::new(started.ca);
    let mfa_endpoint = mfa::Endpoint {
        service: MfaService::new(
            admission::FollowingReplica::new(store.clone()),
            ca.clone(),
            started.devices,
            Arc::new(SystemClock),
            audit.clone(),
        )
        .with_lockout(started.lockout),
        tokens: started.tokens,
    };
    tracing::info!(listen = %args.mfa_listen, "MFA service started");
    let mfa_task = tokio::spawn(mfa::serve(mfa_bound, mfa_endpoint));
    let tls_config =
        tls::server_config(identity, ClientAuth::Optional(ca.root_store()?), &[b"h2"])?;

    let bound = Bound::bind(args.listen, "--listen", tls_config, &shutdown).await?;
    let admin_listener = listener::bind(args.metrics_listen, "--metrics-listen").await?;
    tracing::info!(listen = %args.listen, metrics = %args.metrics_listen, source = %args.source,
        "deadbolt-operator started");

    let stream_task = tokio::spawn(stream::serve(
        bound,
        StreamContext {
            store: store.clone(),
            subscribers: subscribers.clone(),
            authenticator: started.authenticator,
            readiness: readiness.clone(),
            metrics: metrics.clone(),
            heartbeat_interval: args.heartbeat_interval,
            max_streams_per_subscriber: args.max_streams_per_subscriber,
        },
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
    let all = futures::future::join5(
        started.task,
        stream_task,
        admin_task,
        webhook_task,
        mfa_task,
    );
    if tokio::time::timeout(STOP_TIMEOUT, all).await.is_err() {
        tracing::warn!("some tasks did not stop in time");
    }
    let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    Ok(())
}

/// What the Kubernetes source shares with the rest of the operator.
type Shared<'a> = (
    &'a ViewStore,
    &'a Subscribers,
    &'a Readiness,
    &'a Arc<Metrics>,
    &'a AuditSink,
);

async fn start_kube(
    args: &Args,
    (store, subscribers, readiness, metrics, audit): Shared<'_>,
    shutdown: &Shutdown,
) -> anyhow::Result<Started> {
    let client = kube::Client::try_default().await.context(
        "cannot reach Kubernetes (run with --source dir:PATH to use a directory of manifests instead)",
    )?;
    let namespace = args
        .namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|ns| !ns.is_empty())
        })
        .unwrap_or_else(|| client.default_namespace().to_string());
    let owner =
        ownership::service_account_owner(client.clone(), &namespace, &args.service_account).await;
    let ca_store = SecretCaStore::new(client.clone(), &namespace).with_owner(owner.clone());
    let (ca, created) = ca::load_or_create(&ca_store).await?;
    log_ca(&format!("Secret {namespace}/{}", ca::SECRET_NAME), created);
    let reviewer = TokenReviewer::new(client.clone(), &args.token_audience);
    let tokens: Arc<dyn TokenChecker> =
        Arc::new(CachingTokenChecker::new(reviewer, CachePolicy::default()));
    let service = &args.service_name;
    let cluster_names = vec![
        service.clone(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    let source_task = tokio::spawn(source::kube::run(
        client.clone(),
        store.clone(),
        readiness.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let lockout_owner = owner.clone();
    let home = Home {
        client: client.clone(),
        namespace: namespace.clone(),
        owner,
    };
    let (controllers, leadership) =
        start_controllers(args, home, (store, subscribers, metrics, audit), shutdown)?;
    let configurations = admission::WebhookConfigurations {
        validating: args.validating_webhook_configurations.clone(),
        mutating: args.mutating_webhook_configurations.clone(),
    };
    if !configurations.is_empty() {
        let bundle = admission::CaBundle::new(client.clone(), configurations, ca.cert_pem());
        tokio::spawn(bundle.keep(leadership, shutdown.clone()));
    }
    let task = tokio::spawn(async move {
        let _ = futures::future::join(source_task, controllers).await;
    });
    Ok(Started {
        ca,
        devices: Arc::new(KubeDevices::new(client.clone())),
        lockout: Arc::new(LeaseLockout::new(client.clone(), &namespace, lockout_owner)),
        tokens: Some(Arc::new(CachingTokenChecker::new(
            match &args.mfa_token_audience {
                Some(audience) => TokenReviewer::new(client, audience),
                None => TokenReviewer::for_api_server(client),
            },
            CachePolicy::default(),
        ))),
        namespace: Some(namespace),
        authenticator: Authenticator::new(Some(tokens)).with_subscribers(args.subscribers.clone()),
        cluster_names,
        task,
    })
}

/// Where the operator runs: its client, its namespace, and the owner of the
/// objects it creates there (see [`ownership`]).
struct Home {
    client: kube::Client,
    namespace: String,
    owner: Option<OwnerReference>,
}

/// Starts leader election and the controllers (Kubernetes source only: with
/// `dir:` there is nothing to write status to, and proxies expire locks from
/// `expiresAt` on their own).
fn start_controllers(
    args: &Args,
    home: Home,
    (store, subscribers, metrics, audit): (&ViewStore, &Subscribers, &Arc<Metrics>, &AuditSink),
    shutdown: &Shutdown,
) -> anyhow::Result<(JoinHandle<()>, Leadership)> {
    let identity = args
        .pod_name
        .clone()
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| format!("deadbolt-operator-{}", uuid::Uuid::new_v4().simple()));
    let Home {
        client,
        namespace,
        owner,
    } = home;
    let namespace = namespace.as_str();
    let (leadership, election) = if args.leader_election {
        let config = ElectionConfig {
            owner: owner.clone(),
            ..ElectionConfig::new(namespace, &identity)
        };
        tracing::info!(lease = %config.lease_name, namespace, identity, "joining leader election");
        let (leadership, task) =
            leader::elect(client.clone(), config, metrics.clone(), shutdown.clone());
        (leadership, Some(task))
    } else {
        tracing::warn!(
            "leader election is off: run a single replica, or replicas will fight over status"
        );
        metrics.set_leader(true);
        (Leadership::always(), None)
    };
    let reports = controller::replicas::ReportExchange::new(client.clone(), namespace, &identity)
        .with_owner(owner);
    let ctx = controller::Context::new(client)
        .with_instance(identity)
        .with_leadership(leadership.clone())
        .with_audit(audit.clone())
        .with_metrics(metrics.clone())
        .with_settings(Settings {
            expired_lock_retention: args.expired_lock_retention,
        });
    let controllers = tokio::spawn(controller::run(
        Arc::new(ctx),
        store.clone(),
        subscribers.clone(),
        Some(reports),
        shutdown.clone(),
    ));
    let task = tokio::spawn(async move {
        let _ = controllers.await;
        // The audit sink is flushed once everything has stopped (`run`).
        // On shutdown the election steps down (stops writes) and hands the
        // Lease back; a follower takes it when the renewal it last saw lapses.
        if let Some(election) = election {
            let _ = election.await;
        }
    });
    Ok((task, leadership))
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
        "--source dir:PATH needs --ca-dir DIR, where the Deadbolt CA (ca.crt, ca.key) is kept \
         (create it once with `deadbolt-ca --ca-dir DIR init`)",
    )?;
    let ca = ca::load_existing(&DirCaStore::new(ca_dir)).await?;
    log_ca(&ca_dir.display().to_string(), Created::AlreadyExists);
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
    tracing::warn!(
        "standalone mode keeps MFA devices in memory: they are gone when the operator restarts"
    );
    Ok(Started {
        ca,
        devices: Arc::new(MemoryDevices::default()),
        lockout: Arc::new(MemoryLockout::default()),
        tokens: None,
        namespace: None,
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
