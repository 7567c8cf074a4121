//! The view store: current objects, their revisions, and the change broadcast.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use deadbolt_api::LockEntry;
use deadbolt_api::protocol::{
    ClusterConfig, ObjectKey, Revision, RoleRecord, Snapshot, UserRecord, ViewEvent, ViewObject,
};
use jiff::Timestamp;
use tokio::sync::broadcast;

use super::{ViewKind, default_cluster_config};

/// How many deltas a subscriber may fall behind before it is resynced with a snapshot.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// How many recent revisions remember when they were produced, for the
/// propagation-time metric; acks for older revisions are not timed.
pub(crate) const PRODUCED_TIMES: usize = 1024;

/// The current view, shared by the sources that write it and the streams that read it.
///
/// Every effective change takes the next revision and is broadcast while the
/// state lock is held, so [`ViewStore::subscribe`] can hand out a snapshot and
/// a receiver that starts exactly after it: nothing lost, nothing repeated.
#[derive(Clone)]
pub struct ViewStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<ViewEvent>,
    /// When each of the last [`PRODUCED_TIMES`] revisions was produced, oldest
    /// first, consecutive. Its own lock, so timing an ack never waits for a
    /// writer or a snapshot; taken after `state` when both are held.
    produced: Mutex<VecDeque<(Revision, Instant)>>,
}

struct State {
    revision: Revision,
    /// Each lock with the revision at which it last changed (for `enforcedBy`).
    locks: BTreeMap<String, (LockEntry, Revision)>,
    /// The XOR of every lock's hash: equal on two replicas exactly when (but
    /// for a 2^-64 collision) they hold the same locks.
    lock_fingerprint: u64,
    roles: BTreeMap<String, RoleRecord>,
    users: BTreeMap<String, UserRecord>,
    config: ClusterConfig,
}

impl Default for ViewStore {
    fn default() -> Self {
        Self::new(DEFAULT_EVENT_CAPACITY)
    }
}

