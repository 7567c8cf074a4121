//! The MFA client, the soft token and the MFA commands against the real MFA
//! service (`deadbolt_operator::mfa`), served in process over HTTPS with ALPN
//! h2: its certificate from a Deadbolt CA, its decisions from a view store the
//! tests edit, its devices in memory, bearer tokens checked by a map. A TCP
//! relay in front of it counts the connections clients open.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use deadbolt_api::TargetKind;
use deadbolt_api::credential::CertIdentity;
use deadbolt_api::mfa::service::AuthenticateFinish;
use deadbolt_api::protocol::{ClusterConfig, MfaConfig, ObjectKey, RoleRecord, ViewObject};
use deadbolt_api::resources::{AccessRoleSpec, LockTargetSpec, SecondFactor, Webauthn};
use deadbolt_operator::admission::FollowingReplica;
use deadbolt_operator::ca::DeadboltCa;
use deadbolt_operator::https::Bound;
use deadbolt_operator::mfa::{self, Endpoint, MemoryDevices};
use deadbolt_operator::shutdown::{Shutdown, ShutdownTrigger};
use deadbolt_operator::view::ViewStore;
use deadbolt_runtime::audit::AuditSink;
use deadbolt_runtime::clock::ManualClock;
use deadbolt_runtime::tls::{self, ClientAuth};
use deadbolt_testkit::tls::TestCa;
use deadbolt_testkit::{FakeTokens, lock_entry, target};
use http_body_util::Full;
use hyper::Response;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubectl_deadbolt::mfa::{
    Authenticator, Caller, MfaClient, MfaError, MfaService, check_issued, login, register,
};
use kubectl_deadbolt::{Environment, run};
use rcgen::KeyPair;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const TOKEN: &str = "alice-token";
const BOB_TOKEN: &str = "bob-token";
const GROUP: &str = "engineers";
const ROLE: &str = "access-prod";
const HOUR: Duration = Duration::from_secs(3600);
const LOCK_MESSAGE: &str = "lock targeting User:\"alice\" is in force: Suspicious activity. \
     (no credential is issued while a lock is in force)";
const NEEDS_FRESH_MFA: &str = "call with a fresh MFA credential from a device you already have";

/// The MFA service, running.
struct Server {
    /// Where clients connect: the relay in front of the service.
    url: String,
    ca: Arc<DeadboltCa>,
    /// Its view: locks and roles go here.
    store: ViewStore,
    /// TCP connections the relay has accepted.
    connections: Arc<AtomicUsize>,
    _shutdown: ShutdownTrigger,
}

impl Server {
    /// WebAuthn on (rpId `localhost`), role [`ROLE`] for [`GROUP`], tokens for alice and bob.
    async fn start() -> Server {
        let ca = Arc::new(DeadboltCa::generate().unwrap());
        let store = ViewStore::default();
        store.upsert(ViewObject::Config(ClusterConfig {
            mfa: MfaConfig {
                second_factor: SecondFactor::Webauthn,
                webauthn: Some(Webauthn {
                    rp_id: "localhost".into(),
                    origins: vec![],
                }),
                ..MfaConfig::default()
            },
            ..Default::default()
        }));
        store.upsert(ViewObject::Role(RoleRecord {
            name: ROLE.into(),
            spec: AccessRoleSpec {
                groups: vec![GROUP.into()],
                ..Default::default()
            },
        }));
        let service = mfa::MfaService::new(
            FollowingReplica::new(store.clone()),
            ca.clone(),
            Arc::new(MemoryDevices::default()),
            Arc::new(ManualClock::new(jiff::Timestamp::now())),
            AuditSink::memory().0,
        );
        let serving = ca.issue_serving_cert(&["localhost".into()], HOUR).unwrap();
        let config = tls::server_config(
            serving.certified_key().unwrap(),
            ClientAuth::Optional(ca.root_store().unwrap()),
            mfa::ALPN,
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Bearer tokens the service accepts: each belongs to a user in GROUP.
        let tokens = FakeTokens::default();
        tokens.add(TOKEN, "alice", &[GROUP]);
        tokens.add(BOB_TOKEN, "bob", &[GROUP]);
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(mfa::serve(
            Bound::new(listener, config, shutdown),
            Endpoint {
                service,
                tokens: Some(tokens.checker()),
            },
        ));
        let (port, connections) = relay(addr).await;
        Server {
            url: format!("https://localhost:{port}"),
            ca,
            store,
            connections,
            _shutdown: trigger,
        }
    }

    fn ca_pem(&self) -> String {
        self.ca.cert_pem().to_string()
    }

    fn service(&self, caller: Caller) -> MfaService {
        MfaService {
            url: self.url.clone(),
            ca_pem: self.ca_pem(),
            caller,
        }
    }

    async fn connect(&self, token: &str) -> MfaClient {
        MfaClient::connect(&self.service(Caller::Token(token.into())))
            .await
            .unwrap()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn lock(&self, name: &str, target: LockTargetSpec, message: &str) {
        self.store.upsert(
            lock_entry(name, target)
                .message(message)
                .created(jiff::Timestamp::now())
                .object(),
        );
    }

    fn unlock(&self, name: &str) {
        self.store.delete(&ObjectKey::Lock(name.into()));
    }
}

/// Relays TCP to `target`, counting connections; returns its port and the count.
async fn relay(target: SocketAddr) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, connections)
}

