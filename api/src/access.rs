//! Access decisions: what a caller's AccessRoles let it reach, next to the
//! lock check and just as pure. Teleport's role model: deny by default, a
//! matching `deny` of any role wins over every `allow`, `*` is a wildcard.
//!
//! - **Databases**: a connection is allowed when some role's `allow` matches
//!   the proxy's labels (`dbLabels`), the database user (`dbUsers`) and, where
//!   the protocol names one, the database (`dbNames`); it is refused when any
//!   role's `deny` matches the labels and the user or the database.
//! - **Kubernetes**: the kube proxy impersonates the caller with its
//!   authenticated groups plus the groups its roles grant
//!   (`allow.kubernetesGroups`), minus what any role denies; Kubernetes RBAC
//!   decides the rest.
//!
//! Role values may name a user's traits (`{{internal.db_users}}`,
//! `{{internal.logins}}`, `{{internal.kubernetes_groups}}`), as in Teleport.
//! A value expanded from a trait matches literally: a trait of `*` is not a
//! wildcard, so whoever edits traits cannot widen a role.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use crate::engine::Denial;
use crate::mfa::MfaDenied;
use crate::resources::{AccessRoleSpec, RoleConditions, UserTraits};

/// What every database refusal for lack of permission says, Teleport's words.
/// It names no database, user or label, so it tells a caller nothing it could
/// not see already.
pub const DATABASE_ACCESS_DENIED: &str =
    "access to db denied. User does not have permissions. Confirm database user and name.";

/// The group every authenticated Kubernetes user has; the API server adds it
/// to an impersonated user by itself.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";

/// What a database connection asks for.
#[derive(Clone, Copy, Debug)]
pub struct DatabaseRequest<'a> {
    /// The database user it logs in as (the session's login).
    pub db_user: &'a str,
    /// The database it opens, where the protocol fixes one at connect time
    /// (PostgreSQL always does); `None` skips the `dbNames` check.
    pub db_name: Option<&'a str>,
    /// The labels of the proxy the connection reached (`--label`).
    pub labels: &'a BTreeMap<String, String>,
}

/// Why a database connection is refused, for the audit log. The client only
/// ever sees [`DATABASE_ACCESS_DENIED`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessDenied {
    /// The caller holds no AccessRole at all.
    NoRoles,
    /// The role's `deny` matches the request.
    DeniedBy(String),
    /// No role's `allow` matches the request.
    NotAllowed,
}

impl AccessDenied {
    /// The text the client sees.
    pub fn message(&self) -> &'static str {
        DATABASE_ACCESS_DENIED
    }

    /// Why, for the audit log and the proxy's own log.
    pub fn reason(&self) -> String {
        match self {
            Self::NoRoles => "access denied: the caller has no AccessRole".into(),
            Self::DeniedBy(role) => format!("access denied by the deny rules of role {role:?}"),
            Self::NotAllowed => {
                "access denied: no role allows this database user, database and proxy".into()
            }
        }
    }
}

impl fmt::Display for AccessDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for AccessDenied {}

/// Why a proxy refuses an interaction: a lock (or a stale view in strict
/// mode), the caller's roles, or a missing MFA check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A lock is in force, or the view is unreliable in strict mode.
    Locked(Denial),
    /// The caller's roles do not allow it.
    Forbidden(AccessDenied),
    /// Per-session MFA is required and the credential does not carry a fresh check.
    Mfa(MfaDenied),
}

impl Refusal {
    /// The text the client sees.
    pub fn message(&self) -> Cow<'_, str> {
        match self {
            Self::Locked(denial) => Cow::Borrowed(denial.message()),
            Self::Forbidden(denied) => Cow::Borrowed(denied.message()),
            Self::Mfa(denied) => Cow::Owned(denied.message()),
        }
    }

    /// Why, for the audit log: the lock message, what the roles lacked, or the MFA check.
    pub fn reason(&self) -> String {
        match self {
            Self::Locked(denial) => denial.message().to_string(),
            Self::Forbidden(denied) => denied.reason(),
            Self::Mfa(denied) => denied.message(),
        }
    }

    /// The lock behind the refusal, if a lock is.
    pub fn lock(&self) -> Option<&str> {
        match self {
            Self::Locked(Denial::Locked { lock, .. }) => Some(lock),
            _ => None,
        }
    }
}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        Self::Locked(denial)
    }
}

