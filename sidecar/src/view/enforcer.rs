//! The proxy's enforcement point, [`Enforcer`]: its replica of the view, how
//! fresh that is, and the admission decision every protocol adapter asks
//! for. Applying a change and cutting the sessions it matches happen here,
//! once, for every proxy kind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use deadbolt_api::access::{DatabaseRequest, Refusal};
use deadbolt_api::credential::CertIdentity;
use deadbolt_api::engine::{Identity, evaluate};
use deadbolt_api::mfa;
use deadbolt_api::protocol::{Revision, ViewEvent};
use deadbolt_api::replica::{Applied, ReplicaError, ViewReplica};
use deadbolt_api::resources::LockingMode;
use deadbolt_runtime::clock::{Clock, SystemClock};
use jiff::Timestamp;

use crate::session::{Reassessed, SessionHandle, SessionRegistry, Subject};

/// What an interaction reaches beyond the proxy itself, which decides the
/// access check it gets before the lock check.
#[derive(Clone, Copy, Debug)]
pub enum Reach<'a> {
    /// The Kubernetes API: Kubernetes RBAC decides, the proxy only impersonates.
    Kubernetes,
    /// A database session as `login`, opening `db_name` where the protocol names one.
    Database {
        /// The database user.
        login: &'a str,
        /// The database, when fixed at connect time.
        db_name: Option<&'a str>,
    },
}

impl Reach<'_> {
    fn login(&self) -> Option<String> {
        match self {
            Self::Kubernetes => None,
            Self::Database { login, .. } => Some(login.to_string()),
        }
    }
}

/// An admitted session: its identity, its locking mode and its registry entry.
pub struct Admission {
    /// The lock-engine identity the session was checked with.
    pub identity: Identity,
    /// The session's locking mode.
    pub mode: LockingMode,
    /// Keeps the session registered; resolves `cut()` when a lock or a stale view ends it.
    pub handle: SessionHandle,
}

/// The enforcement point of one proxy process: the view's replica, its
/// freshness, the session registry and the clock, shared by every adapter.
pub struct Enforcer {
    server_id: String,
    labels: BTreeMap<String, String>,
    replica: RwLock<ViewReplica>,
    last_heard: Mutex<Option<Instant>>,
    /// The proxy's clock minus the operator's, from the last heartbeat, in milliseconds.
    skew_ms: AtomicI64,
    /// Whether that skew exceeds `maxLockStaleness`, which makes the view unreliable.
    skewed: AtomicBool,
    registry: SessionRegistry,
    /// Wall-clock time, for lock expiry and MFA credential age.
    clock: Arc<dyn Clock>,
}

