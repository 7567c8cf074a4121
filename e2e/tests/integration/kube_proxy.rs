//! The kube proxy in front of a real API server, with the real `kubectl`: a
//! locked user or role gets `kubectl get` refused with the lock message, a
//! live `kubectl get -w` is cut with it while another user's watch carries on,
//! and access returns when the lock is deleted. Users are named as their
//! certificates name them, e-mail addresses included (`spec.username`). A
//! ServiceAccount's token through the proxy is exactly that ServiceAccount to
//! the API server, its groups included, even when its roles deny them all.

use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use deadbolt_e2e::pki::decode_base64;
use deadbolt_e2e::process::lines_of;
use deadbolt_e2e::scenario::{Scenario, lock_manifest};
use deadbolt_e2e::{PATIENCE, apply, kubectl, kubectl_command, stderr, success};

/// `kubectl get configmaps -w` as a user, its output lines on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(kubeconfig: &std::path::Path, namespace: &str) -> Self {
        let mut child = kubectl_command(&[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "get",
            "configmaps",
            "-n",
            namespace,
            "-w",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let lines = lines_of(&mut child);
        Self { child, lines }
    }

    /// Waits for a line containing `needle`; every line read is returned too.
    fn wait_for(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with {needle:?} in {seen:?}"),
            }
        }
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn locked_users_and_roles_are_refused_and_their_watches_cut() {
    let mut scenario = Scenario::new("kube");
    let kube = scenario.kube_proxy();
    let (pki, proxy) = (&kube.pki, &kube.proxy);
    let ns = scenario.ns().to_string();
    let olga = format!("{}@example.com", scenario.name("olga"));
    let jerry = scenario.name("jerry");
    let contractor = scenario.name("contractor");
    for user in [&olga, &jerry] {
        scenario.bind("view", user);
    }
    // olga's User carries her e-mail address as its username, and a role.
    let olga_object = scenario.name("olga");
    scenario.apply_cluster(
        "users.deadbolt.dev",
        &olga_object,
        &format!(
            "apiVersion: deadbolt.dev/v1\nkind: User\nmetadata:\n  name: {olga_object}\nspec:\n  username: {olga}\n  roles: [{contractor}]\n"
        ),
    );
    success(kubectl(&[
        "create",
        "configmap",
        "settings",
        "-n",
        &ns,
        "--from-literal=a=1",
    ]));

    let olga_config = proxy.kubeconfig_for(pki, &pki.user(&olga, &[]), "olga");
    let jerry_config = proxy.kubeconfig_for(pki, &pki.user(&jerry, &[]), "jerry");
    let get = |config: &std::path::Path| {
        kubectl(&[
            "--kubeconfig",
            config.to_str().unwrap(),
            "get",
            "configmap",
            "settings",
            "-n",
            &ns,
        ])
    };
    success(get(&olga_config));

    let olga_watch = Watch::start(&olga_config, &ns);
    let mut jerry_watch = Watch::start(&jerry_config, &ns);
    olga_watch.wait_for("settings");
    jerry_watch.wait_for("settings");

    // A lock on olga's role, by kubectl apply: her watch is cut with the message.
    let role_lock = scenario.name("lock-role");
    scenario.apply_cluster(
        "locks.deadbolt.dev",
        &role_lock,
        &lock_manifest(
            &role_lock,
            &format!("role: {contractor}"),
            "Contractors are off.",
            "",
        ),
    );
    let message =
        format!(r#"lock targeting Role:"{contractor}" is in force: Contractors are off."#);
    let seen = olga_watch.wait_for("is in force");
    assert!(seen.iter().any(|line| line.contains(&message)), "{seen:?}");
    let refused = get(&olga_config);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains(&format!("Error from server (Forbidden): {message}")),
        "{}",
        stderr(&refused)
    );
    // jerry's watch carries on: a change still reaches it.
    success(kubectl(&[
        "label",
        "configmap",
        "settings",
        "-n",
        &ns,
        "seen=yes",
    ]));
    jerry_watch.wait_for("settings");
    assert!(jerry_watch.still_running());

    // A lock on jerry himself, then deleted: access returns.
    let user_lock = scenario.name("lock-user");
    apply(&lock_manifest(
        &user_lock,
        &format!("user: {jerry}"),
        "Suspicious activity.",
        "",
    ));
    let seen = jerry_watch.wait_for("is in force");
    let jerry_message =
        format!(r#"lock targeting User:"{jerry}" is in force: Suspicious activity."#);
    assert!(
        seen.iter().any(|line| line.contains(&jerry_message)),
        "{seen:?}"
    );
    assert!(stderr(&get(&jerry_config)).contains(&jerry_message));
    success(kubectl(&["delete", "lock", &user_lock]));
    let deadline = std::time::Instant::now() + PATIENCE;
    while !get(&jerry_config).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "access did not return"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    success(kubectl(&["delete", "lock", &role_lock]));
    let deadline = std::time::Instant::now() + PATIENCE;
    while !get(&olga_config).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "olga's access did not return"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kubectl auth whoami` with `token`, against `server` trusting the CA in
/// file `ca`: the user name and groups the API server sees.
fn whoami(server: &str, ca: &std::path::Path, token: &str) -> (String, Vec<String>) {
    let info = success(kubectl(&[
        "--kubeconfig",
        "/dev/null",
        "--server",
        server,
        "--certificate-authority",
        ca.to_str().unwrap(),
        "--token",
        token,
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
    ]));
    let (user, groups) = info.trim().split_once(' ').unwrap_or((info.trim(), "[]"));
    let mut groups: Vec<String> = serde_json::from_str(groups).unwrap();
    groups.sort();
    (user.to_string(), groups)
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn a_service_account_is_exactly_itself_through_the_proxy() {
    let mut scenario = Scenario::new("kube-sa");
    let kube = scenario.kube_proxy();
    let (pki, proxy) = (&kube.pki, &kube.proxy);
    let ns = scenario.ns().to_string();
    success(kubectl(&["create", "serviceaccount", "robot", "-n", &ns]));
    let token = success(kubectl(&["create", "token", "robot", "-n", &ns]));
    let token = token.trim();
    let field = |path: &str| {
        success(kubectl(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            &format!("jsonpath={{.clusters[0].cluster.{path}}}"),
        ]))
    };
    let server = field("server");
    // A kubeconfig names the API server's CA inline or by file.
    let server_ca = match field("certificate-authority-data") {
        data if !data.is_empty() => {
            let path = pki.dir().join("api-server-ca.crt");
            std::fs::write(&path, decode_base64(data.trim())).unwrap();
            path
        }
        _ => field("certificate-authority").trim().into(),
    };
    let direct = whoami(&server, &server_ca, token);
    let robot = format!("system:serviceaccount:{ns}:robot");
    assert_eq!(
        direct,
        (
            robot.clone(),
            vec![
                "system:authenticated".to_string(),
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ]
        )
    );
    // The proxy sends no Impersonate-Group for these (the API server adds
    // them itself): the same user and groups as direct.
    let proxy_url = format!("https://localhost:{}", proxy.listen.port());
    let ca = pki.ca_crt();
    let through = || whoami(&proxy_url, &ca, token);
    assert_eq!(through(), direct);

    // A role that denies the ServiceAccounts of this namespace every group at
    // every kube proxy: none of them may come back upstream.
    let role = scenario.name("no-groups");
    scenario.apply_cluster(
        "accessroles.deadbolt.dev",
        &role,
        &format!(
            "apiVersion: deadbolt.dev/v1\nkind: AccessRole\nmetadata:\n  name: {role}\nspec:\n  groups: [\"system:serviceaccounts:{ns}\"]\n  deny:\n    kubernetesGroups: [\"*\"]\n"
        ),
    );
    let only_authenticated = (robot, vec!["system:authenticated".to_string()]);
    deadbolt_e2e::eventually("the role to take every group away", PATIENCE, || {
        through() == only_authenticated
    });
}
