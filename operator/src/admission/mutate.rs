//! Stamping `deadbolt.dev/created-by` on Locks, like Teleport's `created_by`:
//! on CREATE it becomes the requester's user name, whatever the manifest said;
//! on UPDATE it is put back to what it was, so `kubectl replace` or a GitOps
//! tool that does not know the annotation can neither drop nor forge it.

use deadbolt_api::{CREATED_BY_ANNOTATION, GROUP};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use kube::core::DynamicObject;
use kube::core::admission::Operation;

use super::review::Request;

/// The patch a request on a Lock needs, if any. Other resources, status
/// writes, deletes and connects are left alone.
pub fn mutate_lock(request: &Request) -> Option<Patch> {
    if request.kind.group != GROUP || request.kind.kind != "Lock" || request.sub_resource.is_some()
    {
        return None;
    }
    created_by_patch(
        &request.operation,
        request.user_info.username.as_deref().unwrap_or_default(),
        request.object.as_ref(),
        request.old_object.as_ref(),
    )
}

/// The JSONPatch that makes `object`'s created-by annotation right: `username`
/// on CREATE, `old`'s value (or none) on UPDATE. `None` when it already is.
pub fn created_by_patch(
    operation: &Operation,
    username: &str,
    object: Option<&DynamicObject>,
    old: Option<&DynamicObject>,
) -> Option<Patch> {
    let object = object?;
    let wanted = match operation {
        Operation::Create if !username.is_empty() => Some(username),
        Operation::Update => old.and_then(created_by),
        _ => return None,
    };
    if created_by(object) == wanted {
        return None;
    }
    let operation = match wanted {
        Some(value) => set_annotation(object, value),
        None => PatchOperation::Remove(RemoveOperation {
            path: annotation_path(),
        }),
    };
    Some(Patch(vec![operation]))
}

fn created_by(object: &DynamicObject) -> Option<&str> {
    object
        .metadata
        .annotations
        .as_ref()?
        .get(CREATED_BY_ANNOTATION)
        .map(String::as_str)
}

fn set_annotation(object: &DynamicObject, value: &str) -> PatchOperation {
    if object.metadata.annotations.is_some() {
        PatchOperation::Add(AddOperation {
            path: annotation_path(),
            value: value.into(),
        })
    } else {
        // JSONPatch cannot add a key under a missing map: add the map.
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: serde_json::json!({ CREATED_BY_ANNOTATION: value }),
        })
    }
}

/// `/metadata/annotations/deadbolt.dev~1created-by`.
fn annotation_path() -> PointerBuf {
    PointerBuf::from_tokens(["metadata", "annotations", CREATED_BY_ANNOTATION])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lock(annotations: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "deadbolt.dev/v1", "kind": "Lock",
            "metadata": {"name": "l", "annotations": annotations},
            "spec": {"target": {"user": "alice"}}
        }))
        .unwrap()
    }

    fn patch_json(patch: Option<Patch>) -> serde_json::Value {
        serde_json::to_value(patch).unwrap()
    }

    #[test]
    fn create_stamps_the_requester_over_anything_claimed() {
        let bare = lock(json!(null));
        assert_eq!(
            patch_json(created_by_patch(
                &Operation::Create,
                "bob",
                Some(&bare),
                None
            )),
            json!([{"op": "add", "path": "/metadata/annotations",
                "value": {"deadbolt.dev/created-by": "bob"}}])
        );
        let forged = lock(json!({"deadbolt.dev/created-by": "mallory", "x": "y"}));
        assert_eq!(
            patch_json(created_by_patch(
                &Operation::Create,
                "bob",
                Some(&forged),
                None
            )),
            json!([{"op": "add", "path": "/metadata/annotations/deadbolt.dev~1created-by", "value": "bob"}])
        );
        let right = lock(json!({"deadbolt.dev/created-by": "bob"}));
        assert_eq!(
            created_by_patch(&Operation::Create, "bob", Some(&right), None),
            None
        );
    }

    #[test]
    fn update_restores_the_old_value_or_its_absence() {
        let old = lock(json!({"deadbolt.dev/created-by": "bob"}));
        let dropped = lock(json!({}));
        assert_eq!(
            patch_json(created_by_patch(
                &Operation::Update,
                "carol",
                Some(&dropped),
                Some(&old)
            )),
            json!([{"op": "add", "path": "/metadata/annotations/deadbolt.dev~1created-by", "value": "bob"}])
        );
        let unstamped = lock(json!(null));
        let added = lock(json!({"deadbolt.dev/created-by": "carol"}));
        assert_eq!(
            patch_json(created_by_patch(
                &Operation::Update,
                "carol",
                Some(&added),
                Some(&unstamped)
            )),
            json!([{"op": "remove", "path": "/metadata/annotations/deadbolt.dev~1created-by"}])
        );
        assert_eq!(
            created_by_patch(&Operation::Update, "carol", Some(&old), Some(&old)),
            None
        );
        assert_eq!(
            created_by_patch(&Operation::Delete, "carol", None, Some(&old)),
            None
        );
    }
}
