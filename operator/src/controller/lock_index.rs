//! The controllers' copy of the view's locks, indexed like a proxy's.
//!
//! [`follow`] replays the [`ViewStore`]'s change feed into a [`SharedLockIndex`]
//! index. From the same feed it writes `lock.deleted` (the leader only) and
//! wakes the User controller whenever a lock that can lock a user changed, so
//! `User.status.locked` never waits for a periodic resync and never lags the
//! view it is computed from.
//!
//! Deletion is detected here, from the watch's delete events (or a relist that
//! no longer has the lock), rather than with a finalizer: a finalizer on every
//! Lock would make `kubectl delete lock` hang whenever the operator is down,
//! and unlocking must never depend on the operator being up.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use deadbolt_api::audit::AuditEventKind;
use deadbolt_api::protocol::{ObjectKey, ViewEvent, ViewObject};
use deadbolt_api::{LockEntry, LockIndex, Target, TargetKind};
use jiff::Timestamp;

use super::Context;
use super::audit::lock_event;
use super::trigger::Trigger;
use crate::shutdown::Shutdown;
use crate::view::{ViewFeed, ViewStore};

/// The view's locks with the engine's hash index. Cheap to clone; clones share.
#[derive(Clone, Debug, Default)]
pub struct SharedLockIndex(Arc<RwLock<LockIndex>>);

impl SharedLockIndex {
    /// Adds or replaces a lock; returns the previous version.
    pub fn upsert(&self, entry: LockEntry) -> Option<LockEntry> {
        self.write().upsert(entry).map(|old| (*old).clone())
    }

    /// Removes a lock; returns it if it was there.
    pub fn remove(&self, name: &str) -> Option<LockEntry> {
        self.write().remove(name).map(|old| (*old).clone())
    }

    /// A lock by name.
    pub fn get(&self, name: &str) -> Option<LockEntry> {
        self.read().get(name).cloned()
    }

    /// The lock in force for a user at `now`: one matching the user's name or
    /// one of its roles (oldest first, as the proxies report it). A lock named
    /// `ignoring` is left out, for a lock that is being deleted right now.
    pub fn in_force_for_user(
        &self,
        user: &str,
        roles: &[String],
        now: Timestamp,
        ignoring: Option<&str>,
    ) -> Option<LockEntry> {
        let targets = user_targets(user, roles);
        let view = self.read();
        let found = view.find_in_force(&targets, now)?;
        let Some(ignored) = ignoring.filter(|name| *name == found.name) else {
            return Some(found.clone());
        };
        // Rare (a lock being removed is the one found): look again without it.
        let mut without = view.clone();
        drop(view);
        without.remove(ignored);
        without.find_in_force(&targets, now).cloned()
    }

