//! A proxy's copy of the operator's view, rebuilt from the lock-view stream.
//!
//! The replica applies [`ViewEvent`]s in revision order, answers the questions
//! a proxy asks about an interaction (which roles, which locking mode, is it
//! locked) and reports which locks a change brought in, so the proxy can cut
//! the sessions they match.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;

use crate::access::{self, AccessDenied, DatabaseRequest};
use crate::credential::CertIdentity;
use crate::engine::{Decision, Identity, LockEntry, LockIndex, evaluate, locking_mode};
use crate::mfa;
use crate::protocol::{ClusterConfig, ObjectKey, Revision, ViewEvent, ViewObject};
use crate::resources::{AccessRoleSpec, LockingMode, UserSpec, UserTraits};

/// What applying an event changed, as far as live sessions are concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The whole view was replaced; every lock in it may be new to live sessions.
    Snapshot,
    /// A lock was added or changed; sessions it matches must be cut.
    Lock(Box<LockEntry>),
    /// Roles, users or settings changed; locking modes may differ now.
    Policy,
    /// A lock was removed, or nothing changed beyond liveness.
    Quiet,
}

/// Why an event could not be applied. The proxy reconnects and starts over from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// A delta arrived before any snapshot.
    #[error("lock-view stream sent revision {0} before a snapshot")]
    NoSnapshot(Revision),
    /// A delta's revision is not the one after the last applied, or a
    /// heartbeat names a revision other than the last applied: a change was
    /// lost or repeated, and only a fresh snapshot can say which.
    #[error("lock-view stream went from revision {applied} to {received}: resyncing")]
    OutOfOrder {
        /// The last revision applied.
        applied: Revision,
        /// The revision received.
        received: Revision,
    },
}

/// The proxy-side view: locks (indexed), roles, users and the cluster settings.
#[derive(Debug, Clone, Default)]
pub struct ViewReplica {
    revision: Option<Revision>,
    locks: LockIndex,
    roles: HashMap<String, AccessRoleSpec>,
    /// Users by object name.
    users: HashMap<String, UserSpec>,
    /// Object names by username; should two User objects claim one username,
    /// the smallest object name is the one that counts.
    usernames: HashMap<String, BTreeSet<String>>,
    config: ClusterConfig,
}

impl ViewReplica {
    /// The last revision applied, or `None` before the first snapshot.
    pub fn revision(&self) -> Option<Revision> {
        self.revision
    }

    /// Whether a snapshot has been applied; until then nothing can be decided.
    pub fn has_snapshot(&self) -> bool {
        self.revision.is_some()
    }

    /// The locks.
    pub fn locks(&self) -> &LockIndex {
        &self.locks
    }

    /// The effective cluster settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// A role's spec.
    pub fn role(&self, name: &str) -> Option<&AccessRoleSpec> {
        self.roles.get(name)
    }

    /// The spec of the user named `username` (`spec.username`, else the object's name).
    pub fn user(&self, username: &str) -> Option<&UserSpec> {
        let object = self.usernames.get(username)?.first()?;
        self.users.get(object)
    }

    fn insert_user(&mut self, name: String, spec: UserSpec) {
        self.remove_user(&name);
        self.usernames
            .entry(spec.username_or(&name).to_string())
            .or_default()
            .insert(name.clone());
        self.users.insert(name, spec);
    }

    fn remove_user(&mut self, name: &str) {
        let Some(old) = self.users.remove(name) else {
            return;
        };
        let username = old.username_or(name);
        if let Some(objects) = self.usernames.get_mut(username) {
            objects.remove(name);
            if objects.is_empty() {
                self.usernames.remove(username);
            }
        }
    }

    /// Applies one event. A delta must carry exactly the revision after the
    /// last one applied and a heartbeat exactly the last one applied (the
    /// operator numbers every change, so a gap means a lost change). A
    /// snapshot always starts over.
    pub fn apply(&mut self, event: ViewEvent) -> Result<Applied, ReplicaError> {
        let received = event.revision();
        if let ViewEvent::Snapshot(snapshot) = event {
            self.locks = LockIndex::from_entries(snapshot.locks);
            self.roles = snapshot
                .roles
                .into_iter()
                .map(|r| (r.name, r.spec))
                .collect();
            self.users.clear();
            self.usernames.clear();
            for user in snapshot.users {
                self.insert_user(user.name, user.spec);
            }
            self.config = snapshot.config;
            self.revision = Some(received);
            return Ok(Applied::Snapshot);
        }
        let applied = self.revision.ok_or(ReplicaError::NoSnapshot(received))?;
        let in_order = match event {
            ViewEvent::Heartbeat { .. } => received == applied,
            _ => Some(received) == applied.checked_add(1),
        };
        if !in_order {
            return Err(ReplicaError::OutOfOrder { applied, received });
        }
        self.revision = Some(received);
        Ok(match event {
            ViewEvent::Snapshot(_) | ViewEvent::Heartbeat { .. } => Applied::Quiet,
            ViewEvent::Upsert { object, .. } => match object {
                ViewObject::Lock(entry) => {
                    self.locks.upsert(entry.clone());
                    Applied::Lock(Box::new(entry))
                }
                ViewObject::Role(role) => {
                    self.roles.insert(role.name, role.spec);
                    Applied::Policy
                }
                ViewObject::User(user) => {
                    self.insert_user(user.name, user.spec);
                    Applied::Policy
                }
                ViewObject::Config(config) => {
                    self.config = config;
                    Applied::Policy
                }
            },
            ViewEvent::Delete { key, .. } => match key {
                ObjectKey::Lock(name) => {
                    self.locks.remove(&name);
                    Applied::Quiet
                }
                ObjectKey::Role(name) => {
                    self.roles.remove(&name);
                    Applied::Policy
                }
                ObjectKey::User(name) => {
                    self.remove_user(&name);
                    Applied::Policy
                }
            },
        })
    }

