//! Every known lock, indexed by target: [`LockIndex`] answers "which lock,
//! if any, is in force for these targets" with one hash lookup per target;
//! [`scan`] is the reference answer it must agree with.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;

use super::{LockEntry, Target, TargetKind};

/// The reference answer: scans every lock. The index must agree with it; the
/// property tests and the `lock_check` bench compare the two.
pub fn scan<'a>(
    locks: impl IntoIterator<Item = &'a LockEntry>,
    targets: &[Target],
    now: Timestamp,
) -> Option<&'a LockEntry> {
    locks
        .into_iter()
        .filter(|lock| lock.is_in_force(now) && targets.iter().any(|t| lock.matches(t)))
        .min_by(|a, b| a.precedence().cmp(&b.precedence()))
}

/// Locks sharing one target value, kept in precedence order.
type Bucket = Vec<Arc<LockEntry>>;

/// Every known lock, with a hash index per target kind: checking an
/// interaction costs one lookup per target, not a scan over all locks.
#[derive(Clone, Debug, Default)]
pub struct LockIndex {
    locks: HashMap<String, Arc<LockEntry>>,
    index: [HashMap<String, Bucket>; TargetKind::ALL.len()],
}

impl LockIndex {
    /// A view holding these locks.
    pub fn from_entries(entries: impl IntoIterator<Item = LockEntry>) -> Self {
        let mut view = Self::default();
        for entry in entries {
            view.upsert(entry);
        }
        view
    }

    /// Adds or replaces a lock by name. Returns the previous version.
    pub fn upsert(&mut self, entry: LockEntry) -> Option<Arc<LockEntry>> {
        let previous = self.remove(&entry.name);
        let entry = Arc::new(entry);
        for (kind, value) in entry.target.fields() {
            let bucket = self.index[kind.index()]
                .entry(value.to_string())
                .or_default();
            let position = bucket
                .binary_search_by(|probe| probe.precedence().cmp(&entry.precedence()))
                .unwrap_or_else(|insert_at| insert_at);
            bucket.insert(position, Arc::clone(&entry));
        }
        self.locks.insert(entry.name.clone(), entry);
        previous
    }

    /// Removes a lock by name. Returns it if it was present.
    pub fn remove(&mut self, name: &str) -> Option<Arc<LockEntry>> {
        let entry = self.locks.remove(name)?;
        for (kind, value) in entry.target.fields() {
            let index = &mut self.index[kind.index()];
            if let Some(bucket) = index.get_mut(value) {
                bucket.retain(|lock| lock.name != name);
                if bucket.is_empty() {
                    index.remove(value);
                }
            }
        }
        Some(entry)
    }

    /// The lock reported for an interaction: among the in-force locks matching
    /// any target, the one with the highest precedence (oldest, then by name).
    pub fn find_in_force(&self, targets: &[Target], now: Timestamp) -> Option<&LockEntry> {
        targets
            .iter()
            .filter_map(|target| {
                self.index[target.kind.index()]
                    .get(target.value.as_str())?
                    .iter()
                    .find(|lock| lock.is_in_force(now))
            })
            .min_by(|a, b| a.precedence().cmp(&b.precedence()))
            .map(Arc::as_ref)
    }

    /// A lock by name.
    pub fn get(&self, name: &str) -> Option<&LockEntry> {
        self.locks.get(name).map(Arc::as_ref)
    }

    /// All locks, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &LockEntry> {
        self.locks.values().map(Arc::as_ref)
    }

    /// How many locks the view holds, expired ones included.
    pub fn len(&self) -> usize {
        self.locks.len()
    }

    /// Whether the view holds no lock.
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// Removes every lock, e.g. before a fresh snapshot is applied.
    pub fn clear(&mut self) {
        self.locks.clear();
        self.index.iter_mut().for_each(HashMap::clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::LockTargetSpec;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn user_target(user: &str) -> LockTargetSpec {
        LockTargetSpec {
            user: Some(user.into()),
            ..Default::default()
        }
    }

    #[test]
    fn oldest_matching_lock_is_reported_and_expired_ones_skipped() {
        let entry = |name: &str, created, expires_at| LockEntry {
            name: name.into(),
            target: user_target("alice"),
            message: None,
            created: ts(created),
            expires_at,
        };
        let mut view = LockIndex::default();
        view.upsert(entry("newer", 20, None));
        view.upsert(entry("oldest-expired", 5, Some(ts(15))));
        view.upsert(entry("older", 10, None));
        let alice = [Target::new(TargetKind::User, "alice")];
        assert_eq!(
            view.find_in_force(&alice, ts(10)).unwrap().name,
            "oldest-expired"
        );
        assert_eq!(view.find_in_force(&alice, ts(15)).unwrap().name, "older");
        view.remove("older");
        assert_eq!(view.find_in_force(&alice, ts(15)).unwrap().name, "newer");
        view.upsert(entry("newer", 20, Some(ts(16))));
        assert!(view.find_in_force(&alice, ts(16)).is_none());
        assert_eq!(view.len(), 2);
    }

    #[test]
    fn upsert_reindexes_a_changed_target() {
        let mut view = LockIndex::default();
        let mut entry = LockEntry {
            name: "l".into(),
            target: user_target("alice"),
            message: None,
            created: ts(0),
            expires_at: None,
        };
        view.upsert(entry.clone());
        entry.target = user_target("bob");
        view.upsert(entry);
        let now = ts(1);
        assert!(
            view.find_in_force(&[Target::new(TargetKind::User, "alice")], now)
                .is_none()
        );
        assert!(
            view.find_in_force(&[Target::new(TargetKind::User, "bob")], now)
                .is_some()
        );
    }
}