/// A server with a certificate from `ca` that answers every request with a
/// 200 whose body is not JSON; returns its URL.
async fn garbage_server(ca: &TestCa) -> String {
    let acceptor = TlsAcceptor::from(ca.localhost_config(mfa::ALPN));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let garbage = service_fn(|_| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    b"<html>not json</html>",
                ))))
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), garbage),
            );
        }
    });
    format!("https://localhost:{port}")
}

fn soft_token(dir: &Path) -> Authenticator {
    Authenticator::soft_token(&dir.join("alice.token")).unwrap()
}

/// The identity in the first certificate of `pem`.
fn identity(pem: &str) -> CertIdentity {
    let chain = tls::parse_certificates(pem.as_bytes()).unwrap();
    deadbolt_runtime::certificate::identity(&chain[0]).unwrap()
}

#[tokio::test]
async fn register_then_login_over_one_connection_with_a_soft_token() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut key = soft_token(dir.path());
    let client = server.connect(TOKEN).await;
    let device = register(&client, &mut key, "laptop").await.unwrap();
    assert_eq!(
        (device.name.as_str(), device.user.as_str()),
        ("laptop", "alice")
    );
    let issued = login(&client, &mut key, Some("db-prod".into()))
        .await
        .unwrap();
    assert_eq!(issued.mfa_device, device.uuid);
    assert_eq!(issued.ca_pem, server.ca_pem());
    check_issued(&issued).unwrap();
    assert!(issued.key_pem.contains("PRIVATE KEY"));
    // The certificate carries who, which device, when, and the one proxy.
    let certified = identity(&issued.cert_pem);
    assert_eq!(certified.user, "alice");
    assert_eq!(certified.groups, [GROUP]);
    assert_eq!(certified.roles, [ROLE]);
    assert_eq!(certified.mfa_device.as_deref(), Some(device.uuid.as_str()));
    assert_eq!(certified.target.as_deref(), Some("db-prod"));
    assert!(certified.mfa_verified_at.is_some());
    let devices = client.devices().await.unwrap().devices;
    assert_eq!(devices.len(), 1);
    assert!(devices[0].last_used.is_some());
    assert_eq!(server.connections(), 1, "every request on one connection");
    drop(client);

    // The soft token's counter was saved: reopened from its file, the key
    // passes again (the service refuses a counter that does not go up).
    for _ in 0..2 {
        let mut reopened = soft_token(dir.path());
        let client = server.connect(TOKEN).await;
        login(&client, &mut reopened, None).await.unwrap();
    }
}

