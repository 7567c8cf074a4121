use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// What a Lock cuts off. Every field that is set is its own target: an
/// interaction is locked when any one of them matches it (Teleport's semantics).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[x_kube(validation = Rule::new(
    "has(self.user) || has(self.role) || has(self.login) || has(self.mfaDevice) || has(self.device) || has(self.serverId) || has(self.windowsDesktop) || has(self.accessRequest)"
).message("a lock target needs at least one of user, role, login, mfaDevice, device, serverId, windowsDesktop or accessRequest").reason(Reason::FieldValueRequired))]
#[serde(rename_all = "camelCase")]
pub struct LockTargetSpec {
    /// A Deadbolt or Kubernetes user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub user: Option<String>,
    /// An AccessRole name; every user holding it is locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub role: Option<String>,
    /// A login: an OS login, or the database user a connection asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub login: Option<String>,
    /// The UUID of an MfaDevice; sessions verified with it are locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub mfa_device: Option<String>,
    /// A trusted device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub device: Option<String>,
    /// A proxy's `serverId`; that proxy refuses everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub server_id: Option<String>,
    /// A Windows desktop name, kept for parity with Teleport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub windows_desktop: Option<String>,
    /// An access request id; privileges granted through it are locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub access_request: Option<String>,
}

/// A Lock: new interactions matching `target` are refused and live ones are cut,
/// until the lock expires or is deleted.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "deadbolt.dev",
    version = "v1",
    kind = "Lock",
    doc = "A lock on a user, role, login, MFA device, device, proxy, desktop or access request.",
    status = "LockStatus",
    shortname = "lk",
    category = "deadbolt",
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.target",
        description = "What the lock targets"
    ),
    printcolumn(name = "Message", type_ = "string", json_path = ".spec.message"),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.expiresAt"),
    printcolumn(
        name = "In-Force",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"InForce\")].status"
    ),
    printcolumn(
        name = "Enforced",
        type_ = "string",
        json_path = ".status.enforcedBy",
        description = "Connected proxies that have applied the lock"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!(has(self.expires) && has(self.ttl))").message("set at most one of expires and ttl").reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct LockSpec {
    /// What is locked.
    pub target: LockTargetSpec,
    /// Shown to the locked user after `is in force: `.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
    /// When the lock stops being in force (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
    /// How long the lock stays in force, counted from its creation (Go duration, e.g. `10h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(
            pattern = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))*$"
        )
    )]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("ttl must be a positive duration such as 10h or 90m"))]
    pub ttl: Option<String>,
}

/// What the operator has observed about a Lock.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LockStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the spec was understood), `Reconciling` and `Stalled` for
    /// kstatus (an invalid lock is Stalled), and `InForce` (the lock is unexpired).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the lock expires, from `expires` or creation + `ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Connected proxies that have applied the lock, out of all connected, e.g. `3/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced_by: Option<String>,
}
