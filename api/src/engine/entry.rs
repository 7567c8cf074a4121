//! The lock as the engine sees it: a [`LockEntry`] built from a `Lock`
//! object (its ttl turned into an absolute expiry), when it is in force, what
//! it matches, and the message a locked client reads.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::Target;
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
    pub(super) fn precedence(&self) -> (Timestamp, &str) {
        (self.created, &self.name)
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
}
