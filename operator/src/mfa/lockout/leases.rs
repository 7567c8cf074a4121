//! Lock-out standings kept in Leases in the operator's namespace, one per
//! user who has failed a check (`deadbolt-mfa-lockout-<uuid>`, labelled
//! [`LOCKOUT_KEY`]), so every replica counts the same failures.
//!
//! A Lease because the operator already keeps its per-replica reports in
//! Leases there: no new grant. Its role may list, create, patch and delete
//! Leases but get only its leader Lease, so a standing is read with a
//! field-selected list. Writes carry the resourceVersion they read (a create
//! or a patch that fails with a conflict is read and tried again), so two
//! replicas failing the same user at once both count. An administrator ends a
//! lock-out early by deleting the Lease (docs/mfa.md); its holder is the user
//! and its renew time the last failure, so `kubectl get leases` says whose
//! count each one is. A Lease that counts for nothing any more (its lock-out
//! over, or its failures forgotten) is deleted when next read.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use kube::api::{
    DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions,
};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{LockoutRule, LockoutStore, Standing};
use crate::mfa::store::{StoreError, StoreFuture};

/// The label of every lock-out Lease (`kubectl get leases -l
/// deadbolt.dev/mfa-lockout`), and the annotation holding its standing as JSON.
const LOCKOUT_KEY: &str = "deadbolt.dev/mfa-lockout";
/// The namespace Lease names are derived in from user names (user names may
/// hold characters object names cannot).
const NAME_NAMESPACE: Uuid = Uuid::from_u128(0x3f5b_9c2e_7d41_5a08_b6e3_0c9d_4a7f_1e25);
/// Conflicting writes tried again before giving up.
const ATTEMPTS: usize = 8;

/// What a lock-out Lease holds: whose standing it is, and the standing.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Record {
    user: String,
    #[serde(flatten)]
    standing: Standing,
}

/// Standings in Leases of one namespace.
pub struct LeaseLockout {
    api: Api<Lease>,
    owner: Option<OwnerReference>,
}

