use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A registered WebAuthn credential. The object's name is the device UUID that
/// `Lock.spec.target.mfaDevice` refers to.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "deadbolt.dev",
    version = "v1",
    kind = "MfaDevice",
    doc = "A user's registered WebAuthn device; its name is the device UUID locks target.",
    status = "MfaDeviceStatus",
    shortname = "mfa",
    category = "deadbolt",
    printcolumn(name = "User", type_ = "string", json_path = ".spec.user"),
    printcolumn(name = "Device", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Last-Used", type_ = "date", json_path = ".status.lastUsed"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')").message("an MfaDevice is named by its lowercase device UUID").reason(Reason::FieldValueInvalid)
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("an MfaDevice cannot be edited; delete it and register again"))]
#[serde(rename_all = "camelCase")]
pub struct MfaDeviceSpec {
    /// The user the device belongs to.
    #[schemars(length(min = 1, max = 253))]
    pub user: String,
    /// The name the user gave the device, e.g. `yubikey`.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// The WebAuthn credential as serialised by the MFA service (public key, counter, id).
    #[schemars(length(min = 1))]
    pub credential: String,
}

/// What the MFA service has observed about a device.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MfaDeviceStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the device last passed an MFA check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Time>,
    /// The highest WebAuthn signature counter the device has presented; an
    /// assertion must show a higher one (a lower one suggests a cloned key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_count: Option<u32>,
}
