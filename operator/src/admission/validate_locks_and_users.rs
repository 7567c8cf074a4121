//! Checks on Deadbolt resources that the CRD schema and CEL cannot make:
//!
//! - a temporary User's `spec.expires` is at most 30h after its creation
//!   (CEL cannot see `creationTimestamp`, and on CREATE there is none yet);
//! - SSO Users and Users synced from an identity provider (label
//!   `deadbolt.dev/origin`) can be deleted but not edited, except by the
//!   operator and the identity-provider sync;
//! - a Lock on a user or role with no User or AccessRole gets a warning;
//! - a Lock's `deadbolt.dev/created-by` annotation is Deadbolt's to set.
//!
//! Status subresource writes are never edits and always pass.

use std::collections::{BTreeMap, HashSet};

use deadbolt_api::replica::ViewReplica;
use deadbolt_api::{CREATED_BY_ANNOTATION, GROUP, Lock, ORIGIN_LABEL, User, UserType};
use jiff::Timestamp;
use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde::de::DeserializeOwned;

use super::review::{Refusal, Request, Verdict};

/// The warning for a Lock whose `target.user` names no User resource.
pub fn missing_user_warning(user: &str) -> String {
    format!(
        "lock targets user {user:?}, which has no User resource; \
         it will still apply to a Kubernetes user of that name"
    )
}

/// The warning for a Lock whose `target.role` names no AccessRole.
pub fn missing_role_warning(role: &str) -> String {
    format!(
        "lock targets role {role:?}, which has no AccessRole resource; \
         it will only apply to users and certificates that name that role"
    )
}

/// Validates a request on a Deadbolt resource. `editors` may edit SSO and
/// synced users; `view` is `None` until the operator's view has loaded, and
/// then Lock warnings are left out rather than guessed; `now` is the request
/// time, which stands in for the creation time on CREATE.
pub fn validate_deadbolt(
    request: &Request,
    editors: &HashSet<String>,
    view: Option<&ViewReplica>,
    now: Timestamp,
) -> Verdict {
    if request.kind.group != GROUP || request.sub_resource.is_some() {
        return Ok(Vec::new());
    }
    match request.kind.kind.as_str() {
        "User" => validate_user(request, editors, now).map(|()| Vec::new()),
        "Lock" => validate_lock(request, view),
        _ => Ok(Vec::new()),
    }
}

fn validate_user(
    request: &Request,
    editors: &HashSet<String>,
    now: Timestamp,
) -> Result<(), Refusal> {
    let (new, created) = match request.operation {
        Operation::Create => (parse::<User>(request.object.as_ref(), "User")?, now),
        Operation::Update => {
            let old = request.old_object.as_ref();
            let new = request.object.as_ref();
            let username = request.user_info.username.as_deref().unwrap_or_default();
            if !editors.contains(username)
                && let (Some(old), Some(new)) = (old, new)
            {
                refuse_read_only_edit(old, new)?;
            }
            let created = old
                .and_then(|old| old.metadata.creation_timestamp.as_ref())
                .or_else(|| new.and_then(|new| new.metadata.creation_timestamp.as_ref()))
                .map_or(now, |time| time.0);
            (parse::<User>(new, "User")?, created)
        }
        Operation::Delete | Operation::Connect => return Ok(()),
    };
    check_temporary_expiry(&new, created)
}

/// A temporary user expires at most `deadbolt_api::users::MAX_TEMPORARY_LIFETIME` after `created`.
fn check_temporary_expiry(user: &User, created: Timestamp) -> Result<(), Refusal> {
    let Some(expires) = user.spec.expires.as_ref().map(|time| time.0) else {
        return Ok(());
    };
    if user.spec.type_ != UserType::Temporary {
        return Ok(());
    }
    // Past the end of time there is no bound left to check.
    let Some(latest) = deadbolt_api::users::latest_expiry(created) else {
        return Ok(());
    };
    if expires <= latest {
        return Ok(());
    }
    Err(Refusal::invalid(format!(
        "User {:?}: spec.expires ({expires}) must be at most 30h after the user's creation \
         ({created}), i.e. no later than {latest}",
        name_of(&user.metadata.name),
    )))
}

