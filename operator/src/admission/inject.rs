//! Sidecar injection: a Pod annotated `deadbolt.dev/inject: postgres` (or
//! `mysql`) gets a Deadbolt proxy container in front of its database.
//!
//! The annotations a Pod may carry:
//!
//! | annotation | default | what |
//! |---|---|---|
//! | `deadbolt.dev/inject` | — | `postgres` or `mysql` |
//! | `deadbolt.dev/tls-secret` | required | Secret with `tls.crt`, `tls.key` (what clients see) and `ca.crt` (the Deadbolt CA: client certificates and the operator's lock-view certificate) |
//! | `deadbolt.dev/upstream-port` | 5432 / 3306 | where the database listens, on `127.0.0.1` |
//! | `deadbolt.dev/listen-port` | 6432 / 6033 | where clients connect |
//! | `deadbolt.dev/password-secret` | none | Secret whose `passwords` key holds `user:password` lines for the upstream login |
//! | `deadbolt.dev/token-review` | `false` | `true`: clients may use bearer tokens (audience `deadbolt`) as passwords; the Pod's ServiceAccount then needs `tokenreviews: create` |
//!
//! The proxy's server id is the Pod's name; its labels are the Pod's labels
//! (which roles' `dbLabels` match); it subscribes to the lock view with a
//! projected token of the Pod's ServiceAccount (audience `deadbolt`), so that
//! ServiceAccount must be on the operator's `--subscriber` list. The container
//! runs under the restricted Pod Security profile. Injection is idempotent: a
//! Pod that already has the container is left as it is.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::Operation;
use serde_json::{Value, json};

use super::review::{Refusal, Request};

/// The annotation that asks for a sidecar.
pub const INJECT_ANNOTATION: &str = "deadbolt.dev/inject";
/// The injected container's name.
pub const CONTAINER_NAME: &str = "deadbolt-proxy";
/// The label injected Pods carry, which the chart's NetworkPolicy lets reach the lock view.
pub const PROXY_LABEL: &str = "deadbolt.dev/proxy";
const TLS_SECRET: &str = "deadbolt.dev/tls-secret";
const UPSTREAM_PORT: &str = "deadbolt.dev/upstream-port";
const LISTEN_PORT: &str = "deadbolt.dev/listen-port";
const PASSWORD_SECRET: &str = "deadbolt.dev/password-secret";
const TOKEN_REVIEW: &str = "deadbolt.dev/token-review";
/// The sidecar's operations port.
const METRICS_PORT: u16 = 9091;
const TLS_DIR: &str = "/var/run/deadbolt/tls";
const TOKEN_DIR: &str = "/var/run/secrets/deadbolt";
const PASSWORD_DIR: &str = "/var/run/deadbolt/passwords";

/// What injected sidecars run and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectSettings {
    /// The image holding `/usr/local/bin/deadbolt-sidecar`.
    pub image: String,
    /// The operator's lock-view URL.
    pub view_url: String,
}

/// The patch a Pod CREATE needs, `None` for anything else or a Pod that asks
/// for nothing or already has its sidecar; a refusal when the Pod asks for
/// one in a way that cannot work.
pub fn inject(request: &Request, settings: &InjectSettings) -> Result<Option<Patch>, Refusal> {
    match created_pod(request) {
        Some(pod) => pod_patch(&pod?, settings),
        None => Ok(None),
    }
}

/// Whether `request` creates a Pod annotated `deadbolt.dev/inject`.
pub fn asks_for_injection(request: &Request) -> bool {
    created_pod(request).is_some_and(|pod| {
        pod.is_ok_and(|pod| {
            pod.metadata
                .annotations
                .is_some_and(|annotations| annotations.contains_key(INJECT_ANNOTATION))
        })
    })
}

/// The Pod `request` creates, `None` when it creates none.
fn created_pod(request: &Request) -> Option<Result<Pod, Refusal>> {
    let object = request.object.as_ref()?;
    let creates_pod = request.kind.group.is_empty()
        && request.kind.kind == "Pod"
        && request.sub_resource.is_none()
        && request.operation == Operation::Create;
    creates_pod.then(|| {
        serde_json::to_value(object)
            .and_then(serde_json::from_value)
            .map_err(|error| Refusal::invalid(format!("cannot read the Pod: {error}")))
    })
}

