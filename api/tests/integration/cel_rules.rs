//! The CEL rules in the generated CRDs, evaluated client-side with kube's CEL
//! validator, exactly as `kubectl apply` would meet them at the API server.

use deadbolt_api::{AccessRole, ClusterAuthPreference, Lock, MfaDevice, User};
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::{Value, json};

fn schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("every Deadbolt CRD has a schema");
    serde_json::to_value(schema).unwrap()
}

/// The messages of the rules that fail, or an empty list when the object is accepted.
fn violations<K: CustomResourceExt>(object: Value, old: Option<Value>) -> Vec<String> {
    match Validator::new().validate(&schema::<K>(), &object, old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .as_slice()
            .iter()
            .map(|e| e.message.clone())
            .collect(),
    }
}

fn lock(spec: Value) -> Value {
    json!({"apiVersion": "deadbolt.dev/v1", "kind": "Lock", "metadata": {"name": "l1"}, "spec": spec})
}

#[test]
fn lock_target_needs_a_field() {
    assert_eq!(
        violations::<Lock>(lock(json!({"target": {}})), None),
        vec![
            "a lock target needs at least one of user, role, login, mfaDevice, device, serverId, windowsDesktop or accessRequest"
        ]
    );
    for field in [
        "user",
        "role",
        "login",
        "mfaDevice",
        "device",
        "serverId",
        "windowsDesktop",
        "accessRequest",
    ] {
        let spec = json!({"target": {field: "x"}});
        assert!(violations::<Lock>(lock(spec), None).is_empty(), "{field}");
    }
}

#[test]
fn lock_has_at_most_one_expiry() {
    let both =
        json!({"target": {"user": "alice"}, "ttl": "10h", "expires": "2030-01-01T00:00:00Z"});
    assert_eq!(
        violations::<Lock>(lock(both), None),
        vec!["set at most one of expires and ttl"]
    );
    let ttl = json!({"target": {"user": "alice"}, "ttl": "10h"});
    assert!(violations::<Lock>(lock(ttl), None).is_empty());
    let expires = json!({"target": {"user": "alice"}, "expires": "2030-01-01T00:00:00Z"});
    assert!(violations::<Lock>(lock(expires), None).is_empty());
}

#[test]
fn lock_ttl_is_a_positive_go_duration() {
    for good in ["10h", "1h30m", "90s", "1.5h"] {
        let spec = json!({"target": {"user": "alice"}, "ttl": good});
        assert!(violations::<Lock>(lock(spec), None).is_empty(), "{good}");
    }
    let zero = json!({"target": {"user": "alice"}, "ttl": "0s"});
    assert_eq!(
        violations::<Lock>(lock(zero), None),
        vec!["ttl must be a positive duration such as 10h or 90m"]
    );
}

fn cap(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "deadbolt.dev/v1", "kind": "ClusterAuthPreference", "metadata": {"name": name}, "spec": spec})
}

#[test]
fn cluster_auth_preference_is_a_named_singleton() {
    assert!(
        violations::<ClusterAuthPreference>(cap("cluster-auth-preference", json!({})), None)
            .is_empty()
    );
    assert_eq!(
        violations::<ClusterAuthPreference>(cap("my-cap", json!({})), None),
        vec!["a ClusterAuthPreference must be named cluster-auth-preference"]
    );
}

#[test]
fn session_mfa_needs_webauthn() {
    let no_factor = json!({"requireSessionMfa": "true"});
    assert_eq!(
        violations::<ClusterAuthPreference>(cap("cluster-auth-preference", no_factor), None),
        vec!["requireSessionMfa needs secondFactor webauthn, on or optional"]
    );
    let no_rp = json!({"requireSessionMfa": "true", "secondFactor": "webauthn"});
    assert_eq!(
        violations::<ClusterAuthPreference>(cap("cluster-auth-preference", no_rp), None),
        vec!["secondFactor webauthn, on and optional need webauthn.rpId"]
    );
    let good = json!({
        "requireSessionMfa": "hardware_key_touch",
        "secondFactor": "webauthn",
        "webauthn": {"rpId": "example.com", "origins": ["https://example.com"]},
    });
    assert!(
        violations::<ClusterAuthPreference>(cap("cluster-auth-preference", good), None).is_empty()
    );
}

#[test]
fn max_lock_staleness_is_at_least_a_heartbeat() {
    let short = json!({"maxLockStaleness": "500ms"});
    assert_eq!(
        violations::<ClusterAuthPreference>(cap("cluster-auth-preference", short), None),
        vec!["maxLockStaleness must be at least 1s: proxies hear a heartbeat every second"]
    );
    let fine = json!({"maxLockStaleness": "15s"});
    assert!(
        violations::<ClusterAuthPreference>(cap("cluster-auth-preference", fine), None).is_empty()
    );
}

fn user(spec: Value) -> Value {
    json!({"apiVersion": "deadbolt.dev/v1", "kind": "User", "metadata": {"name": "alice"}, "spec": spec})
}

