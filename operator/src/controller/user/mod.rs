//! The User controller: deletes temporary users when they expire (at most
//! 30h after creation, [`expiry`]), locks synced users suspended in their
//! identity provider ([`auto_lock`]), and reports in `status.locked`/`lockedBy`
//! whether a lock is in force for the user, computed from the operator's view
//! of the locks. The rules themselves are `deadbolt_api::users`.

pub mod auto_lock;
pub mod expiry;

use std::sync::Arc;

use deadbolt_api::User;
use deadbolt_api::resources::UserStatus;
use deadbolt_api::users::{auto_lock_name, is_synced, temporary_deadline};
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

pub use deadbolt_api::users::AUTO_LOCK_LABEL;

use super::status::{self, ConditionSpec, READY};
use super::{Context, Error, duration_until};

/// Reconciles one User. Followers only watch; the leader writes.
pub async fn reconcile(user: Arc<User>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leadership.is_leader() || user.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let name = user.name_any();
    let mut notes = Vec::new();
    let mut wake_at: Option<Timestamp> = None;

    let deadline = temporary_deadline(&user, now);
    if let Some(deadline) = &deadline {
        if now >= deadline.at {
            expiry::delete_expired(&user, deadline, &ctx).await?;
            return Ok(Action::await_change());
        }
        notes.push(deadline.describe());
        wake_at = Some(deadline.at);
    }

    let auto_lock = auto_lock_name(&name);
    let suspended = is_synced(&user) && user.spec.suspended;
    let mut removed = None;
    if suspended {
        auto_lock::ensure(&user, &auto_lock, &ctx).await?;
        notes.push(format!(
            "suspended in identity provider: locked by Lock {auto_lock}"
        ));
    } else if auto_lock::remove(&user, &auto_lock, &ctx).await? {
        removed = Some(auto_lock.as_str());
    }

    let lock = ctx
        .locks
        .in_force_for_user(user.username(), &user.spec.roles, now, removed);
    if let Some(expires) = lock.as_ref().and_then(|lock| lock.expires_at) {
        wake_at = Some(wake_at.map_or(expires, |at| at.min(expires)));
    }
    // A just-applied automatic lock reaches the view a moment later.
    let locked_by = lock
        .map(|lock| lock.name)
        .or_else(|| suspended.then(|| auto_lock.clone()));

    let previous = user.status.clone().unwrap_or_default();
    let generation = user.meta().generation;
    let message = if notes.is_empty() {
        "up to date".to_string()
    } else {
        notes.join("; ")
    };
    let desired = UserStatus {
        observed_generation: generation,
        conditions: status::ready_conditions(
            ConditionSpec::new(READY, true, "Reconciled", message.clone()),
            &previous.conditions,
            generation,
            now,
        ),
        locked: locked_by.is_some(),
        locked_by,
    };
    if desired != previous {
        status::apply_status(&Api::<User>::all(ctx.client.clone()), &name, &desired).await?;
    }
    let message_changed = status::find(&previous.conditions, READY)
        .is_none_or(|condition| condition.message != message);
    if let Some(deadline) = deadline.filter(|deadline| deadline.capped && message_changed) {
        ctx.publish(
            &user.object_ref(&()),
            EventType::Warning,
            "ExpiryCapped",
            "Expire",
            deadline.describe(),
        )
        .await;
    }
    Ok(wake_at.map_or_else(Action::await_change, |at| {
        Action::requeue(duration_until(now, at))
    }))
}
