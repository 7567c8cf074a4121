//! Per-session MFA end to end, with a software security key: the MFA service
//! (in-process, on the test operator's CA and view), `kubectl deadbolt`'s
//! client library, the PostgreSQL and kube proxies, the real `psql` and
//! `kubectl`. The reference's example is the fixture: Jerry holds
//! `access-dev` (no MFA, `env: dev`) and `access-prod` (MFA, `env: prod`).

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deadbolt_api::credential::CertIdentity;
use deadbolt_api::mfa::service::{AuthenticateFinish, RegisterFinish};
use deadbolt_api::protocol::RoleRecord;
use deadbolt_api::resources::{AccessRoleSpec, RequireSessionMfa, RoleConditions, RoleOptions};
use deadbolt_runtime::clock::ManualClock;
use deadbolt_testkit::postgres::Postgres;
use kubectl_deadbolt::mfa::{
    Authenticator, Caller, IssuedLogin, MfaClient, MfaError, MfaService, login, register,
};
use support::kube_proxy::{FakeTokens, KubeProxyHarness, kubectl_path};
use support::kube_upstream::FakeApiServer;
use support::mfa::{MfaServer, enable_mfa};
use support::operator::{Operator, target};
use support::proxy::Proxy;
use support::{PATIENCE, eventually};
use tempfile::TempDir;

/// The group Jerry's roles are granted to.
const ENGINEERS: &str = "jerry-engineers";

fn env(value: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    [("env".to_string(), vec![value.to_string()])].into()
}

/// `access-dev` and `access-prod`, as the reference writes them, for
/// databases (login `app`) and Kubernetes (group `developers`).
fn jerrys_roles() -> [RoleRecord; 2] {
    let role = |name: &str, environment: &str, mfa: bool| RoleRecord {
        name: name.into(),
        spec: AccessRoleSpec {
            options: RoleOptions {
                require_session_mfa: mfa.then_some(RequireSessionMfa::Session),
                ..Default::default()
            },
            allow: RoleConditions {
                db_labels: env(environment),
                db_users: vec!["app".into()],
                db_names: vec!["*".into()],
                kubernetes_labels: env(environment),
                kubernetes_groups: vec!["developers".into()],
                ..Default::default()
            },
            groups: vec![ENGINEERS.into()],
            ..Default::default()
        },
    };
    [
        role("access-dev", "dev", false),
        role("access-prod", "prod", true),
    ]
}

fn jerry() -> CertIdentity {
    CertIdentity {
        user: "jerry".into(),
        groups: vec![ENGINEERS.into()],
        ..Default::default()
    }
}

/// The operator with Jerry's roles and WebAuthn on, its MFA service, and a
/// directory for keys and credentials.
struct Cluster {
    operator: Operator,
    mfa: MfaServer,
    files: TempDir,
}

impl Cluster {
    async fn start(cluster_mfa: RequireSessionMfa) -> Self {
        Self::start_with_view_clock(cluster_mfa, None).await
    }

    async fn start_with_view_clock(
        cluster_mfa: RequireSessionMfa,
        view_clock: Option<ManualClock>,
    ) -> Self {
        let mut operator = Operator::start().await;
        if let Some(clock) = view_clock {
            operator.view_clock = Arc::new(clock);
        }
        for role in jerrys_roles() {
            operator.role(role);
        }
        enable_mfa(&operator, cluster_mfa);
        let mfa = MfaServer::start(&operator).await;
        Self {
            operator,
            mfa,
            files: tempfile::tempdir().unwrap(),
        }
    }

    /// The service as `identity` calls it, with a Deadbolt certificate.
    fn service(&self, identity: &CertIdentity) -> MfaService {
        let issued = self
            .operator
            .ca
            .issue_user_cert(identity, Duration::from_secs(3600))
            .unwrap();
        self.service_as(Caller::Certificate {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        })
    }

    fn service_as(&self, caller: Caller) -> MfaService {
        MfaService {
            url: self.mfa.url(),
            ca_pem: self.operator.ca_pem(),
            caller,
        }
    }

    async fn client(&self, identity: &CertIdentity) -> MfaClient {
        MfaClient::connect(&self.service(identity)).await.unwrap()
    }

