//! The `kube` source: watches Locks, AccessRoles, Users and the
//! ClusterAuthPreference and mirrors them into the view.
//!
//! Each kind has its own watcher. A (re)list is buffered from `Init` to
//! `InitDone` and applied with [`ViewStore::replace`], so objects deleted while
//! the watch was down disappear, and the view never passes through a
//! half-listed state.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadbolt_api::protocol::{ObjectKey, ViewObject};
use deadbolt_api::resources::CLUSTER_AUTH_PREFERENCE_NAME;
use deadbolt_api::{AccessRole, ClusterAuthPreference, Lock, LockEntry, User};
use futures::StreamExt;
use jiff::Timestamp;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::admin::{Metrics, Readiness};
use crate::shutdown::Shutdown;
use crate::view::{
    ViewKind, ViewStore, cluster_config, default_cluster_config, role_record, user_record,
};

/// A watched resource and how it maps into the view.
trait Watched: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static {
    /// Its kind in the view.
    const KIND: ViewKind;

    /// The view object, or why it cannot be one. `store` supplies the last good
    /// version to keep when a new one is invalid.
    fn to_object(&self, store: &ViewStore) -> Result<ViewObject, String>;

    /// What to delete when the object goes; `None` resets the config singleton.
    fn key(&self) -> Option<ObjectKey>;
}

impl Watched for Lock {
    const KIND: ViewKind = ViewKind::Lock;

    fn to_object(&self, _: &ViewStore) -> Result<ViewObject, String> {
        // The API server always sets creationTimestamp; `now` is only a formality.
        LockEntry::from_lock(self, Timestamp::now())
            .map(ViewObject::Lock)
            .map_err(|error| error.to_string())
    }

    fn key(&self) -> Option<ObjectKey> {
        Some(ObjectKey::Lock(self.name_any()))
    }
}

impl Watched for AccessRole {
    const KIND: ViewKind = ViewKind::Role;

    fn to_object(&self, _: &ViewStore) -> Result<ViewObject, String> {
        role_record(self)
            .map(ViewObject::Role)
            .map_err(|error| error.to_string())
    }

    fn key(&self) -> Option<ObjectKey> {
        Some(ObjectKey::Role(self.name_any()))
    }
}

impl Watched for User {
    const KIND: ViewKind = ViewKind::User;

    fn to_object(&self, _: &ViewStore) -> Result<ViewObject, String> {
        user_record(self)
            .map(ViewObject::User)
            .map_err(|error| error.to_string())
    }

    fn key(&self) -> Option<ObjectKey> {
        Some(ObjectKey::User(self.name_any()))
    }
}

impl Watched for ClusterAuthPreference {
    const KIND: ViewKind = ViewKind::Config;

    fn to_object(&self, _: &ViewStore) -> Result<ViewObject, String> {
        Ok(ViewObject::Config(cluster_config(&self.spec)))
    }

    fn key(&self) -> Option<ObjectKey> {
        None
    }
}

/// Counts kinds that finished their first list; ready when all have.
#[derive(Clone)]
struct InitialSync {
    remaining: Arc<AtomicUsize>,
    readiness: Readiness,
}

impl InitialSync {
    fn done_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            tracing::info!("initial sync complete; serving the lock view");
            self.readiness.set_ready();
        }
    }
}

/// Watches every kind until shutdown. Watch errors are retried with backoff
/// and counted in `deadbolt_source_errors_total`.
pub async fn run(
    client: Client,
    store: ViewStore,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let sync = InitialSync {
        remaining: Arc::new(AtomicUsize::new(4)),
        readiness,
    };
    let only_the_singleton =
        watcher::Config::default().fields(&format!("metadata.name={CLUSTER_AUTH_PREFERENCE_NAME}"));
    let watches = futures::future::join4(
        watch_kind::<Lock>(
            Api::all(client.clone()),
            watcher::Config::default(),
            &store,
            &metrics,
            &sync,
        ),
        watch_kind::<AccessRole>(
            Api::all(client.clone()),
            watcher::Config::default(),
            &store,
            &metrics,
            &sync,
        ),
        watch_kind::<User>(
            Api::all(client.clone()),
            watcher::Config::default(),
            &store,
            &metrics,
            &sync,
        ),
        watch_kind::<ClusterAuthPreference>(
            Api::all(client),
            only_the_singleton,
            &store,
            &metrics,
            &sync,
        ),
    );
    tokio::select! {
        _ = shutdown.wait() => {}
        _ = watches => tracing::error!("the Kubernetes watches ended unexpectedly"),
    }
}

async fn watch_kind<K: Watched>(
    api: Api<K>,
    config: watcher::Config,
    store: &ViewStore,
    metrics: &Metrics,
    sync: &InitialSync,
) {
    let mut listed: Option<Vec<ViewObject>> = None;
    let mut synced = false;
    let mut failing = false;
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        sync.readiness.set_watch_failing(failing, event.is_err());
        failing = event.is_err();
        match event {
            Ok(Event::Init) => listed = Some(Vec::new()),
            Ok(Event::InitApply(object)) => {
                if let Some(object) = convert(&object, store, metrics) {
                    listed.get_or_insert_with(Vec::new).push(object);
                } else if let Some(kept) = last_good(&object, store) {
                    listed.get_or_insert_with(Vec::new).push(kept);
                }
            }
            Ok(Event::InitDone) => {
                let objects = listed.take().unwrap_or_default();
                let changes = store.replace(&[K::KIND], objects);
                tracing::info!(kind = ?K::KIND, changes, "listed");
                if !synced {
                    synced = true;
                    sync.done_one();
                }
            }
            Ok(Event::Apply(object)) => {
                if let Some(object) = convert(&object, store, metrics) {
                    store.upsert(object);
                }
            }
            Ok(Event::Delete(object)) => match object.key() {
                Some(key) => {
                    store.delete(&key);
                }
                None => {
                    store.upsert(ViewObject::Config(default_cluster_config()));
                }
            },
            Err(error) => {
                metrics.source_errors.inc();
                tracing::warn!(kind = ?K::KIND, %error, "watch failed; retrying");
            }
        }
    }
}

