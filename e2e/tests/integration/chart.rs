//! The Helm chart on a real API server.
//!
//! - The chart's RBAC, proven: the operator runs out of cluster with a token
//!   of the chart's own ServiceAccount, and every controller, the CA Secret,
//!   the Leases, TokenReview and the caBundle patch work with exactly what
//!   the chart grants (and a permission taken away shows up as a failure).
//!   The chart's webhooks, pointed at that operator, inject a sidecar into a
//!   real Pod manifest that the API server accepts, idempotently.
//! - With a node: what a platform team does. `helm install --wait` with
//!   images built from this checkout, a PostgreSQL pod with an injected
//!   sidecar, a live `psql` through it that survives the leader's deletion
//!   and is cut by `kubectl apply -f lock.yaml`, and an uninstall that leaves
//!   only the CRDs. Without a node that scenario says SKIPPED with the reason.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deadbolt_e2e::chart::{Release, WEBHOOK_CONFIGURATIONS, assert_only_crds_left};
use deadbolt_e2e::mfa::{plugin, registered_uuid};
use deadbolt_e2e::pki::{Issued, Pki};
use deadbolt_e2e::process::{Operator, Running, Sidecar};
use deadbolt_e2e::psql::{LivePsql, psql_once, text};
use deadbolt_e2e::scenario::{Scenario, database_role, lock_manifest};
use deadbolt_e2e::webhook::{token_kubeconfig, wait_for_ca_bundle, webhook_host};
use deadbolt_e2e::{
    Namespace, PATIENCE, admin_kubeconfig, apply, bin, eventually, free_port, kubectl,
    kubectl_stdin, node_kit, stderr, success,
};
use serde_json::{Value, json};

/// The operator's ServiceAccount, as the chart names it.
const OPERATOR_ACCOUNT: &str = "deadbolt-operator";

fn get_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&success(kubectl(&all))).unwrap()
}

fn jsonpath(args: &[&str], path: &str) -> String {
    let mut all = args.to_vec();
    let path = format!("jsonpath={path}");
    all.extend(["-o", &path]);
    success(kubectl(&all)).trim().to_string()
}

/// `kind/name`'s first owner, as `Kind/name`.
fn owner(namespace: &str, kind: &str, name: &str) -> String {
    jsonpath(
        &["get", kind, name, "-n", namespace],
        "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    )
}

/// Sends the chart's webhooks to an operator running out of cluster (the API
/// server cannot reach a Service without pods behind it), keeping whatever
/// caBundle they have.
fn point_webhooks_at(operator: &Operator) {
    for (kind, name) in WEBHOOK_CONFIGURATIONS {
        let configuration = get_json(&["get", kind, name]);
        let mut patch = Vec::new();
        for (i, webhook) in configuration["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let path = webhook["clientConfig"]["service"]["path"].as_str().unwrap();
            patch.push(
                json!({"op": "remove", "path": format!("/webhooks/{i}/clientConfig/service")}),
            );
            patch.push(
                json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/url"),
                "value": format!("https://{}:{}{path}", webhook_host(), operator.webhook.port())}),
            );
        }
        success(kubectl(&[
            "patch",
            kind,
            name,
            "--type=json",
            "-p",
            &Value::Array(patch).to_string(),
        ]));
    }
}

/// A Pod asking for a PostgreSQL sidecar.
fn database_pod(namespace: &str, name: &str, image: &str, service_account: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {"app": "orders-db", "env": "e2e"},
            "annotations": {
                "deadbolt.dev/inject": "postgres",
                "deadbolt.dev/tls-secret": "orders-db-tls",
                "deadbolt.dev/password-secret": "orders-db-passwords",
            },
        },
        "spec": database_pod_spec(image, service_account),
    })
}

fn database_pod_spec(image: &str, service_account: &str) -> Value {
    json!({
        "serviceAccountName": service_account,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                            "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "postgres",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "env": [
                {"name": "POSTGRES_USER", "value": "app"},
                {"name": "POSTGRES_PASSWORD", "value": "s3cret"},
                {"name": "POSTGRES_DB", "value": "app"},
            ],
            "ports": [{"containerPort": 5432, "name": "pg"}],
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql"}],
        }],
        "volumes": [{"name": "data", "emptyDir": {}}],
    })
}

