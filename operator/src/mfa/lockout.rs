//! Lock-out after repeated failed MFA checks, Teleport's login lock-out
//! (`is_locked`, `lock_expires`): after `maxFailedAttempts` failures in a
//! row, a user gets no new MFA credential until the lock-out ends. The
//! numbers come from the ClusterAuthPreference (`mfaLockout`).
//!
//! Counts live in the replica that saw the failures: behind a Service of N
//! replicas a user gets at most N times the attempts (docs/decisions.md).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;

/// Failure counts and lock-outs by user.
#[derive(Default)]
pub struct Lockout {
    users: Mutex<HashMap<String, Record>>,
}

#[derive(Clone, Copy, Default)]
struct Record {
    failures: u32,
    until: Option<Timestamp>,
}

/// A user's standing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Failed checks in a row.
    pub failures: u32,
    /// The end of the lock-out in force, if one is.
    pub locked_until: Option<Timestamp>,
}

impl Lockout {
    fn record(&self, user: &str, now: Timestamp) -> Record {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let record = users.entry(user.to_string()).or_default();
        if record.until.is_some_and(|until| until <= now) {
            // A lock-out that ended starts the count again.
            *record = Record::default();
        }
        *record
    }

    /// Where `user` stands now.
    pub fn standing(&self, user: &str, now: Timestamp) -> Standing {
        let record = self.record(user, now);
        Standing {
            failures: record.failures,
            locked_until: record.until,
        }
    }

    /// Records a failed check; returns the end of the lock-out it started, if it did.
    pub fn fail(
        &self,
        user: &str,
        now: Timestamp,
        max_failures: u32,
        lasts: Duration,
    ) -> Option<Timestamp> {
        self.record(user, now);
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let record = users.entry(user.to_string()).or_default();
        if record.until.is_some() {
            return None;
        }
        record.failures = record.failures.saturating_add(1);
        if record.failures >= max_failures.max(1) {
            let until = now
                .checked_add(
                    jiff::SignedDuration::try_from(lasts).unwrap_or(jiff::SignedDuration::MAX),
                )
                .unwrap_or(Timestamp::MAX);
            record.until = Some(until);
            return Some(until);
        }
        None
    }

    /// A passed check clears the count.
    pub fn succeed(&self, user: &str) {
        self.users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_out_until_the_time_passes() {
        let lockout = Lockout::default();
        let at = |s| Timestamp::from_second(s).unwrap();
        let thirty_minutes = Duration::from_secs(1800);
        for n in 1..5 {
            assert_eq!(lockout.fail("alice", at(n), 5, thirty_minutes), None);
        }
        assert_eq!(
            lockout.fail("alice", at(5), 5, thirty_minutes),
            Some(at(1805))
        );
        assert_eq!(
            lockout.standing("alice", at(100)),
            Standing {
                failures: 5,
                locked_until: Some(at(1805))
            }
        );
        assert_eq!(lockout.standing("bob", at(100)), Standing::default());
        assert_eq!(lockout.standing("alice", at(1805)), Standing::default());
        lockout.fail("alice", at(1806), 5, thirty_minutes);
        lockout.succeed("alice");
        assert_eq!(lockout.standing("alice", at(1807)), Standing::default());
    }
}