    /// The AccessRoles of an authenticated user: those its User resource lists,
    /// those any of its groups receive through `spec.groups`, and those its
    /// credential names directly. Sorted and de-duplicated.
    pub fn roles_for(&self, user: &str, groups: &[String], direct: &[String]) -> Vec<String> {
        let mut roles: Vec<String> = direct.to_vec();
        if let Some(spec) = self.user(user) {
            roles.extend(spec.roles.iter().cloned());
        }
        roles.extend(
            self.roles
                .iter()
                .filter(|(_, spec)| spec.groups.iter().any(|g| groups.contains(g)))
                .map(|(name, _)| name.clone()),
        );
        roles.sort();
        roles.dedup();
        roles
    }

    /// The specs of the named roles that exist; a role without an AccessRole grants nothing.
    pub fn role_specs<'a>(&'a self, roles: &'a [String]) -> Vec<(&'a str, &'a AccessRoleSpec)> {
        roles
            .iter()
            .filter_map(|name| self.roles.get(name).map(|spec| (name.as_str(), spec)))
            .collect()
    }

    /// A user's traits, empty when it has no User resource.
    pub fn traits(&self, user: &str) -> UserTraits {
        self.user(user)
            .map(|spec| spec.traits.clone())
            .unwrap_or_default()
    }

    /// Whether `user`, holding `roles`, may open this database connection.
    pub fn authorize_database(
        &self,
        user: &str,
        roles: &[String],
        request: &DatabaseRequest<'_>,
    ) -> Result<(), AccessDenied> {
        access::check_database(&self.role_specs(roles), &self.traits(user), request)
    }

    /// The Kubernetes groups the kube proxy with `labels` impersonates for
    /// `user`, whose credential carries `groups` and who holds `roles`.
    pub fn kubernetes_groups(
        &self,
        user: &str,
        groups: &[String],
        roles: &[String],
        labels: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let specs: Vec<&AccessRoleSpec> = self
            .role_specs(roles)
            .into_iter()
            .map(|(_, spec)| spec)
            .collect();
        access::kubernetes_groups(groups, &specs, &self.traits(user), labels)
    }

    /// The lock in force against the holder of `credential` (its user, the
    /// roles it holds, its devices and access requests), if any: issuing a
    /// credential to a locked identity is refused, as Teleport refuses
    /// certificate requests under a lock.
    pub fn lock_against_credential(
        &self,
        credential: &CertIdentity,
        now: Timestamp,
    ) -> Option<&LockEntry> {
        let roles = self.roles_for(&credential.user, &credential.groups, &credential.roles);
        let identity = credential.to_identity(roles, None);
        self.locks.find_in_force(&identity.targets(None), now)
    }

    /// Whether a new session of `user` holding `roles` on `resource` needs a
    /// fresh MFA check ([`crate::mfa::required`]).
    pub fn mfa_required(&self, user: &str, roles: &[String], resource: mfa::Resource<'_>) -> bool {
        // Every request asks: without a cluster-wide requirement or a role
        // that asks for MFA, skip the rule matching (and the traits' copy).
        let cluster = self.config.require_session_mfa;
        let any_role_asks = roles.iter().any(|role| {
            self.roles.get(role).is_some_and(|spec| {
                spec.options
                    .require_session_mfa
                    .is_some_and(crate::resources::RequireSessionMfa::is_required)
            })
        });
        if !cluster.is_required() && !any_role_asks {
            return false;
        }
        mfa::required(
            cluster,
            &self.role_specs(roles),
            &self.traits(user),
            resource,
        )
    }

    /// The interaction's locking mode: the cluster's, unless any of its roles is strict.
    pub fn locking_mode(&self, roles: &[String]) -> LockingMode {
        locking_mode(
            self.config.locking_mode,
            roles
                .iter()
                .map(|role| self.roles.get(role).and_then(|spec| spec.options.lock)),
        )
    }

    /// Decides a new interaction. Before the first snapshot the proxy knows
    /// nothing, so it refuses in every mode (fail closed).
    pub fn check(
        &self,
        identity: &Identity,
        server_id: &str,
        mode: LockingMode,
        view_reliable: bool,
        now: Timestamp,
    ) -> Decision {
        let targets = identity.targets(Some(server_id));
        let reliable = view_reliable && self.has_snapshot();
        let mode = if self.has_snapshot() {
            mode
        } else {
            LockingMode::Strict
        };
        evaluate(&self.locks, &targets, mode, reliable, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Denial;
    use crate::protocol::{RoleRecord, Snapshot, UserRecord};
    use crate::resources::{LockTargetSpec, RoleOptions};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn lock(name: &str, user: &str) -> LockEntry {
        LockEntry {
            name: name.into(),
            target: LockTargetSpec {
                user: Some(user.into()),
                ..Default::default()
            },
            message: None,
            created: ts(0),
            expires_at: None,
        }
    }

    fn snapshot(revision: Revision) -> ViewEvent {
        ViewEvent::Snapshot(Snapshot {
            revision,
            locks: vec![lock("l1", "alice")],
            roles: vec![RoleRecord {
                name: "oncall".into(),
                spec: AccessRoleSpec {
                    options: RoleOptions {
                        lock: Some(LockingMode::Strict),
                        ..Default::default()
                    },
                    groups: vec!["sre".into()],
                    ..Default::default()
                },
            }],
            users: vec![UserRecord {
                name: "bob".into(),
                spec: UserSpec {
                    roles: vec!["dev".into()],
                    ..Default::default()
                },
            }],
            config: ClusterConfig::default(),
        })
    }

    #[test]
    fn deltas_need_a_snapshot_and_order() {
        let mut replica = ViewReplica::default();
        let upsert = |revision| ViewEvent::Upsert {
            revision,
            object: ViewObject::Lock(lock("l2", "carol")),
        };
        assert_eq!(replica.apply(upsert(3)), Err(ReplicaError::NoSnapshot(3)));
        assert_eq!(replica.apply(snapshot(5)), Ok(Applied::Snapshot));
        assert_eq!(
            replica.apply(upsert(5)),
            Err(ReplicaError::OutOfOrder {
                applied: 5,
                received: 5
            })
        );
        assert!(matches!(replica.apply(upsert(6)), Ok(Applied::Lock(_))));
        let heartbeat = |revision| ViewEvent::Heartbeat {
            revision,
            sent_at: ts(1),
        };
        assert_eq!(replica.apply(heartbeat(6)), Ok(Applied::Quiet));
        assert_eq!(replica.revision(), Some(6));
        assert_eq!(replica.locks().len(), 2);
        // A gap means a lost change: only a new snapshot can repair it.
        assert_eq!(
            replica.apply(upsert(8)),
            Err(ReplicaError::OutOfOrder {
                applied: 6,
                received: 8
            })
        );
        assert_eq!(
            replica.apply(heartbeat(7)),
            Err(ReplicaError::OutOfOrder {
                applied: 6,
                received: 7
            })
        );
        assert_eq!(replica.revision(), Some(6));
    }

    #[test]
    fn roles_come_from_user_groups_and_credential() {
        let mut replica = ViewReplica::default();
        replica.apply(snapshot(1)).unwrap();
        assert_eq!(
            replica.roles_for("bob", &["sre".into()], &["extra".into()]),
            vec!["dev", "extra", "oncall"]
        );
        assert_eq!(
            replica.locking_mode(&["oncall".into()]),
            LockingMode::Strict
        );
        assert_eq!(
            replica.locking_mode(&["dev".into()]),
            LockingMode::BestEffort
        );
    }

    #[test]
    fn users_are_found_by_their_username() {
        let mut replica = ViewReplica::default();
        replica.apply(snapshot(1)).unwrap();
        let olga = |roles: &[&str]| UserSpec {
            username: Some("olga@example.com".into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        };
        replica
            .apply(ViewEvent::Upsert {
                revision: 2,
                object: ViewObject::User(UserRecord {
                    name: "olga".into(),
                    spec: olga(&["access-dev"]),
                }),
            })
            .unwrap();
        assert_eq!(
            replica.roles_for("olga@example.com", &[], &[]),
            ["access-dev"]
        );
        assert!(replica.roles_for("olga", &[], &[]).is_empty());
        assert_eq!(
            replica.roles_for("bob", &[], &[]),
            ["dev"],
            "a plain name still works"
        );
        // A second object claiming the same username does not count.
        replica
            .apply(ViewEvent::Upsert {
                revision: 3,
                object: ViewObject::User(UserRecord {
                    name: "olga-2".into(),
                    spec: olga(&["admin"]),
                }),
            })
            .unwrap();
        assert_eq!(
            replica.roles_for("olga@example.com", &[], &[]),
            ["access-dev"]
        );
        replica
            .apply(ViewEvent::Delete {
                revision: 4,
                key: ObjectKey::User("olga".into()),
            })
            .unwrap();
        assert_eq!(replica.roles_for("olga@example.com", &[], &[]), ["admin"]);
    }

    #[test]
    fn nothing_is_allowed_before_the_first_snapshot() {
        let replica = ViewReplica::default();
        let bob = Identity {
            user: "bob".into(),
            ..Default::default()
        };
        assert_eq!(
            replica.check(&bob, "p1", LockingMode::BestEffort, true, ts(0)),
            Err(Denial::StaleView)
        );
    }
}
