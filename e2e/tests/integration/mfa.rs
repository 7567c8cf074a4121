//! Per-session MFA on a real API server, through the kube proxy, with the
//! real `kubectl` and `kubectl deadbolt`: a ServiceAccount's token registers a
//! software security key (an `MfaDevice` object), `access-prod` makes the
//! `env=prod` kube proxy refuse the token alone, `kubectl deadbolt login
//! --mfa` as kubectl's exec credential plugin gets it in, and a lock on the
//! device refuses it with the lock's message and gets it no new credential.
//! Failed checks are counted over two replicas: five in a row, on either,
//! lock the user out on both.

use std::path::{Path, PathBuf};

use deadbolt_e2e::mfa::{plugin, registered_uuid};
use deadbolt_e2e::process::Sidecar;
use deadbolt_e2e::scenario::{Scenario, lock_manifest};
use deadbolt_e2e::{PATIENCE, admin_kubeconfig, bin, eventually, kubectl, stderr, success};

fn kubeconfig(path: PathBuf, port: u16, ca: &Path, user: &str) -> PathBuf {
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: deadbolt\n  cluster:\n    server: https://localhost:{port}\n    certificate-authority: {ca}\nusers:\n- name: jerry\n  user:\n{user}contexts:\n- name: deadbolt\n  context: {{cluster: deadbolt, user: jerry}}\ncurrent-context: deadbolt\n",
            ca = ca.display(),
        ),
    )
    .unwrap();
    path
}

