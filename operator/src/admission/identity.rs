//! Who made an API request, as locks see it.

use deadbolt_api::Identity;
use deadbolt_api::replica::ViewReplica;
use k8s_openapi::api::authentication::v1::UserInfo;

/// The requester as the API server authenticated it: `userInfo.username` and
/// `userInfo.groups`. Behind the Deadbolt kube proxy these are the
/// impersonated user and groups, i.e. the person, not the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester<'a> {
    /// The user name; empty when the API server sent none.
    pub username: &'a str,
    /// The groups.
    pub groups: &'a [String],
}

impl<'a> Requester<'a> {
    /// The requester of an admission request.
    pub fn of(user_info: &'a UserInfo) -> Self {
        Self {
            username: user_info.username.as_deref().unwrap_or_default(),
            groups: user_info.groups.as_deref().unwrap_or_default(),
        }
    }
}

/// The identity locks are matched against: the user name, and the AccessRoles
/// its User resource lists and its groups receive (`spec.groups`), exactly as a
/// proxy computes them. A plain API request carries no login, MFA device,
/// device or access request, so those targets never apply here.
pub fn identity_for(requester: &Requester<'_>, view: &ViewReplica) -> Identity {
    Identity {
        user: requester.username.to_string(),
        roles: view.roles_for(requester.username, requester.groups, &[]),
        ..Identity::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::AccessRoleSpec;
    use deadbolt_api::protocol::{ClusterConfig, RoleRecord, Snapshot, UserRecord, ViewEvent};
    use deadbolt_api::resources::UserSpec;

    fn view() -> ViewReplica {
        let mut view = ViewReplica::default();
        let snapshot = Snapshot {
            revision: 1,
            locks: vec![],
            roles: vec![RoleRecord {
                name: "contractor".into(),
                spec: AccessRoleSpec {
                    groups: vec!["contractors".into()],
                    ..Default::default()
                },
            }],
            users: vec![UserRecord {
                name: "dave".into(),
                spec: UserSpec {
                    roles: vec!["dev".into()],
                    ..Default::default()
                },
            }],
            config: ClusterConfig::default(),
        };
        view.apply(ViewEvent::Snapshot(snapshot)).unwrap();
        view
    }

    #[test]
    fn roles_come_from_the_user_resource_and_the_groups() {
        let groups = [
            "contractors".to_string(),
            "system:authenticated".to_string(),
        ];
        let identity = identity_for(
            &Requester {
                username: "dave",
                groups: &groups,
            },
            &view(),
        );
        assert_eq!(identity.user, "dave");
        assert_eq!(identity.roles, ["contractor", "dev"]);
        assert_eq!(identity.login, None);
    }

    #[test]
    fn missing_user_info_fields_are_empty() {
        let info = UserInfo::default();
        let requester = Requester::of(&info);
        assert_eq!(requester.username, "");
        assert!(requester.groups.is_empty());
        assert!(identity_for(&requester, &view()).targets(None).is_empty());
    }
}
