//! What most scenarios start from: a namespace of their own, an operator
//! replica in it, its CA, a place for logs, and the cluster-scoped objects to
//! delete at the end. When a scenario fails, the logs are printed.

use std::path::{Path, PathBuf};

use crate::pki::Pki;
use crate::postgres::Postgres;
use crate::process::{Operator, Sidecar};
use crate::{Cleanup, Namespace, admin_kubeconfig, apply, require_cluster, uuid_like};

/// See [`Scenario::database_access`].
pub struct DatabaseAccess {
    /// The proxy's `--upstream-password-file`.
    pub passwords: PathBuf,
    /// The group the role lets in.
    pub group: String,
    /// The AccessRole's name.
    pub role: String,
}

/// See [`Scenario::kube_proxy`].
pub struct KubeProxy {
    /// The operator replica.
    pub operator: Operator,
    /// Its CA.
    pub pki: Pki,
    /// The kube proxy.
    pub proxy: Sidecar,
}

/// One scenario's world.
pub struct Scenario {
    /// The scenario's namespace (the operator's, too).
    pub namespace: Namespace,
    /// Cluster-scoped objects to delete at the end.
    pub cleanup: Cleanup,
    logs: tempfile::TempDir,
    /// Unique to this run, for names that must not meet an earlier run's.
    pub run: String,
}

impl Scenario {
    /// A fresh namespace `e2e-<stem>-…` on the cluster, with the CRDs installed.
    pub fn new(stem: &str) -> Self {
        require_cluster();
        let id = uuid_like();
        Self {
            namespace: Namespace::create(stem),
            cleanup: Cleanup::default(),
            logs: tempfile::tempdir().unwrap(),
            run: id[id.len() - 6..].to_string(),
        }
    }

    /// The namespace's name.
    pub fn ns(&self) -> &str {
        &self.namespace.name
    }

    /// Where processes write their logs.
    pub fn logs(&self) -> &Path {
        self.logs.path()
    }

    /// A name unique to this run: `<stem>-<run>`.
    pub fn name(&self, stem: &str) -> String {
        format!("{stem}-{}", self.run)
    }

    /// Starts an operator replica named `identity` with `extra` flags.
    pub fn operator(&self, identity: &str, extra: &[&str]) -> Operator {
        let extra: Vec<String> = extra.iter().map(|flag| flag.to_string()).collect();
        Operator::start(self.ns(), identity, self.logs(), &extra)
    }

    /// The kube proxy's world: an operator replica, its CA, and a kube proxy
    /// (`kube-proxy-<run>`) subscribed to it, forwarding to the cluster with
    /// the admin kubeconfig.
    pub fn kube_proxy(&self) -> KubeProxy {
        let operator = self.operator("operator-0", &[]);
        let pki = self.pki();
        let proxy = Sidecar::kube(
            &pki,
            &operator.view_url(),
            &self.name("kube-proxy"),
            &admin_kubeconfig(),
            self.logs(),
        );
        KubeProxy {
            operator,
            pki,
            proxy,
        }
    }

    /// What a database proxy in front of the harness's PostgreSQL needs: the
    /// upstream password file, and an AccessRole letting a group in as
    /// database user `app` to database `app` (on proxies labelled `env=e2e`).
    pub fn database_access(&mut self, pki: &Pki) -> DatabaseAccess {
        let passwords = pki.dir().join("upstream-passwords");
        std::fs::write(&passwords, Postgres::password_lines()).unwrap();
        let group = self.name("dba");
        let role = self.name("app-db");
        self.apply_cluster(
            "accessroles.deadbolt.dev",
            &role,
            &database_role(&role, &group, "app", "app"),
        );
        DatabaseAccess {
            passwords,
            group,
            role,
        }
    }

    /// The operator's CA, once it has made one.
    pub fn pki(&self) -> Pki {
        Pki::from_cluster(self.ns())
    }

    /// Applies a cluster-scoped manifest and deletes `kind/name` at the end.
    pub fn apply_cluster(&mut self, kind: &str, name: &str, manifest: &str) {
        apply(manifest);
        self.cleanup.add(kind, name);
    }

    /// Deletes the cluster-scoped `kind/name` something else made, at the end.
    pub fn delete_at_end(&mut self, kind: &str, name: &str) {
        self.cleanup.add(kind, name);
    }

    /// Lets `user` (and everyone in `group`) use `role` (a ClusterRole such as
    /// `edit`) in the scenario's namespace.
    pub fn bind(&self, role: &str, user: &str) {
        apply(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {role}-{user_name}\n  namespace: {ns}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {role}\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: {user}\n",
            user_name = user.replace([':', '@', '.'], "-"),
            ns = self.ns(),
        ));
    }

    /// Every log the scenario's processes wrote, for a failure's report.
    pub fn dump_logs(&self) -> String {
        let mut text = String::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(self.logs())
            .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for path in entries {
            let body = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(40).collect();
            text.push_str(&format!("==> {} <==\n", path.display()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.dump_logs());
        }
    }
}

/// A Lock manifest on `target` (e.g. `user: alice`), with `message`.
pub fn lock_manifest(name: &str, target: &str, message: &str, extra: &str) -> String {
    format!(
        "apiVersion: deadbolt.dev/v1\nkind: Lock\nmetadata:\n  name: {name}\nspec:\n  target:\n    {target}\n  message: \"{message}\"\n{extra}"
    )
}

/// An AccessRole for `group` allowing database user `db_user` on database
/// `db_name` on proxies labelled `env=e2e`.
pub fn database_role(name: &str, group: &str, db_user: &str, db_name: &str) -> String {
    format!(
        "apiVersion: deadbolt.dev/v1\nkind: AccessRole\nmetadata:\n  name: {name}\nspec:\n  groups: [{group}]\n  allow:\n    dbUsers: [{db_user}]\n    dbNames: [{db_name}]\n    dbLabels:\n      env: [e2e]\n"
    )
}
