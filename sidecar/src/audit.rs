//! The facts a proxy's audit events about one session repeat. The sink itself
//! is the one every process shares ([`deadbolt_runtime::audit`]).

use std::net::SocketAddr;

use deadbolt_api::audit::{AuditEvent, AuditEventKind};
use jiff::Timestamp;

pub use deadbolt_runtime::audit::{AuditBuffer, AuditSink};

/// The facts about one session that every event about it repeats.
#[derive(Debug, Clone, Default)]
pub struct SessionFacts {
    /// Session id.
    pub sid: String,
    /// The user, once known.
    pub user: Option<String>,
    /// The login (database user).
    pub login: Option<String>,
    /// The database.
    pub db: Option<String>,
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// This proxy's server id.
    pub server_id: String,
}

impl SessionFacts {
    /// A new session with a fresh id.
    pub fn new(server_id: &str, remote: Option<SocketAddr>) -> Self {
        Self {
            sid: uuid::Uuid::new_v4().to_string(),
            remote,
            server_id: server_id.to_string(),
            ..Default::default()
        }
    }

    /// The session's span: every log line inside it names the session, its
    /// user, login, client and proxy, and the lock that cut it (recorded as
    /// `lock` when one does).
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "session",
            sid = %self.sid,
            user = self.user.as_deref().unwrap_or(""),
            login = self.login.as_deref().unwrap_or(""),
            remote = %self.remote.map(|addr| addr.to_string()).unwrap_or_default(),
            server_id = %self.server_id,
            lock = tracing::field::Empty,
        )
    }

    /// An event about this session.
    pub fn event(
        &self,
        kind: AuditEventKind,
        reason: Option<&str>,
        lock: Option<&str>,
    ) -> AuditEvent {
        let mut event = AuditEvent::new(kind, uuid::Uuid::new_v4().to_string(), Timestamp::now());
        event.sid = Some(self.sid.clone());
        event.user = self.user.clone();
        event.login = self.login.clone();
        event.db = self.db.clone();
        event.addr_remote = self.remote.map(|addr| addr.to_string());
        event.server_id = Some(self.server_id.clone());
        event.reason = reason.map(str::to_string);
        event.lock = lock.map(str::to_string);
        event
    }
}
