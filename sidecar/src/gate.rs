//! The protocol-independent life of a session: admission against the lock
//! view, its audit events and metrics, and how it ends. Every proxy (Postgres,
//! MySQL, kube) goes through here, so they refuse, cut and log alike.

use std::sync::Arc;

use deadbolt_api::audit::AuditEventKind;
use deadbolt_api::credential::CertIdentity;
use deadbolt_api::engine::{Denial, Identity};

use crate::audit::{AuditSink, SessionFacts};
use crate::metrics::Metrics;
use crate::view::{Admission, ViewState};

/// Admits sessions and records what happens to them.
#[derive(Clone)]
pub struct Gate {
    /// The lock view.
    pub view: Arc<ViewState>,
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
    gate: Gate,
}

impl Gate {
    /// Records a connection refused before any lock check (bad credentials, bad input).
    pub fn reject(&self, facts: &SessionFacts, reason: &str) {
        self.metrics.sessions_rejected.inc();
        self.audit
            .emit(&facts.event(AuditEventKind::SessionRejected, Some(reason), None));
    }

    /// Checks the lock view for `principal` using `facts.login`, and registers the session.
    pub fn admit(
        &self,
        facts: &mut SessionFacts,
        principal: &CertIdentity,
    ) -> Result<LiveSession, Denial> {
        facts.user = Some(principal.user.clone());
        match self.view.admit(principal, facts.login.clone()) {
            Ok(admission) => {
                self.metrics.sessions_started.inc();
                self.audit
                    .emit(&facts.event(AuditEventKind::SessionStart, None, None));
                Ok(LiveSession {
                    admission,
                    facts: facts.clone(),
                    gate: self.clone(),
                })
            }
            Err(denial) => Err(self.refused(facts, denial)),
        }
    }

    /// Counts and audits a refusal by the lock view.
    fn refused(&self, facts: &SessionFacts, denial: Denial) -> Denial {
        self.metrics.sessions_rejected.inc();
        self.audit.emit(&facts.event(
            AuditEventKind::SessionRejected,
            Some(denial.message()),
            lock_name(&denial),
        ));
        denial
    }

    /// Checks the lock view for `principal` without registering a session: for
    /// short requests (a kube `GET`), which are not audited one by one when
    /// allowed. A refusal is audited as `session.rejected`, like [`Gate::admit`]'s.
    pub fn check(
        &self,
        facts: &mut SessionFacts,
        principal: &CertIdentity,
    ) -> Result<Identity, Denial> {
        facts.user = Some(principal.user.clone());
        match self.view.check(principal, facts.login.clone()) {
            Ok((identity, _mode)) => Ok(identity),
            Err(denial) => Err(self.refused(facts, denial)),
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

    /// Records the end and unregisters the session.
    pub fn finish(self, ending: Ending) {
        let gate = &self.gate;
        let event = match &ending {
            Ending::Normal => self.facts.event(AuditEventKind::SessionEnd, None, None),
            Ending::Failed(reason) => {
                self.facts
                    .event(AuditEventKind::SessionEnd, Some(reason), None)
            }
            Ending::Cut(denial) => {
                gate.metrics.sessions_terminated.inc();
                self.facts.event(
                    AuditEventKind::SessionTerminated,
                    Some(denial.message()),
                    lock_name(denial),
                )
            }
        };
        gate.audit.emit(&event);
    }
}

fn lock_name(denial: &Denial) -> Option<&str> {
    match denial {
        Denial::Locked { lock, .. } => Some(lock),
        Denial::StaleView => None,
    }
}
