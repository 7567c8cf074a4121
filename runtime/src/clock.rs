//! The notion of "now", injectable so tests control time and never sleep:
//! wall-clock time for what compares with timestamps (lock expiry, MFA
//! credential age), monotonic time for what measures silence (a proxy's
//! lock-view staleness).

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// Where the current time is read from.
pub trait Clock: Send + Sync + Debug {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;

    /// The current monotonic instant.
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// The system's wall clock, for production.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<Manual>>);

#[derive(Debug)]
struct Manual {
    now: Timestamp,
    /// The monotonic instant: the real one at creation, plus every advance.
    instant: Instant,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: Timestamp) -> Self {
        Self(Arc::new(Mutex::new(Manual {
            now,
            instant: Instant::now(),
        })))
    }

    /// Sets the wall clock to `now` (it may go back); monotonic time stays.
    pub fn set(&self, now: Timestamp) {
        self.guard().now = now;
    }

    /// Moves both clocks forward by `by` (a negative `by` moves the wall clock only).
    pub fn advance(&self, by: SignedDuration) {
        let mut manual = self.guard();
        manual.now = manual.now.saturating_add(by).unwrap_or(manual.now);
        if let Ok(forward) = Duration::try_from(by) {
            manual.instant += forward;
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, Manual> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.guard().now
    }

    fn instant(&self) -> Instant {
        self.guard().instant
    }
}
