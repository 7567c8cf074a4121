//! Parses manifest files (multi-document YAML, as `kubectl apply -f` takes
//! them) into view objects.

use deadbolt_api::protocol::ViewObject;
use deadbolt_api::resources::CLUSTER_AUTH_PREFERENCE_NAME;
use deadbolt_api::{AccessRole, ClusterAuthPreference, Lock, LockEntry, User, duration};
use jiff::Timestamp;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::view::{cluster_config, role_record, user_record};

/// The apiVersion every Deadbolt manifest has.
pub const API_VERSION: &str = "deadbolt.dev/v1";

/// What one file defines.
#[derive(Debug, Default, PartialEq)]
pub struct Manifest {
    /// The objects, in document order.
    pub objects: Vec<ViewObject>,
    /// Documents that were skipped on purpose (other kinds), with why.
    pub skipped: Vec<String>,
}

/// Why a file could not be used; names the document (1-based) and, when it
/// could be read that far, the object (`Lock lock-alice`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}{}: {message}", object.as_ref().map(|object| format!(" ({object})")).unwrap_or_default())]
pub struct ManifestError {
    /// Which document, counting from 1.
    pub document: usize,
    /// `Kind name` of the object, when the document says.
    pub object: Option<String>,
    /// What is wrong with it.
    pub message: String,
}

/// Parses every document of a file. Documents of other kinds are skipped and
/// reported in [`Manifest::skipped`]; a document that is invalid YAML or an
/// invalid Deadbolt object fails the whole file, so a half-edited file never
/// yields half its objects.
///
/// `fallback_created` is the creation time of Locks without a
/// `creationTimestamp` (the file's mtime), the origin of their `ttl`.
pub fn parse(text: &str, fallback_created: Timestamp) -> Result<Manifest, ManifestError> {
    let mut manifest = Manifest::default();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value = Value::deserialize(document).map_err(|e| ManifestError {
            document: number,
            object: None,
            message: e.to_string(),
        })?;
        let object_name = match (
            value.get("kind").and_then(Value::as_str),
            value
                .get("metadata")
                .and_then(|metadata| metadata.get("name"))
                .and_then(Value::as_str),
        ) {
            (Some(kind), Some(name)) => Some(format!("{kind} {name}")),
            (Some(kind), None) => Some(kind.to_string()),
            _ => None,
        };
        let error = |message: String| ManifestError {
            document: number,
            object: object_name.clone(),
            message,
        };
        if value.is_null() {
            continue; // An empty document, e.g. after a trailing `---`.
        }
        if !value.is_mapping() {
            return Err(error("expected a mapping with apiVersion and kind".into()));
        }
        let api_version = value.get("apiVersion").and_then(Value::as_str);
        let kind = value.get("kind").and_then(Value::as_str);
        let object = match (api_version, kind) {
            (Some(API_VERSION), Some("Lock")) => lock(value, fallback_created),
            (Some(API_VERSION), Some("AccessRole")) => typed::<AccessRole>(value)
                .and_then(|role| role_record(&role).map_err(|e| e.to_string()))
                .map(ViewObject::Role),
            (Some(API_VERSION), Some("User")) => typed::<User>(value)
                .and_then(|user| user_record(&user).map_err(|e| e.to_string()))
                .map(ViewObject::User),
            (Some(API_VERSION), Some("ClusterAuthPreference")) => cluster_auth_preference(value),
            (api_version, kind) => {
                manifest.skipped.push(format!(
                    "document {number}: skipped {}/{}: only {API_VERSION} Lock, AccessRole, User \
                     and ClusterAuthPreference feed the lock view",
                    api_version.unwrap_or("<no apiVersion>"),
                    kind.unwrap_or("<no kind>"),
                ));
                continue;
            }
        };
        manifest.objects.push(object.map_err(error)?);
    }
    Ok(manifest)
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_yaml_ng::from_value(value).map_err(|error| error.to_string())
}

fn lock(value: Value, fallback_created: Timestamp) -> Result<ViewObject, String> {
    let lock: Lock = typed(value)?;
    if lock.metadata.name.as_deref().unwrap_or_default().is_empty() {
        return Err("Lock has no metadata.name".into());
    }
    LockEntry::from_lock(&lock, fallback_created)
        .map(ViewObject::Lock)
        .map_err(|error| error.to_string())
}

