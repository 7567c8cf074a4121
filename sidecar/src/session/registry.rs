//! Live sessions, indexed by every target value they carry, so a new lock
//! finds exactly the sessions it cuts with one lookup per lock field, and a
//! stale view finds the strict sessions without a scan over the others. Each
//! session keeps who it is for, so a policy change (a role granted, a mode
//! switched) can recompute its targets and mode.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use deadbolt_api::credential::CertIdentity;
use deadbolt_api::engine::{Denial, LockEntry, Target};
use deadbolt_api::resources::LockingMode;
use tokio::sync::watch;

/// A session's number within this proxy.
pub type SessionId = u64;

/// Who a session is for: what its targets and mode are computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The authenticated principal.
    pub principal: CertIdentity,
    /// The login in use (the database user), if any.
    pub login: Option<String>,
}

/// A session's targets and mode as a policy change leaves them, and the
/// reason to cut it now, if any.
pub struct Reassessed {
    /// The session's interaction targets.
    pub targets: Vec<Target>,
    /// Its locking mode.
    pub mode: LockingMode,
    /// Cut it with this.
    pub cut: Option<Denial>,
}

struct Entry {
    subject: Arc<Subject>,
    targets: Vec<Target>,
    strict: bool,
    cut: watch::Sender<Option<Denial>>,
}

#[derive(Default)]
struct Inner {
    next_id: SessionId,
    sessions: HashMap<SessionId, Entry>,
    by_target: HashMap<Target, HashSet<SessionId>>,
    strict: HashSet<SessionId>,
}

/// The registry of live sessions. Cheap to clone; all clones share it.
#[derive(Clone, Default)]
pub struct SessionRegistry {
    inner: Arc<Mutex<Inner>>,
}

/// A registered session. Dropping it removes the session from the registry.
pub struct SessionHandle {
    id: SessionId,
    registry: SessionRegistry,
    cut: watch::Receiver<Option<Denial>>,
}