#[tokio::test]
async fn a_ceremony_is_its_callers_and_finishes_once() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut key = soft_token(dir.path());
    let first = server.connect(TOKEN).await;
    register(&first, &mut key, "laptop").await.unwrap();

    let challenge = first.begin_authentication().await.unwrap();
    let assertion = key.authenticate(&challenge.challenge).await.unwrap();
    let finish = AuthenticateFinish {
        ceremony: challenge.ceremony.clone(),
        assertion,
        public_key_pem: KeyPair::generate().unwrap().public_key_pem(),
        target: None,
    };
    // Another caller presenting the ceremony id gets nothing...
    let bob = server.connect(BOB_TOKEN).await;
    let error = bob.finish_authentication(&finish).await.unwrap_err();
    assert_eq!(error.refusal_code(), Some(403));
    assert!(error.to_string().contains("no such ceremony"), "{error}");
    // ...and leaves it to its owner, on any connection: the state is the
    // replica's, not the connection's.
    let second = server.connect(TOKEN).await;
    let credential = second.finish_authentication(&finish).await.unwrap();
    assert_eq!(identity(&credential.certificate_pem).user, "alice");
    // Replayed: the ceremony was consumed.
    let error = first.finish_authentication(&finish).await.unwrap_err();
    assert_eq!(error.refusal_code(), Some(403));
    assert!(error.to_string().contains("no such ceremony"), "{error}");
}

#[tokio::test]
async fn status_refusals_reach_the_error_text() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = server.connect(TOKEN).await;
    let error = login(&client, &mut soft_token(dir.path()), None)
        .await
        .unwrap_err();
    assert_eq!(error.refusal_code(), Some(400));
    assert!(
        error.to_string().contains("you have no MFA device"),
        "{error}"
    );
    let error = client
        .remove_device("d6c06a18-e147-4232-9dfe-6f83a28d5850")
        .await
        .unwrap_err();
    assert_eq!(error.refusal_code(), Some(404));
    assert!(
        error
            .to_string()
            .contains("you have no MFA device \"d6c06a18-e147-4232-9dfe-6f83a28d5850\""),
        "{error}"
    );

    server.lock(
        "alice-lock",
        target(TargetKind::User, "alice"),
        "Suspicious activity.",
    );
    let error = client.begin_authentication().await.unwrap_err();
    assert_eq!(error.refusal_code(), Some(403));
    assert_eq!(
        error.to_string(),
        format!("the MFA service refused the request: {LOCK_MESSAGE}")
    );

    let stranger = server.connect("nobody's-token").await;
    let error = stranger.whoami().await.unwrap_err();
    assert_eq!(error.refusal_code(), Some(401));
    assert!(
        error
            .to_string()
            .contains("the bearer token was rejected: token not found"),
        "{error}"
    );
}

#[tokio::test]
async fn a_client_certificate_identifies_the_caller_without_a_token() {
    let server = Server::start().await;
    // carol has no token: only her certificate can say who she is.
    let carol = server
        .ca
        .issue_user_cert(
            &CertIdentity {
                user: "carol".into(),
                groups: vec!["auditors".into()],
                ..Default::default()
            },
            HOUR,
        )
        .unwrap();
    let client = MfaClient::connect(&server.service(Caller::Certificate {
        cert_pem: carol.cert_pem,
        key_pem: carol.key_pem,
    }))
    .await
    .unwrap();
    let whoami = client.whoami().await.unwrap();
    assert_eq!(whoami.user, "carol");
    assert_eq!(whoami.groups, ["auditors"]);

    // A proxy's certificate is no caller.
    let proxy = server.ca.issue_proxy_cert("db-prod", HOUR).unwrap();
    let client = MfaClient::connect(&server.service(Caller::Certificate {
        cert_pem: proxy.cert_pem,
        key_pem: proxy.key_pem,
    }))
    .await
    .unwrap();
    let error = client.whoami().await.unwrap_err();
    assert_eq!(error.refusal_code(), Some(403));
    assert!(
        error
            .to_string()
            .contains("a proxy certificate cannot call the MFA service"),
        "{error}"
    );
}

