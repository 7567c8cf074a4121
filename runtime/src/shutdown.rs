//! Graceful shutdown: one trigger, many watchers.

use tokio::sync::watch;

/// Fires [`Shutdown`] for every clone. Dropping it fires too, so a task can
/// never wait forever on a trigger that no longer exists.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Resolves once shutdown has begun. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A new trigger and its watcher.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (ShutdownTrigger(sender), Shutdown(receiver))
    }

    /// Waits for shutdown. Cancel-safe.
    pub async fn wait(&self) {
        let mut receiver = self.0.clone();
        // An error means the trigger is gone, which also means shutdown.
        let _ = receiver.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

impl ShutdownTrigger {
    /// Begins shutdown.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// Waits for SIGTERM (Kubernetes' stop signal) or SIGINT (Ctrl-C).
pub async fn signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        })
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_and_drop_both_release_waiters() {
        let (trigger, shutdown) = Shutdown::new();
        assert!(!shutdown.is_triggered());
        trigger.trigger();
        shutdown.wait().await;
        assert!(shutdown.is_triggered());

        let (trigger, shutdown) = Shutdown::new();
        drop(trigger);
        shutdown.wait().await;
        assert!(shutdown.is_triggered());
    }
}
