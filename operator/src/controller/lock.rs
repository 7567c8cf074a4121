//! The Lock controller: `status.expiresAt`, the `Ready` and `InForce`
//! conditions, `enforcedBy`, expiry at the exact instant, `lock.created` and
//! `lock.expired` audit events, and (with `--expired-lock-retention`) the
//! deletion of locks that expired long ago.
//!
//! There is no finalizer: deletions are audited from the view's delete events
//! ([`super::lock_index`]), so deleting a lock never waits for the operator.

use std::sync::Arc;

use deadbolt_api::audit::AuditEventKind;
use deadbolt_api::resources::LockStatus;
use deadbolt_api::{CREATED_BY_ANNOTATION, Lock, LockEntry};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::audit::lock_event;
use super::status::{self, ConditionSpec, READY, Truth};
use super::{Context, Error, duration_until};

/// The condition saying whether the lock is unexpired.
pub const IN_FORCE: &str = "InForce";

/// The reason of both conditions on a lock the engine cannot use.
const INVALID: &str = "Invalid";

/// Reconciles one Lock. Followers only watch; the leader writes.
pub async fn reconcile(lock: Arc<Lock>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leadership.is_leader() || lock.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let name = lock.name_any();
    let api: Api<Lock> = Api::all(ctx.client.clone());
    let previous = lock.status.clone().unwrap_or_default();
    let generation = lock.meta().generation;
    let entry = match LockEntry::from_lock(&lock, now) {
        Ok(entry) => entry,
        Err(error) => return reject(&lock, &api, &ctx, &previous, error.to_string(), now).await,
    };

    let in_force = entry.is_in_force(now);
    // First accepted: never reconciled, or reconciled only while invalid.
    let first_seen = previous.observed_generation.is_none()
        || status::find(&previous.conditions, READY).is_some_and(|ready| ready.reason == INVALID);
    let newly_expired = !in_force && !was_expired(&previous);
    let desired = LockStatus {
        observed_generation: generation,
        conditions: status::conditions(
            status::with_kstatus(ConditionSpec::new(
                READY,
                true,
                "Accepted",
                format!("targets {}", entry.target),
            ))
            .into_iter()
            .chain([in_force_condition(&entry, now)]),
            &previous.conditions,
            generation,
            now,
        ),
        expires_at: entry.expires_at.map(Time),
        // Until the tracker has counted this lock (a new lock, a new leader),
        // keep the last value rather than flapping it away.
        enforced_by: ctx
            .enforcement
            .get(&name)
            .map(|count| count.to_string())
            .or_else(|| previous.enforced_by.clone()),
    };

    // Audit before writing: at least once, and retries repeat the same uid.
    if first_seen {
        let actor = lock.annotations().get(CREATED_BY_ANNOTATION).cloned();
        let event = lock_event(AuditEventKind::LockCreated, &entry, entry.created, actor);
        ctx.record_audit(&event);
    }
    if newly_expired {
        let expired_at = entry.expires_at.unwrap_or(now);
        ctx.record_audit(&lock_event(
            AuditEventKind::LockExpired,
            &entry,
            expired_at,
            None,
        ));
    }

    let reference = lock.object_ref(&());
    if retention_deadline(&entry, &ctx).is_some_and(|deadline| now >= deadline) {
        delete_expired(&api, &lock, &ctx).await?;
        return Ok(Action::await_change());
    }
    if desired != previous {
        status::apply_status(&api, &name, &desired).await?;
    }
    if first_seen {
        ctx.publish(
            &reference,
            EventType::Normal,
            "Locked",
            "Lock",
            entry.message(),
        )
        .await;
    }
    if newly_expired {
        let note = format!("expired at {}", entry.expires_at.unwrap_or(now));
        ctx.publish(&reference, EventType::Normal, "Expired", "Expire", note)
            .await;
    }
    Ok(next_action(&entry, &ctx, now))
}

/// `InForce`: True until the expiry instant, then False with reason `Expired`.
fn in_force_condition(entry: &LockEntry, now: Timestamp) -> ConditionSpec {
    match entry.expires_at {
        None => ConditionSpec::new(IN_FORCE, true, "InForce", "in force until deleted"),
        Some(expires) if entry.is_in_force(now) => ConditionSpec::new(
            IN_FORCE,
            true,
            "InForce",
            format!("in force until {expires}"),
        ),
        Some(expires) => {
            ConditionSpec::new(IN_FORCE, false, "Expired", format!("expired at {expires}"))
        }
    }
}

fn was_expired(previous: &LockStatus) -> bool {
    status::find(&previous.conditions, IN_FORCE)
        .is_some_and(|condition| condition.status == Truth::False.as_str())
}

/// When an expired lock is due for deletion, if retention is configured.
fn retention_deadline(entry: &LockEntry, ctx: &Context) -> Option<Timestamp> {
    let retention = jiff::SignedDuration::try_from(ctx.settings.expired_lock_retention?).ok()?;
    entry.expires_at?.checked_add(retention).ok()
}

/// Requeue at the next instant something happens: the expiry, or the end of
/// retention. Otherwise only a change (or the enforcement tracker) wakes it.
fn next_action(entry: &LockEntry, ctx: &Context, now: Timestamp) -> Action {
    let next = match entry.expires_at {
        Some(expires) if now < expires => Some(expires),
        Some(_) => retention_deadline(entry, ctx),
        None => None,
    };
    next.map_or_else(Action::await_change, |at| {
        Action::requeue(duration_until(now, at))
    })
}

/// Deletes a lock past its retention, only the incarnation that was reconciled.
async fn delete_expired(api: &Api<Lock>, lock: &Lock, ctx: &Context) -> Result<(), Error> {
    let name = lock.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: lock.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        // Already gone, or replaced by a new lock of the same name: nothing to do.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    let retention = ctx
        .settings
        .expired_lock_retention
        .map(deadbolt_api::duration::format)
        .unwrap_or_default();
    tracing::info!(lock = %name, %retention, "deleted a lock expired for longer than the retention");
    ctx.publish(
        &lock.object_ref(&()),
        EventType::Normal,
        "Deleted",
        "Delete",
        format!("expired for longer than --expired-lock-retention {retention}"),
    )
    .await;
    Ok(())
}

/// Reports a lock the engine cannot use. Proxies keep its last valid version,
/// if they had one, so whether it is in force is unknown from here.
async fn reject(
    lock: &Lock,
    api: &Api<Lock>,
    ctx: &Context,
    previous: &LockStatus,
    problem: String,
    now: Timestamp,
) -> Result<Action, Error> {
    let generation = lock.meta().generation;
    let desired = LockStatus {
        observed_generation: generation,
        conditions: status::conditions(
            status::with_kstatus(ConditionSpec::new(READY, false, INVALID, problem.clone()))
                .into_iter()
                .chain([ConditionSpec::new(
                    IN_FORCE,
                    Truth::Unknown,
                    INVALID,
                    "proxies keep the last valid version of this lock, if they had one",
                )]),
            &previous.conditions,
            generation,
            now,
        ),
        expires_at: None,
        enforced_by: previous.enforced_by.clone(),
    };
    if desired != *previous {
        status::apply_status(api, &lock.name_any(), &desired).await?;
        ctx.publish(
            &lock.object_ref(&()),
            EventType::Warning,
            INVALID,
            "Validate",
            problem,
        )
        .await;
    }
    Ok(Action::await_change())
}