    /// Replaces everything with `entries`; returns the locks that are gone.
    fn replace(&self, entries: Vec<LockEntry>) -> Vec<LockEntry> {
        let mut view = self.write();
        let names: HashSet<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
        let gone: Vec<LockEntry> = view
            .iter()
            .filter(|entry| !names.contains(entry.name.as_str()))
            .cloned()
            .collect();
        view.clear();
        for entry in entries {
            view.upsert(entry);
        }
        gone
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, LockIndex> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, LockIndex> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The targets that, when locked, lock a user outright: its name and its roles.
/// (A login, device or MFA-device lock locks some of its sessions only.)
fn user_targets(user: &str, roles: &[String]) -> Vec<Target> {
    std::iter::once(Target::new(TargetKind::User, user))
        .chain(
            roles
                .iter()
                .map(|role| Target::new(TargetKind::Role, role.as_str())),
        )
        .collect()
}

/// Whether a lock can change some user's `status.locked`.
fn can_lock_users(entry: &LockEntry) -> bool {
    entry.target.user.is_some() || entry.target.role.is_some()
}

/// Replays the view's lock changes into `ctx.locks` until shutdown: audits
/// deletions (leader only) and fires `users` when a user-relevant lock changed.
pub async fn follow(ctx: Arc<Context>, store: ViewStore, users: Trigger, shutdown: Shutdown) {
    let mut feed = ViewFeed::new(store);
    loop {
        let event = tokio::select! {
            _ = shutdown.wait() => return,
            event = feed.next() => event,
        };
        match event {
            Some(event) => apply(&ctx, event, &users),
            None => return,
        }
    }
}

/// Applies one view event; public to the crate for tests.
pub(crate) fn apply(ctx: &Context, event: ViewEvent, users: &Trigger) {
    match event {
        ViewEvent::Snapshot(snapshot) => {
            for gone in ctx.locks.replace(snapshot.locks) {
                audit_deleted(ctx, &gone);
            }
            users.fire();
        }
        ViewEvent::Upsert {
            object: ViewObject::Lock(entry),
            ..
        } => {
            let relevant = can_lock_users(&entry);
            let old = ctx.locks.upsert(entry);
            if relevant || old.as_ref().is_some_and(can_lock_users) {
                users.fire();
            }
        }
        ViewEvent::Delete {
            key: ObjectKey::Lock(name),
            ..
        } => {
            if let Some(gone) = ctx.locks.remove(&name) {
                audit_deleted(ctx, &gone);
                if can_lock_users(&gone) {
                    users.fire();
                }
            }
        }
        _ => {}
    }
}

fn audit_deleted(ctx: &Context, entry: &LockEntry) {
    if ctx.leadership.is_leader() {
        let event = lock_event(AuditEventKind::LockDeleted, entry, ctx.clock.now(), None);
        ctx.record_audit(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::ManualClock;
    use crate::controller::audit::AuditSink;
    use crate::leader::Leadership;
    use deadbolt_api::TargetKind;
    use deadbolt_api::resources::LockTargetSpec;
    use deadbolt_testkit::{lock_entry, target, ts as at};
    use futures::StreamExt;
    use futures::future::FutureExt;
    use http::{Request, Response};
    use kube::client::Body;

    fn entry(name: &str, target: LockTargetSpec, expires: Option<i64>) -> LockEntry {
        lock_entry(name, target)
            .created(at(0))
            .expires_at(expires.map(at))
            .build()
    }

    fn user(name: &str) -> LockTargetSpec {
        target(TargetKind::User, name)
    }

    fn context(leader: bool) -> (Context, super::super::audit::AuditBuffer) {
        let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (audit, buffer) = AuditSink::memory();
        let (switch, leadership) = Leadership::manual(leader);
        drop(switch); // the value stays as set
        let ctx = Context::new(kube::Client::new(service, "default"))
            .with_clock(Arc::new(ManualClock::new(at(50))))
            .with_audit(audit)
            .with_leadership(leadership);
        (ctx, buffer)
    }

    #[test]
    fn finds_user_and_role_locks_oldest_first() {
        let locks = SharedLockIndex::default();
        let mut by_role = entry("by-role", target(TargetKind::Role, "dev"), None);
        by_role.created = at(-5);
        locks.upsert(entry("by-user", user("alice"), Some(100)));
        locks.upsert(by_role);
        locks.upsert(entry("by-login", target(TargetKind::Login, "alice"), None));
        let roles = vec!["dev".to_string()];
        let found = |now, ignoring| {
            locks
                .in_force_for_user("alice", &roles, at(now), ignoring)
                .map(|e| e.name)
        };
        assert_eq!(found(10, None).as_deref(), Some("by-role"));
        assert_eq!(found(10, Some("by-role")).as_deref(), Some("by-user"));
        assert_eq!(
            locks.in_force_for_user("alice", &[], at(100), None),
            None,
            "expired, and logins do not count"
        );
        assert!(
            locks.get("by-role").is_some(),
            "ignoring never removes from the index"
        );
    }

    #[tokio::test]
    async fn deletions_are_audited_by_the_leader_and_wake_the_user_controller() {
        let (ctx, buffer) = context(true);
        let users = Trigger::default();
        let mut woken = Box::pin(users.stream());
        let store = ViewStore::default();
        let mut feed = ViewFeed::new(store.clone());
        store.upsert(ViewObject::Lock(entry("a", user("alice"), None)));
        store.upsert(ViewObject::Lock(entry(
            "srv",
            target(TargetKind::ServerId, "p1"),
            None,
        )));
        store.delete(&ObjectKey::Lock("a".into()));
        for _ in 0..4 {
            let event = feed.next().await.unwrap();
            apply(&ctx, event, &users);
        }
        assert_eq!(woken.next().await, Some(()));
        let events = buffer.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, AuditEventKind::LockDeleted);
        assert_eq!(events[0].lock.as_deref(), Some("a"));
        assert_eq!(events[0].time, at(50));
        assert!(ctx.locks.get("a").is_none());

        // A server-id lock going away is audited but does not concern users.
        store.delete(&ObjectKey::Lock("srv".into()));
        apply(&ctx, feed.next().await.unwrap(), &users);
        assert!(woken.next().now_or_never().is_none());
        assert_eq!(buffer.events().len(), 2);
    }

    #[tokio::test]
    async fn a_snapshot_without_a_known_lock_is_a_deletion_and_followers_stay_silent() {
        let (ctx, buffer) = context(false);
        let users = Trigger::default();
        ctx.locks.upsert(entry("old", user("bob"), None));
        let store = ViewStore::default();
        store.upsert(ViewObject::Lock(entry("new", user("carol"), None)));
        apply(&ctx, ViewEvent::Snapshot(store.snapshot()), &users);
        assert!(ctx.locks.get("old").is_none());
        assert!(ctx.locks.get("new").is_some());
        assert!(buffer.events().is_empty(), "only the leader audits");
    }
}
