//! Leader election: every replica serves the lock view, but only one writes.
//!
//! The leader holds the `coordination.k8s.io/v1` Lease `deadbolt-operator` in
//! the operator's namespace, managed by the `kube-lease-manager` crate (server-side
//! apply with one field manager per replica, so two replicas can never both
//! take the lease). Only the leader writes status, deletes expired objects and
//! creates automatic locks; the others keep their views and caches current so
//! that a failover only has to wait for the lease to lapse.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::Metrics;
use crate::ownership;
use crate::shutdown::Shutdown;

/// The Lease the replicas compete for.
pub const LEASE_NAME: &str = "deadbolt-operator";

/// How long a lease stays valid after its last renewal. A crashed leader is
/// replaced after at most this long.
pub const LEASE_DURATION_SECONDS: u64 = 15;

/// How long before expiry the leader renews; also the clock skew tolerated
/// between nodes.
pub const LEASE_GRACE_SECONDS: u64 = 5;

/// How long a stopping leader waits to hand the lease back.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Retry bounds for building the lease manager (the API server may be down).
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Whether this replica currently leads. Cheap to clone; every clone sees changes.
#[derive(Clone, Debug)]
pub struct Leadership(watch::Receiver<bool>);

/// Sets a [`Leadership`] by hand: the election task uses it, and tests do.
#[derive(Debug)]
pub struct LeadershipSwitch(watch::Sender<bool>);

impl Leadership {
    /// Always the leader: a single replica, `--leader-election=false`, or a test.
    pub fn always() -> Self {
        // The sender is dropped at once: the value stays `true` forever and
        // `gained()` ends immediately.
        let (_, receiver) = watch::channel(true);
        Self(receiver)
    }

    /// A leadership flipped through the returned switch.
    pub fn manual(leader: bool) -> (LeadershipSwitch, Self) {
        let (sender, receiver) = watch::channel(leader);
        (LeadershipSwitch(sender), Self(receiver))
    }

    /// Whether this replica may write now.
    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Yields once each time this replica becomes the leader, so controllers
    /// can reconcile everything they skipped while following.
    pub fn gained(&self) -> impl Stream<Item = ()> + Send + 'static {
        let mut receiver = self.0.clone();
        receiver.mark_unchanged();
        futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                receiver.changed().await.ok()?;
                if *receiver.borrow_and_update() {
                    return Some(((), receiver));
                }
            }
        })
    }
}

impl LeadershipSwitch {
    /// Makes this replica the leader (`true`) or a follower (`false`).
    pub fn set(&self, leader: bool) {
        self.0.send_if_modified(|current| {
            let changed = *current != leader;
            *current = leader;
            changed
        });
    }
}

/// Where and as whom to take part in the election.
#[derive(Clone, Debug, PartialEq)]
pub struct ElectionConfig {
    /// The Lease's name.
    pub lease_name: String,
    /// The Lease's namespace: the operator's own.
    pub namespace: String,
    /// This replica's holder identity, usually its pod name.
    pub identity: String,
    /// Seconds a lease stays valid after its last renewal.
    pub lease_duration_seconds: u64,
    /// Seconds before expiry that the leader renews; less than the duration.
    pub grace_seconds: u64,
    /// The Lease's owner (see [`crate::ownership`]), set once it exists.
    pub owner: Option<OwnerReference>,
}

impl ElectionConfig {
    /// The standard Lease ([`LEASE_NAME`]) in `namespace`, held as `identity`.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            lease_name: LEASE_NAME.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration_seconds: LEASE_DURATION_SECONDS,
            grace_seconds: LEASE_GRACE_SECONDS,
            owner: None,
        }
    }
}