    fn key_path(&self, name: &str) -> PathBuf {
        self.files.path().join(format!("{name}.token"))
    }

    fn key(&self, name: &str) -> Authenticator {
        Authenticator::soft_token(&self.key_path(name)).unwrap()
    }

    /// Registers a soft key for `identity`; returns the device UUID.
    async fn register(&self, identity: &CertIdentity, key: &str) -> String {
        let client = self.client(identity).await;
        register(&client, &mut self.key(key), "soft-key")
            .await
            .unwrap()
            .uuid
    }

    /// An MFA check with `key`: the session credential.
    async fn login(&self, identity: &CertIdentity, key: &str) -> IssuedLogin {
        let client = self.client(identity).await;
        login(&client, &mut self.key(key), None).await.unwrap()
    }

    /// Writes `credential` as files psql and kubectl read: (cert, key, ca).
    fn write(&self, name: &str, credential: &IssuedLogin) -> (PathBuf, PathBuf, PathBuf) {
        let path = |suffix: &str| self.files.path().join(format!("{name}{suffix}"));
        std::fs::write(path(".crt"), &credential.cert_pem).unwrap();
        std::fs::write(path(".key"), &credential.key_pem).unwrap();
        std::fs::write(path("-ca.crt"), &credential.ca_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path(".key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        (path(".crt"), path(".key"), path("-ca.crt"))
    }

    /// A user certificate from the CA with no MFA check: (cert, key, ca).
    fn plain(&self, identity: &CertIdentity) -> (PathBuf, PathBuf, PathBuf) {
        let issued = self
            .operator
            .ca
            .issue_user_cert(identity, Duration::from_secs(3600))
            .unwrap();
        let credential = IssuedLogin {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            ca_pem: self.operator.ca_pem(),
            expires_at: jiff::Timestamp::now(),
            mfa_device: String::new(),
        };
        self.write(&format!("{}-plain", identity.user), &credential)
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        self.mfa.audit.json()
    }

    /// A PostgreSQL proxy `pg-<env>` labelled `env=<env>`.
    async fn pg(&self, postgres: &Postgres, env: &str) -> Proxy {
        let id = format!("pg-{env}");
        Proxy::start_labelled(&self.operator, postgres, &id, &[("env", env)]).await
    }

    /// A kube proxy `kube-<env>` labelled `env=<env>`, accepting no tokens.
    async fn kube(&self, upstream: &FakeApiServer, env: &str) -> KubeProxyHarness {
        let id = format!("kube-{env}");
        let tokens = FakeTokens::default();
        KubeProxyHarness::start_labelled(&self.operator, upstream, &id, &tokens, &[("env", env)])
            .await
    }
}

/// A tokio-postgres session through `proxy` with the credential in `files`,
/// and its connection task (which ends with the FATAL of a cut).
async fn pg_client(
    proxy: &Proxy,
    (cert, key, ca): &(PathBuf, PathBuf, PathBuf),
) -> Result<
    (
        tokio_postgres::Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ),
    tokio_postgres::Error,
> {
    let tls = deadbolt_runtime::tls::ClientTls {
        roots: deadbolt_runtime::tls::root_store(&std::fs::read(ca).unwrap()).unwrap(),
        identity: Some(deadbolt_runtime::tls::CertifiedKey::from_files(cert, key).unwrap()),
    }
    .config(&[b"postgresql"])
    .unwrap();
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
    let config = format!(
        "host=localhost port={} user=app dbname=app sslmode=require",
        proxy.addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&config, connector).await?;
    Ok((client, tokio::spawn(connection)))
}

fn conninfo(proxy: &Proxy, (cert, key, ca): &(PathBuf, PathBuf, PathBuf)) -> String {
    format!(
        "host=localhost port={} user=app dbname=app sslmode=verify-full sslrootcert={} sslcert={} sslkey={} connect_timeout=10",
        proxy.addr.port(),
        ca.display(),
        cert.display(),
        key.display()
    )
}

fn psql(proxy: &Proxy, files: &(PathBuf, PathBuf, PathBuf)) -> (bool, String) {
    let output = proxy.psql_with(&conninfo(proxy, files), "select 'in'");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success() && text.contains("in"), text)
}

fn kubeconfig(
    proxy: &KubeProxyHarness,
    name: &str,
    files: &(PathBuf, PathBuf, PathBuf),
) -> PathBuf {
    let (cert, key, _) = files;
    proxy.kubeconfig(
        name,
        &format!(
            "    client-certificate: {}\n    client-key: {}\n",
            cert.display(),
            key.display()
        ),
    )
}

async fn kubectl_get(proxy: &KubeProxyHarness, kubeconfig: &Path) -> (bool, String) {
    let output = proxy
        .kubectl_output(kubeconfig, &["get", "configmap", "settings", "-o", "name"])
        .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

const MFA_HINT: &str = "kubectl deadbolt login --mfa";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jerry_needs_a_fresh_mfa_check_for_prod_and_none_for_dev() {
    let cluster = Cluster::start(RequireSessionMfa::Off).await;
    let postgres = Postgres::start();
    let prod = cluster.pg(&postgres, "prod").await;
    let dev = cluster.pg(&postgres, "dev").await;
    let upstream = FakeApiServer::start().await;
    let kube_prod = cluster.kube(&upstream, "prod").await;
    let kube_dev = cluster.kube(&upstream, "dev").await;

    // Without MFA: dev lets Jerry in, prod says MFA is required and how to get it.
    let plain = cluster.plain(&jerry());
    let (ok, text) = psql(&dev, &plain);
    assert!(ok, "dev refused a plain certificate: {text}");
    let (ok, text) = psql(&prod, &plain);
    assert!(
        !ok && text.contains("per-session MFA is required") && text.contains(MFA_HINT),
        "{text}"
    );
    let plain_kube = kubeconfig(&kube_prod, "jerry-plain-prod", &plain);
    let (ok, text) = kubectl_get(&kube_prod, &plain_kube).await;
    assert!(
        !ok && text.contains("per-session MFA is required"),
        "{text}"
    );
    let (ok, text) =
        kubectl_get(&kube_dev, &kubeconfig(&kube_dev, "jerry-plain-dev", &plain)).await;
    assert!(ok, "kube dev refused a plain certificate: {text}");

    // Register a key, pass a check: prod lets the credential in, on both proxies.
    let device = cluster.register(&jerry(), "jerry").await;
    let credential = cluster.login(&jerry(), "jerry").await;
    assert_eq!(credential.mfa_device, device);
    let fresh = cluster.write("jerry-mfa", &credential);
    let (ok, text) = psql(&prod, &fresh);
    assert!(ok, "prod refused a fresh MFA credential: {text}");
    let (ok, text) = kubectl_get(
        &kube_prod,
        &kubeconfig(&kube_prod, "jerry-mfa-prod", &fresh),
    )
    .await;
    assert!(ok, "kube prod refused a fresh MFA credential: {text}");
    // And dev still does without.
    assert!(psql(&dev, &plain).0);

    // The refusal was audited by the proxy; the device and the check by the service.
    assert!(
        prod.audit
            .json()
            .iter()
            .any(|e| e["event"] == "session.rejected"
                && e["user"] == "jerry"
                && e["reason"].as_str().is_some_and(|r| r.contains("MFA")))
    );
    let events = cluster.audit();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "mfa.device.add" && e["mfa_device"] == device.as_str())
    );
    assert!(events.iter().any(|e| e["event"] == "mfa.auth"
        && e["success"] == true
        && e["mfa_device"] == device.as_str()));