impl From<MfaDenied> for Refusal {
    fn from(denied: MfaDenied) -> Self {
        Self::Mfa(denied)
    }
}

impl From<AccessDenied> for Refusal {
    fn from(denied: AccessDenied) -> Self {
        Self::Forbidden(denied)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Decides a database connection from the caller's roles (`(name, spec)`;
/// roles without a spec are the caller's business, not a grant) and its traits.
pub fn check_database(
    roles: &[(&str, &AccessRoleSpec)],
    traits: &UserTraits,
    request: &DatabaseRequest<'_>,
) -> Result<(), AccessDenied> {
    if roles.is_empty() {
        return Err(AccessDenied::NoRoles);
    }
    if let Some((name, _)) = roles
        .iter()
        .find(|(_, spec)| denies_database(&spec.deny, traits, request))
    {
        return Err(AccessDenied::DeniedBy((*name).to_string()));
    }
    if roles
        .iter()
        .any(|(_, spec)| allows_database(&spec.allow, traits, request))
    {
        Ok(())
    } else {
        Err(AccessDenied::NotAllowed)
    }
}

/// Whether `allow` conditions admit the request: every part must match. Empty
/// lists and label maps match nothing (deny by default).
pub fn allows_database(
    allow: &RoleConditions,
    traits: &UserTraits,
    request: &DatabaseRequest<'_>,
) -> bool {
    labels_match(&allow.db_labels, request.labels)
        && values_match(&allow.db_users, traits, request.db_user)
        && request
            .db_name
            .is_none_or(|name| values_match(&allow.db_names, traits, name))
}

/// Whether `deny` conditions refuse the request: the labels match (a deny
/// without `dbLabels` applies to every proxy) and the user or the database does.
pub fn denies_database(
    deny: &RoleConditions,
    traits: &UserTraits,
    request: &DatabaseRequest<'_>,
) -> bool {
    let labels = deny.db_labels.is_empty() || labels_match(&deny.db_labels, request.labels);
    labels
        && (values_match(&deny.db_users, traits, request.db_user)
            || request
                .db_name
                .is_some_and(|name| values_match(&deny.db_names, traits, name)))
}

/// The groups the kube proxy with `labels` impersonates: the caller's
/// authenticated groups plus the literal groups its roles allow there (trait
/// expansions included), minus every group any role denies there (`*` and
/// globs apply in `deny`). A role's rules apply at the kube proxies its
/// `kubernetesLabels` select, every kube proxy when it has none. Never
/// `system:authenticated`, which the API server adds itself; never a
/// `system:` group that only a trait or a pattern produced.
pub fn kubernetes_groups(
    authenticated: &[String],
    roles: &[&AccessRoleSpec],
    traits: &UserTraits,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    let denied: Vec<Value<'_>> = roles
        .iter()
        .filter(|spec| labels_apply(&spec.deny.kubernetes_labels, labels))
        .flat_map(|spec| expand(&spec.deny.kubernetes_groups, traits))
        .collect();
    let granted = roles
        .iter()
        .filter(|spec| labels_apply(&spec.allow.kubernetes_labels, labels))
        .flat_map(|spec| expand(&spec.allow.kubernetes_groups, traits))
        .filter_map(|value| match value {
            // A pattern in `allow` names no group to impersonate.
            Value::Pattern(pattern) if is_pattern(pattern) => None,
            Value::Pattern(group) => Some(group.to_string()),
            Value::Trait(group) if group.starts_with("system:") => None,
            Value::Trait(group) => Some(group.to_string()),
        });
    let mut groups: Vec<String> = authenticated
        .iter()
        .cloned()
        .chain(granted)
        .filter(|group| {
            !group.is_empty()
                && group != ALL_AUTHENTICATED
                && !denied.iter().any(|value| value.matches(group))
        })
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// One value of a role rule after template expansion.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    /// Written in the role: may be `*` or a glob.
    Pattern(&'a str),
    /// Expanded from a user's trait: matches literally.
    Trait(&'a str),
}

impl Value<'_> {
    fn matches(self, candidate: &str) -> bool {
        match self {
            Self::Pattern(pattern) => glob_match(pattern, candidate),
            Self::Trait(value) => value == candidate,
        }
    }
}

/// Expands `{{internal.<trait>}}` values into the user's traits; an unknown
/// trait or template expands to nothing.
fn expand<'a>(values: &'a [String], traits: &'a UserTraits) -> impl Iterator<Item = Value<'a>> {
    values.iter().flat_map(move |value| {
        let expanded: Box<dyn Iterator<Item = Value<'a>>> = match template(value) {
            None => Box::new(std::iter::once(Value::Pattern(value.as_str()))),
            Some(name) => Box::new(
                trait_values(traits, name)
                    .iter()
                    .map(|value| Value::Trait(value.as_str())),
            ),
        };
        expanded
    })
}

/// The trait a `{{internal.NAME}}` value names, `Some("")` for any other template.
fn template(value: &str) -> Option<&str> {
    let inner = value.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    Some(inner.strip_prefix("internal.").unwrap_or(""))
}

fn trait_values<'a>(traits: &'a UserTraits, name: &str) -> &'a [String] {
    match name {
        "logins" => &traits.logins,
        "db_users" => &traits.db_users,
        "kubernetes_groups" => &traits.kubernetes_groups,
        _ => &[],
    }
}

