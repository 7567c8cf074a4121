//! Webhooks registered by `url:` to an operator running out of cluster, and
//! the identities a scenario uses to talk to the API server directly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::Operator;
use crate::scenario::Scenario;
use crate::{PATIENCE, kubectl, success};

/// The address the API server calls webhooks at (`DEADBOLT_E2E_WEBHOOK_HOST`).
pub fn webhook_host() -> String {
    std::env::var("DEADBOLT_E2E_WEBHOOK_HOST").unwrap_or_else(|_| "127.0.0.1".into())
}

/// A ValidatingWebhookConfiguration sending the scenario namespace's writes
/// and CONNECTs to the operator's lock enforcement, with no `caBundle` yet.
pub fn enforcement_webhook(name: &str, namespace: &str, operator: &Operator) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {name}
webhooks:
- name: locks-enforcement.deadbolt.dev
  clientConfig:
    url: https://{host}:{port}/validate/locks-enforcement
  rules:
  - operations: [CREATE, UPDATE, DELETE, CONNECT]
    apiGroups: ["*"]
    apiVersions: ["*"]
    resources: ["*", "pods/exec", "pods/attach", "pods/portforward"]
    scope: Namespaced
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {namespace}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 5
"#,
        host = webhook_host(),
        port = operator.webhook.port(),
    )
}

/// An operator replica whose lock enforcement is registered for the
/// scenario's namespace (a ValidatingWebhookConfiguration named after
/// `stem`, whose caBundle the operator fills), ready once the API server
/// trusts it.
pub fn enforcing_operator(scenario: &mut Scenario, stem: &str) -> Operator {
    let configuration = scenario.name(stem);
    let operator = scenario.operator(
        "operator-0",
        &["--validating-webhook-configuration", &configuration],
    );
    let manifest = enforcement_webhook(&configuration, scenario.ns(), &operator);
    scenario.apply_cluster("validatingwebhookconfiguration", &configuration, &manifest);
    wait_for_ca_bundle("validatingwebhookconfiguration", &configuration);
    operator
}

/// Waits until the operator has put its CA into every webhook of the
/// configuration `name` of `kind` (`validatingwebhookconfiguration` or
/// `mutatingwebhookconfiguration`).
pub fn wait_for_ca_bundle(kind: &str, name: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let bundles = success(kubectl(&[
            "get",
            kind,
            name,
            "-o",
            "jsonpath={range .webhooks[*]}{.clientConfig.caBundle}{\"\\n\"}{end}",
        ]));
        if !bundles.trim().is_empty() && bundles.lines().all(|line| !line.trim().is_empty()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the operator never set the caBundle of {kind} {name}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A kubeconfig that authenticates as ServiceAccount `account` of
/// `namespace` with a fresh token, and nothing else.
pub fn service_account_kubeconfig(scenario: &Scenario, account: &str) -> PathBuf {
    let namespace = scenario.ns();
    success(kubectl(&[
        "create",
        "serviceaccount",
        account,
        "-n",
        namespace,
    ]));
    scenario.bind(
        "edit",
        &format!("system:serviceaccount:{namespace}:{account}"),
    );
    token_kubeconfig(scenario.logs(), namespace, account)
}

/// A kubeconfig in `dir` with a fresh token (`kubectl create token`) of the
/// existing ServiceAccount `account` of `namespace`, and nothing else.
pub fn token_kubeconfig(dir: &Path, namespace: &str, account: &str) -> PathBuf {
    let token = success(kubectl(&["create", "token", account, "-n", namespace]));
    let server = success(kubectl(&[
        "config",
        "view",
        "--minify",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]));
    let ca = success(kubectl(&[
        "config",
        "view",
        "--minify",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]));
    let path = dir.join(format!("{namespace}-{account}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {account}\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: {account}}}\ncurrent-context: c\n",
            token = token.trim(),
        ),
    )
    .unwrap();
    path
}