impl LeaseLockout {
    /// Standings in `namespace`, their Leases owned by `owner` (see [`crate::ownership`]).
    pub fn new(client: Client, namespace: &str, owner: Option<OwnerReference>) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            owner,
        }
    }

    /// The Lease of `user` and the standing it holds, if there is one.
    async fn read(&self, user: &str) -> Result<Option<(Lease, Standing)>, StoreError> {
        let name = lease_name(user);
        let list = self
            .api
            .list(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await
            .map_err(|error| {
                StoreError(format!(
                    "cannot read the MFA lock-out Lease {name}: {error}"
                ))
            })?;
        let Some(lease) = list.items.into_iter().next() else {
            return Ok(None);
        };
        let standing = standing_of(&lease, user).ok_or_else(|| {
            StoreError(format!(
                "the MFA lock-out Lease {name} is unreadable or not {user:?}'s; delete it to start the count again"
            ))
        })?;
        Ok(Some((lease, standing)))
    }

    /// Deletes `lease`, which counts for nothing any more, unless it changed
    /// since it was read. Best effort: a Lease left behind still counts for nothing.
    async fn tidy(&self, lease: &Lease) {
        let (Some(name), Some(version)) = (&lease.metadata.name, &lease.metadata.resource_version)
        else {
            return;
        };
        let unchanged = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(version.clone()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(error) = self.api.delete(name, &unchanged).await {
            tracing::debug!(lease = %name, %error, "cannot delete a spent MFA lock-out Lease");
        }
    }

    /// Writes `standing` as `user`'s: creates the Lease, or patches the one
    /// read at `version`. `Ok(false)` when another write came first.
    async fn write(
        &self,
        user: &str,
        standing: Standing,
        version: Option<String>,
    ) -> Result<bool, StoreError> {
        let name = lease_name(user);
        let record = serde_json::to_string(&Record {
            user: user.to_string(),
            standing,
        })
        .map_err(|error| StoreError(format!("cannot encode the MFA lock-out: {error}")))?;
        let spec = LeaseSpec {
            holder_identity: Some(user.to_string()),
            renew_time: standing.last_failure.map(MicroTime),
            ..LeaseSpec::default()
        };
        let written = match version {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(BTreeMap::from([(LOCKOUT_KEY.into(), "true".into())])),
                        annotations: Some(BTreeMap::from([(LOCKOUT_KEY.into(), record)])),
                        owner_references: self.owner.clone().map(|owner| vec![owner]),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(version) => {
                let patch = serde_json::json!({
                    "metadata": {
                        "resourceVersion": version,
                        "annotations": { LOCKOUT_KEY: record },
                    },
                    "spec": spec,
                });
                self.api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
        };
        match written {
            Ok(_) => Ok(true),
            // 409: created or changed since it was read; 404: deleted since.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(false),
            Err(error) => Err(StoreError(format!(
                "cannot write the MFA lock-out Lease {name}: {error}"
            ))),
        }
    }
}

impl LockoutStore for LeaseLockout {
    fn standing<'a>(
        &'a self,
        user: &'a str,
        now: Timestamp,
        rule: LockoutRule,
    ) -> StoreFuture<'a, Standing> {
        Box::pin(async move {
            let Some((lease, stored)) = self.read(user).await? else {
                return Ok(Standing::default());
            };
            let standing = stored.at(now, rule);
            if standing == Standing::default() {
                self.tidy(&lease).await;
            }
            Ok(standing)
        })
    }

    fn fail<'a>(
        &'a self,
        user: &'a str,
        now: Timestamp,
        rule: LockoutRule,
    ) -> StoreFuture<'a, Option<Timestamp>> {
        Box::pin(async move {
            for _ in 0..ATTEMPTS {
                let (version, mut standing) = match self.read(user).await? {
                    Some((lease, standing)) => (lease.metadata.resource_version, standing),
                    None => (None, Standing::default()),
                };
                let before = standing;
                let started = standing.fail(now, rule);
                if standing == before {
                    return Ok(None);
                }
                if self.write(user, standing, version).await? {
                    return Ok(started);
                }
            }
            Err(StoreError(format!(
                "cannot record a failed MFA check of {user:?}: {ATTEMPTS} conflicting writes"
            )))
        })
    }

    fn succeed<'a>(&'a self, user: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let name = lease_name(user);
            match self.api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                Err(error) => Err(StoreError(format!(
                    "cannot clear the MFA lock-out Lease {name}: {error}"
                ))),
            }
        })
    }
}

/// `deadbolt-mfa-lockout-<uuid>`, from the user name.
fn lease_name(user: &str) -> String {
    format!(
        "deadbolt-mfa-lockout-{}",
        Uuid::new_v5(&NAME_NAMESPACE, user.as_bytes())
    )
}

/// The standing `lease` holds for `user`; `None` when it holds none, or another user's.
fn standing_of(lease: &Lease, user: &str) -> Option<Standing> {
    let text = lease.metadata.annotations.as_ref()?.get(LOCKOUT_KEY)?;
    let record: Record = serde_json::from_str(text).ok()?;
    (record.user == user).then_some(record.standing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_per_user() {
        let name = lease_name("system:serviceaccount:shop/Jerry Ä");
        assert!(name.starts_with("deadbolt-mfa-lockout-"));
        assert_eq!(name.len(), "deadbolt-mfa-lockout-".len() + 36);
        assert!(
            name.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        );
        assert_eq!(name, lease_name("system:serviceaccount:shop/Jerry Ä"));
        assert_ne!(name, lease_name("system:serviceaccount:shop/jerry ä"));
    }

    #[test]
    fn a_lease_counts_only_for_the_user_it_names() {
        let lease = |annotation: &str| Lease {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(
                    LOCKOUT_KEY.to_string(),
                    annotation.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: None,
        };
        let jerrys = lease(r#"{"user":"jerry","failures":3}"#);
        assert_eq!(
            standing_of(&jerrys, "jerry"),
            Some(Standing {
                failures: 3,
                ..Standing::default()
            })
        );
        assert_eq!(standing_of(&jerrys, "olga"), None);
        assert_eq!(standing_of(&lease("not json"), "jerry"), None);
        assert_eq!(standing_of(&Lease::default(), "jerry"), None);
    }
}