fn cluster_auth_preference(value: Value) -> Result<ViewObject, String> {
    let preference: ClusterAuthPreference = typed(value)?;
    let name = preference.metadata.name.as_deref().unwrap_or_default();
    if name != CLUSTER_AUTH_PREFERENCE_NAME {
        return Err(format!(
            "a ClusterAuthPreference must be named {CLUSTER_AUTH_PREFERENCE_NAME}, not {name:?}"
        ));
    }
    // The CRD's CEL rule checks this in a cluster; nothing does for files.
    if let Some(staleness) = &preference.spec.max_lock_staleness {
        duration::parse(staleness).map_err(|error| format!("invalid maxLockStaleness: {error}"))?;
    }
    Ok(ViewObject::Config(cluster_config(&preference.spec)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::LockingMode;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn parses_every_kind_from_one_multi_document_file() {
        let text = r#"
apiVersion: deadbolt.dev/v1
kind: Lock
metadata: {name: alice}
spec:
  target: {user: alice}
  message: Suspicious activity.
  ttl: 1h
---
apiVersion: deadbolt.dev/v1
kind: AccessRole
metadata: {name: dev}
spec:
  options: {lock: strict}
---
apiVersion: deadbolt.dev/v1
kind: User
metadata: {name: bob}
spec:
  roles: [dev]
---
apiVersion: deadbolt.dev/v1
kind: ClusterAuthPreference
metadata: {name: cluster-auth-preference}
spec:
  lockingMode: strict
  maxLockStaleness: 10s
---
"#;
        let manifest = parse(text, at(1_000)).unwrap();
        assert!(manifest.skipped.is_empty());
        let [
            ViewObject::Lock(lock),
            ViewObject::Role(role),
            ViewObject::User(user),
            ViewObject::Config(config),
        ] = manifest.objects.as_slice()
        else {
            panic!("unexpected objects: {:?}", manifest.objects);
        };
        assert_eq!(lock.name, "alice");
        assert_eq!(
            lock.created,
            at(1_000),
            "no creationTimestamp: the fallback is used"
        );
        assert_eq!(lock.expires_at, Some(at(4_600)));
        assert_eq!(role.spec.options.lock, Some(LockingMode::Strict));
        assert_eq!(user.spec.roles, vec!["dev".to_string()]);
        assert_eq!(config.locking_mode, LockingMode::Strict);
        assert_eq!(config.max_lock_staleness_ms, 10_000);
    }

    #[test]
    fn other_kinds_are_skipped_with_a_reason() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n\
                    apiVersion: deadbolt.dev/v1\nkind: Lock\nmetadata: {name: l}\nspec: {target: {role: dev}}\n";
        let manifest = parse(text, at(0)).unwrap();
        assert_eq!(manifest.objects.len(), 1);
        assert_eq!(manifest.skipped.len(), 1);
        assert!(
            manifest.skipped[0].contains("v1/ConfigMap"),
            "{:?}",
            manifest.skipped
        );
    }

    #[test]
    fn an_error_names_the_object() {
        let text = "apiVersion: deadbolt.dev/v1\nkind: Lock\nmetadata: {name: lock-alice}\nspec: {target: {}}\n";
        let error = parse(text, at(0)).unwrap_err();
        assert_eq!(error.object.as_deref(), Some("Lock lock-alice"));
        assert!(
            error
                .to_string()
                .starts_with("document 1 (Lock lock-alice): "),
            "{error}"
        );
    }

    #[test]
    fn invalid_documents_fail_the_file_and_name_the_document() {
        let cases = [
            ("kind: [unclosed", 1, ""),
            (
                "apiVersion: deadbolt.dev/v1\nkind: Lock\nmetadata: {name: ok}\nspec: {target: {user: a}}\n---\n\
                 apiVersion: deadbolt.dev/v1\nkind: Lock\nmetadata: {name: empty}\nspec: {target: {}}\n",
                2,
                "empty target",
            ),
            (
                "apiVersion: deadbolt.dev/v1\nkind: Lock\nmetadata: {name: t}\nspec: {target: {user: a}, ttl: soon}\n",
                1,
                "invalid ttl",
            ),
            (
                "apiVersion: deadbolt.dev/v1\nkind: Lock\nspec: {target: {user: a}}\n",
                1,
                "metadata",
            ),
            (
                "apiVersion: deadbolt.dev/v1\nkind: ClusterAuthPreference\nmetadata: {name: other}\nspec: {}\n",
                1,
                "must be named cluster-auth-preference",
            ),
            (
                "apiVersion: deadbolt.dev/v1\nkind: ClusterAuthPreference\nmetadata: {name: cluster-auth-preference}\nspec: {maxLockStaleness: forever}\n",
                1,
                "maxLockStaleness",
            ),
            ("- just\n- a list\n", 1, "mapping"),
        ];
        for (text, document, needle) in cases {
            let error = parse(text, at(0)).unwrap_err();
            assert_eq!(error.document, document, "{text}: {error}");
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }
}
