use std::collections::HashMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Target, TargetKind};
use crate::duration::{self, DurationError};
use crate::resources::{Lock, LockTargetSpec};

/// A lock as the engine and the lock-view stream carry it: the target, the
/// message and an absolute expiry, so proxies never redo the ttl arithmetic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct LockEntry {
    /// The Lock's name.
    pub name: String,
    /// What it locks.
    pub target: LockTargetSpec,
    /// The administrator's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was created; the tie-breaker between matching locks and the ttl origin.
    pub created: Timestamp,
    /// When it stops being in force; `None` holds until deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// Why a Lock could not become a [`LockEntry`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// The target has no field set, so it would match nothing.
    #[error("lock {0:?} has an empty target")]
    EmptyTarget(String),
    /// `expires` and `ttl` are both set.
    #[error("lock {0:?} sets both expires and ttl")]
    ExpiresAndTtl(String),
    /// The ttl does not parse.
    #[error("lock {name:?} has an invalid ttl: {source}")]
    Ttl {
        /// The Lock's name.
        name: String,
        /// The parse error.
        source: DurationError,
    },
}

impl LockEntry {
    /// Builds the engine's view of a Lock. `ttl` counts from the object's
    /// `creationTimestamp`, or from `fallback_created` when it has none (a
    /// manifest read from disk).
    pub fn from_lock(lock: &Lock, fallback_created: Timestamp) -> Result<Self, LockError> {
        let name = lock.metadata.name.clone().unwrap_or_default();
        let spec = &lock.spec;
        if spec.target.is_empty() {
            return Err(LockError::EmptyTarget(name));
        }
        let created = lock
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(fallback_created, |time| time.0);
        let expires_at = match (&spec.expires, &spec.ttl) {
            (Some(_), Some(_)) => return Err(LockError::ExpiresAndTtl(name)),
            (Some(expires), None) => Some(expires.0),
            (None, Some(ttl)) => {
                let ttl = duration::parse(ttl).map_err(|source| LockError::Ttl {
                    name: name.clone(),
                    source,
                })?;
                // A ttl beyond the representable range means "never", not an error.
                SignedDuration::try_from(ttl)
                    .ok()
                    .and_then(|ttl| created.checked_add(ttl).ok())
            }
            (None, None) => None,
        };
        Ok(Self {
            name,
            target: spec.target.clone(),
            message: spec.message.clone(),
            created,
            expires_at,
        })
    }

    /// Whether the lock applies at `now`; a lock stops applying at its expiry instant.
    pub fn is_in_force(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|expires| now < expires)
    }

    /// The exact text a locked client sees, e.g.
    /// `lock targeting User:"alice" is in force: Suspicious activity.`
    pub fn message(&self) -> String {
        match self.message.as_deref().filter(|m| !m.is_empty()) {
            Some(message) => format!("lock targeting {} is in force: {message}", self.target),
            None => format!("lock targeting {} is in force", self.target),
        }
    }

    /// Whether the lock names this target.
    pub fn matches(&self, target: &Target) -> bool {
        !target.value.is_empty() && self.target.get(target.kind) == Some(target.value.as_str())
    }

    /// The key that makes the reported lock deterministic: the oldest lock wins,
    /// then the smallest name.
    fn precedence(&self) -> (Timestamp, &str) {
        (self.created, &self.name)
    }
}

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
pub struct LockView {
    locks: HashMap<String, Arc<LockEntry>>,
    index: [HashMap<String, Bucket>; TargetKind::ALL.len()],
}

impl LockView {
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
    use crate::resources::LockSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn lock(name: &str, spec: LockSpec, created: i64) -> Lock {
        let mut lock = Lock::new(name, spec);
        lock.metadata.creation_timestamp = Some(Time(ts(created)));
        lock
    }

    fn user_target(user: &str) -> LockTargetSpec {
        LockTargetSpec {
            user: Some(user.into()),
            ..Default::default()
        }
    }

    #[test]
    fn ttl_counts_from_creation() {
        let spec = LockSpec {
            target: user_target("alice"),
            ttl: Some("10h".into()),
            ..Default::default()
        };
        let entry = LockEntry::from_lock(&lock("l", spec, 1_000), ts(0)).unwrap();
        assert_eq!(entry.expires_at, Some(ts(1_000 + 36_000)));
        assert!(entry.is_in_force(ts(36_999)));
        assert!(!entry.is_in_force(ts(37_000)));
    }

    #[test]
    fn ttl_without_creation_uses_fallback() {
        let spec = LockSpec {
            target: user_target("alice"),
            ttl: Some("1m".into()),
            ..Default::default()
        };
        let entry = LockEntry::from_lock(&Lock::new("l", spec), ts(50)).unwrap();
        assert_eq!(entry.expires_at, Some(ts(110)));
    }

    #[test]
    fn invalid_locks_are_errors() {
        let empty = LockSpec::default();
        assert_eq!(
            LockEntry::from_lock(&Lock::new("e", empty), ts(0)),
            Err(LockError::EmptyTarget("e".into()))
        );
        let both = LockSpec {
            target: user_target("a"),
            ttl: Some("1h".into()),
            expires: Some(Time(ts(5))),
            ..Default::default()
        };
        assert_eq!(
            LockEntry::from_lock(&Lock::new("b", both), ts(0)),
            Err(LockError::ExpiresAndTtl("b".into()))
        );
        let bad_ttl = LockSpec {
            target: user_target("a"),
            ttl: Some("ten hours".into()),
            ..Default::default()
        };
        assert!(matches!(
            LockEntry::from_lock(&Lock::new("t", bad_ttl), ts(0)),
            Err(LockError::Ttl { .. })
        ));
    }

    #[test]
    fn messages_match_teleport() {
        let mut entry = LockEntry {
            name: "l".into(),
            target: LockTargetSpec {
                user: Some("alice".into()),
                role: Some("dev".into()),
                ..Default::default()
            },
            message: Some("Suspicious activity.".into()),
            created: ts(0),
            expires_at: None,
        };
        assert_eq!(
            entry.message(),
            r#"lock targeting User:"alice" Role:"dev" is in force: Suspicious activity."#
        );
        entry.message = None;
        assert_eq!(
            entry.message(),
            r#"lock targeting User:"alice" Role:"dev" is in force"#
        );
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
        let mut view = LockView::default();
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
        let mut view = LockView::default();
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