#[tokio::test]
async fn malformed_answers_and_untrusted_servers_are_errors() {
    let server = Server::start().await;
    let garbage_ca = TestCa::new();
    let mut service = server.service(Caller::Token(TOKEN.into()));
    service.url = garbage_server(&garbage_ca).await;
    service.ca_pem = garbage_ca.cert_pem().to_string();
    let client = MfaClient::connect(&service).await.unwrap();
    let error = client.devices().await.unwrap_err();
    assert!(matches!(error, MfaError::Malformed { .. }), "{error}");

    // A server whose certificate does not chain to the given CA.
    let mut service = server.service(Caller::Token(TOKEN.into()));
    service.ca_pem = DeadboltCa::generate().unwrap().cert_pem().to_string();
    let error = MfaClient::connect(&service).await.unwrap_err();
    assert!(matches!(error, MfaError::Connect { .. }), "{error}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    // Nobody listening.
    let mut service = server.service(Caller::Token(TOKEN.into()));
    service.url = "https://localhost:1".into();
    assert!(matches!(
        MfaClient::connect(&service).await.unwrap_err(),
        MfaError::Connect { .. }
    ));
}

/// Files the commands read, in a temporary directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(server: &Server) -> Files {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), server.ca_pem()).unwrap();
        std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn env(&self) -> Environment {
        Environment {
            home: Some(self.path("home")),
            kubeconfig: Some(self.path("no-kubeconfig").into_os_string()),
            deadbolt_cache_dir: Some(self.path("cache")),
            ..Environment::default()
        }
    }
}

struct Outcome {
    code: u8,
    out: String,
    err: String,
}

