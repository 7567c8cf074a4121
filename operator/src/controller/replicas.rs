//! `enforcedBy` across replicas. Every replica serves the lock view, so a
//! proxy's acks reach only the replica it streams from. Each replica therefore
//! publishes what its own proxies have applied, in a Lease of its own
//! (`deadbolt-enforcement-<identity>`, labelled [`REPORT_LABEL`]), renewed
//! every few seconds; the leader adds the fresh reports of the others to its
//! own counts.
//!
//! Revisions are per replica and mean nothing elsewhere, so a report says it
//! per lock: how many connected proxies have applied the lock as that replica
//! holds it. It lists only the locks some proxy still lags on, and carries the
//! replica's lock fingerprint: a report from a replica holding other locks than
//! the leader (a change not seen there yet) counts its proxies as connected but
//! as having applied nothing, until it catches up.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::subscribers::EnforcedBy;

/// The label of every replica's report Lease.
pub const REPORT_LABEL: &str = "deadbolt.dev/enforcement-report";
/// The annotation holding the report, as JSON.
const REPORT_ANNOTATION: &str = "deadbolt.dev/enforcement";
/// An unchanged report is still renewed this often, to show the replica lives.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A report not renewed for this long is from a replica that is gone.
const FRESH_FOR: Duration = Duration::from_secs(15);
/// Lease names longer than this are shortened.
const MAX_NAME_LEN: usize = 253;

/// What one replica's proxies have applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Proxies connected to the replica.
    pub connected: usize,
    /// The replica's lock fingerprint (as a string: JSON numbers lose bits past 2^53).
    #[serde(with = "fingerprint")]
    pub fingerprint: u64,
    /// Locks not every connected proxy has applied, with how many have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lagging: BTreeMap<String, usize>,
}

impl Report {
    /// The report of a replica whose per-lock counts are `counts`.
    pub fn new(counts: &BTreeMap<String, EnforcedBy>, connected: usize, fingerprint: u64) -> Self {
        Self {
            connected,
            fingerprint,
            lagging: counts
                .iter()
                .filter(|(_, count)| count.applied < connected)
                .map(|(name, count)| (name.clone(), count.applied))
                .collect(),
        }
    }

    /// How many of this replica's proxies have applied `lock` as a replica
    /// whose fingerprint is `fingerprint` holds it.
    pub fn applied(&self, lock: &str, fingerprint: u64) -> usize {
        if self.fingerprint != fingerprint {
            return 0;
        }
        self.lagging.get(lock).copied().unwrap_or(self.connected)
    }
}

mod fingerprint {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Publishes this replica's report and reads the others'.
pub struct ReportExchange {
    api: Api<Lease>,
    identity: String,
    name: String,
    owner: Option<OwnerReference>,
    published: Mutex<Option<(Report, Instant)>>,
}

impl std::fmt::Debug for ReportExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportExchange")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ReportExchange {
    /// The exchange of the replica `identity`, through Leases in `namespace`.
    pub fn new(client: Client, namespace: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            identity: identity.to_string(),
            name: lease_name(identity),
            owner: None,
            published: Mutex::default(),
        }
    }

    /// Publishes with `owner` as the report's owner (see [`crate::ownership`]).
    pub fn with_owner(mut self, owner: Option<OwnerReference>) -> Self {
        self.owner = owner;
        self
    }

    fn published(&self) -> MutexGuard<'_, Option<(Report, Instant)>> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `report` when it changed, or when the last write is getting old.
    pub async fn publish(&self, report: &Report) -> Result<(), kube::Error> {
        let due = match &*self.published() {
            Some((last, at)) => last != report || at.elapsed() >= RENEW_EVERY,
            None => true,
        };
        if !due {
            return Ok(());
        }
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(BTreeMap::from([(
                    REPORT_LABEL.to_string(),
                    "true".to_string(),
                )])),
                annotations: Some(BTreeMap::from([(
                    REPORT_ANNOTATION.to_string(),
                    serde_json::to_string(report).expect("reports always serialise"),
                )])),
                owner_references: self.owner.clone().map(|owner| vec![owner]),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                renew_time: Some(MicroTime(Timestamp::now())),
                lease_duration_seconds: Some(FRESH_FOR.as_secs() as i32),
                ..Default::default()
            }),
        };
        let mut value = serde_json::to_value(&lease).expect("leases always serialise");
        value["apiVersion"] = "coordination.k8s.io/v1".into();
        value["kind"] = "Lease".into();
        self.api
            .patch(
                &self.name,
                &PatchParams::apply("deadbolt-operator").force(),
                &Patch::Apply(value),
            )
            .await?;
        *self.published() = Some((report.clone(), Instant::now()));
        Ok(())
    }

    /// The fresh reports of the other replicas.
    pub async fn peers(&self, now: Timestamp) -> Result<Vec<Report>, kube::Error> {
        let leases = self
            .api
            .list(&ListParams::default().labels(REPORT_LABEL))
            .await?;
        Ok(leases
            .items
            .iter()
            .filter(|lease| lease.metadata.name.as_deref() != Some(self.name.as_str()))
            .filter_map(|lease| fresh_report(lease, now))
            .collect())
    }

    /// Deletes this replica's report, at shutdown.
    pub async fn withdraw(&self) {
        if let Err(error) = self.api.delete(&self.name, &DeleteParams::default()).await {
            tracing::debug!(%error, lease = %self.name, "cannot delete the enforcement report");
        }
    }
}

