//! What every reconcile gets: the client, the clock, leadership, the event
//! recorder, the audit sink and the operator's view of locks and acks.

use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::audit::AuditEvent;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::audit::AuditSink;
use super::enforcement::Enforcement;
use super::lock_index::SharedLockIndex;
use super::status::FIELD_MANAGER;
use crate::admin::Metrics;
use crate::leader::Leadership;
use deadbolt_runtime::clock::{Clock, SystemClock};

/// Behaviour the flags choose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Delete Locks that have been expired for longer than this (`--expired-lock-retention`).
    pub expired_lock_retention: Option<Duration>,
}

/// Shared by every reconcile. Build it with [`Context::new`] and the `with_*`
/// methods; tests swap in a mocked client, a [`super::ManualClock`] and an
/// in-memory audit sink.
#[derive(Clone)]
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Whether this replica may write.
    pub leadership: Leadership,
    /// Records Kubernetes Events.
    pub recorder: Recorder,
    /// Receives `lock.*` audit events.
    pub audit: AuditSink,
    /// The view's locks, for `User.status.locked`.
    pub locks: SharedLockIndex,
    /// Per-lock ack counts, for `Lock.status.enforcedBy`.
    pub enforcement: Enforcement,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Flags.
    pub settings: Settings,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("clock", &self.clock)
            .field("leader", &self.leadership.is_leader())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Production defaults: the system clock, always the leader, audit to
    /// stdout, events reported as `deadbolt-operator`.
    pub fn new(client: Client) -> Self {
        let recorder = Recorder::new(client.clone(), reporter(None));
        Self {
            client,
            clock: Arc::new(SystemClock),
            leadership: Leadership::always(),
            recorder,
            audit: AuditSink::stdout(),
            locks: SharedLockIndex::default(),
            enforcement: Enforcement::default(),
            metrics: Arc::new(Metrics::new()),
            settings: Settings::default(),
        }
    }

    /// Uses another clock.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// Writes only while `leadership` says so.
    pub fn with_leadership(self, leadership: Leadership) -> Self {
        Self { leadership, ..self }
    }

    /// Audits to `audit`.
    pub fn with_audit(self, audit: AuditSink) -> Self {
        Self { audit, ..self }
    }

    /// Reads locks from `locks`.
    pub fn with_locks(self, locks: SharedLockIndex) -> Self {
        Self { locks, ..self }
    }

    /// Reads ack counts from `enforcement`.
    pub fn with_enforcement(self, enforcement: Enforcement) -> Self {
        Self {
            enforcement,
            ..self
        }
    }

    /// Counts into `metrics`.
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics, ..self }
    }

    /// Applies `settings`.
    pub fn with_settings(self, settings: Settings) -> Self {
        Self { settings, ..self }
    }

    /// Names this replica in the Events it records (`reportingInstance`).
    pub fn with_instance(self, instance: impl Into<String>) -> Self {
        let recorder = Recorder::new(self.client.clone(), reporter(Some(instance.into())));
        Self { recorder, ..self }
    }

    /// Records a Kubernetes Event on `regarding`. Failures are logged: an
    /// Event is a courtesy, never a reason to fail a reconcile.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(%error, reason, object = ?regarding.name, "cannot record an Event");
        }
    }

    /// Writes an audit event and counts it.
    pub fn record_audit(&self, event: &AuditEvent) {
        self.audit.emit(event);
        self.metrics.audit_events.inc();
    }
}

fn reporter(instance: Option<String>) -> Reporter {
    Reporter {
        controller: FIELD_MANAGER.into(),
        instance,
    }
}