impl std::fmt::Debug for ViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewStore")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl ViewStore {
    /// An empty view at revision 0 with the default cluster settings.
    /// `capacity` bounds how far a subscriber may lag before it is resynced.
    pub fn new(capacity: usize) -> Self {
        let (events, _) = broadcast::channel(capacity.max(1));
        let state = State {
            revision: 0,
            locks: BTreeMap::new(),
            lock_fingerprint: 0,
            roles: BTreeMap::new(),
            users: BTreeMap::new(),
            config: default_cluster_config(),
        };
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                events,
                produced: Mutex::new(VecDeque::with_capacity(PRODUCED_TIMES)),
            }),
        }
    }

    /// Adds or replaces an object. Returns the new revision, or `None` when
    /// the object was already there unchanged.
    pub fn upsert(&self, object: ViewObject) -> Option<Revision> {
        let mut state = self.lock();
        self.upsert_locked(&mut state, object)
    }

    /// Removes an object. Returns the new revision, or `None` when it was absent.
    pub fn delete(&self, key: &ObjectKey) -> Option<Revision> {
        let mut state = self.lock();
        self.delete_locked(&mut state, key)
    }

    /// Makes the objects of `kinds` exactly `objects`: upserts what changed,
    /// then deletes what is gone (a renamed lock is never briefly absent). A
    /// config kind without a config object falls back to the defaults.
    /// Objects of other kinds are ignored. Returns how many changes were made.
    pub fn replace(&self, kinds: &[ViewKind], objects: Vec<ViewObject>) -> usize {
        let mut state = self.lock();
        let mut changes = 0;
        let mut kept: HashSet<(ViewKind, String)> = HashSet::new();
        let mut config_seen = false;
        for object in objects {
            let kind = ViewKind::of(&object);
            if !kinds.contains(&kind) {
                continue;
            }
            match super::object_key(&object) {
                Some(key) => {
                    kept.insert((kind, key_name(&key).to_string()));
                }
                None => config_seen = true,
            }
            changes += usize::from(self.upsert_locked(&mut state, object).is_some());
        }
        if kinds.contains(&ViewKind::Config) && !config_seen {
            let defaults = ViewObject::Config(default_cluster_config());
            changes += usize::from(self.upsert_locked(&mut state, defaults).is_some());
        }
        for key in state.keys(kinds) {
            let kind = key_kind(&key);
            if !kept.contains(&(kind, key_name(&key).to_string())) {
                changes += usize::from(self.delete_locked(&mut state, &key).is_some());
            }
        }
        changes
    }

    /// The current view and a receiver of every change after it, taken atomically.
    pub fn subscribe(&self) -> (Snapshot, broadcast::Receiver<ViewEvent>) {
        let state = self.lock();
        let receiver = self.inner.events.subscribe();
        let snapshot = Snapshot {
            revision: state.revision,
            locks: state.locks.values().map(|(lock, _)| lock.clone()).collect(),
            roles: state.roles.values().cloned().collect(),
            users: state.users.values().cloned().collect(),
            config: state.config.clone(),
        };
        (snapshot, receiver)
    }

    /// The current view without subscribing.
    pub fn snapshot(&self) -> Snapshot {
        self.subscribe().0
    }

    /// The revision of the latest change.
    pub fn revision(&self) -> Revision {
        self.lock().revision
    }

    /// Each lock's name with the revision at which it last changed: a proxy
    /// that acked at least that revision enforces the lock's current version.
    pub fn lock_revisions(&self) -> Vec<(String, Revision)> {
        self.lock_revisions_and_fingerprint().0
    }

    /// [`Self::lock_revisions`] and the fingerprint of the locks they are of,
    /// taken together: two replicas with one fingerprint hold the same locks.
    pub fn lock_revisions_and_fingerprint(&self) -> (Vec<(String, Revision)>, u64) {
        let state = self.lock();
        let revisions = state
            .locks
            .iter()
            .map(|(name, (_, changed_at))| (name.clone(), *changed_at))
            .collect();
        (revisions, state.lock_fingerprint)
    }

    /// When the store produced `revision`, if it is one of the last 1024
    /// (`PRODUCED_TIMES`): the start of its propagation to the proxies.
    pub fn produced_at(&self, revision: Revision) -> Option<Instant> {
        let produced = self
            .inner
            .produced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Revisions are consecutive, so the position is an offset from the oldest.
        let &(oldest, _) = produced.front()?;
        let index = usize::try_from(revision.checked_sub(oldest)?).ok()?;
        produced
            .get(index)
            .filter(|(at_revision, _)| *at_revision == revision)
            .map(|&(_, at)| at)
    }

    /// A lock by name, e.g. to keep its last good version when a new one is invalid.
    pub fn lock_entry(&self, name: &str) -> Option<LockEntry> {
        self.lock().locks.get(name).map(|(lock, _)| lock.clone())
    }

    /// How many locks are unexpired at `now`.
    pub fn locks_in_force(&self, now: Timestamp) -> usize {
        let state = self.lock();
        state
            .locks
            .values()
            .filter(|(lock, _)| lock.is_in_force(now))
            .count()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a
        // way that matters more than stopping the operator would; keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn upsert_locked(&self, state: &mut State, object: ViewObject) -> Option<Revision> {
        let revision = state.revision + 1;
        let changed = match &object {
            ViewObject::Lock(lock) => {
                if state
                    .locks
                    .get(&lock.name)
                    .is_some_and(|(old, _)| old == lock)
                {
                    false
                } else {
                    if let Some((old, _)) = state
                        .locks
                        .insert(lock.name.clone(), (lock.clone(), revision))
                    {
                        state.lock_fingerprint ^= lock_hash(&old);
                    }
                    state.lock_fingerprint ^= lock_hash(lock);
                    true
                }
            }
            ViewObject::Role(role) => replace_if_changed(&mut state.roles, &role.name, role),
            ViewObject::User(user) => replace_if_changed(&mut state.users, &user.name, user),
            ViewObject::Config(config) => {
                let changed = state.config != *config;
                state.config = config.clone();
                changed
            }
        };
        changed.then(|| self.publish(state, ViewEvent::Upsert { revision, object }))
    }

    fn delete_locked(&self, state: &mut State, key: &ObjectKey) -> Option<Revision> {
        let removed = match key {
            ObjectKey::Lock(name) => match state.locks.remove(name) {
                Some((old, _)) => {
                    state.lock_fingerprint ^= lock_hash(&old);
                    true
                }
                None => false,
            },
            ObjectKey::Role(name) => state.roles.remove(name).is_some(),
            ObjectKey::User(name) => state.users.remove(name).is_some(),
        };
        let revision = state.revision + 1;
        removed.then(|| {
            let key = key.clone();
            self.publish(state, ViewEvent::Delete { revision, key })
        })
    }

    fn publish(&self, state: &mut State, event: ViewEvent) -> Revision {
        state.revision = event.revision();
        {
            let mut produced = self
                .inner
                .produced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if produced.len() == PRODUCED_TIMES {
                produced.pop_front();
            }
            produced.push_back((state.revision, Instant::now()));
        }
        // No receiver is not an error: nobody is subscribed yet.
        let _ = self.inner.events.send(event);
        state.revision
    }
}

