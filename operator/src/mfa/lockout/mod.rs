//! Lock-out after repeated failed MFA checks, Teleport's login lock-out
//! (`is_locked`, `lock_expires`): after `maxFailedAttempts` failures in a
//! row, a user gets no new MFA credential until the lock-out ends. The
//! numbers come from the ClusterAuthPreference (`mfaLockout`). As Teleport
//! forgets failed attempts after a while, failures are forgotten once the
//! last one is `duration` old: the count starts again.
//!
//! The rule is [`Standing`]'s; where standings are kept is a
//! [`LockoutStore`]'s. Every replica behind the MFA Service must see the same
//! count, or N replicas would give a user N times the attempts: with the
//! Kubernetes source they are kept in Leases ([`leases`]), standalone in
//! memory.

mod leases;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use leases::LeaseLockout;

use super::store::StoreFuture;

/// A user's standing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    /// Failed checks in a row.
    pub failures: u32,
    /// The end of the lock-out in force, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<Timestamp>,
    /// When the last failure was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Timestamp>,
}

/// How many failures in a row lock a user out, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutRule {
    /// Failures in a row that start a lock-out (at least 1).
    pub max_failures: u32,
    /// How long a lock-out lasts, and how long failures are remembered.
    pub lasts: Duration,
}

impl LockoutRule {
    /// `lasts` after `from`.
    fn after(self, from: Timestamp) -> Timestamp {
        from.checked_add(
            jiff::SignedDuration::try_from(self.lasts).unwrap_or(jiff::SignedDuration::MAX),
        )
        .unwrap_or(Timestamp::MAX)
    }
}

impl Standing {
    /// The standing at `now`: a lock-out that has ended, or failures whose
    /// last is `rule.lasts` old, start the count again.
    pub fn at(self, now: Timestamp, rule: LockoutRule) -> Self {
        let over = match (self.locked_until, self.last_failure) {
            (Some(until), _) => until <= now,
            (None, Some(last)) => rule.after(last) <= now,
            (None, None) => false,
        };
        if over { Self::default() } else { self }
    }

    /// Counts a failed check at `now` (on the standing at `now`); returns the
    /// end of the lock-out it started, if it did. Failures during a lock-out
    /// change nothing.
    pub fn fail(&mut self, now: Timestamp, rule: LockoutRule) -> Option<Timestamp> {
        *self = self.at(now, rule);
        if self.locked_until.is_some() {
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        self.last_failure = Some(now);
        if self.failures < rule.max_failures.max(1) {
            return None;
        }
        let until = rule.after(now);
        self.locked_until = Some(until);
        Some(until)
    }
}

/// Where standings are kept.
pub trait LockoutStore: Send + Sync + 'static {
    /// Where `user` stands at `now`.
    fn standing<'a>(
        &'a self,
        user: &'a str,
        now: Timestamp,
        rule: LockoutRule,
    ) -> StoreFuture<'a, Standing>;
    /// Records a failed check; returns the end of the lock-out it started, if it did.
    fn fail<'a>(
        &'a self,
        user: &'a str,
        now: Timestamp,
        rule: LockoutRule,
    ) -> StoreFuture<'a, Option<Timestamp>>;
    /// A passed check clears the count.
    fn succeed<'a>(&'a self, user: &'a str) -> StoreFuture<'a, ()>;
}

/// Standings kept in memory: standalone mode, where one process serves, and tests.
#[derive(Default)]
pub struct MemoryLockout {
    users: Mutex<HashMap<String, Standing>>,
}

