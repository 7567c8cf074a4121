//! The audit log: one JSON line per event, to stdout or a file, as the
//! operator writes its own.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use deadbolt_api::audit::{AuditEvent, AuditEventKind};
use jiff::Timestamp;

/// Where audit lines go. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl AuditSink {
    /// Audit lines on standard output.
    pub fn stdout() -> Self {
        Self::to_writer(Box::new(std::io::stdout()))
    }

    /// Audit lines appended to a file.
    pub fn file(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self::to_writer(Box::new(file)))
    }

    /// Audit lines to any writer (tests collect them in memory).
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Arc::new(Mutex::new(out)),
        }
    }

    /// Writes one event. A failing audit writer is logged, never fatal to a session.
    pub fn emit(&self, event: &AuditEvent) {
        let line = event.to_json_line();
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            tracing::error!(%error, "cannot write an audit event");
        }
    }
}

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