/// Starts taking part in the election. The returned [`Leadership`] starts as
/// a follower and follows the Lease; the task runs until `shutdown`, then
/// steps down and hands the Lease back. (A follower re-reads the Lease only
/// when the renewal it last saw lapses, so a takeover takes up to one lease
/// duration either way; handing it back spares the follower a forced takeover.)
pub fn elect(
    client: Client,
    config: ElectionConfig,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> (Leadership, JoinHandle<()>) {
    let (switch, leadership) = Leadership::manual(false);
    let task = tokio::spawn(async move {
        let mut retry = RETRY_MIN;
        while !shutdown.is_triggered() {
            let manager = tokio::select! {
                _ = shutdown.wait() => break,
                manager = build_manager(client.clone(), &config) => manager,
            };
            match manager {
                Ok(manager) => {
                    retry = RETRY_MIN;
                    adopt_lease(&client, &config).await;
                    follow_lease(manager, &config, &switch, &metrics, &shutdown).await;
                }
                Err(error) => {
                    tracing::warn!(%error, lease = %config.lease_name, namespace = %config.namespace,
                        "cannot take part in leader election; retrying");
                }
            }
            if shutdown.is_triggered() {
                break;
            }
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
        step_down(&switch, &metrics, &config);
    });
    (leadership, task)
}

async fn build_manager(
    client: Client,
    config: &ElectionConfig,
) -> kube_lease_manager::Result<LeaseManager> {
    // `LeaseParams::new` derives the field manager from the identity
    // (`kube-lease-manager-<identity>`), unique per replica, which is what makes
    // concurrent takeovers conflict instead of both succeeding.
    let duration = config.lease_duration_seconds.max(2);
    let grace = config.grace_seconds.clamp(1, duration - 1);
    let params = LeaseParams::new(&config.identity, duration, grace);
    LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_parameters(params)
        .build()
        .await
}

/// Gives the Lease (which building the manager created) its owner.
async fn adopt_lease(client: &Client, config: &ElectionConfig) {
    let Some(owner) = &config.owner else {
        return;
    };
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    if let Err(error) = ownership::adopt(&api, &config.lease_name, owner).await {
        tracing::warn!(%error, lease = %config.lease_name,
            "cannot give the leader Lease its owner; it will outlive the installation");
    }
}

/// Mirrors the lease manager's state into `switch` until shutdown or until
/// the manager's task ends, then releases the Lease.
async fn follow_lease(
    manager: LeaseManager,
    config: &ElectionConfig,
    switch: &LeadershipSwitch,
    metrics: &Metrics,
    shutdown: &Shutdown,
) {
    let (mut state, task) = manager.watch().await;
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            changed = state.changed() => {
                if changed.is_err() {
                    tracing::warn!("the lease manager stopped; rejoining the election");
                    break;
                }
                let leader = *state.borrow_and_update();
                switch.set(leader);
                metrics.set_leader(leader);
                if leader {
                    tracing::info!(identity = %config.identity, lease = %config.lease_name,
                        "became the leader: writing status");
                } else {
                    tracing::warn!(identity = %config.identity, lease = %config.lease_name,
                        "lost the lease: following");
                }
            }
        }
    }
    // Stop writing before the Lease is handed back, never after.
    step_down(switch, metrics, config);
    // Closing the channel makes the manager release the Lease and return.
    drop(state);
    match tokio::time::timeout(RELEASE_TIMEOUT, task).await {
        Ok(Ok(Ok(_))) => tracing::debug!("released the lease"),
        Ok(Ok(Err(error))) => tracing::warn!(%error, "could not release the lease"),
        Ok(Err(error)) => tracing::warn!(%error, "the lease manager failed"),
        Err(_) => tracing::warn!("timed out releasing the lease; it lapses on its own"),
    }
}