/// The report a Lease carries, if it was renewed within [`FRESH_FOR`] of `now`.
fn fresh_report(lease: &Lease, now: Timestamp) -> Option<Report> {
    let renewed = lease.spec.as_ref()?.renew_time.as_ref()?.0;
    let age = now.duration_since(renewed);
    if age > jiff::SignedDuration::try_from(FRESH_FOR).ok()? {
        return None;
    }
    let text = lease
        .metadata
        .annotations
        .as_ref()?
        .get(REPORT_ANNOTATION)?;
    match serde_json::from_str(text) {
        Ok(report) => Some(report),
        Err(error) => {
            tracing::warn!(lease = ?lease.metadata.name, %error, "ignoring an unreadable enforcement report");
            None
        }
    }
}

/// `deadbolt-enforcement-<identity>`, a valid object name whatever the identity.
fn lease_name(identity: &str) -> String {
    let cleaned: String = identity
        .to_ascii_lowercase()
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '-' || ch == '.' {
                ch
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("deadbolt-enforcement-{}", cleaned.trim_matches(['-', '.']));
    name.truncate(MAX_NAME_LEN);
    name.trim_end_matches(['-', '.']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, usize, usize)]) -> BTreeMap<String, EnforcedBy> {
        pairs
            .iter()
            .map(|(name, applied, connected)| {
                (
                    name.to_string(),
                    EnforcedBy {
                        applied: *applied,
                        connected: *connected,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_report_lists_only_lagging_locks_and_counts_only_the_same_locks() {
        let report = Report::new(&counts(&[("a", 3, 3), ("b", 1, 3)]), 3, u64::MAX - 1);
        assert_eq!(report.lagging, BTreeMap::from([("b".to_string(), 1)]));
        assert_eq!(report.applied("a", u64::MAX - 1), 3);
        assert_eq!(report.applied("b", u64::MAX - 1), 1);
        assert_eq!(
            report.applied("a", 7),
            0,
            "another set of locks: nothing applied yet"
        );
        let text = serde_json::to_string(&report).unwrap();
        assert!(
            text.contains(r#""fingerprint":"18446744073709551614""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), report);
    }

    #[test]
    fn only_fresh_reports_count() {
        let now: Timestamp = "2026-06-01T00:00:30Z".parse().unwrap();
        let lease = |renewed: &str| Lease {
            metadata: ObjectMeta {
                name: Some("deadbolt-enforcement-b".into()),
                annotations: Some(BTreeMap::from([(
                    REPORT_ANNOTATION.to_string(),
                    r#"{"connected":2,"fingerprint":"5"}"#.to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                ..Default::default()
            }),
        };
        let fresh = fresh_report(&lease("2026-06-01T00:00:20Z"), now).unwrap();
        assert_eq!(fresh.connected, 2);
        assert!(fresh_report(&lease("2026-06-01T00:00:10Z"), now).is_none());
    }

    #[test]
    fn lease_names_are_valid_for_any_identity() {
        assert_eq!(
            lease_name("deadbolt-operator-0"),
            "deadbolt-enforcement-deadbolt-operator-0"
        );
        assert_eq!(
            lease_name("Host_Name:1"),
            "deadbolt-enforcement-host-name-1"
        );
        assert!(lease_name(&"x".repeat(400)).len() <= MAX_NAME_LEN);
    }
}
