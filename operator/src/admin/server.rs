//! What the operator reports on the shared operations listener.

use std::sync::Arc;

use deadbolt_runtime::admin::AdminEndpoints;

use super::{Metrics, Readiness};
use crate::subscribers::Subscribers;
use crate::view::ViewStore;

/// What the endpoints report on.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The metrics to render.
    pub metrics: Arc<Metrics>,
    /// The view, for state gauges.
    pub store: ViewStore,
    /// The subscribers, for state gauges.
    pub subscribers: Subscribers,
    /// Whether the source has loaded.
    pub readiness: Readiness,
}

impl AdminEndpoints for AdminState {
    fn render_metrics(&self) -> String {
        self.metrics.render(&self.store, &self.subscribers)
    }

    fn readiness(&self) -> Result<(), String> {
        if self.readiness.is_ready() {
            Ok(())
        } else {
            Err("the source has not finished loading".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_and_metrics_come_from_the_operator_state() {
        let state = AdminState {
            metrics: Arc::new(Metrics::new()),
            store: ViewStore::default(),
            subscribers: Subscribers::new(),
            readiness: Readiness::new(),
        };
        assert!(
            state
                .readiness()
                .unwrap_err()
                .contains("not finished loading")
        );
        state.readiness.set_ready();
        assert!(state.readiness().is_ok());
        let text = state.render_metrics();
        assert!(text.contains("deadbolt_view_revision 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
