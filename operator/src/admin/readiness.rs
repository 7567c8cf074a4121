//! Whether the operator has a complete view worth serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the source has loaded everything it watches. Until then `/readyz`
/// fails and the lock-view stream answers 503: a proxy must never take an
/// empty, still-loading view for "no locks".
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Not ready yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the view as complete.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the view is complete.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
