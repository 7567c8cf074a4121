//! The Helm chart as a platform team uses it: the real `helm` installs
//! `charts/deadbolt` into a scenario's namespace and uninstalls it, and the
//! checks that an uninstall left nothing behind but the CRDs.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::{PATIENCE, eventually, kubectl, repo_root, success};

/// The release name; the chart's cluster-wide objects carry it.
pub const RELEASE: &str = "deadbolt";
/// The chart's two webhook configurations.
pub const WEBHOOK_CONFIGURATIONS: [(&str, &str); 2] = [
    ("validatingwebhookconfiguration", "deadbolt-validating"),
    ("mutatingwebhookconfiguration", "deadbolt-mutating"),
];

/// Runs the real `helm` (from PATH: scripts/install-tools.sh puts it in .tools/bin).
pub fn helm(args: &[&str]) -> Output {
    Command::new("helm")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm (run scripts/install-tools.sh): {e}"))
}

/// An installed release of the chart, uninstalled when dropped.
pub struct Release {
    namespace: String,
    installed: bool,
}

impl Release {
    /// `helm install deadbolt charts/deadbolt -n NAMESPACE ARGS...`; the
    /// namespace must exist. Returns how long the install took (with `--wait`,
    /// until every Deployment was ready).
    pub fn install(namespace: &str, args: &[&str]) -> (Self, Duration) {
        let chart = repo_root().join("charts/deadbolt");
        let mut all = vec![
            "install",
            RELEASE,
            chart.to_str().unwrap(),
            "--namespace",
            namespace,
        ];
        all.extend_from_slice(args);
        let started = Instant::now();
        let output = helm(&all);
        let took = started.elapsed();
        if !output.status.success() {
            let pods = kubectl(&["get", "pods", "-n", namespace, "-o", "wide"]);
            let events = kubectl(&["get", "events", "-n", namespace]);
            panic!(
                "helm install failed: {}{}\npods:\n{}\nevents:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&pods.stdout),
                String::from_utf8_lossy(&events.stdout),
            );
        }
        let release = Self {
            namespace: namespace.to_string(),
            installed: true,
        };
        (release, took)
    }

    /// `helm uninstall --wait`.
    pub fn uninstall(&mut self) {
        success(helm(&[
            "uninstall",
            RELEASE,
            "--namespace",
            &self.namespace,
            "--wait",
        ]));
        self.installed = false;
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.installed {
            let _ = helm(&["uninstall", RELEASE, "--namespace", &self.namespace]);
        }
    }
}

/// Checks that nothing of the release is left but the CRDs: no object with
/// the release's labels in its namespace or cluster-wide, no webhook
/// configuration, and (once the garbage collector has followed the owner
/// references to the operator's ServiceAccount) none of the objects the
/// operator created at run time.
pub fn assert_only_crds_left(namespace: &str) {
    let selector =
        format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/part-of=deadbolt");
    let leftovers = |args: &[&str]| -> String {
        let mut all = vec!["get", "-o", "name", "-l", &selector];
        all.extend_from_slice(args);
        success(kubectl(&all)).trim().to_string()
    };
    assert_eq!(
        leftovers(&[
            "deployments,services,serviceaccounts,secrets,configmaps,roles,rolebindings,\
             poddisruptionbudgets,networkpolicies,leases",
            "-n",
            namespace,
        ]),
        ""
    );
    assert_eq!(
        leftovers(&[
            "clusterroles,clusterrolebindings,validatingwebhookconfigurations,mutatingwebhookconfigurations"
        ]),
        ""
    );
    assert_eq!(leftovers(&["roles,rolebindings", "-n", "default"]), "");
    for (kind, name) in WEBHOOK_CONFIGURATIONS {
        let found = kubectl(&["get", kind, name, "--ignore-not-found", "-o", "name"]);
        assert_eq!(success(found).trim(), "", "{kind} {name} is left");
    }
    eventually(
        "the garbage collector to remove the CA Secret and the operator's Leases",
        PATIENCE,
        || {
            let secret = kubectl(&[
                "get",
                "secret",
                "deadbolt-ca",
                "-n",
                namespace,
                "--ignore-not-found",
                "-o",
                "name",
            ]);
            let leases = kubectl(&["get", "leases", "-n", namespace, "-o", "name"]);
            success(secret).trim().is_empty() && success(leases).trim().is_empty()
        },
    );
    for crd in [
        "locks",
        "users",
        "accessroles",
        "clusterauthpreferences",
        "mfadevices",
    ] {
        success(kubectl(&["get", "crd", &format!("{crd}.deadbolt.dev")]));
    }
}
