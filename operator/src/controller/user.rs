//! The User controller: deletes temporary users when they expire (at most
//! 30h after creation), locks synced users suspended in their identity
//! provider, and reports in `status.locked`/`lockedBy` whether a lock is in
//! force for the user, computed from the operator's view of the locks.

use std::collections::BTreeMap;
use std::sync::Arc;

use deadbolt_api::resources::{LockTargetSpec, UserStatus};
use deadbolt_api::{GROUP, LockEntry, ORIGIN_LABEL, User, UserType};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use uuid::Uuid;

use super::status::{self, ConditionSpec, READY};
use super::{Context, Error, duration_until};

/// The longest a temporary user may live, as in Teleport.
pub const MAX_TEMPORARY_LIFETIME: SignedDuration = SignedDuration::from_hours(30);

/// The message of a suspended user's automatic lock.
pub const SUSPENDED_MESSAGE: &str = "user suspended in identity provider";

/// The label on automatic locks; its value says why the lock exists.
pub const AUTO_LOCK_LABEL: &str = "deadbolt.dev/auto-lock";

/// The [`AUTO_LOCK_LABEL`] value of a suspended user's lock.
pub const SUSPENDED_REASON: &str = "suspended-user";

/// Lock names with this prefix are reserved for suspended users' automatic locks.
pub const AUTO_LOCK_PREFIX: &str = "deadbolt-suspended-";

/// Longest Kubernetes object name.
const MAX_NAME_LEN: usize = 253;

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
            delete_expired(&user, deadline, &ctx).await?;
            return Ok(Action::await_change());
        }
        notes.push(deadline.describe());
        wake_at = Some(deadline.at);
    }

    let auto_lock = auto_lock_name(&name);
    let suspended = is_synced(&user) && user.spec.suspended;
    let mut removed = None;
    if suspended {
        ensure_auto_lock(&user, &auto_lock, &ctx).await?;
        notes.push(format!(
            "suspended in identity provider: locked by Lock {auto_lock}"
        ));
    } else if remove_auto_lock(&user, &auto_lock, &ctx).await? {
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
        conditions: status::conditions(
            status::with_kstatus(ConditionSpec::new(
                READY,
                true,
                "Reconciled",
                message.clone(),
            )),
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

/// Whether the user was synced from an identity provider.
pub fn is_synced(user: &User) -> bool {
    user.labels().contains_key(ORIGIN_LABEL)
}

/// The automatic lock's name: `deadbolt-suspended-<User object name>` (an
/// object name is always a valid name, a username need not be), shortened
/// with a hash when that would exceed 253 characters.
pub fn auto_lock_name(user: &str) -> String {
    let name = format!("{AUTO_LOCK_PREFIX}{user}");
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    let hash = Uuid::new_v5(&Uuid::NAMESPACE_OID, user.as_bytes())
        .simple()
        .to_string();
    let hash = &hash[..10];
    let mut keep = MAX_NAME_LEN - hash.len() - 1;
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let stem = name[..keep].trim_end_matches(['.', '-']);
    format!("{stem}-{hash}")
}

/// When a temporary user goes, and whether the 30h bound shortened its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// When the user is deleted.
    pub at: Timestamp,
    /// `spec.expires` was later than creation + 30h (or missing).
    pub capped: bool,
    /// `spec.expires` as written.
    pub requested: Option<Timestamp>,
}

impl Deadline {
    /// A sentence for the `Ready` condition and the Warning event.
    pub fn describe(&self) -> String {
        match (self.capped, self.requested) {
            (false, _) => format!("temporary user, deleted at {}", self.at),
            (true, Some(requested)) => format!(
                "spec.expires {requested} is more than 30h after creation; the user is deleted at {} (creation + 30h)",
                self.at
            ),
            (true, None) => format!(
                "temporary user without spec.expires; deleted at {} (creation + 30h)",
                self.at
            ),
        }
    }
}

/// The deletion time of a temporary user: `spec.expires`, but never more than
/// 30h after `creationTimestamp`. `None` for other users.
pub fn temporary_deadline(user: &User, now: Timestamp) -> Option<Deadline> {
    if user.spec.type_ != UserType::Temporary {
        return None;
    }
    let created = user
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or(now, |time| time.0);
    let limit = created
        .checked_add(MAX_TEMPORARY_LIFETIME)
        .unwrap_or(Timestamp::MAX);
    let requested = user.spec.expires.as_ref().map(|time| time.0);
    Some(match requested {
        Some(expires) if expires <= limit => Deadline {
            at: expires,
            capped: false,
            requested,
        },
        _ => Deadline {
            at: limit,
            capped: true,
            requested,
        },
    })
}

async fn delete_expired(user: &User, deadline: &Deadline, ctx: &Context) -> Result<(), Error> {
    let api: Api<User> = Api::all(ctx.client.clone());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: user.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&user.name_any(), &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    tracing::info!(user = %user.name_any(), at = %deadline.at, "deleted an expired temporary user");
    ctx.publish(
        &user.object_ref(&()),
        EventType::Normal,
        "Expired",
        "Delete",
        format!("temporary user expired at {}; deleted", deadline.at),
    )
    .await;
    Ok(())
}

/// The automatic lock as the operator applies it.
pub fn auto_lock_manifest(user: &User, lock_name: &str) -> serde_json::Value {
    let owner = OwnerReference {
        api_version: User::api_version(&()).into_owned(),
        kind: User::kind(&()).into_owned(),
        name: user.name_any(),
        uid: user.uid().unwrap_or_default(),
        controller: Some(true),
        // Not blocking: that would need `update` on users/finalizers.
        block_owner_deletion: None,
    };
    let target = LockTargetSpec {
        user: Some(user.username().to_string()),
        ..LockTargetSpec::default()
    };
    serde_json::json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "Lock",
        "metadata": {
            "name": lock_name,
            "labels": BTreeMap::from([(AUTO_LOCK_LABEL, SUSPENDED_REASON)]),
            "ownerReferences": [owner],
        },
        "spec": {
            "target": target,
            "message": SUSPENDED_MESSAGE,
        },
    })
}

