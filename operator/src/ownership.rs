//! Who owns what the operator creates at run time.
//!
//! The Deadbolt CA Secret, the leader Lease, each replica's enforcement
//! report Lease and the MFA lock-out Leases are not part of any manifest: the
//! operator makes them. They
//! carry an owner reference to the operator's ServiceAccount, which the
//! installation (the Helm chart, or whoever installs it by hand) creates, so
//! removing the installation lets Kubernetes' garbage collector remove them
//! too. `helm uninstall` then leaves nothing behind but the CRDs and the
//! objects users made. A reinstall makes a new CA, so certificates issued by
//! the old one stop working; docs/install.md says so.
//!
//! Without the ServiceAccount (an operator run by hand, outside the cluster,
//! with a kubeconfig of its own) the objects have no owner and stay.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};

/// The field manager of owner references: kept apart from the lease manager's
/// and the status writer's fields.
const FIELD_MANAGER: &str = "deadbolt-operator-ownership";

/// An owner reference to ServiceAccount `name` in `namespace`, `None` when it
/// does not exist or cannot be read (which is logged, and harmless: the
/// objects are then simply not collected).
pub async fn service_account_owner(
    client: Client,
    namespace: &str,
    name: &str,
) -> Option<OwnerReference> {
    let api: Api<ServiceAccount> = Api::namespaced(client, namespace);
    match api.get_opt(name).await {
        Ok(Some(account)) => Some(owner_reference(&account)),
        Ok(None) => {
            tracing::info!(
                namespace,
                service_account = name,
                "no such ServiceAccount: the CA Secret and Leases this operator creates have no owner and outlive it"
            );
            None
        }
        Err(error) => {
            tracing::warn!(%error, namespace, service_account = name,
                "cannot read the operator's ServiceAccount: the CA Secret and Leases it creates have no owner and outlive it");
            None
        }
    }
}

/// An owner reference to `account`. Not a controller reference and not
/// blocking: the ServiceAccount's deletion never waits for these objects.
pub fn owner_reference(account: &ServiceAccount) -> OwnerReference {
    OwnerReference {
        api_version: ServiceAccount::api_version(&()).into_owned(),
        kind: ServiceAccount::kind(&()).into_owned(),
        name: account.metadata.name.clone().unwrap_or_default(),
        uid: account.metadata.uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// Gives the existing object `name` of kind `K` the owner `owner`, by
/// server-side apply of its owner references alone.
pub async fn adopt<K>(api: &Api<K>, name: &str, owner: &OwnerReference) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "ownerReferences": [owner]},
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(drop)
}