#[test]
fn temporary_users_and_only_they_expire() {
    assert_eq!(
        violations::<User>(user(json!({"type": "temporary"})), None),
        vec!["a temporary user needs spec.expires (at most 30h after creation)"]
    );
    assert_eq!(
        violations::<User>(
            user(json!({"type": "local", "expires": "2030-01-01T00:00:00Z"})),
            None
        ),
        vec!["only temporary users expire; set type: temporary or remove spec.expires"]
    );
    let temporary = json!({"type": "temporary", "expires": "2030-01-01T00:00:00Z"});
    assert!(violations::<User>(user(temporary), None).is_empty());
}

#[test]
fn a_users_type_cannot_change() {
    let local = user(json!({"type": "local", "roles": ["dev"]}));
    let now_bot = user(json!({"type": "bot", "roles": ["dev"]}));
    assert_eq!(
        violations::<User>(now_bot, Some(local.clone())),
        vec!["a user's type cannot change"]
    );
    let more_roles = user(json!({"type": "local", "roles": ["dev", "ops"]}));
    assert!(violations::<User>(more_roles, Some(local)).is_empty());
    // SSO users may change here: the identity-provider sync updates them. The
    // admission webhook refuses edits by anyone else, which CEL cannot tell apart.
    let sso = user(json!({"type": "sso", "roles": ["dev"]}));
    let resynced = user(json!({"type": "sso", "roles": ["admin"]}));
    assert!(violations::<User>(resynced, Some(sso)).is_empty());
}

#[test]
fn a_username_is_set_once_and_never_changes() {
    let plain = user(json!({"type": "sso", "roles": ["dev"]}));
    let olga = user(json!({"type": "sso", "username": "olga@example.com", "roles": ["dev"]}));
    assert!(violations::<User>(olga.clone(), None).is_empty());
    let message = "a user's username cannot change; create a new User instead";
    let renamed = user(json!({"type": "sso", "username": "olga@example.org", "roles": ["dev"]}));
    assert_eq!(
        violations::<User>(renamed, Some(olga.clone())),
        vec![message]
    );
    assert_eq!(
        violations::<User>(plain.clone(), Some(olga.clone())),
        vec![message]
    );
    assert_eq!(violations::<User>(olga.clone(), Some(plain)), vec![message]);
    let more_roles =
        user(json!({"type": "sso", "username": "olga@example.com", "roles": ["dev", "ops"]}));
    assert!(violations::<User>(more_roles, Some(olga)).is_empty());
}

fn device(name: &str) -> Value {
    json!({
        "apiVersion": "deadbolt.dev/v1", "kind": "MfaDevice", "metadata": {"name": name},
        "spec": {"user": "alice", "name": "yubikey", "credential": "{}"},
    })
}

#[test]
fn mfa_devices_are_named_by_uuid_and_immutable() {
    assert!(
        violations::<MfaDevice>(device("d6c06a18-e147-4232-9dfe-6f83a28d5850"), None).is_empty()
    );
    assert_eq!(
        violations::<MfaDevice>(device("yubikey"), None),
        vec!["an MfaDevice is named by its lowercase device UUID"]
    );
    let old = device("d6c06a18-e147-4232-9dfe-6f83a28d5850");
    let mut renamed = old.clone();
    renamed["spec"]["name"] = json!("other");
    assert_eq!(
        violations::<MfaDevice>(renamed, Some(old)),
        vec!["an MfaDevice cannot be edited; delete it and register again"]
    );
}

#[test]
fn access_role_options_take_teleports_values_and_nothing_else() {
    // The AccessRole has no CEL rule: its options are enums in the schema,
    // which the API server enforces, and the Rust type reads the same values.
    let options =
        &schema::<AccessRole>()["properties"]["spec"]["properties"]["options"]["properties"];
    let values = |field: &str| -> Vec<String> {
        options[field]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("options.{field} is not an enum: {options}"))
            .iter()
            .filter_map(|value| value.as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        values("requireSessionMfa"),
        ["false", "true", "hardware_key", "hardware_key_touch"]
    );
    assert_eq!(values("lock"), ["best_effort", "strict"]);
    let role = |lock: &str, mfa: &str| {
        json!({
            "apiVersion": "deadbolt.dev/v1", "kind": "AccessRole", "metadata": {"name": "access-prod"},
            "spec": {"options": {"lock": lock, "requireSessionMfa": mfa}, "groups": ["prod-admins"]},
        })
    };
    let teleport = role("strict", "true");
    assert!(violations::<AccessRole>(teleport.clone(), None).is_empty());
    let read: AccessRole = serde_json::from_value(teleport).unwrap();
    assert!(read.spec.options.require_session_mfa.unwrap().is_required());
    for (lock, mfa) in [("strict", "yes"), ("always", "true")] {
        assert!(
            serde_json::from_value::<AccessRole>(role(lock, mfa)).is_err(),
            "{lock}/{mfa} was read"
        );
    }
}