/// The patch for one Pod.
pub fn pod_patch(pod: &Pod, settings: &InjectSettings) -> Result<Option<Patch>, Refusal> {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let Some(kind) = annotations.get(INJECT_ANNOTATION) else {
        return Ok(None);
    };
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Refusal::invalid("the Pod has no spec"))?;
    if spec.containers.iter().any(|c| c.name == CONTAINER_NAME) {
        return Ok(None);
    }
    let refuse = |message: String| Refusal::invalid(format!("{INJECT_ANNOTATION}: {message}"));
    let (default_upstream, default_listen) = match kind.as_str() {
        "postgres" => (5432, 6432),
        "mysql" => (3306, 6033),
        other => {
            return Err(refuse(format!(
                "{other:?} is not a proxy Deadbolt injects: use postgres or mysql"
            )));
        }
    };
    let port = |key: &str, default: u16| -> Result<u16, Refusal> {
        match annotations.get(key) {
            None => Ok(default),
            Some(text) => text
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| refuse(format!("{key} must be a port number, not {text:?}"))),
        }
    };
    let upstream = port(UPSTREAM_PORT, default_upstream)?;
    let listen = port(LISTEN_PORT, default_listen)?;
    if listen == upstream || listen == METRICS_PORT {
        return Err(refuse(format!(
            "the proxy cannot listen on {listen}: that is the database's port or its own metrics port"
        )));
    }
    let taken = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .any(|p| {
            p.container_port == i32::from(listen) || p.container_port == i32::from(METRICS_PORT)
        });
    if taken {
        return Err(refuse(format!(
            "port {listen} or {METRICS_PORT} is already a container port of this Pod; set {LISTEN_PORT}"
        )));
    }
    let tls_secret = annotations.get(TLS_SECRET).ok_or_else(|| {
        refuse(format!(
            "{TLS_SECRET} must name a Secret with tls.crt, tls.key and ca.crt (the Deadbolt CA)"
        ))
    })?;
    let passwords = annotations.get(PASSWORD_SECRET);
    let token_review = annotations.get(TOKEN_REVIEW).is_some_and(|v| v == "true");

    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let container = container(
        kind,
        settings,
        upstream,
        listen,
        passwords.is_some(),
        token_review,
        &labels,
    );
    let mut volumes = vec![
        json!({"name": "deadbolt-tls", "secret": {"secretName": tls_secret}}),
        json!({"name": "deadbolt-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "deadbolt", "expirationSeconds": 3600, "path": "token"}}
        ]}}),
    ];
    if let Some(secret) = passwords {
        volumes.push(json!({"name": "deadbolt-passwords", "secret": {"secretName": secret}}));
    }

    let mut operations = vec![add(&["spec", "containers", "-"], container)];
    if spec.volumes.is_some() {
        operations.extend(
            volumes
                .into_iter()
                .map(|v| add(&["spec", "volumes", "-"], v)),
        );
    } else {
        operations.push(add(&["spec", "volumes"], Value::Array(volumes)));
    }
    if pod.metadata.labels.is_some() {
        operations.push(add(&["metadata", "labels", PROXY_LABEL], json!("true")));
    } else {
        operations.push(add(&["metadata", "labels"], json!({PROXY_LABEL: "true"})));
    }
    Ok(Some(Patch(operations)))
}

fn add(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        value,
    })
}

