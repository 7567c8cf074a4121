//! Turns `deadbolt.dev/v1` resources into the records the view carries.

use deadbolt_api::protocol::{ClusterConfig, MfaConfig, RoleRecord, UserRecord};
use deadbolt_api::{AccessRole, ClusterAuthPreferenceSpec, User};

/// Why a resource could not become a view record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The object has no `metadata.name`.
    #[error("{0} has no metadata.name")]
    MissingName(&'static str),
}

/// The record proxies get for an AccessRole.
pub fn role_record(role: &AccessRole) -> Result<RoleRecord, ConvertError> {
    Ok(RoleRecord {
        name: named(role.metadata.name.as_ref(), "AccessRole")?,
        spec: role.spec.clone(),
    })
}

/// The record proxies get for a User.
pub fn user_record(user: &User) -> Result<UserRecord, ConvertError> {
    Ok(UserRecord {
        name: named(user.metadata.name.as_ref(), "User")?,
        spec: user.spec.clone(),
    })
}

/// The effective cluster settings of a ClusterAuthPreference, defaults applied.
pub fn cluster_config(spec: &ClusterAuthPreferenceSpec) -> ClusterConfig {
    ClusterConfig {
        locking_mode: spec.effective_locking_mode(),
        require_session_mfa: spec.effective_require_session_mfa(),
        max_lock_staleness_ms: u64::try_from(spec.effective_max_lock_staleness().as_millis())
            .unwrap_or(u64::MAX),
        mfa: MfaConfig {
            second_factor: spec.second_factor.unwrap_or_default(),
            webauthn: spec.webauthn.clone(),
            max_failed_attempts: spec.effective_mfa_max_failed_attempts(),
            lockout_ms: u64::try_from(spec.effective_mfa_lockout().as_millis()).unwrap_or(u64::MAX),
        },
    }
}

/// The cluster settings when no ClusterAuthPreference exists: best effort,
/// no session MFA, 30 s staleness.
pub fn default_cluster_config() -> ClusterConfig {
    cluster_config(&ClusterAuthPreferenceSpec::default())
}

fn named(name: Option<&String>, kind: &'static str) -> Result<String, ConvertError> {
    match name {
        Some(name) if !name.is_empty() => Ok(name.clone()),
        _ => Err(ConvertError::MissingName(kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::{AccessRoleSpec, LockingMode, RequireSessionMfa};

    #[test]
    fn defaults_when_the_cluster_auth_preference_is_absent() {
        let config = default_cluster_config();
        assert_eq!(config.locking_mode, LockingMode::BestEffort);
        assert_eq!(config.require_session_mfa, RequireSessionMfa::Off);
        assert_eq!(config.max_lock_staleness_ms, 30_000);
    }

    #[test]
    fn explicit_settings_win() {
        let spec = ClusterAuthPreferenceSpec {
            locking_mode: Some(LockingMode::Strict),
            require_session_mfa: Some(RequireSessionMfa::HardwareKey),
            max_lock_staleness: Some("1m30s".into()),
            ..Default::default()
        };
        let config = cluster_config(&spec);
        assert_eq!(config.locking_mode, LockingMode::Strict);
        assert_eq!(config.require_session_mfa, RequireSessionMfa::HardwareKey);
        assert_eq!(config.max_lock_staleness_ms, 90_000);
    }

    #[test]
    fn a_role_without_a_name_is_an_error() {
        let role = AccessRole::new("", AccessRoleSpec::default());
        assert_eq!(
            role_record(&role),
            Err(ConvertError::MissingName("AccessRole"))
        );
    }
}
