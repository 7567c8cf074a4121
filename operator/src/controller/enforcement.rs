//! `Lock.status.enforcedBy`: how many connected proxies have applied each lock.
//!
//! The acks live in [`Subscribers`]; [`track`] turns them into per-lock counts
//! once per tick and, when any count changed, wakes the Lock controller, which
//! writes the new value with the rest of the status. So a lock's status is
//! written at most once per tick for acks, and only when its value changed.
//!
//! The counts cover the proxies connected to *this* replica (the leader's);
//! proxies streaming from another replica are not counted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::trigger::Trigger;
use crate::leader::Leadership;
use crate::shutdown::Shutdown;
use crate::subscribers::{EnforcedBy, Subscribers};
use crate::view::ViewStore;

/// How often acks are folded into `enforcedBy`: also the fastest a lock's
/// status is rewritten because of acks.
pub const ENFORCEMENT_INTERVAL: Duration = Duration::from_secs(1);

/// The latest per-lock counts. Cheap to clone; clones share.
#[derive(Clone, Debug, Default)]
pub struct Enforcement(Arc<Mutex<BTreeMap<String, EnforcedBy>>>);

impl Enforcement {
    /// The count for one lock, once it has been computed.
    pub fn get(&self, lock: &str) -> Option<EnforcedBy> {
        self.lock().get(lock).copied()
    }

    /// Sets one lock's count (tests, and locks the tracker has not seen yet).
    pub fn set(&self, lock: impl Into<String>, enforced_by: EnforcedBy) {
        self.lock().insert(lock.into(), enforced_by);
    }

    /// Recomputes every lock's count; returns whether any changed.
    pub fn refresh(&self, store: &ViewStore, subscribers: &Subscribers) -> bool {
        let counts = subscribers.enforced_by_locks(store.lock_revisions());
        let mut current = self.lock();
        if *current == counts {
            return false;
        }
        *current = counts;
        true
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, EnforcedBy>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Refreshes `enforcement` every `interval` while leading, firing `locks` when
/// a count changed, until shutdown.
pub async fn track(
    enforcement: Enforcement,
    store: ViewStore,
    subscribers: Subscribers,
    leadership: Leadership,
    locks: Trigger,
    interval: Duration,
    shutdown: Shutdown,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = ticks.tick() => {}
        }
        if leadership.is_leader() && enforcement.refresh(&store, &subscribers) {
            locks.fire();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::view::fixtures::user_lock as lock;

    #[test]
    fn refresh_reports_changes_only() {
        let store = ViewStore::default();
        let subscribers = Subscribers::new();
        let enforcement = Enforcement::default();
        let revision = store.upsert(lock("a")).unwrap();
        let proxy = subscribers.connect("proxy-1");
        assert!(enforcement.refresh(&store, &subscribers));
        assert_eq!(enforcement.get("a").unwrap().to_string(), "0/1");
        assert!(
            !enforcement.refresh(&store, &subscribers),
            "nothing changed"
        );
        proxy.ack(revision);
        assert!(enforcement.refresh(&store, &subscribers));
        assert_eq!(enforcement.get("a").unwrap().to_string(), "1/1");
    }

    #[tokio::test(start_paused = true)]
    async fn the_tracker_wakes_the_lock_controller_only_while_leading() {
        use futures::StreamExt;
        let store = ViewStore::default();
        store.upsert(lock("a"));
        let subscribers = Subscribers::new();
        let enforcement = Enforcement::default();
        let (switch, leadership) = Leadership::manual(false);
        let trigger = Trigger::default();
        let mut woken = Box::pin(trigger.stream());
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(track(
            enforcement.clone(),
            store,
            subscribers.clone(),
            leadership,
            trigger,
            ENFORCEMENT_INTERVAL,
            shutdown,
        ));
        let _proxy = subscribers.connect("proxy-1");
        tokio::time::sleep(ENFORCEMENT_INTERVAL * 3).await;
        assert!(enforcement.get("a").is_none(), "followers do not track");
        switch.set(true);
        assert_eq!(woken.next().await, Some(()));
        assert_eq!(enforcement.get("a").unwrap().to_string(), "0/1");
        stop.trigger();
        task.await.unwrap();
    }
}
