//! Waiting for something a test cannot await directly (a session to be cut,
//! a subscriber to be gone, a log line to appear): one bound, [`PATIENCE`],
//! and one way to poll, so a slow machine needs one change and a timeout
//! always reads the same.
//!
//! Time is tokio's: under a paused test clock the waiting advances it.

use std::time::Duration;

/// The generous bound on anything a test waits for; far above what a healthy
/// run needs, so hitting it means the thing is not going to happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How often a condition is looked at again.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `check` every [`POLL`] until it holds.
///
/// # Panics
/// If it still does not hold after [`PATIENCE`], naming `what`.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    eventually_some(what, || check().then_some(())).await;
}

/// Polls `check` every [`POLL`] until it returns something, and returns that.
///
/// # Panics
/// If it still returns `None` after [`PATIENCE`], naming `what`.
pub async fn eventually_some<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    match poll(PATIENCE, check).await {
        Some(found) => found,
        None => panic!("timed out after {PATIENCE:?} waiting for: {what}"),
    }
}

/// Polls `check` every [`POLL`] until it returns something or `patience` runs
/// out (`None`): for callers that explain a timeout themselves, e.g. with the
/// output of the process they waited for.
pub async fn poll<T>(patience: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_condition_that_comes_true_is_waited_for() {
        let mut looks = 0;
        let found = eventually_some("the third look", || {
            looks += 1;
            (looks == 3).then_some(looks)
        })
        .await;
        assert_eq!(found, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_condition_that_never_holds_gives_up_after_the_patience() {
        let start = tokio::time::Instant::now();
        assert_eq!(poll(Duration::from_secs(1), || None::<()>).await, None);
        assert!(start.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "timed out after 20s waiting for: nothing")]
    async fn eventually_names_what_never_happened() {
        eventually("nothing", || false).await;
    }
}
