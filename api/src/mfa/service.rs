//! The MFA service's HTTP contract, shared by the operator that serves it and
//! `kubectl deadbolt` that calls it. JSON bodies over HTTPS; the caller is
//! authenticated by a Kubernetes bearer token (`Authorization: Bearer`) or a
//! Deadbolt client certificate.
//!
//! A ceremony is two calls, `begin` and `finish`, made over one connection:
//! its state stays in the replica that began it, bound to the caller, good for
//! one `finish` within [`CEREMONY_TTL`]. The WebAuthn payloads are carried as
//! the JSON the WebAuthn specification gives them (`webauthn-rs-proto`'s
//! types), which is what browsers and authenticator libraries produce.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// `POST`: starts registering a security key ([`RegisterBegin`] → [`Challenge`]).
pub const REGISTER_BEGIN_PATH: &str = "/v1/mfa/register/begin";
/// `POST`: finishes it ([`RegisterFinish`] → [`Device`]).
pub const REGISTER_FINISH_PATH: &str = "/v1/mfa/register/finish";
/// `POST`: starts an MFA check (empty body → [`Challenge`]).
pub const AUTHENTICATE_BEGIN_PATH: &str = "/v1/mfa/authenticate/begin";
/// `POST`: finishes it ([`AuthenticateFinish`] → [`SessionCredential`]).
pub const AUTHENTICATE_FINISH_PATH: &str = "/v1/mfa/authenticate/finish";
/// `GET`: the caller's devices ([`Devices`]); `DELETE {path}/{uuid}` removes one.
pub const DEVICES_PATH: &str = "/v1/mfa/devices";
/// `GET`: who the caller is, its roles, locks and MFA state ([`WhoAmI`]).
pub const WHOAMI_PATH: &str = "/v1/whoami";

/// The longest device name, in characters.
pub const MAX_DEVICE_NAME: usize = 64;

/// A device name is 1 to [`MAX_DEVICE_NAME`] characters without control
/// characters: the service refuses others, and the client checks before it
/// touches the key.
pub fn check_device_name(name: &str) -> Result<(), String> {
    let length = name.chars().count();
    if length == 0 || length > MAX_DEVICE_NAME {
        return Err(format!(
            "invalid MFA device name {name:?}: it must be 1 to {MAX_DEVICE_NAME} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "invalid MFA device name {name:?}: control characters are not allowed"
        ));
    }
    Ok(())
}

/// How long a ceremony's state waits for its `finish`.
pub const CEREMONY_TTL: Duration = Duration::from_secs(120);

/// Starts registering a device.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBegin {
    /// The name the user gives the device, e.g. `yubikey` (1 to 64 characters).
    pub name: String,
}

/// A WebAuthn challenge and the ceremony it belongs to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    /// Names the ceremony's state on the server; send it back with `finish`.
    pub ceremony: String,
    /// `CreationChallengeResponse` (registration) or `RequestChallengeResponse`
    /// (authentication), as WebAuthn JSON.
    pub challenge: serde_json::Value,
}

/// Finishes registering a device.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegisterFinish {
    /// From [`Challenge::ceremony`].
    pub ceremony: String,
    /// The authenticator's `RegisterPublicKeyCredential`.
    pub credential: serde_json::Value,
}

/// A registered device.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// The device UUID: the MfaDevice's name, and what `target.mfaDevice` locks.
    pub uuid: String,
    /// The name the user gave it.
    pub name: String,
    /// Its owner.
    pub user: String,
    /// When it was registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
    /// When it last passed an MFA check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Timestamp>,
}

/// The caller's devices.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    /// Oldest first.
    pub devices: Vec<Device>,
}

/// Finishes an MFA check and asks for a session credential.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticateFinish {
    /// From [`Challenge::ceremony`].
    pub ceremony: String,
    /// The authenticator's `PublicKeyCredential` (the assertion).
    pub assertion: serde_json::Value,
    /// The public key to certify (SubjectPublicKeyInfo, PEM); its private key
    /// never leaves the client.
    pub public_key_pem: String,
    /// Narrows the credential to one proxy (a kube proxy's or a database
    /// proxy's server id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A short-lived client certificate after an MFA check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionCredential {
    /// The certificate (PEM): the user, groups, roles, the MFA device and when it was verified.
    pub certificate_pem: String,
    /// The Deadbolt CA (PEM), which proxies' serving certificates chain to.
    pub ca_pem: String,
    /// When the certificate stops starting new sessions.
    pub expires_at: Timestamp,
    /// The device that passed the check.
    pub mfa_device: String,
}

/// A lock in force against the caller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LockInForce {
    /// The Lock's name.
    pub name: String,
    /// What it says.
    pub message: String,
    /// When it expires, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// Who the caller is, as Deadbolt sees it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// The user.
    pub user: String,
    /// Authenticated groups.
    pub groups: Vec<String>,
    /// AccessRoles held.
    pub roles: Vec<String>,
    /// Locks in force against the user, its roles or its credential's devices.
    pub locks: Vec<LockInForce>,
    /// Whether the cluster requires per-session MFA everywhere.
    pub cluster_requires_mfa: bool,
    /// Registered MFA devices.
    pub mfa_devices: usize,
    /// Failed MFA checks in a row.
    pub failed_mfa_attempts: u32,
    /// Until when new MFA credentials are refused after too many failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_locked_until: Option<Timestamp>,
}

/// A refusal from the MFA service: a Kubernetes-style `Status` body's message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What went wrong and what to do.
    pub message: String,
}