/// Refuses an edit of an SSO or synced user: anything but the status and the
/// bookkeeping metadata (finalizers, owner references, managed fields) that
/// controllers and the garbage collector maintain.
fn refuse_read_only_edit(old: &DynamicObject, new: &DynamicObject) -> Result<(), Refusal> {
    let sso = old.data.pointer("/spec/type").and_then(|t| t.as_str()) == Some("sso");
    let origin = old
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(ORIGIN_LABEL));
    let what = match (sso, origin) {
        (true, _) => "an SSO user".to_string(),
        (false, Some(origin)) => {
            format!("synced from the identity provider {origin:?} (label {ORIGIN_LABEL})")
        }
        (false, None) => return Ok(()),
    };
    let mut changes = Vec::new();
    if old.data.get("spec") != new.data.get("spec") {
        changes.push("spec");
    }
    if !same_map(&old.metadata.labels, &new.metadata.labels) {
        changes.push("labels");
    }
    if !same_map(&old.metadata.annotations, &new.metadata.annotations) {
        changes.push("annotations");
    }
    if changes.is_empty() {
        return Ok(());
    }
    Err(Refusal::forbidden(format!(
        "User {:?} is {what}: it can be deleted but not edited (this request changes its {})",
        name_of(&old.metadata.name),
        changes.join(" and ")
    )))
}

fn validate_lock(request: &Request, view: Option<&ViewReplica>) -> Verdict {
    let username = request.user_info.username.as_deref().unwrap_or_default();
    let stamped = |object: Option<&DynamicObject>| -> Option<String> {
        object?
            .metadata
            .annotations
            .as_ref()?
            .get(CREATED_BY_ANNOTATION)
            .cloned()
    };
    match request.operation {
        Operation::Create => {
            if let Some(claimed) = stamped(request.object.as_ref())
                && claimed != username
            {
                return Err(Refusal::invalid(format!(
                    "the annotation {CREATED_BY_ANNOTATION} records who created the Lock and is set \
                     by Deadbolt: it cannot be {claimed:?} when {username:?} creates the Lock"
                )));
            }
        }
        Operation::Update => {
            let old = stamped(request.old_object.as_ref());
            let new = stamped(request.object.as_ref());
            if old != new {
                let was = old.map_or_else(|| "absent".to_string(), |old| format!("{old:?}"));
                return Err(Refusal::invalid(format!(
                    "the annotation {CREATED_BY_ANNOTATION} records who created the Lock and \
                     cannot be changed (it is {was})"
                )));
            }
        }
        Operation::Delete | Operation::Connect => return Ok(Vec::new()),
    }
    let lock = parse::<Lock>(request.object.as_ref(), "Lock")?;
    let Some(view) = view else {
        return Ok(Vec::new());
    };
    let mut warnings = Vec::new();
    if let Some(user) = lock.spec.target.user.as_deref().filter(|u| !u.is_empty())
        && view.user(user).is_none()
    {
        warnings.push(missing_user_warning(user));
    }
    if let Some(role) = lock.spec.target.role.as_deref().filter(|r| !r.is_empty())
        && view.role(role).is_none()
    {
        warnings.push(missing_role_warning(role));
    }
    Ok(warnings)
}

/// The typed resource, or a 422 saying why it cannot be read.
fn parse<K: kube::Resource + DeserializeOwned>(
    object: Option<&DynamicObject>,
    kind: &str,
) -> Result<K, Refusal> {
    let object =
        object.ok_or_else(|| Refusal::invalid(format!("the request carries no {kind} object")))?;
    object
        .clone()
        .try_parse()
        .map_err(|error| Refusal::invalid(format!("cannot read the {kind}: {error}")))
}

/// Whether two label or annotation maps are equal, an empty map being the same as none.
fn same_map(a: &Option<BTreeMap<String, String>>, b: &Option<BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    a.as_ref().unwrap_or(&empty) == b.as_ref().unwrap_or(&empty)
}

