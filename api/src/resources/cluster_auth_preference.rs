use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LockingMode, RequireSessionMfa};

/// The one name a ClusterAuthPreference may have, as in Teleport.
pub const CLUSTER_AUTH_PREFERENCE_NAME: &str = "cluster-auth-preference";

/// How long a proxy may go without hearing from the operator before its view is unreliable,
/// when the ClusterAuthPreference does not say.
pub const DEFAULT_MAX_LOCK_STALENESS: &str = "30s";

/// The second factor users register and verify with.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecondFactor {
    /// No second factor.
    #[default]
    Off,
    /// Time-based one-time passwords.
    Otp,
    /// WebAuthn security keys and passkeys.
    Webauthn,
    /// Any supported second factor, required.
    On,
    /// Any supported second factor, if the user registered one.
    Optional,
}

/// WebAuthn relying-party settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Webauthn {
    /// Relying party id: the domain credentials are scoped to.
    #[schemars(length(min = 1, max = 253))]
    pub rp_id: String,
    /// Origins allowed to run ceremonies, e.g. `https://deadbolt.example.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(
            length(max = 512),
            regex(pattern = r"^(https://|http://localhost(:[0-9]+)?(/|$))")
        )
    )]
    pub origins: Vec<String>,
}

/// How many failed MFA checks lock a user out of new MFA credentials, and for
/// how long: Teleport's login lock-out (5 attempts, 30 minutes by default).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MfaLockout {
    /// Failed MFA checks in a row that lock the user out (default 5). Failures
    /// are forgotten once the last is `duration` old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_failed_attempts: Option<u32>,
    /// How long the lock-out lasts (Go duration, default 30m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(
            pattern = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))*$"
        )
    )]
    pub duration: Option<String>,
}

/// Failed MFA checks that lock a user out when the ClusterAuthPreference does not say.
pub const DEFAULT_MFA_MAX_FAILED_ATTEMPTS: u32 = 5;

/// How long an MFA lock-out lasts when the ClusterAuthPreference does not say.
pub const DEFAULT_MFA_LOCKOUT: &str = "30m";

/// The cluster-wide authentication preferences.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "deadbolt.dev",
    version = "v1",
    kind = "ClusterAuthPreference",
    doc = "Cluster-wide locking mode, session MFA and lock-view staleness; a singleton.",
    status = "ClusterAuthPreferenceStatus",
    shortname = "cap",
    category = "deadbolt",
    printcolumn(name = "Locking-Mode", type_ = "string", json_path = ".status.lockingMode"),
    printcolumn(name = "Session-MFA", type_ = "string", json_path = ".status.requireSessionMfa"),
    printcolumn(name = "Max-Staleness", type_ = "string", json_path = ".status.maxLockStaleness"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name == 'cluster-auth-preference'").message("a ClusterAuthPreference must be named cluster-auth-preference").reason(Reason::FieldValueInvalid)
)]
#[x_kube(validation = Rule::new("!has(self.requireSessionMfa) || self.requireSessionMfa == 'false' || (has(self.secondFactor) && self.secondFactor in ['webauthn', 'on', 'optional'])").message("requireSessionMfa needs secondFactor webauthn, on or optional"))]
#[x_kube(validation = Rule::new("!has(self.secondFactor) || !(self.secondFactor in ['webauthn', 'on', 'optional']) || has(self.webauthn)").message("secondFactor webauthn, on and optional need webauthn.rpId"))]
#[serde(rename_all = "camelCase")]
pub struct ClusterAuthPreferenceSpec {
    /// The cluster default; any role with `options.lock: strict` overrides it per interaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locking_mode: Option<LockingMode>,
    /// Per-session MFA for every session in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_session_mfa: Option<RequireSessionMfa>,
    /// The second factor users register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_factor: Option<SecondFactor>,
    /// WebAuthn relying-party settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webauthn: Option<Webauthn>,
    /// How long a proxy may go without hearing from the operator before its lock view is
    /// unreliable (Go duration, default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(
            pattern = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))*$"
        )
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("maxLockStaleness must be at least 1s: proxies hear a heartbeat every second"))]
    pub max_lock_staleness: Option<String>,
    /// Lock-out after repeated failed MFA checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_lockout: Option<MfaLockout>,
}

impl ClusterAuthPreferenceSpec {
    /// The locking mode in effect: `best_effort` unless set.
    pub fn effective_locking_mode(&self) -> LockingMode {
        self.locking_mode.unwrap_or_default()
    }

    /// The session MFA requirement in effect: off unless set.
    pub fn effective_require_session_mfa(&self) -> RequireSessionMfa {
        self.require_session_mfa.unwrap_or_default()
    }

    /// Failed MFA checks in a row that lock a user out of new MFA credentials.
    pub fn effective_mfa_max_failed_attempts(&self) -> u32 {
        self.mfa_lockout
            .as_ref()
            .and_then(|lockout| lockout.max_failed_attempts)
            .unwrap_or(DEFAULT_MFA_MAX_FAILED_ATTEMPTS)
            .max(1)
    }

    /// How long an MFA lock-out lasts, falling back to the default when unset or unparsable.
    pub fn effective_mfa_lockout(&self) -> std::time::Duration {
        self.mfa_lockout
            .as_ref()
            .and_then(|lockout| lockout.duration.as_deref())
            .and_then(|text| crate::duration::parse(text).ok())
            .unwrap_or_else(|| crate::duration::parse(DEFAULT_MFA_LOCKOUT).expect("default parses"))
    }

    /// The staleness bound in effect, falling back to the default when unset or unparsable.
    pub fn effective_max_lock_staleness(&self) -> std::time::Duration {
        self.max_lock_staleness
            .as_deref()
            .and_then(|text| crate::duration::parse(text).ok())
            .unwrap_or_else(|| {
                crate::duration::parse(DEFAULT_MAX_LOCK_STALENESS).expect("default parses")
            })
    }
}

/// The values in effect, written by the operator so they are visible even when defaulted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAuthPreferenceStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and `Reconciling` and `Stalled` for kstatus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The effective locking mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locking_mode: Option<LockingMode>,
    /// The effective session MFA requirement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_session_mfa: Option<RequireSessionMfa>,
    /// The effective staleness bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lock_staleness: Option<String>,
}
