//! The proxy's lock view: the replica, how fresh it is, and the admission
//! decision every protocol adapter asks for. Applying a change and cutting the
//! sessions it matches happen here, once, for every proxy kind.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use deadbolt_api::credential::CertIdentity;
use deadbolt_api::engine::{Denial, Identity};
use deadbolt_api::protocol::{Revision, ViewEvent};
use deadbolt_api::replica::{Applied, ReplicaError, ViewReplica};
use deadbolt_api::resources::LockingMode;
use jiff::Timestamp;

use crate::session::{SessionHandle, SessionRegistry};

/// An admitted session: its identity, its locking mode and its registry entry.
pub struct Admission {
    /// The lock-engine identity the session was checked with.
    pub identity: Identity,
    /// The session's locking mode.
    pub mode: LockingMode,
    /// Keeps the session registered; resolves `cut()` when a lock or a stale view ends it.
    pub handle: SessionHandle,
}

/// The shared view of one proxy process.
pub struct ViewState {
    server_id: String,
    replica: RwLock<ViewReplica>,
    last_heard: Mutex<Option<Instant>>,
    registry: SessionRegistry,
}

impl ViewState {
    /// An empty view for the proxy `server_id`; nothing is admitted until a snapshot arrives.
    pub fn new(server_id: impl Into<String>, registry: SessionRegistry) -> Self {
        Self {
            server_id: server_id.into(),
            replica: RwLock::default(),
            last_heard: Mutex::default(),
            registry,
        }
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

    /// Applies one event from the stream and cuts the sessions a new lock matches.
    /// Returns the revision now applied.
    pub fn apply(&self, event: ViewEvent) -> Result<Revision, ReplicaError> {
        let now = Timestamp::now();
        let applied = {
            let mut replica = self.replica.write().unwrap_or_else(|p| p.into_inner());
            let applied = replica.apply(event)?;
            // Sessions admitted before this write see the lock through the registry
            // (below); sessions admitted after it see it in the replica.
            let to_cut = match &applied {
                Applied::Snapshot => replica
                    .locks()
                    .iter()
                    .filter(|lock| lock.is_in_force(now))
                    .cloned()
                    .collect(),
                Applied::Lock(lock) if lock.is_in_force(now) => vec![(**lock).clone()],
                _ => Vec::new(),
            };
            (replica.revision().unwrap_or_default(), to_cut)
        };
        *self.last_heard.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let (revision, to_cut) = applied;
        for lock in &to_cut {
            let cut = self.registry.cut_matching(lock);
            if cut > 0 {
                tracing::info!(lock = %lock.name, sessions = cut, "cutting sessions");
            }
        }
        Ok(revision)
    }

    /// The longest silence before the view counts as unreliable, from the cluster settings.
    pub fn max_staleness(&self) -> Duration {
        Duration::from_millis(self.read().config().max_lock_staleness_ms.max(1))
    }

    /// Whether the view can be trusted: a snapshot arrived and the operator was
    /// heard from within `maxLockStaleness`.
    pub fn is_reliable(&self) -> bool {
        let max = self.max_staleness();
        let heard = *self.last_heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.is_some_and(|at| at.elapsed() <= max) && self.read().has_snapshot()
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
        login: Option<String>,
    ) -> Result<(Identity, LockingMode), Denial> {
        let reliable = self.is_reliable();
        let replica = self.read();
        let roles = replica.roles_for(&principal.user, &principal.groups, &principal.roles);
        let mode = replica.locking_mode(&roles);
        let identity = principal.to_identity(roles, login);
        replica.check(&identity, &self.server_id, mode, reliable, Timestamp::now())?;
        Ok((identity, mode))
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
    pub fn admit(
        &self,
        principal: &CertIdentity,
        login: Option<String>,
    ) -> Result<Admission, Denial> {
        let reliable = self.is_reliable();
        let replica = self.read();
        let roles = replica.roles_for(&principal.user, &principal.groups, &principal.roles);
        let mode = replica.locking_mode(&roles);
        let identity = principal.to_identity(roles, login);
        replica.check(&identity, &self.server_id, mode, reliable, Timestamp::now())?;
        let handle = self
            .registry
            .register(identity.targets(Some(&self.server_id)), mode);
        drop(replica);
        Ok(Admission {
            identity,
            mode,
            handle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::engine::LockEntry;
    use deadbolt_api::protocol::{ClusterConfig, Snapshot, ViewObject};
    use deadbolt_api::resources::LockTargetSpec;

    fn snapshot(staleness_ms: u64, mode: LockingMode) -> ViewEvent {
        ViewEvent::Snapshot(Snapshot {
            revision: 1,
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
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_pushed_lock_cuts_an_admitted_session_and_refuses_new_ones() {
        let state = ViewState::new("proxy-1", SessionRegistry::default());
        assert!(state.admit(&alice(), None).is_err(), "no snapshot yet");
        state
            .apply(snapshot(60_000, LockingMode::BestEffort))
            .unwrap();
        let mut admission = state.admit(&alice(), Some("app".into())).unwrap();
        let lock = LockEntry {
            name: "l1".into(),
            target: LockTargetSpec {
                login: Some("app".into()),
                ..Default::default()
            },
            message: Some("maintenance".into()),
            created: Timestamp::now(),
            expires_at: None,
        };
        state
            .apply(ViewEvent::Upsert {
                revision: 2,
                object: ViewObject::Lock(lock),
            })
            .unwrap();
        let denial = admission.handle.cut().await;
        assert_eq!(
            denial.message(),
            r#"lock targeting Login:"app" is in force: maintenance"#
        );
        assert_eq!(
            state.admit(&alice(), Some("app".into())).err().unwrap(),
            denial
        );
        assert!(state.admit(&alice(), Some("other".into())).is_ok());
    }

    #[test]
    fn a_check_decides_without_registering() {
        let state = ViewState::new("proxy-1", SessionRegistry::default());
        assert_eq!(state.check(&alice(), None).err(), Some(Denial::StaleView));
        state
            .apply(snapshot(60_000, LockingMode::BestEffort))
            .unwrap();
        let (identity, mode) = state.check(&alice(), None).unwrap();
        assert_eq!(identity.user, "alice");
        assert_eq!(mode, LockingMode::BestEffort);
        assert!(state.registry().is_empty());
        assert_eq!(state.with_replica(|replica| replica.revision()), Some(1));
    }

    #[tokio::test]
    async fn silence_makes_the_view_unreliable() {
        let state = ViewState::new("proxy-1", SessionRegistry::default());
        state.apply(snapshot(30_000, LockingMode::Strict)).unwrap();
        let mut admission = state.admit(&alice(), None).unwrap();
        assert_eq!(state.enforce_staleness(), 0);
        *state.last_heard.lock().unwrap() = Instant::now().checked_sub(Duration::from_secs(31));
        assert!(!state.is_reliable());
        assert_eq!(state.enforce_staleness(), 1);
        assert_eq!(admission.handle.cut().await, Denial::StaleView);
        assert_eq!(state.admit(&alice(), None).err(), Some(Denial::StaleView));
    }
}
