//! Whether the operator has a complete, current view worth serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Set once the source has loaded everything it watches. Until then `/readyz`
/// fails and the lock-view stream answers 503: a proxy must never take an
/// empty, still-loading view for "no locks". It also counts watches that are
/// failing right now, which makes the operator's own view unreliable (strict
/// mode in the admission webhook refuses then).
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    failing_watches: Arc<AtomicUsize>,
}

impl Readiness {
    /// Not ready yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the view as complete.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether the view is complete.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records that one watch started or stopped failing.
    pub fn set_watch_failing(&self, was_failing: bool, failing: bool) {
        match (was_failing, failing) {
            (false, true) => {
                self.failing_watches.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.failing_watches.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    /// Whether the view is complete and every watch is currently healthy.
    pub fn is_reliable(&self) -> bool {
        self.is_ready() && self.failing_watches.load(Ordering::Acquire) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_watch_makes_a_ready_view_unreliable_until_it_recovers() {
        let readiness = Readiness::new();
        assert!(!readiness.is_reliable());
        readiness.set_ready();
        assert!(readiness.is_reliable());
        readiness.set_watch_failing(false, true);
        readiness.set_watch_failing(true, true);
        assert!(readiness.is_ready() && !readiness.is_reliable());
        readiness.set_watch_failing(true, false);
        assert!(readiness.is_reliable());
    }
}