/// Whether any value of a rule admits `candidate`.
fn values_match(values: &[String], traits: &UserTraits, candidate: &str) -> bool {
    expand(values, traits).any(|value| value.matches(candidate))
}

/// Teleport's label matching: every key of the selector must be present with
/// one of its values; a key `*` with value `*` matches every proxy. An empty
/// selector matches nothing.
/// Whether rules with this label `selector` apply at a proxy with `labels`:
/// an empty selector applies everywhere (`kubernetesLabels`).
pub fn labels_apply(
    selector: &BTreeMap<String, Vec<String>>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_empty() || labels_match(selector, labels)
}

/// Whether a label `selector` selects `labels`; an empty one selects nothing
/// (`dbLabels`, deny by default).
fn labels_match(
    selector: &BTreeMap<String, Vec<String>>,
    labels: &BTreeMap<String, String>,
) -> bool {
    if selector.is_empty() {
        return false;
    }
    selector.iter().all(|(key, accepted)| {
        if key == "*" {
            return accepted.iter().any(|value| value == "*");
        }
        labels
            .get(key)
            .is_some_and(|value| accepted.iter().any(|pattern| glob_match(pattern, value)))
    })
}

fn is_pattern(value: &str) -> bool {
    value.contains('*')
}

/// `*` matches any run of characters (including none); everything else is literal.
pub fn glob_match(pattern: &str, candidate: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = candidate.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|v| v.to_string()).collect()))
            .collect()
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    fn role(users: &[&str], names: &[&str], env: &[&str]) -> AccessRoleSpec {
        AccessRoleSpec {
            allow: RoleConditions {
                db_users: strings(users),
                db_names: strings(names),
                db_labels: selector(&[("env", env)]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("prod-*", "prod-eu"));
        assert!(!glob_match("prod-*", "dev-eu"));
        assert!(glob_match("*-eu", "prod-eu"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(!glob_match("a*b*c", "a-x-c-b"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("ab*ab", "ab"));
    }

    #[test]
    fn allow_needs_labels_user_and_name() {
        let app = role(&["app"], &["app"], &["dev"]);
        let dev = labels(&[("env", "dev")]);
        let traits = UserTraits::default();
        let roles = [("app", &app)];
        let request = |db_user, db_name, labels| DatabaseRequest {
            db_user,
            db_name,
            labels,
        };
        assert_eq!(
            check_database(&roles, &traits, &request("app", Some("app"), &dev)),
            Ok(())
        );
        assert_eq!(
            check_database(&roles, &traits, &request("postgres", Some("app"), &dev)),
            Err(AccessDenied::NotAllowed)
        );
        assert_eq!(
            check_database(&roles, &traits, &request("app", Some("postgres"), &dev)),
            Err(AccessDenied::NotAllowed)
        );
        let prod = labels(&[("env", "prod")]);
        assert_eq!(
            check_database(&roles, &traits, &request("app", Some("app"), &prod)),
            Err(AccessDenied::NotAllowed)
        );
        // MySQL without a database: the name is not checked.
        assert_eq!(
            check_database(&roles, &traits, &request("app", None, &dev)),
            Ok(())
        );
        assert_eq!(
            check_database(&[], &traits, &request("app", Some("app"), &dev)),
            Err(AccessDenied::NoRoles)
        );
    }

    #[test]
    fn empty_rules_allow_nothing() {
        let empty = AccessRoleSpec::default();
        let dev = labels(&[("env", "dev")]);
        let request = DatabaseRequest {
            db_user: "app",
            db_name: Some("app"),
            labels: &dev,
        };
        assert_eq!(
            check_database(&[("empty", &empty)], &UserTraits::default(), &request),
            Err(AccessDenied::NotAllowed)
        );
        let no_labels = AccessRoleSpec {
            allow: RoleConditions {
                db_users: strings(&["*"]),
                db_names: strings(&["*"]),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            check_database(
                &[("no-labels", &no_labels)],
                &UserTraits::default(),
                &request
            ),
            Err(AccessDenied::NotAllowed)
        );
    }

    #[test]
    fn deny_wins_and_applies_everywhere_without_labels() {
        let everything = role(&["*"], &["*"], &["*"]);
        let no_superuser = AccessRoleSpec {
            deny: RoleConditions {
                db_users: strings(&["postgres"]),
                ..Default::default()
            },
            ..Default::default()
        };
        let roles = [("everything", &everything), ("no-superuser", &no_superuser)];
        let dev = labels(&[("env", "dev")]);
        let traits = UserTraits::default();
        let as_user = |db_user| DatabaseRequest {
            db_user,
            db_name: Some("app"),
            labels: &dev,
        };
        assert_eq!(check_database(&roles, &traits, &as_user("app")), Ok(()));
        assert_eq!(
            check_database(&roles, &traits, &as_user("postgres")),
            Err(AccessDenied::DeniedBy("no-superuser".into()))
        );
        let deny_prod_db = AccessRoleSpec {
            deny: RoleConditions {
                db_names: strings(&["billing"]),
                db_labels: selector(&[("env", &["prod"])]),
                ..Default::default()
            },
            ..Default::default()
        };
        let roles = [("everything", &everything), ("no-billing", &deny_prod_db)];
        let prod = labels(&[("env", "prod")]);
        let billing = |labels| DatabaseRequest {
            db_user: "app",
            db_name: Some("billing"),
            labels,
        };
        assert!(check_database(&roles, &traits, &billing(&prod)).is_err());
        assert_eq!(check_database(&roles, &traits, &billing(&dev)), Ok(()));
    }

    #[test]
    fn wildcard_labels_and_globs() {
        let any = AccessRoleSpec {
            allow: RoleConditions {
                db_users: strings(&["app"]),
                db_names: strings(&["*"]),
                db_labels: selector(&[("*", &["*"])]),
                ..Default::default()
            },
            ..Default::default()
        };
        let unlabelled = BTreeMap::new();
        let request = DatabaseRequest {
            db_user: "app",
            db_name: Some("whatever"),
            labels: &unlabelled,
        };
        assert_eq!(
            check_database(&[("any", &any)], &UserTraits::default(), &request),
            Ok(())
        );
        let regional = role(&["app"], &["*"], &["prod-*"]);
        let eu = labels(&[("env", "prod-eu"), ("team", "x")]);
        let request = DatabaseRequest {
            db_user: "app",
            db_name: Some("x"),
            labels: &eu,
        };
        assert_eq!(
            check_database(&[("regional", &regional)], &UserTraits::default(), &request),
            Ok(())
        );
    }

    #[test]
    fn traits_fill_templates_literally() {
        let templated = role(&["{{internal.db_users}}"], &["*"], &["dev"]);
        let traits = UserTraits {
            db_users: strings(&["alice_rw", "*"]),
            ..Default::default()
        };
        let dev = labels(&[("env", "dev")]);
        let as_user = |db_user| DatabaseRequest {
            db_user,
            db_name: Some("app"),
            labels: &dev,
        };
        let roles = [("templated", &templated)];
        assert_eq!(
            check_database(&roles, &traits, &as_user("alice_rw")),
            Ok(())
        );
        // A trait of `*` is a user name, not a wildcard.
        assert!(check_database(&roles, &traits, &as_user("postgres")).is_err());
        assert_eq!(check_database(&roles, &traits, &as_user("*")), Ok(()));
        assert!(
            check_database(&roles, &UserTraits::default(), &as_user("alice_rw")).is_err(),
            "no traits, nothing allowed"
        );
        let spaced = role(&["{{ internal.db_users }}"], &["*"], &["dev"]);
        assert_eq!(
            check_database(&[("spaced", &spaced)], &traits, &as_user("alice_rw")),
            Ok(())
        );
        let unknown = role(&["{{external.email}}"], &["*"], &["dev"]);
        assert!(check_database(&[("unknown", &unknown)], &traits, &as_user("alice_rw")).is_err());
    }

    #[test]
    fn kubernetes_groups_are_authenticated_plus_granted_minus_denied() {
        let dev = AccessRoleSpec {
            allow: RoleConditions {
                kubernetes_groups: strings(&[
                    "developers",
                    "viewers",
                    "*",
                    "ops-*",
                    "{{internal.kubernetes_groups}}",
                ]),
                ..Default::default()
            },
            ..Default::default()
        };
        let no_admin = AccessRoleSpec {
            deny: RoleConditions {
                kubernetes_groups: strings(&["cluster-admins", "sys*"]),
                ..Default::default()
            },
            ..Default::default()
        };
        let lockdown = AccessRoleSpec {
            deny: RoleConditions {
                kubernetes_groups: strings(&["*"]),
                ..Default::default()
            },
            ..Default::default()
        };
        let traits = UserTraits {
            kubernetes_groups: strings(&["team-a", "system:masters"]),
            ..Default::default()
        };
        let authenticated = strings(&["cluster-admins", ALL_AUTHENTICATED, "sre", "system:nodes"]);
        assert_eq!(
            kubernetes_groups(&authenticated, &[&dev], &traits, &BTreeMap::new()),
            [
                "cluster-admins",
                "developers",
                "sre",
                "system:nodes",
                "team-a",
                "viewers"
            ],
            "a system: group from a trait is never impersonated; the credential's own stays"
        );
        assert_eq!(
            kubernetes_groups(
                &authenticated,
                &[&dev, &no_admin],
                &traits,
                &BTreeMap::new()
            ),
            ["developers", "sre", "team-a", "viewers"]
        );
        assert!(
            kubernetes_groups(
                &authenticated,
                &[&dev, &lockdown],
                &traits,
                &BTreeMap::new()
            )
            .is_empty()
        );
        assert_eq!(
            kubernetes_groups(
                &strings(&["sre"]),
                &[],
                &UserTraits::default(),
                &BTreeMap::new()
            ),
            ["sre"]
        );
    }

    #[test]
    fn kubernetes_rules_apply_at_the_kube_proxies_their_labels_select() {
        let env = |value: &str| -> BTreeMap<String, Vec<String>> {
            [("env".to_string(), vec![value.to_string()])].into()
        };
        let prod = AccessRoleSpec {
            allow: RoleConditions {
                kubernetes_groups: strings(&["prod-admins"]),
                kubernetes_labels: env("prod"),
                ..Default::default()
            },
            deny: RoleConditions {
                kubernetes_groups: strings(&["dev-*"]),
                kubernetes_labels: env("prod"),
                ..Default::default()
            },
            ..Default::default()
        };
        let everywhere = AccessRoleSpec {
            allow: RoleConditions {
                kubernetes_groups: strings(&["dev-viewers"]),
                ..Default::default()
            },
            ..Default::default()
        };
        let traits = UserTraits::default();
        let at = |value: &str| BTreeMap::from([("env".to_string(), value.to_string())]);
        assert_eq!(
            kubernetes_groups(&[], &[&prod, &everywhere], &traits, &at("prod")),
            ["prod-admins"],
            "at prod: its grant, and its deny of dev-*"
        );
        assert_eq!(
            kubernetes_groups(&[], &[&prod, &everywhere], &traits, &at("dev")),
            ["dev-viewers"],
            "at dev: neither the prod grant nor the prod deny"
        );
    }
}