impl MemoryLockout {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, Standing>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LockoutStore for MemoryLockout {
    fn standing<'a>(
        &'a self,
        user: &'a str,
        now: Timestamp,
        rule: LockoutRule,
    ) -> StoreFuture<'a, Standing> {
        let standing = self
            .users()
            .get(user)
            .copied()
            .unwrap_or_default()
            .at(now, rule);
        Box::pin(async move { Ok(standing) })
    }

    fn fail<'a>(
        &'a self,
        user: &'a str,
        now: Timestamp,
        rule: LockoutRule,
    ) -> StoreFuture<'a, Option<Timestamp>> {
        let started = self
            .users()
            .entry(user.to_string())
            .or_default()
            .fail(now, rule);
        Box::pin(async move { Ok(started) })
    }

    fn succeed<'a>(&'a self, user: &'a str) -> StoreFuture<'a, ()> {
        self.users().remove(user);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIRTY_MINUTES: LockoutRule = LockoutRule {
        max_failures: 5,
        lasts: Duration::from_secs(1800),
    };

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn five_failures_lock_out_until_the_time_passes() {
        let mut standing = Standing::default();
        for n in 1..5 {
            assert_eq!(standing.fail(at(n), THIRTY_MINUTES), None);
        }
        assert_eq!(standing.fail(at(5), THIRTY_MINUTES), Some(at(1805)));
        assert_eq!(
            standing.at(at(100), THIRTY_MINUTES),
            Standing {
                failures: 5,
                locked_until: Some(at(1805)),
                last_failure: Some(at(5)),
            }
        );
        // Failing again during the lock-out neither counts nor extends it.
        assert_eq!(standing.fail(at(200), THIRTY_MINUTES), None);
        assert_eq!(standing.locked_until, Some(at(1805)));
        assert_eq!(standing.at(at(1805), THIRTY_MINUTES), Standing::default());
        // After it, the count starts again.
        assert_eq!(standing.fail(at(1806), THIRTY_MINUTES), None);
        assert_eq!(standing.failures, 1);
    }

    #[test]
    fn failures_are_forgotten_once_the_last_is_as_old_as_a_lock_out() {
        let mut standing = Standing::default();
        for n in [0, 1000, 2000, 3000] {
            assert_eq!(standing.fail(at(n), THIRTY_MINUTES), None);
        }
        assert_eq!(standing.at(at(4799), THIRTY_MINUTES).failures, 4);
        assert_eq!(standing.at(at(4800), THIRTY_MINUTES), Standing::default());
        // A fifth failure 30 minutes after the fourth is a first one.
        assert_eq!(standing.fail(at(4800), THIRTY_MINUTES), None);
        assert_eq!(standing.failures, 1);
    }

    #[test]
    fn the_rule_locks_out_after_at_least_one_failure() {
        let never_zero = LockoutRule {
            max_failures: 0,
            lasts: Duration::from_secs(60),
        };
        assert_eq!(Standing::default().fail(at(0), never_zero), Some(at(60)));
    }

    #[test]
    fn a_standing_reads_back_from_json() {
        let standing = Standing {
            failures: 5,
            locked_until: Some(at(1805)),
            last_failure: Some(at(5)),
        };
        let text = serde_json::to_string(&standing).unwrap();
        assert_eq!(
            text,
            r#"{"failures":5,"lockedUntil":"1970-01-01T00:30:05Z","lastFailure":"1970-01-01T00:00:05Z"}"#
        );
        assert_eq!(serde_json::from_str::<Standing>(&text).unwrap(), standing);
        assert_eq!(
            serde_json::from_str::<Standing>(r#"{"failures":2}"#).unwrap(),
            Standing {
                failures: 2,
                ..Standing::default()
            }
        );
    }

    #[tokio::test]
    async fn memory_keeps_each_users_standing_until_a_check_passes() {
        let store = MemoryLockout::default();
        for n in 1..=5 {
            store.fail("alice", at(n), THIRTY_MINUTES).await.unwrap();
        }
        let standing = |user, second| store.standing(user, at(second), THIRTY_MINUTES);
        assert_eq!(
            standing("alice", 100).await.unwrap().locked_until,
            Some(at(1805))
        );
        assert_eq!(standing("bob", 100).await.unwrap(), Standing::default());
        store.succeed("alice").await.unwrap();
        assert_eq!(standing("alice", 101).await.unwrap(), Standing::default());
    }
}
