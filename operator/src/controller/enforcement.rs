//! `Lock.status.enforcedBy`: how many connected proxies have applied each lock.
//!
//! The acks live in [`Subscribers`]; [`track`] turns them into per-lock counts
//! once per tick and, when any count changed, wakes the Lock controller, which
//! writes the new value with the rest of the status. So a lock's status is
//! written at most once per tick for acks, and only when its value changed.
//!
//! Every replica publishes what its own proxies have applied
//! ([`super::replicas`]); the leader adds the other replicas' fresh reports to
//! its own counts, so `3/3` means three proxies over all replicas.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::replicas::{Report, ReportExchange};
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

    /// Recomputes every lock's count from this replica's subscribers and the
    /// other replicas' reports; returns whether any changed.
    pub fn refresh(&self, store: &ViewStore, subscribers: &Subscribers, peers: &[Report]) -> bool {
        self.combine(&LocalCounts::of(store, subscribers), peers)
    }

    /// Sets every lock's count to this replica's `local` one plus what the
    /// `peers` report; returns whether any changed.
    fn combine(&self, local: &LocalCounts, peers: &[Report]) -> bool {
        let elsewhere: usize = peers.iter().map(|peer| peer.connected).sum();
        let counts: BTreeMap<String, EnforcedBy> = local
            .counts
            .iter()
            .map(|(name, own)| {
                let applied = peers
                    .iter()
                    .map(|peer| peer.applied(name, local.fingerprint))
                    .sum::<usize>();
                let total = EnforcedBy {
                    applied: own.applied + applied,
                    connected: own.connected + elsewhere,
                };
                (name.clone(), total)
            })
            .collect();
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

/// This replica's own counts, taken once per tick for both its report and,
/// when it leads, the combined counts.
struct LocalCounts {
    counts: BTreeMap<String, EnforcedBy>,
    connected: usize,
    fingerprint: u64,
}

impl LocalCounts {
    fn of(store: &ViewStore, subscribers: &Subscribers) -> Self {
        let (revisions, fingerprint) = store.lock_revisions_and_fingerprint();
        Self {
            counts: subscribers.enforced_by_locks(revisions),
            connected: subscribers.connected(),
            fingerprint,
        }
    }
}

/// Every `interval` until shutdown: publishes this replica's report through
/// `exchange` (when there is one) and, while leading, refreshes `enforcement`
/// with the other replicas' reports, firing `locks` when a count changed.
#[allow(clippy::too_many_arguments)]
pub async fn track(
    enforcement: Enforcement,
    store: ViewStore,
    subscribers: Subscribers,
    leadership: Leadership,
    locks: Trigger,
    exchange: Option<ReportExchange>,
    interval: Duration,
    shutdown: Shutdown,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = ticks.tick() => {}
        }
        if exchange.is_none() && !leadership.is_leader() {
            continue;
        }
        let local = LocalCounts::of(&store, &subscribers);
        let mut peers = Vec::new();
        if let Some(exchange) = &exchange {
            let own = Report::new(&local.counts, local.connected, local.fingerprint);
            if let Err(error) = exchange.publish(&own).await {
                tracing::warn!(%error, "cannot publish this replica's enforcement report");
            }
            if leadership.is_leader() {
                match exchange.peers(jiff::Timestamp::now()).await {
                    Ok(reports) => peers = reports,
                    Err(error) => {
                        // Without the others' reports the counts would drop; keep the last.
                        tracing::warn!(%error, "cannot read the other replicas' enforcement reports");
                        continue;
                    }
                }
            }
        }
        if leadership.is_leader() && enforcement.combine(&local, &peers) {
            locks.fire();
        }
    }
    if let Some(exchange) = &exchange {
        exchange.withdraw().await;
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
        assert!(enforcement.refresh(&store, &subscribers, &[]));
        assert_eq!(enforcement.get("a").unwrap().to_string(), "0/1");
        assert!(
            !enforcement.refresh(&store, &subscribers, &[]),
            "nothing changed"
        );
        proxy.ack(revision);
        assert!(enforcement.refresh(&store, &subscribers, &[]));
        assert_eq!(enforcement.get("a").unwrap().to_string(), "1/1");
    }

    #[test]
    fn other_replicas_reports_are_added() {
        let store = ViewStore::default();
        let subscribers = Subscribers::new();
        let enforcement = Enforcement::default();
        let revision = store.upsert(lock("a")).unwrap();
        store.upsert(lock("b"));
        let proxy = subscribers.connect("proxy-1");
        proxy.ack(revision);
        let (_, fingerprint) = store.lock_revisions_and_fingerprint();
        let in_step = Report {
            connected: 2,
            fingerprint,
            lagging: [("b".to_string(), 1)].into(),
        };
        let behind = Report {
            connected: 3,
            fingerprint: fingerprint ^ 1,
            lagging: Default::default(),
        };
        assert!(enforcement.refresh(&store, &subscribers, &[in_step, behind]));
        assert_eq!(enforcement.get("a").unwrap().to_string(), "3/6");
        assert_eq!(enforcement.get("b").unwrap().to_string(), "1/6");
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
            None,
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
