//! The protocol-independent life of a session: admission against the lock
//! view and the caller's roles, its audit events and metrics, and how it
//! ends. Every proxy (Postgres, MySQL, kube) goes through here, so they
//! refuse, cut and log alike.

use std::sync::Arc;

use deadbolt_api::access::Refusal;
use deadbolt_api::audit::AuditEventKind;
use deadbolt_api::credential::CertIdentity;
use deadbolt_api::engine::{Denial, Identity};

use crate::audit::{AuditSink, SessionFacts};
use crate::metrics::Metrics;
use crate::view::{Admission, Enforcer, Reach};

/// Admits sessions and records what happens to them.
#[derive(Clone)]
pub struct Gate {
    /// The lock view.
    pub view: Arc<Enforcer>,
    /// Where audit events go.
    pub audit: AuditSink,
    /// The counters.
    pub metrics: Arc<Metrics>,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The client or the server closed it.
    Normal,
    /// A lock or a stale view cut it.
    Cut(Denial),
    /// An I/O or protocol error ended it.
    Failed(String),
}

/// An admitted, registered session. Finish it with [`LiveSession::finish`].
pub struct LiveSession {
    /// The admission (identity, mode, registry handle).
    pub admission: Admission,
    facts: SessionFacts,
    span: tracing::Span,
    gate: Gate,
}

impl Gate {
    /// Records a connection refused before any lock check (bad credentials, bad input).
    pub fn reject(&self, facts: &SessionFacts, reason: &str) {
        self.metrics.sessions_rejected.inc();
        self.audit
            .emit(&facts.event(AuditEventKind::SessionRejected, Some(reason), None));
    }

    /// Checks the lock view and the caller's roles for `principal` reaching
    /// `reach`, and registers the session.
    pub fn admit(
        &self,
        facts: &mut SessionFacts,
        principal: &CertIdentity,
        reach: Reach<'_>,
    ) -> Result<LiveSession, Refusal> {
        facts.user = Some(principal.user.clone());
        match self.view.admit(principal, reach) {
            Ok(admission) => {
                self.metrics.sessions_started.inc();
                self.audit
                    .emit(&facts.event(AuditEventKind::SessionStart, None, None));
                let span = facts.span();
                span.in_scope(|| tracing::debug!("session started"));
                Ok(LiveSession {
                    admission,
                    facts: facts.clone(),
                    span,
                    gate: self.clone(),
                })
            }
            Err(refusal) => Err(self.refused(facts, refusal)),
        }
    }

    /// Counts and audits a refusal by the lock view or the caller's roles.
    fn refused(&self, facts: &SessionFacts, refusal: Refusal) -> Refusal {
        self.metrics.sessions_rejected.inc();
        self.audit.emit(&facts.event(
            AuditEventKind::SessionRejected,
            Some(&refusal.reason()),
            refusal.lock(),
        ));
        refusal
    }

    /// Checks the lock view for `principal` without registering a session: for
    /// short requests (a kube `GET`), which are not audited one by one when
    /// allowed. A refusal is audited as `session.rejected`, like [`Gate::admit`]'s.
    pub fn check(
        &self,
        facts: &mut SessionFacts,
        principal: &CertIdentity,
        reach: Reach<'_>,
    ) -> Result<Identity, Refusal> {
        facts.user = Some(principal.user.clone());
        match self.view.check(principal, reach) {
            Ok((identity, _mode)) => Ok(identity),
            Err(refusal) => Err(self.refused(facts, refusal)),
        }
    }
}

impl LiveSession {
    /// Resolves when the session must be cut.
    pub async fn cut(&mut self) -> Denial {
        self.admission.handle.cut().await
    }

    /// The session's audit facts.
    pub fn facts(&self) -> &SessionFacts {
        &self.facts
    }

    /// The session's span ([`SessionFacts::span`]): run the session in it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the end and unregisters the session.
    pub fn finish(self, ending: Ending) {
        let gate = &self.gate;
        let event = match &ending {
            Ending::Normal => {
                self.span.in_scope(|| tracing::debug!("session ended"));
                self.facts.event(AuditEventKind::SessionEnd, None, None)
            }
            Ending::Failed(reason) => {
                self.span
                    .in_scope(|| tracing::info!(%reason, "session ended with an error"));
                self.facts
                    .event(AuditEventKind::SessionEnd, Some(reason), None)
            }
            Ending::Cut(denial) => {
                gate.metrics.sessions_terminated.inc();
                let lock = match denial {
                    Denial::Locked { lock, .. } => Some(lock.as_str()),
                    Denial::StaleView => None,
                };
                if let Some(lock) = lock {
                    self.span.record("lock", lock);
                }
                self.span
                    .in_scope(|| tracing::info!(reason = denial.message(), "session cut"));
                self.facts.event(
                    AuditEventKind::SessionTerminated,
                    Some(denial.message()),
                    lock,
                )
            }
        };
        gate.audit.emit(&event);
    }
}
