use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{LockingMode, RequireSessionMfa};

/// Per-role options that tighten how sessions holding the role are treated.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RoleOptions {
    /// `strict` makes every interaction holding this role strict, whatever the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockingMode>,
    /// Per-session MFA for resources this role's `allow` rules match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_session_mfa: Option<RequireSessionMfa>,
}

/// Resources a role allows or denies. `*` matches everything.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RoleConditions {
    /// OS logins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logins: Vec<String>,
    /// Kubernetes groups the kube proxy impersonates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_groups: Vec<String>,
    /// Labels of the kube proxies this role's Kubernetes rules apply at: label
    /// name to accepted values. Empty means every kube proxy (unlike
    /// `dbLabels`, where empty means none), so roles written before it keep
    /// their meaning.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kubernetes_labels: BTreeMap<String, Vec<String>>,
    /// Kubernetes users the kube proxy may impersonate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_users: Vec<String>,
    /// Database users a connection may log in as.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub db_users: Vec<String>,
    /// Database names a connection may open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub db_names: Vec<String>,
    /// Labels of the database proxies this applies to: label name to accepted values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub db_labels: BTreeMap<String, Vec<String>>,
}

/// An AccessRole, Teleport's `role` resource reduced to what Deadbolt enforces.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "deadbolt.dev",
    version = "v1",
    kind = "AccessRole",
    doc = "A role: what its holders may reach, and how strictly their sessions are locked.",
    status = "AccessRoleStatus",
    shortname = "arole",
    category = "deadbolt",
    printcolumn(name = "Lock", type_ = "string", json_path = ".spec.options.lock"),
    printcolumn(
        name = "Session-MFA",
        type_ = "string",
        json_path = ".spec.options.requireSessionMfa"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AccessRoleSpec {
    /// Locking mode and session MFA.
    #[serde(default)]
    pub options: RoleOptions,
    /// What holders may reach.
    #[serde(default)]
    pub allow: RoleConditions,
    /// What holders may never reach; deny wins over allow.
    #[serde(default)]
    pub deny: RoleConditions,
    /// Authenticated groups (from a token or certificate) that receive this role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 253)))]
    pub groups: Vec<String>,
}

/// What the operator has observed about an AccessRole.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessRoleStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (with the validation result as its message), and `Reconciling`
    /// and `Stalled` for kstatus (an invalid role is Stalled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
