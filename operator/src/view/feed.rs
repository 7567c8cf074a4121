//! One subscriber's ordered view of the store: a snapshot, then deltas, and a
//! fresh snapshot whenever it fell too far behind to be sent the deltas.

use deadbolt_api::protocol::{Revision, ViewEvent};
use tokio::sync::broadcast::{self, error::RecvError};

use super::ViewStore;

/// Yields [`ViewEvent::Snapshot`] first, then every change in revision order.
///
/// A subscriber that lags past the broadcast capacity is not silently skipped
/// ahead: the feed resubscribes and yields a new snapshot, which replaces the
/// proxy's whole view.
pub struct ViewFeed {
    store: ViewStore,
    receiver: broadcast::Receiver<ViewEvent>,
    pending_snapshot: Option<ViewEvent>,
    position: Revision,
    resyncs: u64,
}

impl ViewFeed {
    /// A feed starting with the store's current snapshot.
    pub fn new(store: ViewStore) -> Self {
        let (snapshot, receiver) = store.subscribe();
        Self {
            store,
            receiver,
            pending_snapshot: Some(ViewEvent::Snapshot(snapshot)),
            position: 0,
            resyncs: 0,
        }
    }

    /// The next event, or `None` once the store is gone. Cancel-safe: dropping
    /// the future before it completes loses nothing.
    pub async fn next(&mut self) -> Option<ViewEvent> {
        loop {
            if let Some(snapshot) = self.pending_snapshot.take() {
                self.position = snapshot.revision();
                return Some(snapshot);
            }
            match self.receiver.recv().await {
                // Deltas the snapshot already covers (cannot happen, cheap to guard).
                Ok(event) if event.revision() <= self.position => continue,
                Ok(event) => {
                    self.position = event.revision();
                    return Some(event);
                }
                Err(RecvError::Lagged(_)) => self.resync(),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The revision of the last event yielded: what a heartbeat reports, so a
    /// proxy never sees a revision it has not been sent.
    pub fn position(&self) -> Revision {
        self.position
    }

    /// How many times the feed fell behind and restarted from a snapshot.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    fn resync(&mut self) {
        let (snapshot, receiver) = self.store.subscribe();
        self.receiver = receiver;
        self.pending_snapshot = Some(ViewEvent::Snapshot(snapshot));
        self.resyncs += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::protocol::ObjectKey;

    use crate::view::fixtures::user_lock as lock;

    #[tokio::test]
    async fn snapshot_first_then_deltas_in_order() {
        let store = ViewStore::default();
        store.upsert(lock("a"));
        let mut feed = ViewFeed::new(store.clone());
        store.upsert(lock("b"));
        store.delete(&ObjectKey::Lock("a".into()));

        let ViewEvent::Snapshot(snapshot) = feed.next().await.unwrap() else {
            panic!("the first event must be a snapshot");
        };
        assert_eq!(snapshot.revision, 1);
        assert_eq!(feed.next().await.unwrap().revision(), 2);
        assert_eq!(feed.next().await.unwrap().revision(), 3);
        assert_eq!(feed.position(), 3);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_resynced_with_a_fresh_snapshot() {
        let store = ViewStore::new(2);
        let mut feed = ViewFeed::new(store.clone());
        assert!(matches!(feed.next().await, Some(ViewEvent::Snapshot(_))));
        for name in ["a", "b", "c", "d", "e"] {
            store.upsert(lock(name));
        }
        let Some(ViewEvent::Snapshot(snapshot)) = feed.next().await else {
            panic!("a lagging feed must resync with a snapshot");
        };
        assert_eq!(snapshot.revision, 5);
        assert_eq!(snapshot.locks.len(), 5);
        assert_eq!(feed.resyncs(), 1);
        store.upsert(lock("f"));
        assert_eq!(feed.next().await.unwrap().revision(), 6);
    }
}
