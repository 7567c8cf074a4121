use serde::{Deserialize, Serialize};

use super::{Target, TargetKind};

/// Who is behind an interaction, as far as locking is concerned: what a
/// verified token or Deadbolt certificate says, plus the login being used.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The authenticated user name.
    pub user: String,
    /// AccessRole names, from the User resource and from the user's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The login in use: the database user for database sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// The MFA device the session was verified with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_device: Option<String>,
    /// The trusted device the client runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Access requests whose privileges the session carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_requests: Vec<String>,
}

impl Identity {
    /// The interaction's single-attribute targets: user, each role, login, MFA
    /// device, device, each access request, and the serving proxy's id.
    /// Empty values are left out, since an empty value must never match.
    pub fn targets(&self, server_id: Option<&str>) -> Vec<Target> {
        let singles = [
            (TargetKind::User, Some(self.user.as_str())),
            (TargetKind::Login, self.login.as_deref()),
            (TargetKind::MfaDevice, self.mfa_device.as_deref()),
            (TargetKind::Device, self.device.as_deref()),
            (TargetKind::ServerId, server_id),
        ];
        let roles = self
            .roles
            .iter()
            .map(|r| (TargetKind::Role, Some(r.as_str())));
        let requests = self
            .access_requests
            .iter()
            .map(|r| (TargetKind::AccessRequest, Some(r.as_str())));
        singles
            .into_iter()
            .chain(roles)
            .chain(requests)
            .filter_map(|(kind, value)| {
                value
                    .filter(|v| !v.is_empty())
                    .map(|v| Target::new(kind, v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_becomes_a_target() {
        let identity = Identity {
            user: "alice".into(),
            roles: vec!["dev".into(), "ops".into()],
            login: Some("postgres".into()),
            mfa_device: Some("d6c06a18-e147-4232-9dfe-6f83a28d5850".into()),
            device: Some("laptop-1".into()),
            access_requests: vec!["req-1".into()],
        };
        let mut kinds: Vec<_> = identity
            .targets(Some("proxy-1"))
            .into_iter()
            .map(|t| t.kind)
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            vec![
                TargetKind::User,
                TargetKind::Role,
                TargetKind::Role,
                TargetKind::Login,
                TargetKind::MfaDevice,
                TargetKind::AccessRequest,
                TargetKind::Device,
                TargetKind::ServerId,
            ]
        );
    }

    #[test]
    fn empty_values_are_not_targets() {
        let identity = Identity {
            user: String::new(),
            login: Some(String::new()),
            ..Default::default()
        };
        assert!(identity.targets(Some("")).is_empty());
    }
}
