//! The proxy's Prometheus metrics and what its operations listener reports.

use std::sync::Arc;

use deadbolt_runtime::admin::AdminEndpoints;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::audit::AuditSink;
use crate::view::Enforcer;

/// Every metric, under the `deadbolt_proxy_` prefix. Gauges that mirror state
/// are refreshed at scrape time; counters are bumped where things happen.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sessions_active: Gauge,
    view_revision: Gauge,
    view_reliable: Gauge,
    clock_skew: Gauge,
    audit_dropped: Gauge,
    /// Sessions admitted.
    pub sessions_started: Counter,
    /// Connections refused by a lock, a stale view or failed authentication.
    pub sessions_rejected: Counter,
    /// Live sessions cut by a lock or a stale view.
    pub sessions_terminated: Counter,
    /// Connections that ended on malformed input or an I/O error before a session began.
    pub protocol_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("deadbolt_proxy");
        let metrics = Self {
            registry: Registry::default(),
            sessions_active: Gauge::default(),
            view_revision: Gauge::default(),
            view_reliable: Gauge::default(),
            clock_skew: Gauge::default(),
            audit_dropped: Gauge::default(),
            sessions_started: Counter::default(),
            sessions_rejected: Counter::default(),
            sessions_terminated: Counter::default(),
            protocol_errors: Counter::default(),
        };
        registry.register(
            "sessions_active",
            "Live sessions",
            metrics.sessions_active.clone(),
        );
        registry.register(
            "view_revision",
            "Lock-view revision applied",
            metrics.view_revision.clone(),
        );
        registry.register(
            "view_reliable",
            "1 while the lock view is fresh (heard from within maxLockStaleness)",
            metrics.view_reliable.clone(),
        );
        registry.register(
            "view_clock_skew_milliseconds",
            "This proxy's clock minus the operator's at the last heartbeat; beyond maxLockStaleness the view is unreliable",
            metrics.clock_skew.clone(),
        );
        registry.register(
            "audit_dropped",
            "Audit events dropped because the audit writer fell behind or failed",
            metrics.audit_dropped.clone(),
        );
        registry.register(
            "sessions_started",
            "Sessions admitted",
            metrics.sessions_started.clone(),
        );
        registry.register(
            "sessions_rejected",
            "Connections refused (lock, stale view, authentication)",
            metrics.sessions_rejected.clone(),
        );
        registry.register(
            "sessions_terminated",
            "Live sessions cut by a lock or a stale view",
            metrics.sessions_terminated.clone(),
        );
        registry.register(
            "protocol_errors",
            "Connections ended by malformed input or I/O errors",
            metrics.protocol_errors.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    fn render(&self, view: &Enforcer, audit: &AuditSink) -> String {
        self.clock_skew.set(view.clock_skew_ms());
        self.audit_dropped
            .set(i64::try_from(audit.dropped()).unwrap_or(i64::MAX));
        self.sessions_active.set(view.registry().len() as i64);
        self.view_revision.set(
            view.revision()
                .map_or(0, |r| i64::try_from(r).unwrap_or(i64::MAX)),
        );
        self.view_reliable.set(i64::from(view.is_reliable()));
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text = "# metrics could not be encoded\n# EOF\n".into();
        }
        text
    }
}

/// What `/metrics` and `/readyz` report for a proxy: ready once the first snapshot has arrived.
pub struct ProxyAdmin {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The lock view.
    pub view: Arc<Enforcer>,
    /// The audit log, for its dropped count.
    pub audit: AuditSink,
}

impl AdminEndpoints for ProxyAdmin {
    fn render_metrics(&self) -> String {
        self.metrics.render(&self.view, &self.audit)
    }

    fn readiness(&self) -> Result<(), String> {
        if self.view.is_ready() {
            Ok(())
        } else {
            Err("no lock-view snapshot has arrived yet".into())
        }
    }
}
