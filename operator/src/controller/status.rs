//! Shared status plumbing: conditions that keep their transition time, and
//! status writes by server-side apply under one field manager.
//!
//! Every status the controllers write carries `observedGeneration` and the
//! three conditions kstatus (Flux, `kubectl wait`, Argo CD's Lua checks)
//! reads: `Ready`, `Reconciling` and `Stalled` ([`with_kstatus`]).

use std::fmt::Debug;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "deadbolt-operator";

/// The condition every Deadbolt status has: the object was understood and acted on.
pub const READY: &str = "Ready";

/// kstatus's "in progress" condition. The operator writes a status only once
/// it has acted on the generation it names, so it is always `False`: work in
/// progress shows as `observedGeneration` behind `metadata.generation`.
pub const RECONCILING: &str = "Reconciling";

/// kstatus's "failed" condition: `True` when the spec cannot be acted on
/// until someone changes it (an invalid Lock reads as Stalled, not Current).
pub const STALLED: &str = "Stalled";

/// `ready` and the two conditions kstatus reads beside it: `Stalled` says
/// what `Ready=False` says (every `Ready=False` the operator writes needs a
/// spec change), and `Reconciling` is `False`.
pub fn with_kstatus(ready: ConditionSpec) -> [ConditionSpec; 3] {
    let stalled = match ready.status {
        Truth::False => ConditionSpec::new(STALLED, true, ready.reason, ready.message.clone()),
        _ => ConditionSpec::new(STALLED, false, ready.reason, "nothing to fix"),
    };
    let reconciling = ConditionSpec::new(
        RECONCILING,
        false,
        ready.reason,
        "the latest generation has been acted on",
    );
    [ready, reconciling, stalled]
}

/// The status of a condition, as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truth {
    /// `"True"`.
    True,
    /// `"False"`.
    False,
    /// `"Unknown"`.
    Unknown,
}

impl Truth {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Truth {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// A condition to set: everything but the times, which [`ConditionSpec::build`] derives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionSpec {
    /// The condition type, e.g. `Ready`.
    pub type_: &'static str,
    /// Its status.
    pub status: Truth,
    /// A CamelCase reason.
    pub reason: &'static str,
    /// A sentence for people.
    pub message: String,
}

impl ConditionSpec {
    /// A condition of `type_`.
    pub fn new(
        type_: &'static str,
        status: impl Into<Truth>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: status.into(),
            reason,
            message: message.into(),
        }
    }

    /// The condition, keeping the previous `lastTransitionTime` when the status
    /// did not change (so an unchanged status compares equal and is not rewritten).
    pub fn build(
        self,
        previous: &[Condition],
        generation: Option<i64>,
        now: Timestamp,
    ) -> Condition {
        let status = self.status.as_str();
        let last_transition_time = previous
            .iter()
            .find(|condition| condition.type_ == self.type_ && condition.status == status)
            .map_or(Time(now), |condition| {
                condition.last_transition_time.clone()
            });
        Condition {
            type_: self.type_.to_string(),
            status: status.to_string(),
            reason: self.reason.to_string(),
            message: self.message,
            observed_generation: generation,
            last_transition_time,
        }
    }
}

/// Builds several conditions against the previous ones.
pub fn conditions(
    specs: impl IntoIterator<Item = ConditionSpec>,
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    specs
        .into_iter()
        .map(|spec| spec.build(previous, generation, now))
        .collect()
}

/// The conditions of an object whose whole state is `ready`: it and kstatus's
/// two beside it ([`with_kstatus`]), built against the previous ones.
pub fn ready_conditions(
    ready: ConditionSpec,
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    conditions(with_kstatus(ready), previous, generation, now)
}

/// A condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|condition| condition.type_ == type_)
}

/// Server-side apply as [`FIELD_MANAGER`], forcing: the operator owns its fields.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies `status` to the object's status subresource. The body names only
/// `status`, so the operator never takes ownership of spec or metadata.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> kube::Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &apply_params(), &Patch::Apply(body))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::resources::condition_status;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let first = ConditionSpec::new(READY, true, "Accepted", "ok").build(&[], Some(1), at(10));
        assert_eq!(first.last_transition_time, Time(at(10)));
        let same = ConditionSpec::new(READY, true, "Accepted", "still ok").build(
            std::slice::from_ref(&first),
            Some(2),
            at(20),
        );
        assert_eq!(same.last_transition_time, Time(at(10)));
        assert_eq!(same.observed_generation, Some(2));
        let flipped =
            ConditionSpec::new(READY, false, "Invalid", "bad").build(&[same], Some(3), at(30));
        assert_eq!(flipped.last_transition_time, Time(at(30)));
        assert_eq!(condition_status(&[flipped], READY), Some("False"));
    }
}
