//! Which proxies are connected to this replica and which revision each has applied.
//!
//! This is what `Lock.status.enforcedBy` reports: of the connected proxies, how
//! many have acked a revision at or after the lock's last change.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use deadbolt_api::protocol::Revision;

/// The registry of connected subscribers. Cheap to clone; clones share state.
#[derive(Clone, Default, Debug)]
pub struct Subscribers {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default, Debug)]
struct Registry {
    next_id: u64,
    connected: HashMap<u64, Entry>,
}

#[derive(Debug)]
struct Entry {
    server_id: String,
    /// Who subscribed (a proxy certificate or a ServiceAccount), for the per-identity cap.
    identity: String,
    acked: Option<Revision>,
}

/// One connected subscriber. Dropping it disconnects it, so a stream that ends
/// for any reason (error, shutdown, panic) never leaves a ghost behind.
#[derive(Debug)]
pub struct Subscriber {
    id: u64,
    server_id: String,
    registry: Subscribers,
}

/// How many connected proxies enforce a lock, out of all connected: `3/3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnforcedBy {
    /// Connected proxies that have acked the lock's last change.
    pub applied: usize,
    /// All connected proxies.
    pub connected: usize,
}

impl fmt::Display for EnforcedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.applied, self.connected)
    }
}

/// What the registry knows about one subscriber, for logs and debugging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// The proxy's server id.
    pub server_id: String,
    /// The last revision it acked, if any.
    pub acked: Option<Revision>,
}

impl Subscribers {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new connection from the proxy `server_id`. Two connections
    /// from the same proxy count twice until one of them ends.
    pub fn connect(&self, server_id: impl Into<String>) -> Subscriber {
        let server_id = server_id.into();
        let identity = server_id.clone();
        self.connect_as(server_id, identity, usize::MAX)
            .expect("no cap")
    }

    /// Registers a new connection from the proxy `server_id` authenticated as
    /// `identity`, unless that identity already has `max_streams` open; the
    /// error says how many it has.
    pub fn connect_as(
        &self,
        server_id: impl Into<String>,
        identity: impl Into<String>,
        max_streams: usize,
    ) -> Result<Subscriber, usize> {
        let server_id = server_id.into();
        let identity = identity.into();
        let mut registry = self.lock();
        let open = registry
            .connected
            .values()
            .filter(|entry| entry.identity == identity)
            .count();
        if open >= max_streams {
            return Err(open);
        }
        registry.next_id += 1;
        let id = registry.next_id;
        registry.connected.insert(
            id,
            Entry {
                server_id: server_id.clone(),
                identity,
                acked: None,
            },
        );
        Ok(Subscriber {
            id,
            server_id,
            registry: self.clone(),
        })
    }

    /// How many subscribers are connected.
    pub fn connected(&self) -> usize {
        self.lock().connected.len()
    }

    /// Every connected subscriber, sorted by server id.
    pub fn list(&self) -> Vec<SubscriberInfo> {
        let mut list: Vec<_> = self
            .lock()
            .connected
            .values()
            .map(|entry| SubscriberInfo {
                server_id: entry.server_id.clone(),
                acked: entry.acked,
            })
            .collect();
        list.sort_by(|a, b| a.server_id.cmp(&b.server_id));
        list
    }

    /// How many connected subscribers have applied a change made at `changed_at`.
    pub fn enforced_by(&self, changed_at: Revision) -> EnforcedBy {
        let registry = self.lock();
        EnforcedBy {
            applied: registry
                .connected
                .values()
                .filter(|entry| entry.acked.is_some_and(|acked| acked >= changed_at))
                .count(),
            connected: registry.connected.len(),
        }
    }