/// The names of `pod`'s containers.
fn containers(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// `kubectl create --dry-run=server` of `object`: what the API server would
/// store after every admission webhook.
fn dry_run(object: &Value) -> Value {
    let output = kubectl_stdin(
        &["create", "--dry-run=server", "-o", "json", "-f", "-"],
        &object.to_string(),
    );
    serde_json::from_str(&success(output)).unwrap()
}

/// The Secrets an injected sidecar needs: its serving certificate with the
/// Deadbolt CA, and the upstream password.
fn sidecar_secrets(namespace: &str, pki: &Pki) {
    let Issued { cert, key } = pki.serving("orders-db");
    let from = |key_name: &str, path: &Path| format!("--from-file={key_name}={}", path.display());
    success(kubectl(&[
        "create",
        "secret",
        "generic",
        "orders-db-tls",
        "-n",
        namespace,
        &from("tls.crt", &cert),
        &from("tls.key", &key),
        &from("ca.crt", &pki.ca_crt()),
    ]));
    success(kubectl(&[
        "create",
        "secret",
        "generic",
        "orders-db-passwords",
        "-n",
        namespace,
        "--from-literal=passwords=app:s3cret",
    ]));
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn the_operator_works_with_exactly_the_charts_rbac() {
    let mut scenario = Scenario::new("chart-rbac");
    let ns = scenario.ns().to_string();
    let subscriber = format!("{ns}/db-proxy=db-proxy-*");
    // The chart's pods can never start (the image cannot be pulled): the
    // operator under test is the one below, with the chart's identity.
    let (mut release, _) = Release::install(
        &ns,
        &[
            "--set",
            "image.repository=deadbolt.invalid/not-pulled",
            "--set",
            "image.tag=never",
            "--set-json",
            &format!("subscribers={}", json!([subscriber])),
        ],
    );
    let kubeconfig = token_kubeconfig(scenario.logs(), &ns, OPERATOR_ACCOUNT);
    let mut operator = Operator::start_as(
        &ns,
        "chart-rbac-0",
        scenario.logs(),
        &kubeconfig,
        &[
            "--service-account".into(),
            OPERATOR_ACCOUNT.into(),
            "--validating-webhook-configuration=deadbolt-validating".into(),
            "--mutating-webhook-configuration=deadbolt-mutating".into(),
            format!("--subscriber={subscriber}"),
            "--expired-lock-retention=1s".into(),
            "--inject-image=localhost/deadbolt-e2e:never-run".into(),
            format!("--inject-view-url=https://deadbolt-operator.{ns}.svc:8443"),
        ],
    );
    point_webhooks_at(&operator);
    for (kind, name) in WEBHOOK_CONFIGURATIONS {
        wait_for_ca_bundle(kind, name);
    }

    // The CA Secret and both Leases exist, owned by the ServiceAccount.
    let sa_owner = format!("ServiceAccount/{OPERATOR_ACCOUNT}");
    assert_eq!(owner(&ns, "secret", "deadbolt-ca"), sa_owner);
    eventually("the operator to lead", PATIENCE, || operator.is_leader());
    assert_eq!(
        jsonpath(
            &["get", "lease", "deadbolt-operator", "-n", &ns],
            "{.spec.holderIdentity}"
        ),
        "chart-rbac-0"
    );
    eventually("the leader Lease to be owned", PATIENCE, || {
        owner(&ns, "lease", "deadbolt-operator") == sa_owner
    });
    eventually("the enforcement report", PATIENCE, || {
        kubectl(&[
            "get",
            "lease",
            "deadbolt-enforcement-chart-rbac-0",
            "-n",
            &ns,
        ])
        .status
        .success()
    });
    assert_eq!(
        owner(&ns, "lease", "deadbolt-enforcement-chart-rbac-0"),
        sa_owner
    );

    // A proxy subscribes with a projected-style token: TokenReview works.
    success(kubectl(&[
        "create",
        "serviceaccount",
        "db-proxy",
        "-n",
        &ns,
    ]));
    let token = success(kubectl(&[
        "create",
        "token",
        "db-proxy",
        "-n",
        &ns,
        "--audience",
        "deadbolt",
    ]));
    let token_file = scenario.logs().join("db-proxy.token");
    std::fs::write(&token_file, token.trim()).unwrap();
    let pki = scenario.pki();
    let _proxy = Sidecar::subscribed_with_token(
        &pki,
        &operator.view_url(),
        "db-proxy-0",
        &token_file,
        scenario.logs(),
    );

    // Every controller writes what it should.
    let role = scenario.name("chart-dev");
    scenario.apply_cluster(
        "accessroles.deadbolt.dev",
        &role,
        &database_role(&role, "dev", "app", "app"),
    );
    let lock = scenario.name("chart-lock");
    scenario.apply_cluster(
        "locks.deadbolt.dev",
        &lock,
        &lock_manifest(
            &lock,
            &format!("user: {}", scenario.name("mallory")),
            "Chart RBAC check.",
            "",
        ),
    );
    let contradictory = scenario.name("chart-contradictory");
    scenario.apply_cluster(
        "accessroles.deadbolt.dev",
        &contradictory,
        &format!("apiVersion: deadbolt.dev/v1\nkind: AccessRole\nmetadata:\n  name: {contradictory}\nspec:\n  groups: [ops]\n  allow:\n    logins: [root]\n  deny:\n    logins: [root]\n"),
    );
    let expired = scenario.name("chart-expired");
    scenario.apply_cluster(
        "locks.deadbolt.dev",
        &expired,
        &lock_manifest(
            &expired,
            "user: nobody",
            "Long over.",
            "  expires: \"2020-01-01T00:00:00Z\"\n",
        ),
    );
    let suspended = scenario.name("chart-suspended");
    scenario.apply_cluster(
        "users.deadbolt.dev",
        &suspended,
        &format!("apiVersion: deadbolt.dev/v1\nkind: User\nmetadata:\n  name: {suspended}\n  labels:\n    deadbolt.dev/origin: okta\nspec:\n  type: sso\n  roles: [{role}]\n  suspended: true\n"),
    );
    let temporary = scenario.name("chart-temporary");
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3);
    scenario.apply_cluster(
        "users.deadbolt.dev",
        &temporary,
        &format!("apiVersion: deadbolt.dev/v1\nkind: User\nmetadata:\n  name: {temporary}\nspec:\n  type: temporary\n  roles: [{role}]\n  expires: \"{}\"\n", soon.strftime("%Y-%m-%dT%H:%M:%SZ")),
    );
    scenario.apply_cluster(
        "clusterauthpreferences.deadbolt.dev",
        "cluster-auth-preference",
        "apiVersion: deadbolt.dev/v1\nkind: ClusterAuthPreference\nmetadata:\n  name: cluster-auth-preference\nspec:\n  lockingMode: best_effort\n  secondFactor: webauthn\n  webauthn:\n    rpId: localhost\n",
    );

    let wait = |what: &str, condition: &str| {
        success(kubectl(&[
            "wait",
            &format!("--for={condition}"),
            what,
            "--timeout=60s",
        ]));
    };
    wait(&format!("accessrole/{role}"), "condition=Ready");
    wait(&format!("lock/{lock}"), "condition=Ready");
    wait(&format!("lock/{lock}"), "condition=Stalled=False");
    wait(&format!("lock/{lock}"), "jsonpath={.status.enforcedBy}=1/1");
    wait(&format!("accessrole/{contradictory}"), "condition=Stalled");
    wait(
        &format!("accessrole/{contradictory}"),
        "condition=Ready=False",
    );
    wait(
        &format!("user/{suspended}"),
        "jsonpath={.status.locked}=true",
    );
    wait(
        "clusterauthpreference/cluster-auth-preference",
        "condition=Ready",
    );
    for gone in [format!("lock/{expired}"), format!("user/{temporary}")] {
        success(kubectl(&["wait", "--for=delete", &gone, "--timeout=60s"]));
    }
    // The mutating webhook stamped the creator; Events reached `default`.
    assert!(
        !jsonpath(
            &["get", "lock", &lock],
            "{.metadata.annotations.deadbolt\\.dev/created-by}"
        )
        .is_empty()
    );
    eventually("an Event about the lock", PATIENCE, || {
        !success(kubectl(&[
            "get",
            "events",
            "-n",
            "default",
            "-o",
            "name",
            "--field-selector",
            &format!("involvedObject.name={lock}"),
        ]))
        .trim()
        .is_empty()
    });

    // Injection: the patched Pod is one the API server accepts, and a Pod
    // that already has its sidecar is left as it is.
    let pod = database_pod(&ns, "orders-db-0", "localhost/postgres-e2e:15", "db-proxy");
    let patched = dry_run(&pod);
    assert_eq!(containers(&patched), ["postgres", "deadbolt-proxy"]);
    assert_eq!(patched["metadata"]["labels"]["deadbolt.dev/proxy"], "true");
    let mut again = patched.clone();
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        again["metadata"].as_object_mut().unwrap().remove(field);
    }
    again.as_object_mut().unwrap().remove("status");
    assert_eq!(containers(&dry_run(&again)), ["postgres", "deadbolt-proxy"]);
    let mut broken = pod.clone();
    broken["metadata"]["annotations"]["deadbolt.dev/inject"] = json!("redis");
    let refused = kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &broken.to_string(),
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("use postgres or mysql"));

    // The MFA service: a device registered (MfaDevices created and listed),
    // a check passed (the device's status patched), and the device removed
    // with the MFA credential it gave (deleted).
    let api_token = success(kubectl(&["create", "token", "db-proxy", "-n", &ns]));
    let api_token_file = scenario.logs().join("db-proxy-api.token");
    std::fs::write(&api_token_file, api_token.trim()).unwrap();
    let key = scenario.logs().join("chart.softtoken");
    let key = key.to_str().unwrap();
    let (url, ca) = (operator.mfa_url(), pki.ca_crt());
    let by_token = ["--token-file", api_token_file.to_str().unwrap()];
    let added = plugin(
        &url,
        &ca,
        &by_token,
        &["mfa", "add", "--name", "chart", "--soft-token", key],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let uuid = registered_uuid(&added);
    scenario.delete_at_end("mfadevices.deadbolt.dev", &uuid);
    let prefix = scenario.logs().join("chart-mfa");
    let prefix = prefix.to_str().unwrap();
    let login = plugin(
        &url,
        &ca,
        &by_token,
        &["login", "--mfa", "--out", prefix, "--soft-token", key],
    );
    assert!(login.status.success(), "{}", stderr(&login));
    assert!(!jsonpath(&["get", "mfadevice", &uuid], "{.status.signCount}").is_empty());
    let (cert, key) = (format!("{prefix}.crt"), format!("{prefix}.key"));
    let removed = plugin(
        &url,
        &ca,
        &["--cert", &cert, "--key", &key],
        &["mfa", "rm", &uuid],
    );
    assert!(removed.status.success(), "{}", stderr(&removed));
    success(kubectl(&[
        "wait",
        "--for=delete",
        &format!("mfadevice/{uuid}"),
        "--timeout=60s",
    ]));

    // Nothing the operator did was refused.
    let log = operator.process.log();
    assert!(
        !log.contains("forbidden"),
        "the chart's RBAC refused the operator something:\n{log}"
    );

    // And a permission taken from the chart is noticed: without locks/status
    // a new Lock never gets its status.
    let rules = get_json(&["get", "clusterrole", "deadbolt-operator"])["rules"].clone();
    let index = rules
        .as_array()
        .unwrap()
        .iter()
        .position(|rule| {
            rule["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "locks/status")
        })
        .unwrap();
    success(kubectl(&[
        "patch",
        "clusterrole",
        "deadbolt-operator",
        "--type=json",
        "-p",
        &json!([{"op": "remove", "path": format!("/rules/{index}")}]).to_string(),
    ]));
    let unseen = scenario.name("chart-unseen");
    scenario.apply_cluster(
        "locks.deadbolt.dev",
        &unseen,
        &lock_manifest(&unseen, "user: nobody", "No status.", ""),
    );
    eventually(
        "the operator to be refused the status write",
        PATIENCE,
        || operator.process.log().contains("forbidden"),
    );
    assert_eq!(
        jsonpath(&["get", "lock", &unseen], "{.status.observedGeneration}"),
        ""
    );

    operator.process.stop();
    release.uninstall();
    assert_only_crds_left(&ns);
}

/// Images built from this checkout's binaries and Debian's packages, loaded
/// into the node (nothing can be pulled).
fn build_images(state: &Path, kit: &Path, deadbolt: &str, postgres: &str) {
    let image = |args: &[&str]| {
        let output = Command::new("bash")
            .arg(kit.join("image.sh"))
            .arg(state)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "image.sh {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let operator = bin("deadbolt-operator");
    let sidecar = bin("deadbolt-sidecar");
    image(&[
        deadbolt,
        "--binary",
        operator.to_str().unwrap(),
        "--binary",
        sidecar.to_str().unwrap(),
        "--entrypoint",
        "/usr/local/bin/deadbolt-operator",
        "--user",
        "65532",
    ]);
    let entrypoint = kit.join("examples/postgres/entrypoint.sh");
    image(&[
        postgres,
        "--deb",
        "postgresql-15",
        "--deb",
        "busybox-static",
        "--file",
        &format!(
            "{}:/usr/local/bin/postgres-entrypoint",
            entrypoint.display()
        ),
        "--entrypoint",
        "/usr/local/bin/postgres-entrypoint",
        "--user",
        "65532",
        "--expose",
        "5432",
    ]);
}

/// The operator pods that are Ready.
fn ready_operators(namespace: &str) -> Vec<String> {
    let pods = get_json(&[
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/component=operator",
    ]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter(|pod| {
            pod["status"]["conditions"]
                .as_array()
                .is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
        .map(|pod| pod["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn leader(namespace: &str) -> String {
    jsonpath(
        &["get", "lease", "deadbolt-operator", "-n", namespace],
        "{.spec.holderIdentity}",
    )
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn a_platform_team_installs_the_chart_and_locks_a_live_psql() {
    let (state, kit) = match node_kit() {
        Ok(kit) => kit,
        Err(reason) => {
            println!("SKIPPED: no node to run pods on: {reason}");
            return;
        }
    };
    let mut scenario = Scenario::new("chart-node");
    let ns = scenario.ns().to_string();
    let apps = Namespace::create("chart-apps");
    let tag = &scenario.run;
    let deadbolt_image = format!("localhost/deadbolt-e2e:{tag}");
    let postgres_image = "localhost/deadbolt-e2e-postgres:15";
    build_images(&state, &kit, &deadbolt_image, postgres_image);

    // helm install --wait: both replicas Running and Ready, one leads.
    let (mut release, took) = Release::install(
        &ns,
        &[
            "--wait",
            "--timeout=60s",
            "--set",
            "image.repository=localhost/deadbolt-e2e",
            // A run id such as 205150 or 1e5f00 would otherwise be read as a number.
            "--set-string",
            &format!("image.tag={tag}"),
            "--set-json",
            &format!(
                "subscribers={}",
                json!([format!("{}/orders-db", apps.name)])
            ),
        ],
    );
    eprintln!("helm install --wait took {took:?}");
    let replicas = ready_operators(&ns);
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    eventually("a replica to hold the leader Lease", PATIENCE, || {
        replicas.contains(&leader(&ns))
    });

    // The webhooks answer through their Service: a Lock is validated and stamped.
    let bob = scenario.name("bob");
    let bob_lock = scenario.name("lock-bob");
    scenario.cleanup.add("locks.deadbolt.dev", &bob_lock);
    eventually(
        "the webhooks to answer through the Service",
        PATIENCE,
        || {
            kubectl_stdin(
                &["apply", "-f", "-"],
                &lock_manifest(&bob_lock, &format!("user: {bob}"), "Bob is out.", ""),
            )
            .status
            .success()
        },
    );
    assert!(
        !jsonpath(
            &["get", "lock", &bob_lock],
            "{.metadata.annotations.deadbolt\\.dev/created-by}"
        )
        .is_empty()
    );

    // A PostgreSQL pod asking for a sidecar starts with it.
    let pki = Pki::from_cluster(&ns);
    sidecar_secrets(&apps.name, &pki);
    success(kubectl(&[
        "create",
        "serviceaccount",
        "orders-db",
        "-n",
        &apps.name,
    ]));
    let group = scenario.name("dba");
    let role = scenario.name("orders");
    scenario.apply_cluster(
        "accessroles.deadbolt.dev",
        &role,
        &database_role(&role, &group, "app", "app"),
    );
    let template = database_pod(&apps.name, "", postgres_image, "orders-db");
    apply(
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "orders-db", "namespace": apps.name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "orders-db"}},
                "template": {
                    "metadata": {
                        "labels": template["metadata"]["labels"],
                        "annotations": template["metadata"]["annotations"],
                    },
                    "spec": template["spec"],
                },
            },
        })
        .to_string(),
    );
    success(kubectl(&[
        "rollout",
        "status",
        "deployment/orders-db",
        "-n",
        &apps.name,
        "--timeout=120s",
    ]));
    let pod = jsonpath(
        &["get", "pods", "-n", &apps.name, "-l", "app=orders-db"],
        "{.items[0].metadata.name}",
    );
    let spec = get_json(&["get", "pod", &pod, "-n", &apps.name]);
    assert_eq!(containers(&spec), ["postgres", "deadbolt-proxy"]);

    // psql through the sidecar, from this machine.
    let port = free_port();
    let forward = Running::start(
        &admin_kubeconfig(),
        &[
            "port-forward",
            "-n",
            &apps.name,
            &format!("pod/{pod}"),
            &format!("{port}:6432"),
        ],
    );
    forward.wait_for_text("Forwarding from");
    let alice = scenario.name("alice");
    let conninfo = |user: &Issued| {
        format!(
            "host=localhost port={port} user=app dbname=app sslmode=verify-full sslrootcert={} sslcert={} sslkey={} connect_timeout=10",
            pki.ca_crt().display(),
            user.cert.display(),
            user.key.display()
        )
    };
    let alice_info = conninfo(&pki.user(&alice, &[&group]));
    let bob_info = conninfo(&pki.user(&bob, &[&group]));
    eventually("the sidecar to let alice in", PATIENCE, || {
        psql_once(&alice_info).status.success()
    });
    let mut live = LivePsql::open(&alice_info);

    // Deleting the leader loses no lock, and the live session survives it.
    let old_leader = leader(&ns);
    success(kubectl(&["delete", "pod", &old_leader, "-n", &ns]));
    eventually(
        "another replica to take the lead",
        Duration::from_secs(120),
        || {
            let now = leader(&ns);
            now != old_leader && ready_operators(&ns).contains(&now)
        },
    );
    live.query("select 'survived the failover'");
    live.expect("survived the failover");
    let refused = psql_once(&bob_info);
    assert!(text(&refused).contains("Bob is out."), "{}", text(&refused));
    success(kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("lock/{bob_lock}"),
        "--timeout=60s",
    ]));

    // kubectl apply -f lock.yaml cuts the live session with the lock message.
    let alice_lock = scenario.name("lock-alice");
    scenario.apply_cluster(
        "locks.deadbolt.dev",
        &alice_lock,
        &lock_manifest(
            &alice_lock,
            &format!("user: {alice}"),
            "Alice is under investigation.",
            "",
        ),
    );
    let sidecar_log = || {
        String::from_utf8_lossy(
            &kubectl(&["logs", &pod, "-n", &apps.name, "-c", "deadbolt-proxy"]).stdout,
        )
        .into_owned()
    };
    let seen = live.expect_cut(
        || sidecar_log().contains("session.terminated"),
        "is in force",
    );
    assert!(
        seen.iter()
            .any(|line| line.contains("Alice is under investigation.")),
        "{seen:?}"
    );

    // helm uninstall leaves nothing behind but the CRDs.
    drop(forward);
    drop(live);
    release.uninstall();
    assert_only_crds_left(&ns);
}
