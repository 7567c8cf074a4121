//! Per-session MFA, the domain rules in one place: when a new session needs a
//! fresh MFA check, and whether a credential carries one.
//!
//! Teleport's rule: MFA is required when the cluster requires it, or when any
//! of the caller's roles both requires it and has `allow` rules matching the
//! resource. Roles that do not match the resource do not count. An MFA check
//! yields a short credential (a client certificate from the MFA service,
//! [`crate::credential`]) that starts new sessions for [`CREDENTIAL_TTL`]; a
//! session it started lives on after that, until a lock ends it.
//!
//! The MFA service's HTTP contract is in [`service`].

pub mod service;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use crate::access::{DatabaseRequest, allows_database, labels_apply};
use crate::credential::CertIdentity;
use crate::resources::{AccessRoleSpec, RequireSessionMfa, UserTraits};

/// How long an MFA credential starts new sessions.
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(5 * 60);

/// How far in the future an MFA check's time may be (clocks differ a little).
const FUTURE_SKEW: Duration = Duration::from_secs(60);

/// What the session reaches, for deciding whether a role's rules match it.
#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    /// A database connection.
    Database(&'a DatabaseRequest<'a>),
    /// The Kubernetes API behind a kube proxy with these labels.
    Kubernetes {
        /// The kube proxy's labels (`--label`).
        labels: &'a BTreeMap<String, String>,
    },
}

/// Whether a new session on `resource` needs a fresh MFA check.
pub fn required(
    cluster: RequireSessionMfa,
    roles: &[(&str, &AccessRoleSpec)],
    traits: &UserTraits,
    resource: Resource<'_>,
) -> bool {
    cluster.is_required()
        || roles.iter().any(|(_, spec)| {
            spec.options
                .require_session_mfa
                .is_some_and(RequireSessionMfa::is_required)
                && matches(spec, traits, resource)
        })
}

/// Whether a role's `allow` rules reach the resource: for a database, labels,
/// user and name all match; for Kubernetes, the role grants groups or users at
/// a proxy its `kubernetesLabels` select.
fn matches(spec: &AccessRoleSpec, traits: &UserTraits, resource: Resource<'_>) -> bool {
    match resource {
        Resource::Database(request) => allows_database(&spec.allow, traits, request),
        Resource::Kubernetes { labels } => {
            (!spec.allow.kubernetes_groups.is_empty() || !spec.allow.kubernetes_users.is_empty())
                && labels_apply(&spec.allow.kubernetes_labels, labels)
        }
    }
}

/// Why a credential cannot start this session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MfaDenied {
    /// MFA is required and the credential carries no MFA check.
    Required,
    /// MFA is required and the credential's check is older than [`CREDENTIAL_TTL`].
    Expired {
        /// When the check was made (unix seconds).
        verified_at: i64,
    },
    /// The credential was issued for another proxy.
    OtherTarget {
        /// The proxy it names.
        target: String,
    },
}

/// What a client hears when MFA is missing: it says what to do, and names
/// nothing about the resource.
pub const MFA_REQUIRED_MESSAGE: &str = "per-session MFA is required for this session: \
     run `kubectl deadbolt login --mfa` and connect with the certificate it issues \
     (kubectl: use it as the exec credential plugin)";

impl MfaDenied {
    /// The text the client sees.
    pub fn message(&self) -> String {
        match self {
            Self::Required => MFA_REQUIRED_MESSAGE.to_string(),
            Self::Expired { .. } => format!(
                "the MFA check behind this certificate is older than {} minutes; {MFA_REQUIRED_MESSAGE}",
                CREDENTIAL_TTL.as_secs() / 60
            ),
            Self::OtherTarget { target } => format!(
                "this certificate was issued for proxy {target:?} only; \
                 run `kubectl deadbolt login --mfa` for this one"
            ),
        }
    }
}

impl fmt::Display for MfaDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for MfaDenied {}