    /// [`Self::enforced_by`] for many locks at once, as `(name, changed_at)`
    /// pairs from [`crate::view::ViewStore::lock_revisions`]. Costs one sort of
    /// the acks plus a binary search per lock.
    pub fn enforced_by_locks(
        &self,
        locks: impl IntoIterator<Item = (String, Revision)>,
    ) -> BTreeMap<String, EnforcedBy> {
        let (mut acked, connected) = {
            let registry = self.lock();
            let acked: Vec<Revision> = registry
                .connected
                .values()
                .filter_map(|entry| entry.acked)
                .collect();
            (acked, registry.connected.len())
        };
        acked.sort_unstable();
        locks
            .into_iter()
            .map(|(name, changed_at)| {
                let below = acked.partition_point(|&revision| revision < changed_at);
                let applied = acked.len() - below;
                (name, EnforcedBy { applied, connected })
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Subscriber {
    /// Records that the proxy applied every change up to `revision`. Acks never
    /// move backwards: an older, reordered ack is ignored. Returns whether the
    /// ack moved this subscriber forward (a repeated or older one does not).
    pub fn ack(&self, revision: Revision) -> bool {
        let mut registry = self.registry.lock();
        let Some(entry) = registry.connected.get_mut(&self.id) else {
            return false;
        };
        let advanced = entry.acked.is_none_or(|acked| revision > acked);
        if advanced {
            entry.acked = Some(revision);
        }
        advanced
    }

    /// The proxy's server id.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.registry.lock().connected.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_connected_subscribers_that_acked_the_change() {
        let subscribers = Subscribers::new();
        let a = subscribers.connect("proxy-a");
        let b = subscribers.connect("proxy-b");
        let _c = subscribers.connect("proxy-c");
        assert_eq!(subscribers.enforced_by(5).to_string(), "0/3");
        a.ack(5);
        b.ack(4);
        assert_eq!(subscribers.enforced_by(5).to_string(), "1/3");
        b.ack(7);
        assert_eq!(subscribers.enforced_by(5).to_string(), "2/3");
        assert_eq!(subscribers.enforced_by(6).to_string(), "1/3");
    }

    #[test]
    fn streams_per_identity_are_capped() {
        let subscribers = Subscribers::new();
        let first = subscribers.connect_as("p", "token:sa", 2).unwrap();
        let _second = subscribers.connect_as("p", "token:sa", 2).unwrap();
        assert_eq!(subscribers.connect_as("p", "token:sa", 2).err(), Some(2));
        assert!(subscribers.connect_as("q", "token:other", 2).is_ok());
        drop(first);
        assert!(subscribers.connect_as("p", "token:sa", 2).is_ok());
    }

    #[test]
    fn acks_never_move_backwards() {
        let subscribers = Subscribers::new();
        let a = subscribers.connect("proxy-a");
        assert!(a.ack(9));
        assert!(!a.ack(3), "an older ack does not advance");
        assert!(!a.ack(9), "a repeated ack does not advance");
        assert_eq!(subscribers.list()[0].acked, Some(9));
        assert!(a.ack(10));
        assert_eq!(subscribers.list()[0].acked, Some(10));
    }

    #[test]
    fn dropping_a_subscriber_disconnects_it() {
        let subscribers = Subscribers::new();
        let a = subscribers.connect("proxy-a");
        a.ack(10);
        let b = subscribers.connect("proxy-b");
        b.ack(10);
        drop(a);
        assert_eq!(subscribers.connected(), 1);
        assert_eq!(subscribers.enforced_by(10).to_string(), "1/1");
        drop(b);
        assert_eq!(subscribers.enforced_by(10).to_string(), "0/0");
    }

    #[test]
    fn batch_aggregation_agrees_with_the_single_lock_one() {
        let subscribers = Subscribers::new();
        let handles: Vec<_> = (1..=4)
            .map(|n| {
                let handle = subscribers.connect(format!("proxy-{n}"));
                if n != 4 {
                    handle.ack(n * 10);
                }
                handle
            })
            .collect();
        let locks = [5, 10, 11, 20, 30, 31].map(|rev| (format!("lock-{rev}"), rev));
        let batch = subscribers.enforced_by_locks(locks.clone());
        for (name, changed_at) in locks {
            assert_eq!(batch[&name], subscribers.enforced_by(changed_at), "{name}");
        }
        assert_eq!(batch["lock-10"].to_string(), "3/4");
        assert_eq!(batch["lock-31"].to_string(), "0/4");
        drop(handles);
    }
}