    // Someone who may not reach prod at all hears "access denied", not "MFA
    // required": asking reveals nothing about what it cannot use.
    let outsider = CertIdentity {
        user: "olga".into(),
        groups: vec!["auditors".into()],
        ..Default::default()
    };
    let (ok, text) = psql(&prod, &cluster.plain(&outsider));
    assert!(
        !ok && text.contains("access to db denied") && !text.contains("MFA"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_session_mfa_asks_everywhere() {
    let cluster = Cluster::start(RequireSessionMfa::Session).await;
    let postgres = Postgres::start();
    let dev = cluster.pg(&postgres, "dev").await;
    let (ok, text) = psql(&dev, &cluster.plain(&jerry()));
    assert!(
        !ok && text.contains("per-session MFA is required"),
        "{text}"
    );
    cluster.register(&jerry(), "jerry").await;
    let credential = cluster.login(&jerry(), "jerry").await;
    let (ok, text) = psql(&dev, &cluster.write("jerry-mfa", &credential));
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_older_than_five_minutes_starts_nothing_but_its_sessions_live_on() {
    let clock = ManualClock::new(jiff::Timestamp::now());
    let cluster = Cluster::start_with_view_clock(RequireSessionMfa::Off, Some(clock.clone())).await;
    let postgres = Postgres::start();
    let prod = cluster.pg(&postgres, "prod").await;
    cluster.register(&jerry(), "jerry").await;
    let credential = cluster.login(&jerry(), "jerry").await;
    let files = cluster.write("jerry-mfa", &credential);

    // A session started now, within the five minutes.
    let (session, connection) = pg_client(&prod, &files).await.unwrap();
    let row = session.query_one("select 'first'", &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "first");

    // Five minutes and a second later, by the proxy's clock.
    clock.advance(jiff::SignedDuration::from_secs(5 * 60 + 1));
    let (ok, text) = psql(&prod, &files);
    assert!(
        !ok && text.contains("older than 5 minutes") && text.contains(MFA_HINT),
        "{text}"
    );

    // The session it started is not cut by the credential's age.
    let row = session.query_one("select 'still here'", &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "still here");
    assert!(!connection.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_on_the_mfa_device_cuts_the_sessions_started_with_it() {
    let cluster = Cluster::start(RequireSessionMfa::Off).await;
    let postgres = Postgres::start();
    let prod = cluster.pg(&postgres, "prod").await;
    let dev = cluster.pg(&postgres, "dev").await;
    let device = cluster.register(&jerry(), "jerry").await;
    let credential = cluster.login(&jerry(), "jerry").await;
    let fresh = cluster.write("jerry-mfa", &credential);

    let (with_device, connection) = pg_client(&prod, &fresh).await.unwrap();
    with_device.query_one("select 1", &[]).await.unwrap();
    let without_device = psql(&dev, &cluster.plain(&jerry()));
    assert!(without_device.0, "{}", without_device.1);
    // A kubectl watch started with the same credential, at the prod kube proxy.
    let upstream = FakeApiServer::start().await;
    let kube_prod = cluster.kube(&upstream, "prod").await;
    let mut watch = kube_prod.kubectl_spawn(
        &kubeconfig(&kube_prod, "jerry-mfa-watch", &fresh),
        &["get", "configmaps", "--watch"],
        &[],
    );
    watch.wait_for_lines("settings", 2).await;
    eventually("the watch registered", || {
        kube_prod.view.registry().len() == 1
    })
    .await;

    cluster.operator.lock(
        "lost-key",
        target(deadbolt_api::TargetKind::MfaDevice, &device),
        "The security key was reported lost.",
    );
    let error = match tokio::time::timeout(PATIENCE, connection).await {
        Ok(Ok(Err(error))) => error
            .as_db_error()
            .map(|db| db.message().to_string())
            .unwrap_or_else(|| error.to_string()),
        other => panic!("the session was not cut: {other:?}"),
    };
    assert!(
        error.contains("The security key was reported lost."),
        "{error}"
    );
    assert!(error.contains(&device), "{error}");
    // The watch ends with the lock's message as its last row.
    watch.wait().await;
    let stdout = watch.stdout();
    assert!(
        stdout.lines().last().is_some_and(|last| last
            .contains(&format!(r#"lock targeting MFADevice:"{device}""#))
            && last.ends_with("The security key was reported lost.")),
        "stdout: {stdout} stderr: {}",
        watch.stderr()
    );

    // Jerry without that device is not concerned...
    dev.catch_up(&cluster.operator).await;
    assert!(psql(&dev, &cluster.plain(&jerry())).0);
    // ...but the device gets no new credential.
    let client = cluster.client(&jerry()).await;
    let error = login(&client, &mut cluster.key("jerry"), None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("reported lost"), "{error}");
}

/// Begins a check and answers it with `key`: (ceremony, assertion).
async fn assertion(client: &MfaClient, key: &mut Authenticator) -> (String, serde_json::Value) {
    let challenge = client.begin_authentication().await.unwrap();
    let assertion = key.authenticate(&challenge.challenge).await.unwrap();
    (challenge.ceremony, assertion)
}

fn finish(ceremony: &str, assertion: &serde_json::Value) -> AuthenticateFinish {
    AuthenticateFinish {
        ceremony: ceremony.into(),
        assertion: assertion.clone(),
        public_key_pem: rcgen::KeyPair::generate().unwrap().public_key_pem(),
        target: None,
    }
}

fn refused(result: Result<impl std::fmt::Debug, MfaError>, expected: &str) {
    let error = result.expect_err("accepted");
    assert!(error.to_string().contains(expected), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_tampered_foreign_and_cloned_assertions_are_refused() {
    let cluster = Cluster::start(RequireSessionMfa::Off).await;
    cluster.register(&jerry(), "jerry").await;
    let bob = CertIdentity {
        user: "bob".into(),
        groups: vec![ENGINEERS.into()],
        ..Default::default()
    };
    cluster.register(&bob, "bob").await;
    let client = cluster.client(&jerry()).await;
    let mut key = cluster.key("jerry");

    // A good one, then the same again: the ceremony is used up.
    let (ceremony, good) = assertion(&client, &mut key).await;
    client
        .finish_authentication(&finish(&ceremony, &good))
        .await
        .unwrap();
    refused(
        client
            .finish_authentication(&finish(&ceremony, &good))
            .await,
        "no such ceremony",
    );
    // The old assertion against a new ceremony: another challenge.
    let fresh = client.begin_authentication().await.unwrap();
    refused(
        client
            .finish_authentication(&finish(&fresh.ceremony, &good))
            .await,
        "MFA check failed",
    );

    // A tampered signature.
    let (ceremony, mut tampered) = assertion(&client, &mut key).await;
    let signature = tampered["response"]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let flipped: String = signature
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 10 {
                if c == 'A' { 'B' } else { 'A' }
            } else {
                c
            }
        })
        .collect();
    tampered["response"]["signature"] = flipped.into();
    refused(
        client
            .finish_authentication(&finish(&ceremony, &tampered))
            .await,
        "MFA check failed",
    );

    // Bob's challenge and Bob's answer, finished by Jerry (a stolen
    // ceremony): refused, and the ceremony stays Bob's to finish.
    let bobs = cluster.client(&bob).await;
    let (theirs, answer) = assertion(&bobs, &mut cluster.key("bob")).await;
    refused(
        client
            .finish_authentication(&finish(&theirs, &answer))
            .await,
        "no such ceremony",
    );
    let credential = bobs
        .finish_authentication(&finish(&theirs, &answer))
        .await
        .unwrap();
    assert!(!credential.certificate_pem.is_empty());

    // A clone of the key from before its last use: its counter goes backwards.
    let snapshot = cluster.files.path().join("jerry-clone.token");
    std::fs::copy(cluster.key_path("jerry"), &snapshot).unwrap();
    let (ceremony, newer) = assertion(&client, &mut key).await;
    client
        .finish_authentication(&finish(&ceremony, &newer))
        .await
        .unwrap();
    let mut clone = Authenticator::soft_token(&snapshot).unwrap();
    let (ceremony, older) = assertion(&client, &mut clone).await;
    refused(
        client
            .finish_authentication(&finish(&ceremony, &older))
            .await,
        "counter",
    );

    let failures: Vec<_> = cluster
        .audit()
        .into_iter()
        .filter(|e| e["event"] == "mfa.auth" && e["success"] == false && e["user"] == "jerry")
        .collect();
    assert!(failures.len() >= 4, "{failures:?}");
    assert!(
        failures
            .iter()
            .any(|e| e["reason"].as_str().unwrap().contains("cloned"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_users_get_no_credential_and_repeated_failures_lock_out() {
    let cluster = Cluster::start(RequireSessionMfa::Off).await;
    cluster.register(&jerry(), "jerry").await;
    let client = cluster.client(&jerry()).await;
    let mut key = cluster.key("jerry");

    // A lock on a role Jerry holds: no credential, with the lock's message.
    cluster.operator.lock(
        "prod-freeze",
        target(deadbolt_api::TargetKind::Role, "access-prod"),
        "Production is frozen.",
    );
    refused(
        login(&client, &mut key, None).await,
        "Production is frozen.",
    );
    let whoami = client.whoami().await.unwrap();
    assert_eq!(whoami.user, "jerry");
    assert_eq!(whoami.roles, ["access-dev", "access-prod"]);
    assert_eq!(whoami.locks.len(), 1);
    assert_eq!(whoami.locks[0].name, "prod-freeze");
    cluster.operator.unlock("prod-freeze");
    login(&client, &mut key, None).await.unwrap();

    // Five failed checks (tampered assertions) lock Jerry out of new credentials.
    for _ in 0..5 {
        let (ceremony, mut bad) = assertion(&client, &mut key).await;
        bad["response"]["signature"] = "AAAA".into();
        let _ = client.finish_authentication(&finish(&ceremony, &bad)).await;
    }
    refused(
        login(&client, &mut key, None).await,
        "too many failed MFA checks",
    );
    let whoami = client.whoami().await.unwrap();
    assert_eq!(whoami.failed_mfa_attempts, 5);
    assert!(whoami.mfa_locked_until.is_some());
    assert!(cluster.audit().iter().any(|e| {
        e["event"] == "mfa.auth"
            && e["success"] == false
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("gets no MFA credential until"))
    }));

    // Thirty minutes later (the service's clock), the lock-out is over.
    cluster
        .mfa
        .clock
        .advance(jiff::SignedDuration::from_secs(30 * 60));
    login(&client, &mut key, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_errors_and_lose_nothing() {
    let cluster = Cluster::start(RequireSessionMfa::Off).await;
    let device = cluster.register(&jerry(), "jerry").await;
    let client = cluster.client(&jerry()).await;

    // A device name out of bounds, a credential that is not WebAuthn JSON, a body too large.
    refused(
        client.begin_registration("").await,
        "it must be 1 to 64 characters",
    );
    refused(
        client.begin_registration(&"k".repeat(65)).await,
        "it must be 1 to 64 characters",
    );
    let verified = {
        let credential = cluster.login(&jerry(), "jerry").await;
        MfaClient::connect(&cluster.service_as(Caller::Certificate {
            cert_pem: credential.cert_pem,
            key_pem: credential.key_pem,
        }))
        .await
        .unwrap()
    };
    let challenge = verified.begin_registration("second").await.unwrap();
    let garbage = RegisterFinish {
        ceremony: challenge.ceremony.clone(),
        credential: serde_json::json!({"id": 7, "response": "no"}),
    };
    refused(
        verified.finish_registration(&garbage).await,
        "the credential does not parse",
    );
    let huge = RegisterFinish {
        ceremony: challenge.ceremony,
        credential: serde_json::json!({"padding": "a".repeat(100_000)}),
    };
    refused(
        verified.finish_registration(&huge).await,
        "larger than 65536 bytes",
    );

    // An assertion that is not WebAuthn JSON, and a public key that is not a key.
    let challenge = client.begin_authentication().await.unwrap();
    let mut bad = finish(
        &challenge.ceremony,
        &serde_json::json!(["not", "an", "assertion"]),
    );
    refused(
        client.finish_authentication(&bad).await,
        "the assertion does not parse",
    );
    let (ceremony, good) = assertion(&client, &mut cluster.key("jerry")).await;
    bad = finish(&ceremony, &good);
    bad.public_key_pem = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n".into();
    refused(
        client.finish_authentication(&bad).await,
        "not a PEM SubjectPublicKeyInfo",
    );

    // A bearer token where no API server can review it.
    let by_token = MfaClient::connect(&cluster.service_as(Caller::Token("t0ken".into())))
        .await
        .unwrap();
    refused(by_token.whoami().await, "bearer tokens are not accepted");

    // Nothing was lost: the device is still the only one, and it still logs in.
    let devices = client.devices().await.unwrap().devices;
    assert_eq!(
        devices.iter().map(|d| d.uuid.as_str()).collect::<Vec<_>>(),
        [device.as_str()]
    );
    assert_eq!(cluster.login(&jerry(), "jerry").await.mfa_device, device);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_device_or_a_removal_needs_a_fresh_mfa_credential() {
    let cluster = Cluster::start(RequireSessionMfa::Off).await;
    let first = cluster.register(&jerry(), "jerry").await;
    // A stolen plain certificate cannot add the thief's key.
    let client = cluster.client(&jerry()).await;
    refused(
        register(&client, &mut cluster.key("thief"), "thief").await,
        "fresh MFA credential",
    );
    refused(client.remove_device(&first).await, "fresh MFA credential");

    // With an MFA credential from the first key, both work.
    let credential = cluster.login(&jerry(), "jerry").await;
    let service = cluster.service_as(Caller::Certificate {
        cert_pem: credential.cert_pem,
        key_pem: credential.key_pem,
    });
    let verified = MfaClient::connect(&service).await.unwrap();
    let second = register(&verified, &mut cluster.key("spare"), "spare")
        .await
        .unwrap();
    let devices = verified.devices().await.unwrap().devices;
    assert_eq!(devices.len(), 2);
    verified.remove_device(&first).await.unwrap();
    let devices = verified.devices().await.unwrap().devices;
    assert_eq!(
        devices.iter().map(|d| d.uuid.as_str()).collect::<Vec<_>>(),
        [second.uuid.as_str()]
    );
    assert!(
        cluster
            .audit()
            .iter()
            .any(|e| e["event"] == "mfa.device.delete" && e["mfa_device"] == first.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowed_credential_works_only_at_its_proxy() {
    let cluster = Cluster::start(RequireSessionMfa::Session).await;
    let postgres = Postgres::start();
    let prod = cluster.pg(&postgres, "prod").await;
    let dev = cluster.pg(&postgres, "dev").await;
    cluster.register(&jerry(), "jerry").await;
    let client = cluster.client(&jerry()).await;
    let narrowed = login(&client, &mut cluster.key("jerry"), Some("pg-prod".into()))
        .await
        .unwrap();
    let files = cluster.write("jerry-prod-only", &narrowed);
    assert!(psql(&prod, &files).0);
    let (ok, text) = psql(&dev, &files);
    assert!(
        !ok && text.contains("issued for proxy \"pg-prod\" only"),
        "{text}"
    );
}

/// The kubectl-deadbolt binary, built next to this test by `cargo build --bins`.
fn plugin_path() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let binary = deps
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("kubectl-deadbolt");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        binary.display()
    );
    binary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_uses_login_mfa_as_its_exec_credential_plugin() {
    let cluster = Cluster::start(RequireSessionMfa::Off).await;
    let upstream = FakeApiServer::start().await;
    let kube_prod = cluster.kube(&upstream, "prod").await;
    cluster.register(&jerry(), "jerry").await;
    let (cert, key, ca) = cluster.plain(&jerry());
    let cache = cluster.files.path().join("cache");
    let user = format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      args: [login, --mfa, --mfa-url, {}, --mfa-ca, {}, --cert, {}, --key, {}, --soft-token, {}]\n      env: [{{name: DEADBOLT_CACHE_DIR, value: {}}}]\n      interactiveMode: Never\n",
        plugin_path().display(),
        cluster.mfa.url(),
        ca.display(),
        cert.display(),
        key.display(),
        cluster.key_path("jerry").display(),
        cache.display(),
    );
    let (ok, text) = kubectl_get(
        &kube_prod,
        &kubeconfig(
            &kube_prod,
            "jerry-plain",
            &(cert.clone(), key.clone(), ca.clone()),
        ),
    )
    .await;
    assert!(
        !ok && text.contains("per-session MFA is required"),
        "{text}"
    );
    let kubeconfig = kube_prod.kubeconfig("jerry-exec", &user);
    for _ in 0..2 {
        let (ok, text) = kubectl_get(&kube_prod, &kubeconfig).await;
        assert!(ok, "kubectl with the exec plugin: {text}");
        assert!(text.contains("configmap/settings"), "{text}");
    }
    // Two kubectl processes, one MFA check: the second came from the cache.
    let checks = cluster
        .audit()
        .iter()
        .filter(|e| e["event"] == "mfa.auth" && e["success"] == true)
        .count();
    assert_eq!(checks, 1);
    assert!(kubectl_path().exists());
}
