//! Controllers: status, expiry, temporary and suspended users, role checks.
//!
//! One kube-runtime `Controller` per kind ([`lock`], [`user`], [`role`],
//! [`cap`]), each with a reconcile function that takes the object and a
//! shared [`Context`]. They run in every replica so caches stay warm, but only
//! the leader ([`crate::leader`]) writes; a replica that becomes leader
//! reconciles everything at once.
//!
//! Two helpers feed them from the operator's own state rather than the API:
//! [`lock_index::follow`] mirrors the view's locks (for `User.status.locked`,
//! and `lock.deleted` audit events), and [`enforcement::track`] folds proxy
//! acks into `Lock.status.enforcedBy`.
//!
//! With `--source dir:` there is no Kubernetes and the controllers do not run;
//! lock expiry is still enforced because proxies compare `expiresAt` themselves.

pub mod audit;
pub mod cap;
mod context;
pub mod enforcement;
pub mod lock;
pub mod lock_index;
pub mod replicas;
pub mod role;
pub mod status;
pub mod trigger;
pub mod user;

pub use audit::{AuditBuffer, AuditSink};
pub use context::{Context, Settings};
pub use deadbolt_runtime::clock::{Clock, ManualClock, SystemClock};

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::resources::CLUSTER_AUTH_PREFERENCE_NAME;
use deadbolt_api::{AccessRole, ClusterAuthPreference, Lock, User};
use futures::{FutureExt, Stream, StreamExt};
use jiff::Timestamp;
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tracing::Instrument;

use self::trigger::Trigger;
use crate::shutdown::Shutdown;
use crate::subscribers::Subscribers;
use crate::view::ViewStore;

/// How long to wait before retrying a failed reconcile.
pub const ERROR_REQUEUE: Duration = Duration::from_secs(10);

/// Why a reconcile failed; it is retried after [`ERROR_REQUEUE`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// The `error` label of `deadbolt_reconcile_failures_total`: few values,
    /// so the series stay few (`api_409`, `api_403`, …, or `transport`).
    pub fn metric_label(&self) -> String {
        match self {
            Self::Kube(kube::Error::Api(status)) => format!("api_{}", status.code),
            Self::Kube(_) => "transport".into(),
        }
    }
}

/// Runs `reconcile` for `object` in a span naming its kind, name and
/// generation (every log line inside carries them), and records the run and
/// its duration (`deadbolt_reconcile_*`).
async fn instrumented<K, F, Fut>(
    object: Arc<K>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let kind = K::kind(&()).to_string();
    let span = tracing::info_span!(
        "reconcile",
        kind = %kind,
        name = %object.name_any(),
        generation = object.meta().generation,
    );
    let started = std::time::Instant::now();
    let result = reconcile(object, ctx.clone()).instrument(span).await;
    ctx.metrics.reconcile.observe(&kind, started.elapsed());
    result
}

/// The time from `now` until `at`, zero when it has passed.
pub fn duration_until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// Logs and counts a failed reconcile, then retries it later.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let kind = K::kind(&());
    ctx.metrics.reconcile_errors.inc();
    ctx.metrics.reconcile.fail(&kind, &error.metric_label());
    tracing::warn!(%kind, name = %object.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs every controller and helper until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    store: ViewStore,
    subscribers: Subscribers,
    reports: Option<replicas::ReportExchange>,
    shutdown: Shutdown,
) {
    let client = ctx.client.clone();
    let users_changed = Trigger::default();
    let locks_changed = Trigger::default();
    let watch_all = || watcher::Config::default().any_semantic();

    let locks = Controller::new(Api::<Lock>::all(client.clone()), watch_all())
        .reconcile_all_on(ctx.leadership.gained())
        .reconcile_all_on(locks_changed.stream())
        .graceful_shutdown_on(stopped(&shutdown))
        .run(
            |object, ctx| instrumented(object, ctx, lock::reconcile),
            error_policy,
            ctx.clone(),
        );
    let users = Controller::new(Api::<User>::all(client.clone()), watch_all())
        // An automatic lock that changes or disappears wakes its owner.
        .owns(
            Api::<Lock>::all(client.clone()),
            watch_all().labels(user::AUTO_LOCK_LABEL),
        )
        .reconcile_all_on(ctx.leadership.gained())
        .reconcile_all_on(users_changed.stream())
        .graceful_shutdown_on(stopped(&shutdown))
        .run(
            |object, ctx| instrumented(object, ctx, user::reconcile),
            error_policy,
            ctx.clone(),
        );
    let roles = Controller::new(Api::<AccessRole>::all(client.clone()), watch_all())
        .reconcile_all_on(ctx.leadership.gained())
        .graceful_shutdown_on(stopped(&shutdown))
        .run(
            |object, ctx| instrumented(object, ctx, role::reconcile),
            error_policy,
            ctx.clone(),
        );
    let singleton = watch_all().fields(&format!("metadata.name={CLUSTER_AUTH_PREFERENCE_NAME}"));
    let caps = Controller::new(Api::<ClusterAuthPreference>::all(client), singleton)
        .reconcile_all_on(ctx.leadership.gained())
        .graceful_shutdown_on(stopped(&shutdown))
        .run(
            |object, ctx| instrumented(object, ctx, cap::reconcile),
            error_policy,
            ctx.clone(),
        );

    let follow = lock_index::follow(ctx.clone(), store.clone(), users_changed, shutdown.clone());
    let track = enforcement::track(
        ctx.enforcement.clone(),
        store,
        subscribers,
        ctx.leadership.clone(),
        locks_changed,
        reports,
        enforcement::ENFORCEMENT_INTERVAL,
        shutdown,
    );
    tracing::info!("controllers started");
    futures::join!(
        drain("Lock", locks),
        drain("User", users),
        drain("AccessRole", roles),
        drain("ClusterAuthPreference", caps),
        follow,
        track,
    );
}

/// A `Send + Sync` future that resolves at shutdown, as `graceful_shutdown_on` wants.
fn stopped(shutdown: &Shutdown) -> impl Future<Output = ()> + Send + Sync + 'static {
    let (done, stop) = futures::channel::oneshot::channel::<()>();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        shutdown.wait().await;
        let _ = done.send(());
    });
    stop.map(|_| ())
}

/// Consumes a controller's results: reconcile failures were already logged
/// by [`error_policy`]; watch failures are logged here (the watch retries).
async fn drain<K: Debug>(
    kind: &'static str,
    results: impl Stream<Item = Result<(K, Action), ControllerError<Error, watcher::Error>>>,
) {
    results
        .for_each(|result| async move {
            match result {
                Ok((object, action)) => tracing::debug!(kind, ?object, ?action, "reconciled"),
                Err(ControllerError::QueueError(error)) => {
                    tracing::warn!(kind, %error, "watch failed; retrying");
                }
                Err(error) => tracing::debug!(kind, %error, "not reconciled"),
            }
        })
        .await;
    tracing::info!(kind, "controller stopped");
}