fn name_of(name: &Option<String>) -> &str {
    name.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::review::decode;
    use serde_json::json;

    const NOW: &str = "2025-06-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn request(
        operation: &str,
        user: &str,
        object: serde_json::Value,
        old: serde_json::Value,
    ) -> Request {
        let kind = object
            .get("kind")
            .or_else(|| old.get("kind"))
            .cloned()
            .unwrap_or_default();
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u",
                "kind": {"group": "deadbolt.dev", "version": "v1", "kind": kind},
                "resource": {"group": "deadbolt.dev", "version": "v1", "resource": "users"},
                "operation": operation,
                "userInfo": {"username": user},
                "object": object,
                "oldObject": old,
            }
        });
        decode(&serde_json::to_vec(&review).unwrap()).unwrap()
    }

    fn temporary(expires: &str, created: Option<&str>) -> serde_json::Value {
        json!({
            "apiVersion": "deadbolt.dev/v1", "kind": "User",
            "metadata": {"name": "tmp", "creationTimestamp": created},
            "spec": {"type": "temporary", "expires": expires}
        })
    }

    fn no_editors() -> HashSet<String> {
        HashSet::new()
    }

    #[test]
    fn temporary_users_live_at_most_30h_from_the_request_time_on_create() {
        let ok = request(
            "CREATE",
            "idp",
            temporary("2025-06-02T18:00:00Z", None),
            json!(null),
        );
        assert_eq!(
            validate_deadbolt(&ok, &no_editors(), None, now()),
            Ok(vec![])
        );
        let late = request(
            "CREATE",
            "idp",
            temporary("2025-06-02T18:00:01Z", None),
            json!(null),
        );
        let refusal = validate_deadbolt(&late, &no_editors(), None, now()).unwrap_err();
        assert_eq!(refusal.code, 422);
        assert_eq!(
            refusal.message,
            "User \"tmp\": spec.expires (2025-06-02T18:00:01Z) must be at most 30h after the user's \
             creation (2025-06-01T12:00:00Z), i.e. no later than 2025-06-02T18:00:00Z"
        );
    }

    #[test]
    fn on_update_the_bound_counts_from_the_creation_timestamp() {
        let created = Some("2025-05-31T12:00:00Z");
        let old = temporary("2025-06-01T00:00:00Z", created);
        let within = request(
            "UPDATE",
            "idp",
            temporary("2025-06-01T18:00:00Z", created),
            old.clone(),
        );
        assert_eq!(
            validate_deadbolt(&within, &no_editors(), None, now()),
            Ok(vec![])
        );
        let beyond = request(
            "UPDATE",
            "idp",
            temporary("2025-06-01T18:00:01Z", created),
            old,
        );
        assert!(validate_deadbolt(&beyond, &no_editors(), None, now()).is_err());
    }

    #[test]
    fn status_writes_are_not_edits() {
        let old = json!({"kind": "User", "metadata": {"name": "s"}, "spec": {"type": "sso"}});
        let new = json!({"kind": "User", "metadata": {"name": "s"}, "spec": {"type": "sso", "roles": ["x"]}});
        let mut status = request("UPDATE", "alice", new.clone(), old.clone());
        assert!(validate_deadbolt(&status, &no_editors(), None, now()).is_err());
        status.sub_resource = Some("status".into());
        assert_eq!(
            validate_deadbolt(&status, &no_editors(), None, now()),
            Ok(vec![])
        );
    }

    #[test]
    fn bookkeeping_metadata_is_not_an_edit_but_annotations_are() {
        let old = json!({"kind": "User", "metadata": {"name": "s", "labels": {ORIGIN_LABEL: "okta"}}, "spec": {}});
        let finalized = json!({"kind": "User", "metadata": {"name": "s", "labels": {ORIGIN_LABEL: "okta"},
            "finalizers": ["deadbolt.dev/cleanup"]}, "spec": {}});
        let update = request("UPDATE", "alice", finalized, old.clone());
        assert_eq!(
            validate_deadbolt(&update, &no_editors(), None, now()),
            Ok(vec![])
        );
        let annotated = json!({"kind": "User", "metadata": {"name": "s", "annotations": {"a": "b"}}, "spec": {}});
        let update = request("UPDATE", "alice", annotated, old);
        assert_eq!(
            validate_deadbolt(&update, &no_editors(), None, now())
                .unwrap_err()
                .message,
            "User \"s\" is synced from the identity provider \"okta\" (label deadbolt.dev/origin): \
             it can be deleted but not edited (this request changes its labels and annotations)"
        );
    }

    #[test]
    fn created_by_is_deadbolts_to_set() {
        let lock = |created_by: Option<&str>| {
            let annotations = created_by.map(|c| json!({CREATED_BY_ANNOTATION: c}));
            json!({"kind": "Lock", "metadata": {"name": "l", "annotations": annotations},
                "spec": {"target": {"login": "root"}}})
        };
        let forged = request("CREATE", "alice", lock(Some("mallory")), json!(null));
        assert_eq!(
            validate_deadbolt(&forged, &no_editors(), None, now())
                .unwrap_err()
                .message,
            "the annotation deadbolt.dev/created-by records who created the Lock and is set by \
             Deadbolt: it cannot be \"mallory\" when \"alice\" creates the Lock"
        );
        let own = request("CREATE", "alice", lock(Some("alice")), json!(null));
        assert_eq!(
            validate_deadbolt(&own, &no_editors(), None, now()),
            Ok(vec![])
        );
        let added = request("UPDATE", "alice", lock(Some("alice")), lock(None));
        assert_eq!(
            validate_deadbolt(&added, &no_editors(), None, now())
                .unwrap_err()
                .message,
            "the annotation deadbolt.dev/created-by records who created the Lock and cannot be \
             changed (it is absent)"
        );
    }
}
