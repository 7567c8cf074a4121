//! The AccessRole controller: checks what the schema cannot (empty or
//! duplicate entries, allow rules that a deny rule cancels) and reports the
//! result as the `Ready` condition. Proxies enforce a role as written either
//! way; a `Ready: False` role is one that does not do what it seems to say.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deadbolt_api::resources::{AccessRoleStatus, RoleConditions};
use deadbolt_api::{AccessRole, AccessRoleSpec};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};

use super::status::{self, ConditionSpec, READY};
use super::{Context, Error};

/// Matches every value of a field.
const WILDCARD: &str = "*";

/// Reconciles one AccessRole. Followers only watch; the leader writes.
pub async fn reconcile(role: Arc<AccessRole>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leadership.is_leader() || role.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = ctx.clock.now();
    let previous = role.status.clone().unwrap_or_default();
    let generation = role.meta().generation;
    let findings = validate(&role.spec);
    let ready = if findings.is_empty() {
        ConditionSpec::new(READY, true, "Valid", "valid")
    } else {
        ConditionSpec::new(READY, false, "Invalid", findings.join("; "))
    };
    let desired = AccessRoleStatus {
        observed_generation: generation,
        conditions: status::ready_conditions(ready, &previous.conditions, generation, now),
    };
    if desired != previous {
        let api: Api<AccessRole> = Api::all(ctx.client.clone());
        status::apply_status(&api, &role.name_any(), &desired).await?;
        if !findings.is_empty() {
            ctx.publish(
                &role.object_ref(&()),
                EventType::Warning,
                "Invalid",
                "Validate",
                findings.join("; "),
            )
            .await;
        }
    }
    Ok(Action::await_change())
}

/// Everything wrong with a role, in a stable order; empty when it is fine.
pub fn validate(spec: &AccessRoleSpec) -> Vec<String> {
    let mut findings = Vec::new();
    check_list("groups", &spec.groups, &mut findings);
    for (side, conditions) in [("allow", &spec.allow), ("deny", &spec.deny)] {
        for (field, values) in list_fields(conditions) {
            check_list(&format!("{side}.{field}"), values, &mut findings);
        }
        check_labels(side, &conditions.db_labels, &mut findings);
    }
    check_contradictions(&spec.allow, &spec.deny, &mut findings);
    findings
}

fn list_fields(conditions: &RoleConditions) -> [(&'static str, &Vec<String>); 5] {
    [
        ("logins", &conditions.logins),
        ("kubernetesGroups", &conditions.kubernetes_groups),
        ("kubernetesUsers", &conditions.kubernetes_users),
        ("dbUsers", &conditions.db_users),
        ("dbNames", &conditions.db_names),
    ]
}

/// Empty entries, entries with surrounding spaces, and duplicates.
fn check_list(path: &str, values: &[String], findings: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    let mut repeated = BTreeSet::new();
    for value in values {
        if value.trim().is_empty() {
            findings.push(format!("{path} has an empty entry"));
        } else if value.trim() != value {
            findings.push(format!(
                "{path} entry {value:?} has surrounding spaces and matches nothing as written"
            ));
        }
        if !seen.insert(value.as_str()) {
            repeated.insert(value.as_str());
        }
    }
    for value in repeated {
        findings.push(format!("{path} lists {value:?} more than once"));
    }
}

fn check_labels(side: &str, labels: &BTreeMap<String, Vec<String>>, findings: &mut Vec<String>) {
    for (label, values) in labels {
        if label.trim().is_empty() {
            findings.push(format!("{side}.dbLabels has an empty label name"));
            continue;
        }
        if values.is_empty() {
            findings.push(format!(
                "{side}.dbLabels.{label} has no values and matches no database"
            ));
        }
        check_list(&format!("{side}.dbLabels.{label}"), values, findings);
    }
}

/// Allow entries a deny entry cancels: the same value, or a deny wildcard.
fn check_contradictions(allow: &RoleConditions, deny: &RoleConditions, findings: &mut Vec<String>) {
    for ((field, allowed), (_, denied)) in list_fields(allow).into_iter().zip(list_fields(deny)) {
        cancelled(field, allowed, denied, findings);
    }
    for (label, allowed) in &allow.db_labels {
        if let Some(denied) = deny.db_labels.get(label) {
            cancelled(&format!("dbLabels.{label}"), allowed, denied, findings);
        }
    }
}

fn cancelled(field: &str, allowed: &[String], denied: &[String], findings: &mut Vec<String>) {
    if allowed.is_empty() {
        return;
    }
    if denied.iter().any(|value| value == WILDCARD) {
        findings.push(format!(
            "deny.{field} contains \"*\", so allow.{field} grants nothing"
        ));
        return;
    }
    let denied: BTreeSet<&str> = denied.iter().map(String::as_str).collect();
    let mut reported = BTreeSet::new();
    for value in allowed {
        if denied.contains(value.as_str()) && reported.insert(value.as_str()) {
            findings.push(format!(
                "allow.{field} {value:?} is also denied; deny wins, so it grants nothing"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn a_sensible_role_is_valid() {
        let spec = AccessRoleSpec {
            allow: RoleConditions {
                logins: strings(&["app", "readonly"]),
                db_labels: BTreeMap::from([("env".to_string(), strings(&["dev"]))]),
                ..Default::default()
            },
            deny: RoleConditions {
                logins: strings(&["root"]),
                ..Default::default()
            },
            groups: strings(&["devs"]),
            ..Default::default()
        };
        assert_eq!(validate(&spec), Vec::<String>::new());
    }

    #[test]
    fn flags_empty_duplicate_and_contradictory_entries() {
        let spec = AccessRoleSpec {
            allow: RoleConditions {
                logins: strings(&["root", "app", "app", ""]),
                db_users: strings(&["postgres"]),
                db_labels: BTreeMap::from([("env".to_string(), vec![])]),
                ..Default::default()
            },
            deny: RoleConditions {
                logins: strings(&["root"]),
                db_users: strings(&["*"]),
                ..Default::default()
            },
            groups: strings(&[" devs"]),
            ..Default::default()
        };
        assert_eq!(
            validate(&spec),
            [
                "groups entry \" devs\" has surrounding spaces and matches nothing as written",
                "allow.logins has an empty entry",
                "allow.logins lists \"app\" more than once",
                "allow.dbLabels.env has no values and matches no database",
                "allow.logins \"root\" is also denied; deny wins, so it grants nothing",
                "deny.dbUsers contains \"*\", so allow.dbUsers grants nothing",
            ]
        );
    }
}
