//! Puts the Deadbolt CA into the `caBundle` of the operator's own webhook
//! configurations, so the API server trusts the serving certificate the
//! operator issues itself (without cert-manager). Only the leader writes;
//! every replica serves with a certificate from the same CA, so one bundle
//! fits all. It retries until the configurations exist and it has written.

use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::leader::Leadership;
use crate::shutdown::Shutdown;

/// The field manager of the `caBundle` fields.
const FIELD_MANAGER: &str = "deadbolt-operator-ca-bundle";
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The webhook configurations to keep trusting the Deadbolt CA, by kind: the
/// operator may read and patch exactly these names and no others, so it never
/// guesses a name's kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookConfigurations {
    /// ValidatingWebhookConfiguration names.
    pub validating: Vec<String>,
    /// MutatingWebhookConfiguration names.
    pub mutating: Vec<String>,
}

impl WebhookConfigurations {
    /// True when there is nothing to patch.
    pub fn is_empty(&self) -> bool {
        self.validating.is_empty() && self.mutating.is_empty()
    }
}

/// Keeps the named webhook configurations trusting the Deadbolt CA.
#[derive(Clone)]
pub struct CaBundle {
    client: Client,
    names: WebhookConfigurations,
    ca_pem: String,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl CaBundle {
    /// `names` are the configurations; `ca_pem` the CA certificate.
    pub fn new(client: Client, names: WebhookConfigurations, ca_pem: &str) -> Self {
        Self {
            client,
            names,
            ca_pem: ca_pem.to_string(),
        }
    }

    /// Patches every configuration each time this replica becomes the leader
    /// (and now, if it leads), until shutdown.
    pub async fn keep(self, leadership: Leadership, shutdown: Shutdown) {
        let mut gained = Box::pin(leadership.gained());
        let mut due = leadership.is_leader();
        loop {
            if due {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    () = self.patch_until_done() => {}
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                gained = gained.next() => match gained {
                    Some(()) => due = true,
                    None => return,
                },
            }
        }
    }

    async fn patch_until_done(&self) {
        let mut wait = FIRST_RETRY;
        loop {
            match self.patch_all().await {
                Ok(()) => {
                    tracing::info!(configurations = ?self.names, "put the Deadbolt CA into the webhook configurations");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, configurations = ?self.names,
                        "cannot put the Deadbolt CA into the webhook configurations yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Sets `caBundle` on every webhook of every named configuration.
    pub async fn patch_all(&self) -> Result<(), kube::Error> {
        let bundle = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        for name in &self.names.validating {
            let config = validating.get(name).await?;
            let webhooks = config.webhooks.iter().flatten().map(|w| w.name.clone());
            let patch = bundle_patch("ValidatingWebhookConfiguration", name, webhooks, &bundle);
            validating
                .patch(name, &params(), &Patch::Apply(patch))
                .await?;
        }
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        for name in &self.names.mutating {
            let config = mutating.get(name).await?;
            let webhooks = config.webhooks.iter().flatten().map(|w| w.name.clone());
            let patch = bundle_patch("MutatingWebhookConfiguration", name, webhooks, &bundle);
            mutating
                .patch(name, &params(), &Patch::Apply(patch))
                .await?;
        }
        Ok(())
    }
}

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// A server-side apply of only the `caBundle` of each webhook (the list is
/// keyed by name, so nothing else of the configuration is claimed).
fn bundle_patch(
    kind: &str,
    name: &str,
    webhooks: impl Iterator<Item = String>,
    bundle: &str,
) -> Value {
    let webhooks: Vec<Value> = webhooks
        .map(|webhook| json!({"name": webhook, "clientConfig": {"caBundle": bundle}}))
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": webhooks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_claims_only_the_ca_bundles() {
        let patch = bundle_patch(
            "ValidatingWebhookConfiguration",
            "deadbolt-validating",
            ["a.deadbolt.dev".to_string(), "b.deadbolt.dev".to_string()].into_iter(),
            "Q0E=",
        );
        assert_eq!(
            patch,
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "deadbolt-validating"},
                "webhooks": [
                    {"name": "a.deadbolt.dev", "clientConfig": {"caBundle": "Q0E="}},
                    {"name": "b.deadbolt.dev", "clientConfig": {"caBundle": "Q0E="}},
                ],
            })
        );
    }
}