impl State {
    fn keys(&self, kinds: &[ViewKind]) -> Vec<ObjectKey> {
        let mut keys = Vec::new();
        if kinds.contains(&ViewKind::Lock) {
            keys.extend(self.locks.keys().cloned().map(ObjectKey::Lock));
        }
        if kinds.contains(&ViewKind::Role) {
            keys.extend(self.roles.keys().cloned().map(ObjectKey::Role));
        }
        if kinds.contains(&ViewKind::User) {
            keys.extend(self.users.keys().cloned().map(ObjectKey::User));
        }
        keys
    }
}

/// One lock's part of the fingerprint. `DefaultHasher::new()` has fixed keys,
/// so replicas of one build agree.
fn lock_hash(lock: &LockEntry) -> u64 {
    let mut hasher = DefaultHasher::new();
    lock.hash(&mut hasher);
    hasher.finish()
}

fn replace_if_changed<T: Clone + PartialEq>(
    map: &mut BTreeMap<String, T>,
    name: &str,
    value: &T,
) -> bool {
    if map.get(name) == Some(value) {
        return false;
    }
    map.insert(name.to_string(), value.clone());
    true
}

fn key_kind(key: &ObjectKey) -> ViewKind {
    match key {
        ObjectKey::Lock(_) => ViewKind::Lock,
        ObjectKey::Role(_) => ViewKind::Role,
        ObjectKey::User(_) => ViewKind::User,
    }
}

