//! The operator's Prometheus metrics.

use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::subscribers::Subscribers;
use crate::view::ViewStore;

/// Upper bounds of the propagation-time buckets, in seconds: 1 ms to 10 s.
pub const PROPAGATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the reconcile-duration buckets, in seconds: 1 ms to 10 s.
pub const RECONCILE_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0];

/// The kinds the controllers reconcile.
pub const RECONCILED_KINDS: [&str; 4] = ["Lock", "User", "AccessRole", "ClusterAuthPreference"];

/// A reconcile's kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `Lock`, `User`, `AccessRole`, `ClusterAuthPreference`.
    pub kind: String,
}

/// A failed reconcile's kind and error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The kind reconciled.
    pub kind: String,
    /// The error's label (`crate::controller::Error::metric_label`).
    pub error: String,
}

/// Reconciles by kind, as kube-rs's controller-rs counts them: runs,
/// failures by kind and error, and how long each took.
#[derive(Debug)]
pub struct ReconcileMetrics {
    runs: Family<KindLabel, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<KindLabel, Histogram, fn() -> Histogram>,
}

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

impl ReconcileMetrics {
    /// Runs and durations start at zero for every kind the operator
    /// reconciles, so a dashboard sees none rather than nothing.
    fn new() -> Self {
        let metrics = Self {
            runs: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(reconcile_histogram),
        };
        for kind in RECONCILED_KINDS {
            let label = KindLabel { kind: kind.into() };
            drop(metrics.runs.get_or_create(&label));
            drop(metrics.duration.get_or_create(&label));
        }
        metrics
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconcile_runs",
            "Reconciles run, by kind",
            self.runs.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by kind and error",
            self.failures.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "How long reconciles took, by kind",
            Unit::Seconds,
            self.duration.clone(),
        );
    }

    /// Records a reconcile of `kind` that took `elapsed`.
    pub fn observe(&self, kind: &str, elapsed: Duration) {
        let label = KindLabel { kind: kind.into() };
        self.runs.get_or_create(&label).inc();
        self.duration
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    /// Records a failed reconcile of `kind` with `error`.
    pub fn fail(&self, kind: &str, error: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                kind: kind.into(),
                error: error.into(),
            })
            .inc();
    }
}