fn container(
    kind: &str,
    settings: &InjectSettings,
    upstream: u16,
    listen: u16,
    passwords: bool,
    token_review: bool,
    labels: &BTreeMap<String, String>,
) -> Value {
    let mut args = vec![
        kind.to_string(),
        format!("--listen=0.0.0.0:{listen}"),
        format!("--upstream=127.0.0.1:{upstream}"),
        format!("--tls-cert={TLS_DIR}/tls.crt"),
        format!("--tls-key={TLS_DIR}/tls.key"),
        format!("--ca={TLS_DIR}/ca.crt"),
        format!("--view-url={}", settings.view_url),
        format!("--view-token-file={TOKEN_DIR}/token"),
        format!("--metrics-listen=0.0.0.0:{METRICS_PORT}"),
        "--log-format=json".to_string(),
        // The sidecar shares the pod's CPU with the database: it serves on
        // one thread, not one per core of the node (docs/decisions.md).
        "--worker-threads=1".to_string(),
    ];
    if passwords {
        args.push(format!("--upstream-password-file={PASSWORD_DIR}/passwords"));
    }
    if token_review {
        args.push("--token-review".to_string());
    }
    let labels: Vec<String> = labels
        .iter()
        .filter(|(key, _)| *key != PROXY_LABEL)
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut mounts = vec![
        json!({"name": "deadbolt-tls", "mountPath": TLS_DIR, "readOnly": true}),
        json!({"name": "deadbolt-token", "mountPath": TOKEN_DIR, "readOnly": true}),
    ];
    if passwords {
        mounts.push(
            json!({"name": "deadbolt-passwords", "mountPath": PASSWORD_DIR, "readOnly": true}),
        );
    }
    json!({
        "name": CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/usr/local/bin/deadbolt-sidecar"],
        "args": args,
        "env": [
            {"name": "DEADBOLT_SERVER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "DEADBOLT_LABELS", "value": labels.join(",")},
        ],
        "ports": [
            {"name": "deadbolt-db", "containerPort": listen, "protocol": "TCP"},
            {"name": "deadbolt-ops", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": METRICS_PORT}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": METRICS_PORT}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> InjectSettings {
        InjectSettings {
            image: "localhost/deadbolt:dev".into(),
            view_url: "https://deadbolt-operator.deadbolt-system.svc:8443".into(),
        }
    }

    fn pod(annotations: Value, labels: Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "orders-db-0", "annotations": annotations, "labels": labels},
            "spec": {"containers": [{"name": "postgres", "image": "postgres:15",
                                     "ports": [{"containerPort": 5432}]}]},
        }))
        .unwrap()
    }

    fn patched(pod: &Pod) -> Value {
        let patch = pod_patch(pod, &settings()).unwrap().expect("a patch");
        let mut value = serde_json::to_value(pod).unwrap();
        json_patch::patch(&mut value, &patch).unwrap();
        value
    }

    #[test]
    fn an_annotated_pod_gets_the_sidecar_once() {
        let pod = pod(
            json!({"deadbolt.dev/inject": "postgres", "deadbolt.dev/tls-secret": "orders-db-tls",
                   "deadbolt.dev/password-secret": "orders-db-passwords"}),
            json!({"app": "orders", "env": "prod"}),
        );
        let value = patched(&pod);
        let sidecar = &value["spec"]["containers"][1];
        assert_eq!(sidecar["name"], CONTAINER_NAME);
        let args: Vec<&str> = sidecar["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args[0], "postgres");
        assert!(args.contains(&"--listen=0.0.0.0:6432"));
        assert!(args.contains(&"--upstream=127.0.0.1:5432"));
        assert!(args.contains(&"--upstream-password-file=/var/run/deadbolt/passwords/passwords"));
        assert!(!args.contains(&"--token-review"));
        assert!(args.contains(&"--worker-threads=1"));
        assert_eq!(sidecar["env"][1]["value"], "app=orders,env=prod");
        assert_eq!(sidecar["securityContext"]["runAsNonRoot"], true);
        assert_eq!(value["metadata"]["labels"][PROXY_LABEL], "true");
        let volumes = value["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 3);
        assert_eq!(
            volumes[1]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
            "deadbolt"
        );
        // The patched Pod asks again: nothing more to do.
        let again: Pod = serde_json::from_value(value).unwrap();
        assert!(pod_patch(&again, &settings()).unwrap().is_none());
    }

    #[test]
    fn pods_that_ask_for_nothing_are_left_alone() {
        let plain = pod(json!({}), json!({}));
        assert!(pod_patch(&plain, &settings()).unwrap().is_none());
    }

    #[test]
    fn pods_that_cannot_be_patched_are_refused_with_the_reason() {
        for (annotations, expected) in [
            (
                json!({"deadbolt.dev/inject": "redis", "deadbolt.dev/tls-secret": "s"}),
                "postgres or mysql",
            ),
            (
                json!({"deadbolt.dev/inject": "postgres"}),
                "deadbolt.dev/tls-secret",
            ),
            (
                json!({"deadbolt.dev/inject": "mysql", "deadbolt.dev/tls-secret": "s",
                    "deadbolt.dev/listen-port": "http"}),
                "port number",
            ),
            (
                json!({"deadbolt.dev/inject": "postgres", "deadbolt.dev/tls-secret": "s",
                    "deadbolt.dev/listen-port": "5432"}),
                "cannot listen on 5432",
            ),
        ] {
            let refusal = pod_patch(&pod(annotations, json!({})), &settings()).unwrap_err();
            assert!(refusal.message.contains(expected), "{}", refusal.message);
        }
    }
}
