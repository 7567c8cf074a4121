//! Deleting a temporary user once its deadline
//! (`deadbolt_api::users::temporary_deadline`) has passed.

use deadbolt_api::User;
use deadbolt_api::users::Deadline;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use crate::controller::{Context, Error};

/// Deletes `user` (only the object that was reconciled: a uid precondition),
/// and records an Event. A user already gone or replaced is not an error.
pub async fn delete_expired(user: &User, deadline: &Deadline, ctx: &Context) -> Result<(), Error> {
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