#[test]
#[ignore = "needs a real cluster named by KUBECONFIG"]
fn kubectl_needs_an_mfa_check_for_prod_and_gets_it_from_login_mfa() {
    let mut scenario = Scenario::new("mfa");
    let ns = scenario.ns().to_string();
    scenario.apply_cluster(
        "clusterauthpreferences.deadbolt.dev",
        "cluster-auth-preference",
        "apiVersion: deadbolt.dev/v1\nkind: ClusterAuthPreference\nmetadata:\n  name: cluster-auth-preference\nspec:\n  secondFactor: webauthn\n  webauthn:\n    rpId: localhost\n",
    );
    let operator = scenario.operator("operator-0", &[]);
    let pki = scenario.pki();
    let proxy = Sidecar::kube_labelled(
        &pki,
        &operator.view_url(),
        &scenario.name("kube-prod"),
        &admin_kubeconfig(),
        &["env=prod"],
        scenario.logs(),
    );

    // Jerry is a ServiceAccount; its namespace's group holds access-prod,
    // which grants a group that may read ConfigMaps here, with MFA.
    success(kubectl(&["create", "serviceaccount", "jerry", "-n", &ns]));
    let viewers = scenario.name("prod-viewers");
    success(kubectl(&[
        "create",
        "rolebinding",
        "prod-viewers",
        "-n",
        &ns,
        "--clusterrole=view",
        "--group",
        &viewers,
    ]));
    let role = scenario.name("access-prod");
    scenario.apply_cluster(
        "accessroles.deadbolt.dev",
        &role,
        &format!(
            "apiVersion: deadbolt.dev/v1\nkind: AccessRole\nmetadata:\n  name: {role}\nspec:\n  groups: [\"system:serviceaccounts:{ns}\"]\n  options:\n    requireSessionMfa: \"true\"\n  allow:\n    kubernetesLabels:\n      env: [prod]\n    kubernetesGroups: [{viewers}]\n"
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
    let token = pki.dir().join("jerry.token");
    // A token for the API server, as kubectl would hold: the kube proxy and
    // the MFA service both accept it.
    let minted = success(kubectl(&[
        "create",
        "token",
        "jerry",
        "-n",
        &ns,
        "--duration",
        "1h",
    ]));
    std::fs::write(&token, minted.trim()).unwrap();
    let ca = pki.ca_crt();
    let mfa_url = operator.mfa_url();
    let get = |config: &Path| {
        kubectl(&[
            "--kubeconfig",
            config.to_str().unwrap(),
            "get",
            "configmap",
            "settings",
            "-n",
            &ns,
            "-o",
            "name",
        ])
    };

    // The token alone: refused, and told how to get MFA.
    let with_token = kubeconfig(
        pki.dir().join("jerry-token.kubeconfig"),
        proxy.listen.port(),
        &ca,
        &format!("    tokenFile: {}\n", token.display()),
    );
    let refused = get(&with_token);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("per-session MFA is required")
            && stderr(&refused).contains("kubectl deadbolt login --mfa"),
        "{}",
        stderr(&refused)
    );

    // Register a soft key: an MfaDevice object named by its UUID.
    let key = pki.dir().join("jerry.softtoken");
    let key_arg = key.to_str().unwrap();
    let caller = ["--token-file", token.to_str().unwrap()];
    let added = plugin(
        &mfa_url,
        &ca,
        &caller,
        &["mfa", "add", "--name", "soft", "--soft-token", key_arg],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let uuid = registered_uuid(&added);
    // The key as it is now: once it has been used, a copy of this is a clone
    // whose signature counter goes backwards.
    let snapshot = pki.dir().join("jerry-snapshot.softtoken");
    std::fs::copy(&key, &snapshot).unwrap();
    let devices = success(kubectl(&[
        "get",
        "mfadevices",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.user} {.spec.name}{\"\\n\"}{end}",
    ]));
    let jerry = format!("system:serviceaccount:{ns}:jerry");
    let device = devices
        .lines()
        .find(|line| line.ends_with(&format!(" {jerry} soft")))
        .and_then(|line| line.split(' ').next())
        .unwrap_or_else(|| panic!("no MfaDevice for {jerry}: {devices}"))
        .to_string();
    assert_eq!(device, uuid);
    scenario.delete_at_end("mfadevices.deadbolt.dev", &device);
    let listed = plugin(&mfa_url, &ca, &caller, &["mfa", "ls"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&device),
        "{}",
        stderr(&listed)
    );

    // `login --mfa` as kubectl's exec credential plugin: in.
    let exec = format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      args: [login, --mfa, --mfa-url, \"{mfa_url}\", --mfa-ca, {}, --token-file, {}, --soft-token, {key_arg}]\n      env: [{{name: DEADBOLT_CACHE_DIR, value: {}}}]\n      interactiveMode: Never\n",
        bin("kubectl-deadbolt").display(),
        ca.display(),
        token.display(),
        pki.dir().join("cache").display(),
    );
    let with_mfa = kubeconfig(
        pki.dir().join("jerry-mfa.kubeconfig"),
        proxy.listen.port(),
        &ca,
        &exec,
    );
    let got = get(&with_mfa);
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "configmap/settings"
    );
    // The device's use is recorded on its status.
    let used = success(kubectl(&[
        "get",
        "mfadevice",
        &device,
        "-o",
        "jsonpath={.status.signCount}",
    ]));
    assert!(
        used.trim().parse::<u32>().is_ok_and(|count| count > 0),
        "{used:?}"
    );

    // `status` names the user and its role.
    let status = plugin(&mfa_url, &ca, &caller, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        text.contains(&jerry) && text.contains(&role),
        "{text}{}",
        stderr(&status)
    );

    // A lock on the device: the cached credential is refused with the lock's
    // message, and the device gets no new credential.
    let lock = scenario.name("lost-key");
    scenario.apply_cluster(
        "locks.deadbolt.dev",
        &lock,
        &lock_manifest(
            &lock,
            &format!("mfaDevice: {device}"),
            "The key was reported lost.",
            "",
        ),
    );
    eventually("the lock to refuse the MFA credential", PATIENCE, || {
        stderr(&get(&with_mfa)).contains("The key was reported lost.")
    });
    std::fs::remove_dir_all(pki.dir().join("cache")).unwrap();
    let again = get(&with_mfa);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("The key was reported lost."),
        "{}",
        stderr(&again)
    );

    // Failed checks count over every replica behind the MFA Service: the
    // clone fails three times on this replica and twice on a second one
    // (the default lock-out: 5 in a row), and then neither issues anything.
    let second = scenario.operator("operator-1", &[]);
    let replicas = [mfa_url.clone(), second.mfa_url()];
    let login = |replica: &str, attempt: &str| {
        let clone = pki.dir().join(format!("jerry-clone-{attempt}.softtoken"));
        std::fs::copy(&snapshot, &clone).unwrap();
        let out = pki.dir().join(format!("jerry-{attempt}"));
        plugin(
            replica,
            &ca,
            &caller,
            &[
                "login",
                "--mfa",
                "--soft-token",
                clone.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    for attempt in 0..5 {
        let failed = login(&replicas[attempt % 2], &attempt.to_string());
        assert!(!failed.status.success());
        assert!(
            stderr(&failed).contains("counter did not increase"),
            "attempt {attempt}: {}",
            stderr(&failed)
        );
    }
    for (n, replica) in replicas.iter().enumerate() {
        let refused = login(replica, &format!("after-{n}"));
        assert!(
            stderr(&refused).contains("too many failed MFA checks"),
            "replica {n}: {}",
            stderr(&refused)
        );
        let status = plugin(replica, &ca, &caller, &["status"]);
        let text = String::from_utf8_lossy(&status.stdout).into_owned();
        assert!(
            text.contains("Failed MFA checks:   5 (new MFA credentials are refused until"),
            "replica {n}: {text}{}",
            stderr(&status)
        );
    }
    // The count is one Lease in the operators' namespace, held by the user,
    // for whoever must end the lock-out early.
    let holders = success(kubectl(&[
        "get",
        "leases",
        "-n",
        &ns,
        "-l",
        "deadbolt.dev/mfa-lockout",
        "-o",
        "jsonpath={.items[*].spec.holderIdentity}",
    ]));
    assert_eq!(holders.trim(), jerry, "{holders}");
    drop(second);
    drop(operator);
}