/// Every metric, registered under the `deadbolt_` prefix. Gauges that mirror
/// state are refreshed at scrape time; counters are bumped where things happen.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    locks_in_force: Gauge,
    view_revision: Gauge,
    subscribers: Gauge,
    leader: Gauge,
    /// Failed reconciles, retried after a delay.
    pub reconcile_errors: Counter,
    /// Reconciles by kind: runs, failures by error, durations.
    pub reconcile: ReconcileMetrics,
    /// Audit events written (`lock.created`, `lock.expired`, `lock.deleted`).
    pub audit_events: Counter,
    /// Manifests or watch events the source could not use.
    pub source_errors: Counter,
    /// Subscribers disconnected for a malformed or impossible ack.
    pub ack_errors: Counter,
    /// Subscribers that fell behind and were resynced with a snapshot.
    pub resyncs: Counter,
    /// From the store producing a revision to a proxy's ack of it arriving.
    propagation: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("deadbolt");
        let metrics = Self {
            locks_in_force: Gauge::default(),
            view_revision: Gauge::default(),
            subscribers: Gauge::default(),
            leader: Gauge::default(),
            reconcile_errors: Counter::default(),
            reconcile: ReconcileMetrics::new(),
            audit_events: Counter::default(),
            source_errors: Counter::default(),
            ack_errors: Counter::default(),
            resyncs: Counter::default(),
            propagation: Histogram::new(PROPAGATION_BUCKETS),
            registry: Registry::default(),
        };
        registry.register(
            "locks_in_force",
            "Locks in the view whose expiry has not passed",
            metrics.locks_in_force.clone(),
        );
        registry.register(
            "view_revision",
            "Revision of the latest change to the view",
            metrics.view_revision.clone(),
        );
        registry.register(
            "lockview_subscribers",
            "Proxies connected to this replica's lock-view stream",
            metrics.subscribers.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and writes status",
            metrics.leader.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed",
            metrics.reconcile_errors.clone(),
        );
        metrics.reconcile.register(&mut registry);
        registry.register(
            "audit_events",
            "Audit events written by the controllers",
            metrics.audit_events.clone(),
        );
        registry.register(
            "source_errors",
            "Manifests or watch events that could not be used",
            metrics.source_errors.clone(),
        );
        registry.register(
            "lockview_ack_errors",
            "Subscribers disconnected for a malformed ack",
            metrics.ack_errors.clone(),
        );
        registry.register(
            "lockview_resyncs",
            "Subscribers resynced with a snapshot after falling behind",
            metrics.resyncs.clone(),
        );
        registry.register_with_unit(
            "propagation",
            "Time from the operator producing a revision to a proxy's ack of it arriving",
            Unit::Seconds,
            metrics.propagation.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Records how long one change took to be applied and acked by one proxy.
    pub fn observe_propagation(&self, elapsed: Duration) {
        self.propagation.observe(elapsed.as_secs_f64());
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The OpenMetrics text for a scrape, with state gauges refreshed first.
    pub fn render(&self, store: &ViewStore, subscribers: &Subscribers) -> String {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.locks_in_force
            .set(clamp(store.locks_in_force(Timestamp::now()) as u64));
        self.view_revision.set(clamp(store.revision()));
        self.subscribers.set(clamp(subscribers.connected() as u64));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let metrics = Metrics::new();
        metrics.reconcile_errors.inc();
        let subscribers = Subscribers::new();
        let _proxy = subscribers.connect("p");
        let text = metrics.render(&ViewStore::default(), &subscribers);
        for line in [
            "deadbolt_locks_in_force 0",
            "deadbolt_view_revision 0",
            "deadbolt_lockview_subscribers 1",
            "deadbolt_reconcile_errors_total 1",
            "deadbolt_leader 0",
            "deadbolt_audit_events_total 0",
            "deadbolt_source_errors_total 0",
            "deadbolt_propagation_seconds_count 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn reconciles_are_counted_by_kind_and_error_with_their_durations() {
        let metrics = Metrics::new();
        metrics.reconcile.observe("Lock", Duration::from_millis(3));
        metrics.reconcile.observe("Lock", Duration::from_millis(30));
        metrics.reconcile.observe("User", Duration::from_secs(2));
        metrics.reconcile.fail("Lock", "api_409");
        let text = metrics.render(&ViewStore::default(), &Subscribers::new());
        for line in [
            "deadbolt_reconcile_runs_total{kind=\"Lock\"} 2",
            "deadbolt_reconcile_runs_total{kind=\"User\"} 1",
            "deadbolt_reconcile_runs_total{kind=\"AccessRole\"} 0",
            "deadbolt_reconcile_failures_total{kind=\"Lock\",error=\"api_409\"} 1",
            "# TYPE deadbolt_reconcile_duration_seconds histogram",
            "deadbolt_reconcile_duration_seconds_count{kind=\"Lock\"} 2",
            "deadbolt_reconcile_duration_seconds_bucket{le=\"0.005\",kind=\"Lock\"} 1",
            "deadbolt_reconcile_duration_seconds_bucket{le=\"1.0\",kind=\"User\"} 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn propagation_times_land_in_millisecond_to_second_buckets() {
        let metrics = Metrics::new();
        metrics.observe_propagation(Duration::from_micros(400));
        metrics.observe_propagation(Duration::from_millis(30));
        metrics.observe_propagation(Duration::from_secs(20));
        let text = metrics.render(&ViewStore::default(), &Subscribers::new());
        for line in [
            "# TYPE deadbolt_propagation_seconds histogram",
            "# UNIT deadbolt_propagation_seconds seconds",
            "deadbolt_propagation_seconds_count 3",
            "deadbolt_propagation_seconds_bucket{le=\"0.001\"} 1",
            "deadbolt_propagation_seconds_bucket{le=\"0.025\"} 1",
            "deadbolt_propagation_seconds_bucket{le=\"0.05\"} 2",
            "deadbolt_propagation_seconds_bucket{le=\"10.0\"} 2",
            "deadbolt_propagation_seconds_bucket{le=\"+Inf\"} 3",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
