//! The ClusterAuthPreference controller: reports the effective values in
//! status so `kubectl get cap` shows what is in force, defaults included.
//!
//! While no ClusterAuthPreference exists, the defaults (`best_effort`, no
//! session MFA, `maxLockStaleness` 30s) apply through the view; there is no
//! object to write status to, so this controller only acts once one exists.

use std::sync::Arc;

use deadbolt_api::ClusterAuthPreference;
use deadbolt_api::duration;
use deadbolt_api::resources::{ClusterAuthPreferenceStatus, DEFAULT_MAX_LOCK_STALENESS};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::status::{self, ConditionSpec, READY};
use super::{Context, Error};

/// Reconciles the singleton. Followers only watch; the leader writes.
pub async fn reconcile(
    cap: Arc<ClusterAuthPreference>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if !ctx.leadership.is_leader() || cap.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let previous = cap.status.clone().unwrap_or_default();
    let generation = cap.meta().generation;
    let spec = &cap.spec;
    let staleness = duration::format(spec.effective_max_lock_staleness());
    let locking_mode = spec.effective_locking_mode();
    let require_session_mfa = spec.effective_require_session_mfa();
    let unparsable = spec
        .max_lock_staleness
        .as_deref()
        .filter(|text| duration::parse(text).is_err());
    let ready = match unparsable {
        Some(text) => ConditionSpec::new(
            READY,
            false,
            "InvalidMaxLockStaleness",
            format!(
                "maxLockStaleness {text:?} is not a Go duration; using the default {DEFAULT_MAX_LOCK_STALENESS}"
            ),
        ),
        None => ConditionSpec::new(
            READY,
            true,
            "Applied",
            format!(
                "in effect: lockingMode {locking_mode}, requireSessionMfa {require_session_mfa}, maxLockStaleness {staleness}"
            ),
        ),
    };
    let desired = ClusterAuthPreferenceStatus {
        observed_generation: generation,
        conditions: status::ready_conditions(ready, &previous.conditions, generation, now),
        locking_mode: Some(locking_mode),
        require_session_mfa: Some(require_session_mfa),
        max_lock_staleness: Some(staleness),
    };
    if desired != previous {
        let api: Api<ClusterAuthPreference> = Api::all(ctx.client.clone());
        status::apply_status(&api, &cap.name_any(), &desired).await?;
        if let Some(text) = unparsable {
            ctx.publish(
                &cap.object_ref(&()),
                EventType::Warning,
                "InvalidMaxLockStaleness",
                "Validate",
                format!("maxLockStaleness {text:?} is not a Go duration; using the default {DEFAULT_MAX_LOCK_STALENESS}"),
            )
            .await;
        }
    }
    Ok(Action::await_change())
}