/// The view object for `object`, or `None` (logged) when it is invalid, in
/// which case the view keeps the object's last good version.
fn convert<K: Watched>(object: &K, store: &ViewStore, metrics: &Metrics) -> Option<ViewObject> {
    match object.to_object(store) {
        Ok(converted) => Some(converted),
        Err(error) => {
            metrics.source_errors.inc();
            tracing::error!(kind = ?K::KIND, name = %object.name_any(), %error,
                "invalid object; keeping its last good version");
            None
        }
    }
}

/// The version of an invalid lock the view already has, so a relist does not
/// drop a lock just because its new version cannot be read.
fn last_good<K: Watched>(object: &K, store: &ViewStore) -> Option<ViewObject> {
    match object.key()? {
        ObjectKey::Lock(name) => store.lock_entry(&name).map(ViewObject::Lock),
        ObjectKey::Role(_) | ObjectKey::User(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use std::time::Duration;

    fn lock(name: &str, target: serde_json::Value, resource_version: &str) -> serde_json::Value {
        json!({
            "apiVersion": "deadbolt.dev/v1", "kind": "Lock",
            "metadata": {"name": name, "resourceVersion": resource_version,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"target": target, "ttl": "1h"},
        })
    }

    fn list(kind: &str, items: Vec<serde_json::Value>) -> serde_json::Value {
        json!({
            "apiVersion": "deadbolt.dev/v1", "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": "10"},
            "items": items,
        })
    }

    fn respond(body: Vec<u8>) -> Response<Body> {
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    /// A fake API server: lists, then one batch of lock watch events; other
    /// watches are held open (never answered) so the watchers stay put.
    async fn apiserver(mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>) {
        let mut held = Vec::new();
        let mut lock_watches = 0;
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            let kind = path.rsplit('/').next().unwrap_or_default().to_string();
            if !query.contains("watch=true") {
                let body = match kind.as_str() {
                    "locks" => list(
                        "Lock",
                        vec![
                            lock("alice", json!({"user": "alice"}), "1"),
                            lock("broken", json!({}), "2"),
                        ],
                    ),
                    "accessroles" => list(
                        "AccessRole",
                        vec![
                            json!({"apiVersion": "deadbolt.dev/v1", "kind": "AccessRole",
                                    "metadata": {"name": "dev"}, "spec": {}}),
                        ],
                    ),
                    "users" => list("User", vec![]),
                    "clusterauthpreferences" => {
                        assert!(
                            query.contains("fieldSelector=metadata.name%3Dcluster-auth-preference"),
                            "{query}"
                        );
                        list(
                            "ClusterAuthPreference",
                            vec![json!({"apiVersion": "deadbolt.dev/v1",
                                "kind": "ClusterAuthPreference",
                                "metadata": {"name": "cluster-auth-preference"},
                                "spec": {"lockingMode": "strict"}})],
                        )
                    }
                    other => panic!("unexpected list of {other}"),
                };
                send.send_response(respond(serde_json::to_vec(&body).unwrap()));
            } else if kind == "locks" && lock_watches == 0 {
                lock_watches += 1;
                let events = [
                    json!({"type": "ADDED", "object": lock("bob", json!({"user": "bob"}), "11")}),
                    json!({"type": "DELETED", "object": lock("alice", json!({"user": "alice"}), "12")}),
                ];
                let mut body = Vec::new();
                for event in events {
                    body.extend(serde_json::to_vec(&event).unwrap());
                    body.push(b'\n');
                }
                send.send_response(respond(body));
            } else {
                held.push(send);
            }
        }
    }

    #[tokio::test]
    async fn mirrors_the_cluster_into_the_view() {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(apiserver(handle));
        let store = ViewStore::default();
        let readiness = Readiness::new();
        let metrics = Arc::new(Metrics::new());
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(run(
            Client::new(service, "default"),
            store.clone(),
            readiness.clone(),
            metrics.clone(),
            shutdown,
        ));

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let lock_names = || -> Vec<String> {
            store
                .snapshot()
                .locks
                .into_iter()
                .map(|lock| lock.name)
                .collect()
        };
        while !(readiness.is_ready() && lock_names() == ["bob"]) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the view never matched the cluster: ready={} locks={:?}",
                readiness.is_ready(),
                lock_names()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let snapshot = store.snapshot();
        assert_eq!(snapshot.roles.len(), 1);
        assert_eq!(
            snapshot.config.locking_mode,
            deadbolt_api::LockingMode::Strict
        );
        let bob = &snapshot.locks[0];
        assert_eq!(
            bob.expires_at,
            Some("2026-01-01T01:00:00Z".parse().unwrap()),
            "ttl counts from creationTimestamp"
        );
        assert!(
            metrics.source_errors.get() >= 1,
            "the invalid lock is counted"
        );

        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}
