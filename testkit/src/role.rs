//! Roles as tests write them: a [`RoleRecord`] nests its spec, conditions and
//! options three deep, and most tests want one of two roles: one that lets a
//! group reach every database, or one whose members are locked strictly.

use deadbolt_api::protocol::RoleRecord;
use deadbolt_api::resources::{RoleConditions, RoleOptions};
use deadbolt_api::{AccessRoleSpec, LockingMode};

/// A role for `group`: any database user and database on any proxy.
pub fn any_database_role(name: &str, group: &str) -> RoleRecord {
    RoleRecord {
        name: name.into(),
        spec: AccessRoleSpec {
            allow: RoleConditions {
                db_users: vec!["*".into()],
                db_names: vec!["*".into()],
                db_labels: [("*".to_string(), vec!["*".to_string()])].into(),
                ..Default::default()
            },
            groups: vec![group.into()],
            ..Default::default()
        },
    }
}

/// A role for `group` that grants nothing and puts its members under strict
/// locking (`options.lock: strict`).
pub fn strict_role(name: &str, group: &str) -> RoleRecord {
    RoleRecord {
        name: name.into(),
        spec: AccessRoleSpec {
            options: RoleOptions {
                lock: Some(LockingMode::Strict),
                ..Default::default()
            },
            groups: vec![group.into()],
            ..Default::default()
        },
    }
}
