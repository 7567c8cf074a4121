//! A coalescing "something changed" signal that becomes a controller's
//! `reconcile_all_on` stream: many fires before the controller looks count once.

use std::sync::Arc;

use futures::Stream;
use tokio::sync::Notify;

/// Fired by whoever notices a change; read by exactly one stream.
#[derive(Clone, Debug, Default)]
pub struct Trigger(Arc<Notify>);

impl Trigger {
    /// Signals a change. Fires that arrive while the stream is not being
    /// polled collapse into one item.
    pub fn fire(&self) {
        self.0.notify_one();
    }

    /// One `()` per (coalesced) fire. Use one stream per trigger.
    pub fn stream(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(Arc::clone(&self.0), |notify| async move {
            notify.notified().await;
            Some(((), notify))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use futures::future::FutureExt;

    #[tokio::test]
    async fn fires_coalesce() {
        let trigger = Trigger::default();
        let mut stream = Box::pin(trigger.stream());
        trigger.fire();
        trigger.fire();
        trigger.fire();
        assert_eq!(stream.next().await, Some(()));
        assert!(
            stream.next().now_or_never().is_none(),
            "three fires, one item"
        );
        trigger.fire();
        assert_eq!(stream.next().await, Some(()));
    }
}
