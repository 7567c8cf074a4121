//! Every manifest in `examples/` deserialises into the Rust types without
//! losing a field, and passes the CRDs' CEL rules.

use std::path::{Path, PathBuf};

use deadbolt_api::{AccessRole, ClusterAuthPreference, Lock, MfaDevice, User};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("examples/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Fails when `original` has a field the typed value dropped (a typo, or a field the
/// types do not know), unless its value is an empty default the types leave out.
fn assert_nothing_lost(file: &Path, path: &str, original: &Value, typed: &Value) {
    match (original, typed) {
        (Value::Object(original), Value::Object(typed)) => {
            for (key, value) in original {
                let here = format!("{path}.{key}");
                match typed.get(key) {
                    Some(typed_value) => assert_nothing_lost(file, &here, value, typed_value),
                    None => assert!(
                        is_empty_default(value),
                        "{}: {here} is not part of the Rust types",
                        file.display()
                    ),
                }
            }
        }
        (Value::Array(original), Value::Array(typed)) => {
            assert_eq!(original.len(), typed.len(), "{}: {path}", file.display());
            for (i, (a, b)) in original.iter().zip(typed).enumerate() {
                assert_nothing_lost(file, &format!("{path}[{i}]"), a, b);
            }
        }
        _ => assert_eq!(original, typed, "{}: {path} changed", file.display()),
    }
}

fn is_empty_default(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Object(map) => map.values().all(is_empty_default),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn check<K>(file: &Path, document: &Value)
where
    K: DeserializeOwned + serde::Serialize,
{
    let typed: K = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{}: does not deserialise: {e}", file.display()));
    let typed = serde_json::to_value(&typed).unwrap();
    assert_nothing_lost(file, "", document, &typed);
}

fn check_crd<K>(file: &Path, document: &Value)
where
    K: DeserializeOwned + serde::Serialize + CustomResourceExt,
{
    check::<K>(file, document);
    let crd = K::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .unwrap(),
    )
    .unwrap();
    if let Err(errors) = Validator::new().validate(&schema, document, None) {
        panic!("{}: CEL rules reject it: {errors:?}", file.display());
    }
}

#[test]
fn every_example_deserialises_into_the_rust_types() {
    let files = example_files();
    assert!(files.len() >= 15, "examples/ looks incomplete: {files:?}");
    let mut kinds = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let document = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
            let kind = document["kind"].as_str().unwrap_or_default().to_string();
            match kind.as_str() {
                "Lock" => check_crd::<Lock>(file, &document),
                "AccessRole" => check_crd::<AccessRole>(file, &document),
                "ClusterAuthPreference" => check_crd::<ClusterAuthPreference>(file, &document),
                "User" => check_crd::<User>(file, &document),
                "MfaDevice" => check_crd::<MfaDevice>(file, &document),
                "ClusterRole" => check::<ClusterRole>(file, &document),
                "ClusterRoleBinding" => check::<ClusterRoleBinding>(file, &document),
                other => panic!("{}: unexpected kind {other:?}", file.display()),
            }
            kinds.push(kind);
        }
    }
    for kind in [
        "Lock",
        "AccessRole",
        "ClusterAuthPreference",
        "User",
        "ClusterRole",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no example of a {kind}");
    }
}

#[test]
fn example_users_cover_every_type() {
    let mut types = Vec::new();
    let user_files = example_files().into_iter().filter(|file| {
        file.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("user-")
    });
    for file in user_files {
        let text = std::fs::read_to_string(&file).unwrap();
        let document: Value = serde_yaml_ng::from_str(&text).unwrap();
        if document["kind"] == "User" {
            let user: User = serde_json::from_value(document).unwrap();
            let synced = user
                .metadata
                .labels
                .as_ref()
                .is_some_and(|labels| labels.contains_key(deadbolt_api::ORIGIN_LABEL));
            types.push(if synced {
                "synced".to_string()
            } else {
                format!("{:?}", user.spec.type_)
            });
        }
    }
    types.sort();
    assert_eq!(types, ["Bot", "Local", "Sso", "Temporary", "synced"]);
}