async fn plugin(server: &Server, files: &Files, env: &Environment, args: &[&str]) -> Outcome {
    let service_flags = [
        "--mfa-url".to_string(),
        server.url.clone(),
        "--mfa-ca".to_string(),
        files.arg("ca.crt"),
    ];
    let argv: Vec<String> = std::iter::once("kubectl-deadbolt".to_string())
        .chain(args.iter().map(|arg| arg.to_string()))
        .chain(service_flags)
        .collect();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run(argv, env, &mut out, &mut err).await;
    Outcome {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

/// The value of `label:` in `status` output.
fn field<'a>(status: &'a str, label: &str) -> &'a str {
    status
        .lines()
        .find_map(|line| line.strip_prefix(label)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {label} in {status}"))
        .trim()
}

#[tokio::test]
async fn the_commands_end_to_end() {
    let server = Server::start().await;
    let files = Files::new(&server);
    let env = files.env();
    let token = files.arg("token");
    let soft = files.arg("alice.token");

    let none = plugin(
        &server,
        &files,
        &env,
        &["mfa", "ls", "--token-file", &token],
    )
    .await;
    assert_eq!((none.code, none.out.as_str()), (0, ""), "{}", none.err);
    assert!(
        none.err.contains("No MFA devices registered"),
        "{}",
        none.err
    );

    let before = server.connections();
    let added = plugin(
        &server,
        &files,
        &env,
        &[
            "mfa",
            "add",
            "--name",
            "laptop",
            "--soft-token",
            &soft,
            "--origin",
            "https://localhost",
            "--token-file",
            &token,
        ],
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.err);
    assert_eq!(server.connections(), before + 1, "one connection a command");
    let uuid = added
        .out
        .strip_prefix("MFA device laptop registered: ")
        .expect(&added.out)
        .trim()
        .to_string();
    uuid::Uuid::parse_str(&uuid).unwrap();

    let listed = plugin(
        &server,
        &files,
        &env,
        &["mfa", "ls", "--token-file", &token],
    )
    .await;
    assert_eq!(listed.code, 0, "{}", listed.err);
    let lines: Vec<&str> = listed.out.lines().collect();
    assert_eq!(
        lines[0],
        "UUID                                   NAME     LAST USED"
    );
    assert_eq!(lines[1], format!("{uuid}   laptop   never"));

    // An ExecCredential, then the same one from the cache: no new connection.
    let before = server.connections();
    let exec = plugin(
        &server,
        &files,
        &env,
        &[
            "login",
            "--mfa",
            "--exec-credential",
            "--soft-token",
            &soft,
            "--token-file",
            &token,
        ],
    )
    .await;
    assert_eq!(exec.code, 0, "{}", exec.err);
    assert_eq!(server.connections(), before + 1, "one connection a command");
    let credential: Value = serde_json::from_str(&exec.out).unwrap();
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(credential["kind"], "ExecCredential");
    let status = &credential["status"];
    let certified = identity(status["clientCertificateData"].as_str().unwrap());
    assert_eq!(certified.user, "alice");
    assert_eq!(certified.mfa_device.as_deref(), Some(uuid.as_str()));
    assert_eq!(certified.target, None);
    assert!(
        status["clientKeyData"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    status["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    let connections = server.connections();
    // kubectl marks a credential plugin run with KUBERNETES_EXEC_INFO.
    let exec_env = Environment {
        exec_info: Some(
            r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#
                .into(),
        ),
        ..env.clone()
    };
    let cached = plugin(
        &server,
        &files,
        &exec_env,
        &[
            "login",
            "--mfa",
            "--soft-token",
            &soft,
            "--token-file",
            &token,
        ],
    )
    .await;
    assert_eq!(cached.code, 0, "{}", cached.err);
    assert_eq!(cached.out, exec.out);
    assert_eq!(server.connections(), connections, "served from the cache");
    let cache_files: Vec<_> = std::fs::read_dir(files.path("cache")).unwrap().collect();
    assert_eq!(cache_files.len(), 1);
    for entry in cache_files {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(TOKEN));
    }
    // Another target is another credential, narrowed to that proxy.
    let narrowed = plugin(
        &server,
        &files,
        &exec_env,
        &[
            "login",
            "--mfa",
            "--target",
            "db-prod",
            "--soft-token",
            &soft,
            "--token-file",
            &token,
        ],
    )
    .await;
    assert_eq!(narrowed.code, 0, "{}", narrowed.err);
    assert_ne!(narrowed.out, exec.out);
    let narrowed: Value = serde_json::from_str(&narrowed.out).unwrap();
    let certified = identity(
        narrowed["status"]["clientCertificateData"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(certified.target.as_deref(), Some("db-prod"));

    // Files for psql and mysql.
    let prefix = files.arg("db");
    let out = plugin(
        &server,
        &files,
        &env,
        &[
            "login",
            "--mfa",
            "--out",
            &prefix,
            "--soft-token",
            &soft,
            "--token-file",
            &token,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.err);
    assert!(
        out.out.contains(&format!("sslcert={prefix}.crt")),
        "{}",
        out.out
    );
    let cert = std::fs::read_to_string(files.path("db.crt")).unwrap();
    let key = std::fs::read_to_string(files.path("db.key")).unwrap();
    let ca = std::fs::read_to_string(files.path("db-ca.crt")).unwrap();
    assert_eq!(ca, server.ca_pem());
    check_issued(&kubectl_deadbolt::mfa::IssuedLogin {
        cert_pem: cert,
        key_pem: key,
        ca_pem: ca,
        expires_at: jiff::Timestamp::now(),
        mfa_device: uuid.clone(),
    })
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(files.path("db.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (cert, key) = (files.arg("db.crt"), files.arg("db.key"));

    // A second device needs a fresh MFA credential: the token alone is refused.
    let backup = files.arg("backup.token");
    let add = ["mfa", "add", "--name", "backup", "--soft-token", &backup];
    let refused = plugin(
        &server,
        &files,
        &env,
        &[&add[..], &["--token-file", &token]].concat(),
    )
    .await;
    assert_eq!(refused.code, 1);
    assert!(
        refused.err.contains("to add another MFA device") && refused.err.contains(NEEDS_FRESH_MFA),
        "{}",
        refused.err
    );
    let added = plugin(
        &server,
        &files,
        &env,
        &[&add[..], &["--cert", &cert, "--key", &key]].concat(),
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.err);
    assert!(added.out.starts_with("MFA device backup registered: "));

    // A lock on one of alice's roles shows in her status.
    server.lock("role-lock", target(TargetKind::Role, ROLE), "Maintenance.");
    let status = plugin(&server, &files, &env, &["status", "--token-file", &token]).await;
    assert_eq!(status.code, 0, "{}", status.err);
    assert_eq!(field(&status.out, "User"), "alice", "{}", status.out);
    assert_eq!(field(&status.out, "Groups"), GROUP, "{}", status.out);
    assert_eq!(field(&status.out, "Roles"), ROLE, "{}", status.out);
    assert!(
        field(&status.out, "Locked").starts_with("yes"),
        "{}",
        status.out
    );
    assert!(status.out.contains("role-lock"), "{}", status.out);
    assert!(status.out.contains("Maintenance."), "{}", status.out);
    assert_eq!(field(&status.out, "MFA devices"), "2", "{}", status.out);
    server.unlock("role-lock");

    // Removing a device needs a fresh MFA credential too.
    let refused = plugin(
        &server,
        &files,
        &env,
        &["mfa", "rm", &uuid, "--token-file", &token],
    )
    .await;
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .err
            .starts_with("error: the MFA service refused the request: to remove an MFA device, ")
            && refused.err.contains(NEEDS_FRESH_MFA),
        "{}",
        refused.err
    );
    let removed = plugin(
        &server,
        &files,
        &env,
        &["mfa", "rm", &uuid, "--cert", &cert, "--key", &key],
    )
    .await;
    assert_eq!(removed.code, 0, "{}", removed.err);
    assert_eq!(
        removed.out,
        format!("MFA device \"{uuid}\" has been removed\n")
    );
    let listed = plugin(
        &server,
        &files,
        &env,
        &["mfa", "ls", "--token-file", &token],
    )
    .await;
    assert_eq!(listed.out.lines().count(), 2, "{}", listed.out);
    assert!(!listed.out.contains(&uuid), "{}", listed.out);

    // Refusals print the service's message, kubectl-style, and exit 1.
    server.lock(
        "alice-lock",
        target(TargetKind::User, "alice"),
        "Suspicious activity.",
    );
    let locked = plugin(
        &server,
        &files,
        &env,
        &[
            "login",
            "--mfa",
            "--out",
            &files.arg("locked"),
            "--soft-token",
            &backup,
            "--token-file",
            &token,
        ],
    )
    .await;
    assert_eq!(locked.code, 1);
    assert_eq!(
        locked.err,
        format!("error: the MFA service refused the request: {LOCK_MESSAGE}\n")
    );
}

#[tokio::test]
async fn the_kubeconfig_token_is_the_default_caller() {
    let server = Server::start().await;
    let files = Files::new(&server);
    let kubeconfig = |user: &str| {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:6443'}}}}]\n\
             contexts: [{{name: c, context: {{cluster: k, user: u}}}}]\n\
             users: [{{name: u, user: {user}}}]\n"
        )
    };
    std::fs::write(
        files.path("with-token"),
        kubeconfig(&format!("{{token: {BOB_TOKEN}}}")),
    )
    .unwrap();
    std::fs::write(
        files.path("with-exec"),
        kubeconfig("{exec: {apiVersion: client.authentication.k8s.io/v1, command: kubectl, args: [deadbolt, login, --mfa]}}"),
    )
    .unwrap();
    let env = files.env();
    let ok = plugin(
        &server,
        &files,
        &env,
        &["status", "--kubeconfig", &files.arg("with-token")],
    )
    .await;
    assert_eq!(ok.code, 0, "{}", ok.err);
    assert_eq!(field(&ok.out, "User"), "bob", "{}", ok.out);

    let none = plugin(
        &server,
        &files,
        &env,
        &["mfa", "ls", "--kubeconfig", &files.arg("with-exec")],
    )
    .await;
    assert_eq!(none.code, 1);
    for option in ["--token-file", "--cert", "--key", "kubeconfig"] {
        assert!(none.err.contains(option), "{option}: {}", none.err);
    }
    let missing = plugin(&server, &files, &env, &["mfa", "ls"]).await;
    assert_eq!(missing.code, 1);
    assert!(missing.err.contains("--token-file"), "{}", missing.err);
}