fn key_name(key: &ObjectKey) -> &str {
    match key {
        ObjectKey::Lock(name) | ObjectKey::Role(name) | ObjectKey::User(name) => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::{LockingMode, TargetKind};
    use deadbolt_testkit::{lock_entry, target};

    fn lock(name: &str, user: &str) -> LockEntry {
        lock_entry(name, target(TargetKind::User, user)).build()
    }

    fn role(name: &str) -> RoleRecord {
        RoleRecord {
            name: name.into(),
            spec: Default::default(),
        }
    }

    #[test]
    fn each_change_takes_the_next_revision_and_is_broadcast() {
        let store = ViewStore::default();
        let (snapshot, mut events) = store.subscribe();
        assert_eq!(snapshot.revision, 0);
        assert_eq!(store.upsert(ViewObject::Lock(lock("a", "alice"))), Some(1));
        assert_eq!(store.upsert(ViewObject::Role(role("dev"))), Some(2));
        assert_eq!(store.delete(&ObjectKey::Lock("a".into())), Some(3));
        let revisions: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|event| event.revision())
            .collect();
        assert_eq!(revisions, [1, 2, 3]);
        assert_eq!(store.revision(), 3);
    }

    #[test]
    fn unchanged_objects_produce_no_event() {
        let store = ViewStore::default();
        store.upsert(ViewObject::Lock(lock("a", "alice")));
        let (_, mut events) = store.subscribe();
        assert_eq!(store.upsert(ViewObject::Lock(lock("a", "alice"))), None);
        assert_eq!(store.delete(&ObjectKey::User("nobody".into())), None);
        assert_eq!(
            store.upsert(ViewObject::Config(default_cluster_config())),
            None
        );
        assert!(events.try_recv().is_err());
        assert_eq!(store.revision(), 1);
    }

    #[test]
    fn snapshot_and_stream_neither_lose_nor_repeat_a_change() {
        let store = ViewStore::default();
        store.upsert(ViewObject::Lock(lock("a", "alice")));
        let (snapshot, mut events) = store.subscribe();
        store.upsert(ViewObject::Lock(lock("b", "bob")));
        assert_eq!(snapshot.revision, 1);
        assert_eq!(snapshot.locks.len(), 1);
        let next = events.try_recv().unwrap();
        assert_eq!(next.revision(), 2);
    }

    #[test]
    fn replace_diffs_against_the_current_objects_of_those_kinds_only() {
        let store = ViewStore::default();
        store.upsert(ViewObject::Lock(lock("keep", "alice")));
        store.upsert(ViewObject::Lock(lock("gone", "bob")));
        store.upsert(ViewObject::Role(role("dev")));
        let (_, mut events) = store.subscribe();

        let changes = store.replace(
            &[ViewKind::Lock],
            vec![
                ViewObject::Lock(lock("keep", "alice")),
                ViewObject::Lock(lock("new", "carol")),
                ViewObject::Role(role("ignored")),
            ],
        );
        assert_eq!(changes, 2);
        let first = events.try_recv().unwrap();
        assert!(
            matches!(first, ViewEvent::Upsert { object: ViewObject::Lock(ref l), .. } if l.name == "new")
        );
        let second = events.try_recv().unwrap();
        assert_eq!(
            second,
            ViewEvent::Delete {
                revision: 5,
                key: ObjectKey::Lock("gone".into())
            }
        );
        assert!(events.try_recv().is_err());
        assert_eq!(store.snapshot().roles, vec![role("dev")]);
    }

    #[test]
    fn replacing_the_config_kind_without_a_config_restores_defaults() {
        let store = ViewStore::default();
        let strict = ClusterConfig {
            locking_mode: LockingMode::Strict,
            ..default_cluster_config()
        };
        store.upsert(ViewObject::Config(strict));
        assert_eq!(store.replace(&ViewKind::ALL, Vec::new()), 1);
        assert_eq!(store.snapshot().config, default_cluster_config());
    }

    #[test]
    fn the_last_revisions_remember_when_they_were_produced() {
        let store = ViewStore::default();
        assert_eq!(store.produced_at(0), None);
        let before = Instant::now();
        let first = store.upsert(ViewObject::Lock(lock("a", "alice"))).unwrap();
        let second = store.delete(&ObjectKey::Lock("a".into())).unwrap();
        let after = Instant::now();
        let (first_at, second_at) = (
            store.produced_at(first).unwrap(),
            store.produced_at(second).unwrap(),
        );
        assert!(before <= first_at && first_at <= second_at && second_at <= after);
        assert_eq!(store.produced_at(second + 1), None, "not produced yet");
        // Unchanged writes produce no revision.
        store.upsert(ViewObject::Config(default_cluster_config()));
        assert_eq!(store.produced_at(second + 1), None);

        // Only the last PRODUCED_TIMES revisions are remembered.
        for n in 0..PRODUCED_TIMES {
            store.upsert(ViewObject::Lock(lock("b", &format!("user-{n}"))));
        }
        let last = store.revision();
        assert_eq!(last, second + PRODUCED_TIMES as Revision);
        assert_eq!(store.produced_at(first), None);
        assert_eq!(store.produced_at(second), None);
        assert!(
            store
                .produced_at(last - PRODUCED_TIMES as Revision + 1)
                .is_some()
        );
        assert!(store.produced_at(last).is_some());
    }

    #[test]
    fn the_lock_fingerprint_depends_only_on_the_locks_held() {
        let one = ViewStore::default();
        let other = ViewStore::default();
        one.upsert(ViewObject::Lock(lock("a", "alice")));
        one.upsert(ViewObject::Lock(lock("b", "bob")));
        other.upsert(ViewObject::Lock(lock("b", "bob")));
        assert_ne!(
            one.lock_revisions_and_fingerprint().1,
            other.lock_revisions_and_fingerprint().1
        );
        other.upsert(ViewObject::Lock(lock("a", "someone")));
        other.upsert(ViewObject::Lock(lock("a", "alice")));
        assert_eq!(
            one.lock_revisions_and_fingerprint().1,
            other.lock_revisions_and_fingerprint().1,
            "the same locks, reached another way"
        );
        one.delete(&ObjectKey::Lock("a".into()));
        other.delete(&ObjectKey::Lock("a".into()));
        assert_eq!(
            one.lock_revisions_and_fingerprint().1,
            other.lock_revisions_and_fingerprint().1
        );
        one.delete(&ObjectKey::Lock("b".into()));
        assert_eq!(one.lock_revisions_and_fingerprint().1, 0);
    }

    #[test]
    fn lock_revisions_track_the_last_change_of_each_lock() {
        let store = ViewStore::default();
        store.upsert(ViewObject::Lock(lock("a", "alice")));
        store.upsert(ViewObject::Lock(lock("b", "bob")));
        store.upsert(ViewObject::Lock(lock("a", "alice2")));
        assert_eq!(
            store.lock_revisions(),
            vec![("a".to_string(), 3), ("b".to_string(), 2)]
        );
    }
}
