//! A suspended synced user's automatic lock: applied while the user is
//! suspended, deleted when it no longer is, and only ever the lock the User
//! owns. Its name, label and message are `deadbolt_api::users`'s.

use std::collections::BTreeMap;

use deadbolt_api::resources::LockTargetSpec;
use deadbolt_api::users::{AUTO_LOCK_LABEL, SUSPENDED_MESSAGE, SUSPENDED_REASON};
use deadbolt_api::{GROUP, LockEntry, User};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::controller::status;
use crate::controller::{Context, Error};

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
pub async fn ensure(user: &User, lock_name: &str, ctx: &Context) -> Result<(), Error> {
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
pub async fn remove(user: &User, lock_name: &str, ctx: &Context) -> Result<bool, Error> {
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