fn step_down(switch: &LeadershipSwitch, metrics: &Metrics, config: &ElectionConfig) {
    if *switch.0.borrow() {
        tracing::info!(identity = %config.identity, "stepping down");
    }
    switch.set(false);
    metrics.set_leader(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use std::sync::Mutex;

    const PATIENCE: Duration = Duration::from_secs(60);

    #[test]
    fn always_leads() {
        assert!(Leadership::always().is_leader());
    }

    #[tokio::test]
    async fn gained_yields_each_time_leadership_is_taken() {
        let (switch, leadership) = Leadership::manual(false);
        let mut gained = Box::pin(leadership.gained());
        switch.set(true);
        assert_eq!(gained.next().await, Some(()));
        assert!(leadership.is_leader());
        switch.set(false);
        switch.set(true);
        assert_eq!(gained.next().await, Some(()));
        drop(switch);
        assert_eq!(gained.next().await, None);
    }

    #[tokio::test]
    async fn an_always_leader_never_yields() {
        let mut gained = Box::pin(Leadership::always().gained());
        assert_eq!(gained.next().await, None);
    }

    /// One Lease in an API server that understands what the lease manager
    /// sends: GET, POST, server-side apply (with the field-ownership conflict
    /// that keeps two replicas from both taking the lease) and strategic merge.
    #[derive(Clone, Default)]
    struct FakeLease(Arc<Mutex<LeaseState>>);

    #[derive(Default)]
    struct LeaseState {
        object: Option<Value>,
        holder_manager: Option<String>,
        reads: usize,
    }

    impl FakeLease {
        fn client(&self) -> Client {
            let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
            let fake = self.clone();
            tokio::spawn(async move {
                while let Some((request, send)) = handle.next_request().await {
                    let (status, body) = fake.answer(request).await;
                    send.send_response(
                        Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Body::from(serde_json::to_vec(&body).unwrap()))
                            .unwrap(),
                    );
                }
            });
            Client::new(service, "deadbolt")
        }

        /// Waits until the lease has been read `more` more times than `since`.
        async fn read(&self, since: usize, more: usize) {
            tokio::time::timeout(PATIENCE, async {
                while self.reads() < since + more {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("the lease was never read");
        }

        fn reads(&self) -> usize {
            self.0.lock().unwrap().reads
        }

        fn holder(&self) -> Option<String> {
            let state = self.0.lock().unwrap();
            let holder = &state.object.as_ref()?["spec"]["holderIdentity"];
            holder.as_str().map(str::to_string)
        }

        async fn answer(&self, request: Request<Body>) -> (u16, Value) {
            let method = request.method().clone();
            let uri = request.uri().clone();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            assert!(
                uri.path()
                    .starts_with("/apis/coordination.k8s.io/v1/namespaces/deadbolt/leases"),
                "{uri}"
            );
            let mut state = self.0.lock().unwrap();
            if method == Method::GET {
                state.reads += 1;
            }
            match method {
                Method::GET => match &state.object {
                    Some(lease) => (200, lease.clone()),
                    None => (404, failure(404, "NotFound")),
                },
                Method::POST => {
                    let mut lease = body;
                    lease["metadata"]["resourceVersion"] = json!("1");
                    state.object = Some(lease.clone());
                    (201, lease)
                }
                Method::PATCH => {
                    let Some(lease) = state.object.clone() else {
                        return (404, failure(404, "NotFound"));
                    };
                    let manager = uri
                        .query()
                        .and_then(|query| {
                            query
                                .split('&')
                                .find_map(|pair| pair.strip_prefix("fieldManager="))
                        })
                        .unwrap_or_default()
                        .to_string();
                    let takes_holder = body["spec"]["holderIdentity"].is_string();
                    let held_by_other = lease["spec"]["holderIdentity"].is_string()
                        && state
                            .holder_manager
                            .as_deref()
                            .is_some_and(|owner| owner != manager);
                    if content_type == "application/apply-patch+yaml"
                        && takes_holder
                        && held_by_other
                    {
                        return (409, failure(409, "Conflict"));
                    }
                    let mut lease = lease;
                    if !lease["spec"].is_object() {
                        lease["spec"] = json!({});
                    }
                    for (key, value) in body["spec"].as_object().cloned().unwrap_or_default() {
                        if key == "holderIdentity" {
                            state.holder_manager = value.is_string().then(|| manager.clone());
                        }
                        match value {
                            Value::Null => {
                                lease["spec"].as_object_mut().unwrap().remove(&key);
                            }
                            value => lease["spec"][key] = value,
                        }
                    }
                    state.object = Some(lease.clone());
                    (200, lease)
                }
                other => panic!("unexpected {other} {uri}"),
            }
        }
    }

    fn failure(code: u16, reason: &str) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": reason, "code": code, "message": reason})
    }

    async fn becomes(leadership: &Leadership, leader: bool) {
        let mut receiver = leadership.0.clone();
        tokio::time::timeout(PATIENCE, receiver.wait_for(|current| *current == leader))
            .await
            .expect("leadership never changed")
            .expect("the election ended");
    }

    /// Short leases so that a takeover happens within seconds.
    fn quick(identity: &str) -> ElectionConfig {
        ElectionConfig {
            lease_duration_seconds: 2,
            grace_seconds: 1,
            ..ElectionConfig::new("deadbolt", identity)
        }
    }

    #[tokio::test]
    async fn a_replica_takes_a_free_lease_and_releases_it_on_shutdown() {
        let lease = FakeLease::default();
        let metrics = Arc::new(Metrics::new());
        let (stop, shutdown) = Shutdown::new();
        let (leadership, task) = elect(
            lease.client(),
            quick("replica-a"),
            metrics.clone(),
            shutdown,
        );
        becomes(&leadership, true).await;
        assert_eq!(lease.holder().as_deref(), Some("replica-a"));
        let text = metrics.render(&crate::view::ViewStore::default(), &Default::default());
        assert!(text.contains("deadbolt_leader 1"), "{text}");

        stop.trigger();
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
        assert!(!leadership.is_leader(), "stepped down");
        assert_eq!(lease.holder(), None, "released");
        let text = metrics.render(&crate::view::ViewStore::default(), &Default::default());
        assert!(text.contains("deadbolt_leader 0"), "{text}");
    }

    #[tokio::test]
    async fn a_follower_takes_over_when_the_leader_stops() {
        let lease = FakeLease::default();
        let (stop_a, shutdown_a) = Shutdown::new();
        let (leader_a, task_a) = elect(
            lease.client(),
            quick("replica-a"),
            Arc::new(Metrics::new()),
            shutdown_a,
        );
        becomes(&leader_a, true).await;
        let (stop_b, shutdown_b) = Shutdown::new();
        let reads = lease.reads();
        let (leader_b, task_b) = elect(
            lease.client(),
            quick("replica-b"),
            Arc::new(Metrics::new()),
            shutdown_b,
        );
        // B has found the lease (one read) and seen it held (another).
        lease.read(reads, 2).await;
        assert!(!leader_b.is_leader());
        assert_eq!(lease.holder().as_deref(), Some("replica-a"));

        stop_a.trigger();
        tokio::time::timeout(PATIENCE, task_a)
            .await
            .unwrap()
            .unwrap();
        becomes(&leader_b, true).await;
        assert_eq!(lease.holder().as_deref(), Some("replica-b"));
        stop_b.trigger();
        tokio::time::timeout(PATIENCE, task_b)
            .await
            .unwrap()
            .unwrap();
    }
}
