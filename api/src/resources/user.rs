use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a user comes from, which decides who may edit it and how long it lives.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    /// Created and edited in Deadbolt.
    #[default]
    Local,
    /// A machine identity.
    Bot,
    /// Mirrors a user of an identity provider; can be deleted, not edited.
    Sso,
    /// Created at an SSO login and deleted at `expires` (at most 30h later).
    Temporary,
}

/// Traits fill in a role's templates and name what the user may log in as.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserTraits {
    /// OS logins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logins: Vec<String>,
    /// Kubernetes groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_groups: Vec<String>,
    /// Database users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub db_users: Vec<String>,
}

/// A Deadbolt user: its roles, traits, and lifecycle.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "deadbolt.dev",
    version = "v1",
    kind = "User",
    doc = "A user: local, bot, SSO, temporary, or synced from an identity provider.",
    status = "UserStatus",
    shortname = "dbu",
    category = "deadbolt",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Roles", type_ = "string", json_path = ".spec.roles"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspended"),
    printcolumn(name = "Locked", type_ = "boolean", json_path = ".status.locked"),
    printcolumn(name = "Expires", type_ = "date", json_path = ".spec.expires"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.type != 'temporary' || has(self.expires)").message("a temporary user needs spec.expires (at most 30h after creation)").reason(Reason::FieldValueRequired))]
#[x_kube(validation = Rule::new("!has(self.expires) || self.type == 'temporary'").message("only temporary users expire; set type: temporary or remove spec.expires"))]
#[x_kube(validation = Rule::new("self.type == oldSelf.type").message("a user's type cannot change"))]
#[x_kube(validation = Rule::new("has(self.username) == has(oldSelf.username) && (!has(self.username) || self.username == oldSelf.username)").message("a user's username cannot change; create a new User instead"))]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// The name credentials carry for this user (a certificate's common name,
    /// a token's username), when it cannot be the object's name: Kubernetes
    /// object names cannot hold `@`, e-mail addresses do. Default: the
    /// object's name. Locks, automatic locks and lock messages use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[^\s]+$"))]
    pub username: Option<String>,
    /// AccessRole names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Logins, Kubernetes groups and database users.
    #[serde(default)]
    pub traits: UserTraits,
    /// Where the user comes from.
    #[serde(default, rename = "type")]
    pub type_: UserType,
    /// When a temporary user is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
    /// Suspended in the identity provider; a synced user is then locked automatically.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
}

impl User {
    /// The name credentials carry for this user: `spec.username`, else the object's name.
    pub fn username(&self) -> &str {
        self.spec
            .username
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

impl UserSpec {
    /// The user's name given its object's `name`: `username`, else `name`.
    pub fn username_or<'a>(&'a self, name: &'a str) -> &'a str {
        self.username.as_deref().unwrap_or(name)
    }
}

/// What the operator has observed about a User.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and `Reconciling` and `Stalled` for kstatus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Whether any lock is in force for the user.
    #[serde(default)]
    pub locked: bool,
    /// The lock that locks the user, when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
}
