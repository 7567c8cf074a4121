//! Audit events, one JSON object per line, shaped like Teleport's audit log
//! so existing log pipelines and SIEM rules can read them.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The kind of audit event.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditEventKind {
    /// A Lock was created.
    #[serde(rename = "lock.created")]
    LockCreated,
    /// A Lock was deleted.
    #[serde(rename = "lock.deleted")]
    LockDeleted,
    /// A Lock reached its expiry.
    #[serde(rename = "lock.expired")]
    LockExpired,
    /// A proxied session started.
    #[serde(rename = "session.start")]
    SessionStart,
    /// A proxied session ended normally.
    #[serde(rename = "session.end")]
    SessionEnd,
    /// A new session or request was refused.
    #[serde(rename = "session.rejected")]
    SessionRejected,
    /// A live session was cut.
    #[serde(rename = "session.terminated")]
    SessionTerminated,
    /// An MFA device was registered.
    #[serde(rename = "mfa.device.add")]
    MfaDeviceAdd,
    /// An MFA device was removed.
    #[serde(rename = "mfa.device.delete")]
    MfaDeviceDelete,
    /// An MFA check was made: `success` says how it went, `reason` why it failed.
    #[serde(rename = "mfa.auth")]
    MfaAuth,
}

impl AuditEventKind {
    /// The event's name in the log, e.g. `session.terminated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LockCreated => "lock.created",
            Self::LockDeleted => "lock.deleted",
            Self::LockExpired => "lock.expired",
            Self::SessionStart => "session.start",
            Self::SessionEnd => "session.end",
            Self::SessionRejected => "session.rejected",
            Self::SessionTerminated => "session.terminated",
            Self::MfaDeviceAdd => "mfa.device.add",
            Self::MfaDeviceDelete => "mfa.device.delete",
            Self::MfaAuth => "mfa.auth",
        }
    }
}

impl fmt::Display for AuditEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event. Absent fields are left out of the JSON line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// What happened.
    pub event: AuditEventKind,
    /// A unique id, for de-duplication downstream.
    pub uid: String,
    /// When it happened.
    pub time: Timestamp,
    /// The user concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The login (database user) concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// The database name, for database sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    /// The proxy that handled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// The session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The client's address.
    #[serde(
        rename = "addr.remote",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub addr_remote: Option<String>,
    /// Why, e.g. the lock message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The Lock concerned, for lock events and lock refusals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// The MFA device concerned (its UUID), for MFA events and sessions started with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_device: Option<String>,
    /// Whether the attempt succeeded, for MFA events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
}

impl AuditEvent {
    /// An event with only the required fields; set the others as needed.
    pub fn new(event: AuditEventKind, uid: impl Into<String>, time: Timestamp) -> Self {
        Self {
            event,
            uid: uid.into(),
            time,
            user: None,
            login: None,
            db: None,
            server_id: None,
            sid: None,
            addr_remote: None,
            reason: None,
            lock: None,
            mfa_device: None,
            success: None,
        }
    }

    /// The event as one JSON line, newline included.
    pub fn to_json_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("audit events always serialise");
        line.push('\n');
        line
    }
}