/// Applies the automatic lock unless the view already has it as wanted.
async fn ensure_auto_lock(user: &User, lock_name: &str, ctx: &Context) -> Result<(), Error> {
    let wanted_target = LockTargetSpec {
        user: Some(user.username().to_string()),
        ..LockTargetSpec::default()
    };
    let present = ctx.locks.get(lock_name).is_some_and(|lock: LockEntry| {
        lock.target == wanted_target
            && lock.message.as_deref() == Some(SUSPENDED_MESSAGE)
            && lock.expires_at.is_none()
    });
    if present {
        return Ok(());
    }
    let api: Api<deadbolt_api::Lock> = Api::all(ctx.client.clone());
    api.patch(
        lock_name,
        &status::apply_params(),
        &Patch::Apply(auto_lock_manifest(user, lock_name)),
    )
    .await?;
    tracing::info!(user = %user.name_any(), lock = lock_name, "locked a suspended user");
    ctx.publish(
        &user.object_ref(&()),
        EventType::Normal,
        "Locked",
        "Lock",
        format!("suspended in identity provider: applied Lock {lock_name}"),
    )
    .await;
    Ok(())
}

/// Deletes the automatic lock if the view has it and it belongs to this user.
/// Returns whether it was deleted.
async fn remove_auto_lock(user: &User, lock_name: &str, ctx: &Context) -> Result<bool, Error> {
    if ctx.locks.get(lock_name).is_none() {
        return Ok(false);
    }
    let api: Api<deadbolt_api::Lock> = Api::all(ctx.client.clone());
    let Some(lock) = api.get_opt(lock_name).await? else {
        return Ok(false);
    };
    let owned = user.uid().is_some_and(|uid| {
        lock.owner_references()
            .iter()
            .any(|owner| owner.uid == uid && owner.kind == "User")
    });
    if !owned {
        tracing::warn!(lock = lock_name, user = %user.name_any(),
            "a lock with an automatic-lock name is not owned by its user; leaving it");
        return Ok(false);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: lock.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(lock_name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            return Ok(false);
        }
        Err(error) => return Err(error.into()),
    }
    tracing::info!(user = %user.name_any(), lock = lock_name, "unlocked a user no longer suspended");
    ctx.publish(
        &user.object_ref(&()),
        EventType::Normal,
        "Unlocked",
        "Unlock",
        format!("no longer suspended: deleted Lock {lock_name}"),
    )
    .await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::UserSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn temporary(expires: Option<i64>) -> User {
        let mut user = User::new(
            "tmp",
            UserSpec {
                type_: UserType::Temporary,
                expires: expires.map(|s| Time(at(s))),
                ..UserSpec::default()
            },
        );
        user.metadata.creation_timestamp = Some(Time(at(0)));
        user
    }

    #[test]
    fn temporary_users_live_at_most_30_hours() {
        let within = temporary_deadline(&temporary(Some(3600)), at(0)).unwrap();
        assert_eq!((within.at, within.capped), (at(3600), false));
        let beyond = temporary_deadline(&temporary(Some(31 * 3600)), at(0)).unwrap();
        assert_eq!((beyond.at, beyond.capped), (at(30 * 3600), true));
        assert!(
            beyond.describe().contains("more than 30h"),
            "{}",
            beyond.describe()
        );
        let missing = temporary_deadline(&temporary(None), at(0)).unwrap();
        assert_eq!((missing.at, missing.capped), (at(30 * 3600), true));
        let local = User::new("l", UserSpec::default());
        assert_eq!(temporary_deadline(&local, at(0)), None);
    }

    #[test]
    fn auto_lock_names_are_deterministic_and_valid() {
        assert_eq!(auto_lock_name("bob"), "deadbolt-suspended-bob");
        let long = format!("{}.example.com", "a".repeat(240));
        let name = auto_lock_name(&long);
        assert!(name.len() <= MAX_NAME_LEN);
        assert_eq!(name, auto_lock_name(&long));
        assert_ne!(
            name,
            auto_lock_name(&format!("{}.example.org", "a".repeat(240)))
        );
        assert!(!name.contains(".-") && !name.contains("--"), "{name}");
    }
}