impl Enforcer {
    /// An empty view for the proxy `server_id`; nothing is admitted until a snapshot arrives.
    pub fn new(server_id: impl Into<String>, registry: SessionRegistry) -> Self {
        Self {
            server_id: server_id.into(),
            labels: BTreeMap::new(),
            replica: RwLock::default(),
            last_heard: Mutex::default(),
            skew_ms: AtomicI64::new(0),
            skewed: AtomicBool::new(false),
            registry,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads wall-clock time from `clock` instead of the system's (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The proxy's labels, which roles' label rules select.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The proxy's labels (`--label`), which roles' `dbLabels` and `kubernetesLabels` match.
    pub fn with_labels(mut self, labels: impl IntoIterator<Item = (String, String)>) -> Self {
        self.labels = labels.into_iter().collect();
        self
    }

    /// This proxy's server id, itself a lock target.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The live sessions.
    pub fn registry(&self) -> &SessionRegistry {
        &self.registry
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ViewReplica> {
        self.replica.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one event from the stream and cuts the sessions a change
    /// reaches: a new lock cuts what it matches; a snapshot or a policy change
    /// (roles, users, settings) recomputes every live session's targets and
    /// mode, and cuts those a lock now matches. Returns the revision now applied.
    pub fn apply(&self, event: ViewEvent) -> Result<Revision, ReplicaError> {
        let now = self.clock.now();
        if let ViewEvent::Heartbeat { sent_at, .. } = &event {
            self.observe_clock(*sent_at, now);
        }
        let (revision, applied) = {
            let mut replica = self.replica.write().unwrap_or_else(|p| p.into_inner());
            let applied = replica.apply(event)?;
            (replica.revision().unwrap_or_default(), applied)
        };
        *self.last_heard.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.clock.instant());
        // Sessions admitted before the write above are in the registry; sessions
        // admitted after it were checked against the new replica.
        match applied {
            Applied::Lock(lock) if lock.is_in_force(now) => {
                let cut = self.registry.cut_matching(&lock);
                if cut > 0 {
                    tracing::info!(lock = %lock.name, sessions = cut, "cutting sessions");
                }
            }
            Applied::Snapshot | Applied::Policy => {
                let cut = self.reassess(now);
                if cut > 0 {
                    tracing::info!(
                        sessions = cut,
                        "cutting sessions a lock now matches after a view change"
                    );
                }
            }
            Applied::Lock(_) | Applied::Quiet => {}
        }
        Ok(revision)
    }

    /// Recomputes every live session's roles, targets and mode from the
    /// replica, and cuts those an in-force lock now matches.
    fn reassess(&self, now: Timestamp) -> usize {
        let replica = self.read();
        self.registry.reassess(|subject| {
            let (identity, mode) = identify(&replica, &subject.principal, subject.login.clone());
            let targets = identity.targets(Some(&self.server_id));
            let cut = evaluate(replica.locks(), &targets, mode, true, now).err();
            Reassessed { targets, mode, cut }
        })
    }

    /// Compares the heartbeat's `sentAt` with this proxy's clock: clocks that
    /// disagree by more than `maxLockStaleness` make expiry and staleness
    /// meaningless, so the view counts as unreliable until they agree again.
    fn observe_clock(&self, sent_at: Timestamp, now: Timestamp) {
        let skew = now.duration_since(sent_at);
        let skew_ms = i64::try_from(skew.as_millis()).unwrap_or(i64::MAX);
        self.skew_ms.store(skew_ms, Ordering::Relaxed);
        let max = self.max_staleness();
        let skewed = skew.unsigned_abs() > max;
        if self.skewed.swap(skewed, Ordering::Relaxed) != skewed {
            if skewed {
                tracing::warn!(
                    skew_ms,
                    max_lock_staleness_ms = max.as_millis() as u64,
                    "this proxy's clock and the operator's disagree by more than maxLockStaleness: \
                     the lock view counts as unreliable until they agree (strict sessions are cut)"
                );
            } else {
                tracing::info!(
                    skew_ms,
                    "this proxy's clock agrees with the operator's again"
                );
            }
        }
    }

    /// The proxy's clock minus the operator's at the last heartbeat, in milliseconds.
    pub fn clock_skew_ms(&self) -> i64 {
        self.skew_ms.load(Ordering::Relaxed)
    }

    /// Whether the clocks disagree by more than `maxLockStaleness`.
    pub fn clock_skewed(&self) -> bool {
        self.skewed.load(Ordering::Relaxed)
    }

    /// The longest silence before the view counts as unreliable, from the cluster settings.
    pub fn max_staleness(&self) -> Duration {
        Duration::from_millis(self.read().config().max_lock_staleness_ms.max(1))
    }

    /// Whether the view can be trusted: a snapshot arrived, the operator was
    /// heard from within `maxLockStaleness`, and the clocks agree.
    pub fn is_reliable(&self) -> bool {
        let max = self.max_staleness();
        let heard = *self.last_heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.is_some_and(|at| self.clock.instant().saturating_duration_since(at) <= max)
            && !self.clock_skewed()
            && self.read().has_snapshot()
    }

    /// Whether a snapshot has arrived, which is what `/readyz` reports.
    pub fn is_ready(&self) -> bool {
        self.read().has_snapshot()
    }

    /// The revision applied, for acks and metrics.
    pub fn revision(&self) -> Option<Revision> {
        self.read().revision()
    }

    /// Cuts the strict sessions when the view has become unreliable. Returns how
    /// many were told; called periodically by the staleness watchdog.
    pub fn enforce_staleness(&self) -> usize {
        if self.is_reliable() {
            0
        } else {
            self.registry.cut_strict()
        }
    }

    /// Decides an interaction without registering it: for short requests, which
    /// end before a lock could need to cut them. Returns the identity it was
    /// checked with and its locking mode.
    pub fn check(
        &self,
        principal: &CertIdentity,
        reach: Reach<'_>,
    ) -> Result<(Identity, LockingMode), Refusal> {
        let reliable = self.is_reliable();
        let replica = self.read();
        self.decide(&replica, principal, reach, reliable)
    }

    /// Reads the replica, for what an adapter derives from roles and users
    /// (the kube proxy's Kubernetes groups). Keep `read` short: it holds the
    /// lock that applying a change waits for.
    pub fn with_replica<T>(&self, read: impl FnOnce(&ViewReplica) -> T) -> T {
        read(&self.read())
    }

    /// Decides a new session for an authenticated principal and registers it.
    /// The replica stays read-locked while the session is registered, so a lock
    /// applied concurrently either refuses the session or finds it in the registry.
    pub fn admit(&self, principal: &CertIdentity, reach: Reach<'_>) -> Result<Admission, Refusal> {
        let reliable = self.is_reliable();
        let replica = self.read();
        let (identity, mode) = self.decide(&replica, principal, reach, reliable)?;
        let subject = Arc::new(Subject {
            principal: principal.clone(),
            login: reach.login(),
        });
        let handle = self
            .registry
            .register(subject, identity.targets(Some(&self.server_id)), mode);
        drop(replica);
        Ok(Admission {
            identity,
            mode,
            handle,
        })
    }

    /// The lock check first (a locked caller hears about its lock), then what
    /// the caller's roles allow, then per-session MFA. MFA comes after access,
    /// so a caller learns that MFA is required only for what it may reach:
    /// asking reveals nothing about resources it cannot use.
    fn decide(
        &self,
        replica: &ViewReplica,
        principal: &CertIdentity,
        reach: Reach<'_>,
        reliable: bool,
    ) -> Result<(Identity, LockingMode), Refusal> {
        let now = self.clock.now();
        let (identity, mode) = identify(replica, principal, reach.login());
        replica.check(&identity, &self.server_id, mode, reliable, now)?;
        let required = match reach {
            Reach::Database { login, db_name } => {
                let request = DatabaseRequest {
                    db_user: login,
                    db_name,
                    labels: &self.labels,
                };
                replica.authorize_database(&identity.user, &identity.roles, &request)?;
                let resource = mfa::Resource::Database(&request);
                replica.mfa_required(&identity.user, &identity.roles, resource)
            }
            Reach::Kubernetes => {
                let resource = mfa::Resource::Kubernetes {
                    labels: &self.labels,
                };
                replica.mfa_required(&identity.user, &identity.roles, resource)
            }
        };
        mfa::check_credential(principal, &self.server_id, required, now)?;
        Ok((identity, mode))
    }
}

/// The lock-engine identity of `principal` using `login`, with the roles the
/// replica resolves for it, and its locking mode.
fn identify(
    replica: &ViewReplica,
    principal: &CertIdentity,
    login: Option<String>,
) -> (Identity, LockingMode) {
    let roles = replica.roles_for(&principal.user, &principal.groups, &principal.roles);
    let mode = replica.locking_mode(&roles);
    (principal.to_identity(roles, login), mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::TargetKind;
    use deadbolt_api::access::AccessDenied;
    use deadbolt_api::engine::{Denial, LockEntry};
    use deadbolt_api::protocol::{ClusterConfig, RoleRecord, Snapshot, UserRecord, ViewObject};
    use deadbolt_api::resources::{AccessRoleSpec, LockTargetSpec, RoleOptions, UserSpec};
    use deadbolt_runtime::clock::ManualClock;
    use deadbolt_testkit::lock_entry;
    use deadbolt_testkit::role::any_database_role;
    use deadbolt_testkit::target;

    /// A role for everyone in `staff`: any database user, database and proxy.
    fn any_database() -> RoleRecord {
        any_database_role("db-all", "staff")
    }

    fn snapshot(staleness_ms: u64, mode: LockingMode) -> ViewEvent {
        ViewEvent::Snapshot(Snapshot {
            revision: 1,
            roles: vec![any_database()],
            config: ClusterConfig {
                locking_mode: mode,
                max_lock_staleness_ms: staleness_ms,
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn alice() -> CertIdentity {
        CertIdentity {
            user: "alice".into(),
            groups: vec!["staff".into()],
            ..Default::default()
        }
    }

    fn as_login(login: &str) -> Reach<'_> {
        Reach::Database {
            login,
            db_name: Some("app"),
        }
    }

    fn lock(name: &str, target: LockTargetSpec) -> LockEntry {
        lock_entry(name, target)
            .message("maintenance")
            .created(Timestamp::now())
            .build()
    }

    #[tokio::test]
    async fn a_pushed_lock_cuts_an_admitted_session_and_refuses_new_ones() {
        let state = Enforcer::new("proxy-1", SessionRegistry::default());
        assert!(
            state.admit(&alice(), as_login("app")).is_err(),
            "no snapshot yet"
        );
        state
            .apply(snapshot(60_000, LockingMode::BestEffort))
            .unwrap();
        let mut admission = state.admit(&alice(), as_login("app")).unwrap();
        let on_login = target(TargetKind::Login, "app");
        state
            .apply(ViewEvent::Upsert {
                revision: 2,
                object: ViewObject::Lock(lock("l1", on_login)),
            })
            .unwrap();
        let denial = admission.handle.cut().await;
        assert_eq!(
            denial.message(),
            r#"lock targeting Login:"app" is in force: maintenance"#
        );
        assert_eq!(
            state.admit(&alice(), as_login("app")).err().unwrap(),
            Refusal::Locked(denial)
        );
        assert!(state.admit(&alice(), as_login("other")).is_ok());
    }

    #[test]
    fn a_check_decides_without_registering() {
        let state = Enforcer::new("proxy-1", SessionRegistry::default());
        assert_eq!(
            state.check(&alice(), Reach::Kubernetes).err(),
            Some(Refusal::Locked(Denial::StaleView))
        );
        state
            .apply(snapshot(60_000, LockingMode::BestEffort))
            .unwrap();
        let (identity, mode) = state.check(&alice(), Reach::Kubernetes).unwrap();
        assert_eq!(identity.user, "alice");
        assert_eq!(identity.roles, ["db-all"]);
        assert_eq!(mode, LockingMode::BestEffort);
        assert!(state.registry().is_empty());
        assert_eq!(state.with_replica(|replica| replica.revision()), Some(1));
    }

    #[test]
    fn databases_need_a_role_that_allows_them() {
        let state = Enforcer::new("proxy-1", SessionRegistry::default())
            .with_labels([("env".to_string(), "dev".to_string())]);
        state
            .apply(snapshot(60_000, LockingMode::BestEffort))
            .unwrap();
        let outsider = CertIdentity {
            user: "mallory".into(),
            ..Default::default()
        };
        assert_eq!(
            state.admit(&outsider, as_login("app")).err(),
            Some(Refusal::Forbidden(AccessDenied::NoRoles))
        );
        assert!(state.admit(&alice(), as_login("postgres")).is_ok());
        assert!(
            state.check(&outsider, Reach::Kubernetes).is_ok(),
            "Kubernetes RBAC decides what a caller without roles may do"
        );
    }

    #[tokio::test]
    async fn a_role_granted_after_login_and_then_locked_cuts_the_session() {
        let state = Enforcer::new("proxy-1", SessionRegistry::default());
        state
            .apply(snapshot(60_000, LockingMode::BestEffort))
            .unwrap();
        let mut admission = state.admit(&alice(), as_login("app")).unwrap();
        let grant = UserRecord {
            name: "alice".into(),
            spec: UserSpec {
                roles: vec!["oncall".into()],
                ..Default::default()
            },
        };
        state
            .apply(ViewEvent::Upsert {
                revision: 2,
                object: ViewObject::User(grant),
            })
            .unwrap();
        let on_role = target(TargetKind::Role, "oncall");
        state
            .apply(ViewEvent::Upsert {
                revision: 3,
                object: ViewObject::Lock(lock("l1", on_role)),
            })
            .unwrap();
        assert_eq!(
            admission.handle.cut().await.message(),
            r#"lock targeting Role:"oncall" is in force: maintenance"#
        );
    }

    #[tokio::test]
    async fn a_role_that_meets_an_existing_lock_cuts_the_live_session() {
        let state = Enforcer::new("proxy-1", SessionRegistry::default());
        state
            .apply(snapshot(60_000, LockingMode::BestEffort))
            .unwrap();
        let on_role = target(TargetKind::Role, "contractor");
        state
            .apply(ViewEvent::Upsert {
                revision: 2,
                object: ViewObject::Lock(lock("l1", on_role)),
            })
            .unwrap();
        let mut admission = state.admit(&alice(), as_login("app")).unwrap();
        let contractor = RoleRecord {
            name: "contractor".into(),
            spec: AccessRoleSpec {
                groups: vec!["staff".into()],
                ..Default::default()
            },
        };
        state
            .apply(ViewEvent::Upsert {
                revision: 3,
                object: ViewObject::Role(contractor),
            })
            .unwrap();
        assert_eq!(
            admission.handle.cut().await.message(),
            r#"lock targeting Role:"contractor" is in force: maintenance"#
        );
    }

    #[tokio::test]
    async fn switching_to_strict_makes_live_sessions_strict() {
        let clock = ManualClock::new(Timestamp::now());
        let state = Enforcer::new("proxy-1", SessionRegistry::default())
            .with_clock(Arc::new(clock.clone()));
        state
            .apply(snapshot(60_000, LockingMode::BestEffort))
            .unwrap();
        let mut admission = state.admit(&alice(), as_login("app")).unwrap();
        let strict_role = RoleRecord {
            name: "db-all".into(),
            spec: AccessRoleSpec {
                options: RoleOptions {
                    lock: Some(LockingMode::Strict),
                    ..Default::default()
                },
                ..any_database().spec
            },
        };
        state
            .apply(ViewEvent::Upsert {
                revision: 2,
                object: ViewObject::Role(strict_role),
            })
            .unwrap();
        clock.advance(jiff::SignedDuration::from_secs(61));
        assert_eq!(state.enforce_staleness(), 1);
        assert_eq!(admission.handle.cut().await, Denial::StaleView);
    }

    #[tokio::test]
    async fn silence_makes_the_view_unreliable() {
        let clock = ManualClock::new(Timestamp::now());
        let state = Enforcer::new("proxy-1", SessionRegistry::default())
            .with_clock(Arc::new(clock.clone()));
        state.apply(snapshot(30_000, LockingMode::Strict)).unwrap();
        let mut admission = state.admit(&alice(), Reach::Kubernetes).unwrap();
        assert_eq!(state.enforce_staleness(), 0);
        clock.advance(jiff::SignedDuration::from_secs(31));
        assert!(!state.is_reliable());
        assert_eq!(state.enforce_staleness(), 1);
        assert_eq!(admission.handle.cut().await, Denial::StaleView);
        assert_eq!(
            state.admit(&alice(), Reach::Kubernetes).err(),
            Some(Refusal::Locked(Denial::StaleView))
        );
    }

    #[test]
    fn clocks_that_disagree_make_the_view_unreliable() {
        let state = Enforcer::new("proxy-1", SessionRegistry::default());
        state.apply(snapshot(30_000, LockingMode::Strict)).unwrap();
        let heartbeat = |sent_at| ViewEvent::Heartbeat {
            revision: 1,
            sent_at,
        };
        state
            .apply(heartbeat(
                Timestamp::now() - jiff::SignedDuration::from_millis(20),
            ))
            .unwrap();
        assert!(state.is_reliable());
        assert!(state.clock_skew_ms() >= 20);
        state
            .apply(heartbeat(
                Timestamp::now() + jiff::SignedDuration::from_secs(45),
            ))
            .unwrap();
        assert!(state.clock_skewed());
        assert!(state.clock_skew_ms() < -30_000);
        assert!(!state.is_reliable());
        state.apply(heartbeat(Timestamp::now())).unwrap();
        assert!(state.is_reliable());
    }
}