impl SessionHandle {
    /// The session's number within this proxy.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Resolves when the session must be cut, with the reason to show the client.
    /// Pending forever if the registry is dropped first.
    pub async fn cut(&mut self) -> Denial {
        loop {
            if let Some(denial) = self.cut.borrow_and_update().clone() {
                return denial;
            }
            if self.cut.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The reason, if the session has already been told to stop.
    pub fn cut_reason(&self) -> Option<Denial> {
        self.cut.borrow().clone()
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

impl SessionRegistry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a
        // way that matters more than losing every session, so keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a live session of `subject` with its interaction targets and locking mode.
    pub fn register(
        &self,
        subject: Arc<Subject>,
        targets: Vec<Target>,
        mode: LockingMode,
    ) -> SessionHandle {
        let (sender, receiver) = watch::channel(None);
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.index(id, &targets);
        let strict = mode == LockingMode::Strict;
        if strict {
            inner.strict.insert(id);
        }
        inner.sessions.insert(
            id,
            Entry {
                subject,
                targets,
                strict,
                cut: sender,
            },
        );
        SessionHandle {
            id,
            registry: self.clone(),
            cut: receiver,
        }
    }

    fn remove(&self, id: SessionId) {
        let mut inner = self.lock();
        let Some(entry) = inner.sessions.remove(&id) else {
            return;
        };
        inner.unindex(id, &entry.targets);
        if entry.strict {
            inner.strict.remove(&id);
        }
    }

    /// Recomputes every live session's targets and mode after a policy
    /// change, re-indexing the ones that changed, and cuts those `decide`
    /// says to. Returns how many sessions were told to stop.
    pub fn reassess(&self, mut decide: impl FnMut(&Subject) -> Reassessed) -> usize {
        let mut inner = self.lock();
        let Inner {
            sessions,
            by_target,
            strict,
            ..
        } = &mut *inner;
        let mut told = 0;
        for (id, entry) in sessions.iter_mut() {
            let reassessed = decide(&entry.subject);
            if reassessed.targets != entry.targets {
                unindex(by_target, *id, &entry.targets);
                index(by_target, *id, &reassessed.targets);
                entry.targets = reassessed.targets;
            }
            entry.strict = reassessed.mode == LockingMode::Strict;
            if entry.strict {
                strict.insert(*id);
            } else {
                strict.remove(id);
            }
            if let Some(denial) = &reassessed.cut
                && tell(entry, denial)
            {
                told += 1;
            }
        }
        told
    }

    /// Tells every session the lock matches to stop, with the lock's message.
    /// Returns how many sessions were told.
    pub fn cut_matching(&self, lock: &LockEntry) -> usize {
        let denial = Denial::Locked {
            lock: lock.name.clone(),
            message: lock.message(),
        };
        let inner = self.lock();
        let mut told = HashSet::new();
        for (kind, value) in lock.target.fields() {
            let target = Target::new(kind, value);
            for id in inner.by_target.get(&target).into_iter().flatten() {
                if told.insert(*id) {
                    let _ = tell(&inner.sessions[id], &denial);
                }
            }
        }
        told.len()
    }

    /// Tells every strict session to stop because the view is unreliable.
    pub fn cut_strict(&self) -> usize {
        let inner = self.lock();
        for id in &inner.strict {
            let _ = tell(&inner.sessions[id], &Denial::StaleView);
        }
        inner.strict.len()
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn index(&mut self, id: SessionId, targets: &[Target]) {
        index(&mut self.by_target, id, targets);
    }

    fn unindex(&mut self, id: SessionId, targets: &[Target]) {
        unindex(&mut self.by_target, id, targets);
    }
}

fn index(by_target: &mut HashMap<Target, HashSet<SessionId>>, id: SessionId, targets: &[Target]) {
    for target in targets {
        by_target.entry(target.clone()).or_default().insert(id);
    }
}

fn unindex(by_target: &mut HashMap<Target, HashSet<SessionId>>, id: SessionId, targets: &[Target]) {
    for target in targets {
        if let Some(ids) = by_target.get_mut(target) {
            ids.remove(&id);
            if ids.is_empty() {
                by_target.remove(target);
            }
        }
    }
}

/// The first reason wins: a session already being cut keeps its message.
/// Returns whether the session was told now.
fn tell(entry: &Entry, denial: &Denial) -> bool {
    entry.cut.send_if_modified(|current| {
        if current.is_some() {
            return false;
        }
        *current = Some(denial.clone());
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::TargetKind;
    use deadbolt_testkit::{lock_entry, target};

    fn subject(user: &str) -> Arc<Subject> {
        Arc::new(Subject {
            principal: CertIdentity {
                user: user.into(),
                ..Default::default()
            },
            login: None,
        })
    }

    fn lock_on(kind: TargetKind, value: &str) -> LockEntry {
        lock_entry("l", target(kind, value)).message("m").build()
    }

    #[tokio::test]
    async fn a_lock_cuts_exactly_the_sessions_it_matches() {
        let registry = SessionRegistry::default();
        let mut alice = registry.register(
            subject("alice"),
            vec![
                Target::new(TargetKind::User, "alice"),
                Target::new(TargetKind::Role, "dev"),
            ],
            LockingMode::BestEffort,
        );
        let bob = registry.register(
            subject("bob"),
            vec![Target::new(TargetKind::User, "bob")],
            LockingMode::BestEffort,
        );
        assert_eq!(registry.cut_matching(&lock_on(TargetKind::Role, "dev")), 1);
        assert_eq!(
            alice.cut().await.message(),
            r#"lock targeting Role:"dev" is in force: m"#
        );
        assert!(bob.cut_reason().is_none());
        assert_eq!(
            registry.cut_matching(&lock_on(TargetKind::User, "carol")),
            0
        );
        drop(alice);
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.cut_matching(&lock_on(TargetKind::Role, "dev")), 0);
    }

    #[tokio::test]
    async fn a_stale_view_cuts_only_strict_sessions() {
        let registry = SessionRegistry::default();
        let mut strict = registry.register(
            subject("a"),
            vec![Target::new(TargetKind::User, "a")],
            LockingMode::Strict,
        );
        let relaxed = registry.register(
            subject("b"),
            vec![Target::new(TargetKind::User, "b")],
            LockingMode::BestEffort,
        );
        assert_eq!(registry.cut_strict(), 1);
        assert_eq!(strict.cut().await, Denial::StaleView);
        assert!(relaxed.cut_reason().is_none());
        drop(strict);
        assert_eq!(registry.cut_strict(), 0);
    }

    #[tokio::test]
    async fn a_reassessment_reindexes_changes_modes_and_cuts() {
        let registry = SessionRegistry::default();
        let mut alice = registry.register(
            subject("alice"),
            vec![Target::new(TargetKind::User, "alice")],
            LockingMode::BestEffort,
        );
        let bob = registry.register(
            subject("bob"),
            vec![Target::new(TargetKind::User, "bob")],
            LockingMode::BestEffort,
        );
        // alice is granted `dev` and becomes strict; nobody is cut yet.
        let told = registry.reassess(|subject| Reassessed {
            targets: if subject.principal.user == "alice" {
                vec![
                    Target::new(TargetKind::User, "alice"),
                    Target::new(TargetKind::Role, "dev"),
                ]
            } else {
                vec![Target::new(TargetKind::User, "bob")]
            },
            mode: if subject.principal.user == "alice" {
                LockingMode::Strict
            } else {
                LockingMode::BestEffort
            },
            cut: None,
        });
        assert_eq!(told, 0);
        assert_eq!(registry.cut_matching(&lock_on(TargetKind::Role, "dev")), 1);
        assert_eq!(
            alice.cut().await.message(),
            r#"lock targeting Role:"dev" is in force: m"#
        );
        assert_eq!(registry.cut_strict(), 1, "alice is strict now");
        assert!(bob.cut_reason().is_none());
        let told = registry.reassess(|subject| Reassessed {
            targets: vec![Target::new(
                TargetKind::User,
                subject.principal.user.clone(),
            )],
            mode: LockingMode::BestEffort,
            cut: (subject.principal.user == "bob").then_some(Denial::StaleView),
        });
        assert_eq!(told, 1, "alice was already told; bob is told now");
        assert_eq!(bob.cut_reason(), Some(Denial::StaleView));
        assert_eq!(registry.cut_strict(), 0);
    }
}