/// Whether `credential` may start a session at proxy `server_id` now. A
/// credential narrowed to another proxy is refused whatever the requirement;
/// otherwise, when MFA is `required`, its check must be younger than
/// [`CREDENTIAL_TTL`] (and not from the future).
pub fn check_credential(
    credential: &CertIdentity,
    server_id: &str,
    required: bool,
    now: Timestamp,
) -> Result<(), MfaDenied> {
    if let Some(target) = &credential.target
        && target != server_id
    {
        return Err(MfaDenied::OtherTarget {
            target: target.clone(),
        });
    }
    if !required {
        return Ok(());
    }
    let (Some(verified_at), Some(_)) = (credential.mfa_verified_at, &credential.mfa_device) else {
        return Err(MfaDenied::Required);
    };
    let now = now.as_second();
    let fresh = verified_at <= now.saturating_add(FUTURE_SKEW.as_secs() as i64)
        && now.saturating_sub(verified_at) <= CREDENTIAL_TTL.as_secs() as i64;
    if fresh {
        Ok(())
    } else {
        Err(MfaDenied::Expired { verified_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RoleConditions, RoleOptions};

    fn role(mfa: bool, conditions: RoleConditions) -> AccessRoleSpec {
        AccessRoleSpec {
            options: RoleOptions {
                require_session_mfa: mfa.then_some(RequireSessionMfa::Session),
                ..Default::default()
            },
            allow: conditions,
            ..Default::default()
        }
    }

    fn env(value: &str) -> BTreeMap<String, Vec<String>> {
        [("env".to_string(), vec![value.to_string()])].into()
    }

    /// The reference's example: access-dev (no MFA, env: dev) and access-prod
    /// (MFA, env: prod), both held by Jerry.
    fn jerry() -> (AccessRoleSpec, AccessRoleSpec) {
        let database = |labels| RoleConditions {
            db_labels: labels,
            db_users: vec!["jerry".into()],
            db_names: vec!["*".into()],
            kubernetes_groups: vec!["engineers".into()],
            ..Default::default()
        };
        let dev = role(
            false,
            RoleConditions {
                kubernetes_labels: env("dev"),
                ..database(env("dev"))
            },
        );
        let prod = role(
            true,
            RoleConditions {
                kubernetes_labels: env("prod"),
                ..database(env("prod"))
            },
        );
        (dev, prod)
    }

    #[test]
    fn only_roles_matching_the_resource_count() {
        let (dev, prod) = jerry();
        let roles = [("access-dev", &dev), ("access-prod", &prod)];
        let traits = UserTraits::default();
        for (proxy, expected) in [("dev", false), ("prod", true)] {
            let labels: BTreeMap<String, String> = [("env".into(), proxy.into())].into();
            let request = DatabaseRequest {
                db_user: "jerry",
                db_name: Some("app"),
                labels: &labels,
            };
            let database = Resource::Database(&request);
            let kubernetes = Resource::Kubernetes { labels: &labels };
            assert_eq!(
                required(RequireSessionMfa::Off, &roles, &traits, database),
                expected,
                "{proxy} database"
            );
            assert_eq!(
                required(RequireSessionMfa::Off, &roles, &traits, kubernetes),
                expected,
                "{proxy} kube"
            );
            // Cluster-wide MFA asks everywhere.
            assert!(required(
                RequireSessionMfa::Session,
                &roles,
                &traits,
                database
            ));
            assert!(required(
                RequireSessionMfa::Session,
                &[],
                &traits,
                kubernetes
            ));
        }
        // A role that requires MFA but whose rules do not reach the database
        // user does not count.
        let labels: BTreeMap<String, String> = [("env".into(), "prod".into())].into();
        let other_user = DatabaseRequest {
            db_user: "postgres",
            db_name: Some("app"),
            labels: &labels,
        };
        assert!(!required(
            RequireSessionMfa::Off,
            &roles,
            &traits,
            Resource::Database(&other_user)
        ));
    }

    #[test]
    fn a_kube_role_without_labels_applies_at_every_kube_proxy() {
        let everywhere = role(
            true,
            RoleConditions {
                kubernetes_groups: vec!["admins".into()],
                ..Default::default()
            },
        );
        let no_kube = role(true, RoleConditions::default());
        let labels = BTreeMap::from([("env".to_string(), "dev".to_string())]);
        let traits = UserTraits::default();
        let kube = Resource::Kubernetes { labels: &labels };
        assert!(required(
            RequireSessionMfa::Off,
            &[("a", &everywhere)],
            &traits,
            kube
        ));
        assert!(!required(
            RequireSessionMfa::Off,
            &[("b", &no_kube)],
            &traits,
            kube
        ));
    }

    fn credential(verified_at: Option<i64>, target: Option<&str>) -> CertIdentity {
        CertIdentity {
            user: "jerry".into(),
            mfa_device: Some("d6c06a18-e147-4232-9dfe-6f83a28d5850".into()),
            mfa_verified_at: verified_at,
            target: target.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn a_credential_starts_sessions_for_five_minutes() {
        let at = |s| Timestamp::from_second(s).unwrap();
        let fresh = credential(Some(1_000), None);
        assert_eq!(check_credential(&fresh, "db", true, at(1_000)), Ok(()));
        assert_eq!(check_credential(&fresh, "db", true, at(1_300)), Ok(()));
        assert_eq!(
            check_credential(&fresh, "db", true, at(1_301)),
            Err(MfaDenied::Expired { verified_at: 1_000 })
        );
        // Not required: any credential will do, stale or not.
        assert_eq!(check_credential(&fresh, "db", false, at(9_999)), Ok(()));
        // From the future beyond the skew allowance: not fresh.
        assert!(check_credential(&fresh, "db", true, at(900)).is_err());
        // No MFA check at all, or a device without the service's mark.
        assert_eq!(
            check_credential(&credential(None, None), "db", true, at(1_000)),
            Err(MfaDenied::Required)
        );
        let mut device_only = credential(Some(1_000), None);
        device_only.mfa_device = None;
        assert_eq!(
            check_credential(&device_only, "db", true, at(1_000)),
            Err(MfaDenied::Required)
        );
    }

    #[test]
    fn a_narrowed_credential_works_only_at_its_proxy() {
        let at = Timestamp::from_second(1_000).unwrap();
        let narrowed = credential(Some(1_000), Some("db-prod"));
        assert_eq!(check_credential(&narrowed, "db-prod", true, at), Ok(()));
        let error = check_credential(&narrowed, "db-dev", false, at).unwrap_err();
        assert!(error.message().contains("\"db-prod\""), "{error}");
        assert!(
            MfaDenied::Required
                .message()
                .contains("kubectl deadbolt login --mfa")
        );
    }
}
