//! The webhook's copy of the operator's view: a [`ViewReplica`], the same type
//! the proxies keep, so roles, locking modes and lock lookups (one hash lookup
//! per target) are computed exactly as the proxies compute them.
//!
//! It follows the [`ViewStore`] by draining the store's change broadcast
//! before every decision. There is no background task, so an answer always
//! reflects every change the store had made when the request arrived.

use std::sync::{Mutex, MutexGuard, PoisonError};

use deadbolt_api::protocol::ViewEvent;
use deadbolt_api::replica::ViewReplica;
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::view::ViewStore;

/// A [`ViewReplica`] kept in step with a [`ViewStore`].
pub struct FollowingReplica {
    store: ViewStore,
    state: Mutex<Follower>,
}

struct Follower {
    replica: ViewReplica,
    events: broadcast::Receiver<ViewEvent>,
}

impl std::fmt::Debug for FollowingReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowingReplica").finish_non_exhaustive()
    }
}

impl FollowingReplica {
    /// A replica of the store as it is now, following every later change.
    pub fn new(store: ViewStore) -> Self {
        let follower = Follower::subscribe(&store);
        Self {
            store,
            state: Mutex::new(follower),
        }
    }

    /// Runs `decide` on the replica once it has caught up with the store.
    /// Keep `decide` short: requests wait on each other here.
    pub fn read<R>(&self, decide: impl FnOnce(&ViewReplica) -> R) -> R {
        let mut state = self.lock();
        state.catch_up(&self.store);
        decide(&state.replica)
    }

    fn lock(&self) -> MutexGuard<'_, Follower> {
        // A panic in `decide` leaves the replica whole: it only reads it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Follower {
    fn subscribe(store: &ViewStore) -> Self {
        let (snapshot, events) = store.subscribe();
        let mut replica = ViewReplica::default();
        // A snapshot always applies.
        let _ = replica.apply(ViewEvent::Snapshot(snapshot));
        Self { replica, events }
    }

    fn catch_up(&mut self, store: &ViewStore) {
        loop {
            match self.events.try_recv() {
                Ok(event) => {
                    if let Err(error) = self.replica.apply(event) {
                        tracing::warn!(%error, "admission view out of step; starting from a snapshot");
                        *self = Self::subscribe(store);
                    }
                }
                Err(TryRecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "admission view lagged; starting from a snapshot");
                    *self = Self::subscribe(store);
                }
                // Closed cannot happen while we hold the store; keep the last view.
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::protocol::ObjectKey;

    use crate::view::fixtures::user_lock as lock;

    #[test]
    fn every_change_made_before_a_read_is_seen() {
        let store = ViewStore::default();
        store.upsert(lock("before"));
        let view = FollowingReplica::new(store.clone());
        store.upsert(lock("after"));
        store.delete(&ObjectKey::Lock("before".into()));
        let (revision, locks) = view.read(|r| (r.revision(), r.locks().len()));
        assert_eq!(revision, Some(3));
        assert_eq!(locks, 1);
    }

    #[test]
    fn a_lagging_follower_starts_over_from_a_snapshot() {
        let store = ViewStore::new(2);
        let view = FollowingReplica::new(store.clone());
        for name in ["a", "b", "c", "d", "e"] {
            store.upsert(lock(name));
        }
        let (revision, locks) = view.read(|r| (r.revision(), r.locks().len()));
        assert_eq!(revision, Some(5));
        assert_eq!(locks, 5);
    }
}
