//! The lock-view stream between the operator and the proxies.
//!
//! The operator sends a [`Snapshot`] first, then [`ViewEvent::Upsert`] and
//! [`ViewEvent::Delete`] deltas with strictly increasing revisions, and a
//! [`ViewEvent::Heartbeat`] every second so a proxy can tell a quiet view from a
//! dead one. Proxies answer with an [`Ack`] of the last revision they applied.
//! Each message is one JSON object on its own line.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::engine::LockEntry;
use crate::resources::{AccessRoleSpec, LockingMode, RequireSessionMfa, UserSpec};
use crate::resources::{SecondFactor, Webauthn};

/// The endpoint proxies subscribe at (`POST`, HTTP/2 over TLS).
pub const LOCKVIEW_PATH: &str = "/v1/lockview";

/// The request header naming the subscribing proxy.
pub const SERVER_ID_HEADER: &str = "deadbolt-server-id";

/// The content type of both directions: one JSON message per line.
pub const NDJSON: &str = "application/x-ndjson";

/// A position in the operator's change history. Later changes have larger revisions.
pub type Revision = u64;

/// The effective cluster settings a proxy needs, with defaults already applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    /// The cluster's default locking mode.
    pub locking_mode: LockingMode,
    /// Cluster-wide per-session MFA.
    pub require_session_mfa: RequireSessionMfa,
    /// How long a proxy may go without a message before its view is unreliable, in milliseconds.
    pub max_lock_staleness_ms: u64,
    /// The MFA service's settings (proxies ignore them).
    #[serde(default)]
    pub mfa: MfaConfig,
}

/// The MFA service's settings from the ClusterAuthPreference, defaults applied.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MfaConfig {
    /// The second factor users register.
    pub second_factor: SecondFactor,
    /// WebAuthn relying-party settings, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webauthn: Option<Webauthn>,
    /// Failed checks in a row that lock a user out of new MFA credentials.
    pub max_failed_attempts: u32,
    /// How long that lock-out lasts, in milliseconds.
    pub lockout_ms: u64,
}

impl Default for MfaConfig {
    fn default() -> Self {
        let defaults = crate::resources::ClusterAuthPreferenceSpec::default();
        Self {
            second_factor: SecondFactor::Off,
            webauthn: None,
            max_failed_attempts: defaults.effective_mfa_max_failed_attempts(),
            lockout_ms: u64::try_from(defaults.effective_mfa_lockout().as_millis())
                .unwrap_or(u64::MAX),
        }
    }
}

/// An AccessRole as proxies need it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleRecord {
    /// The AccessRole's name.
    pub name: String,
    /// Its spec.
    pub spec: AccessRoleSpec,
}

/// A User as proxies need it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    /// The User object's name; the user's name is `spec.username`, else this.
    pub name: String,
    /// Its spec.
    pub spec: UserSpec,
}

/// One object of the view.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ViewObject {
    /// A lock.
    Lock(LockEntry),
    /// An access role.
    Role(RoleRecord),
    /// A user.
    User(UserRecord),
    /// The cluster settings (a singleton).
    Config(ClusterConfig),
}

/// Names an object to delete.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ObjectKey {
    /// A lock by name.
    Lock(String),
    /// An access role by name.
    Role(String),
    /// A user by name.
    User(String),
}

/// The whole view at one revision: what a new or reconnecting proxy starts from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The revision the snapshot reflects.
    pub revision: Revision,
    /// Every lock, expired ones included until they are deleted.
    pub locks: Vec<LockEntry>,
    /// Every access role.
    pub roles: Vec<RoleRecord>,
    /// Every user.
    pub users: Vec<UserRecord>,
    /// The effective cluster settings.
    pub config: ClusterConfig,
}

/// A message from the operator to a proxy.
// Events are built once per change and then serialised; boxing the object would
// only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ViewEvent {
    /// Replaces the proxy's whole view.
    Snapshot(Snapshot),
    /// Adds or replaces one object.
    Upsert {
        /// The revision of this change.
        revision: Revision,
        /// The new object.
        object: ViewObject,
    },
    /// Removes one object.
    Delete {
        /// The revision of this change.
        revision: Revision,
        /// What to remove.
        key: ObjectKey,
    },
    /// Proves the stream is alive; carries the latest revision so gaps show.
    Heartbeat {
        /// The operator's current revision.
        revision: Revision,
        /// When the operator sent it.
        sent_at: Timestamp,
    },
}

impl ViewEvent {
    /// The revision the event brings the proxy to.
    pub fn revision(&self) -> Revision {
        match self {
            Self::Snapshot(snapshot) => snapshot.revision,
            Self::Upsert { revision, .. }
            | Self::Delete { revision, .. }
            | Self::Heartbeat { revision, .. } => *revision,
        }
    }
}

/// A message from a proxy to the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Ack {
    /// The proxy has applied every change up to and including `revision`.
    Applied {
        /// The last revision applied.
        revision: Revision,
        /// The proxy's server id, for `enforcedBy` and metrics.
        server_id: String,
    },
}

/// Why a line of the stream could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed lock-view message: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

/// Encodes a message as one line, newline included.
pub fn encode_line<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).expect("protocol types always serialise");
    line.push(b'\n');
    line
}

/// Decodes one line (with or without its newline).
pub fn decode_line<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, DecodeError> {
    Ok(serde_json::from_slice(line.trim_ascii_end())?)
}
