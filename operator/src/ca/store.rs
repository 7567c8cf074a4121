//! Where the CA's certificate and key are kept, and the load-or-create dance
//! that lets several replicas start at once and agree on one CA.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::{CaError, DeadboltCa};

/// The Secret the CA lives in, in the operator's namespace.
pub const SECRET_NAME: &str = "deadbolt-ca";

/// The CA's certificate and key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CaPem {
    /// The certificate.
    pub cert: String,
    /// The private key.
    pub key: String,
}

impl std::fmt::Debug for CaPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPem")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// Whether [`CaStore::create`] stored the CA or found one already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// Stored.
    Yes,
    /// Someone else (another replica) stored one first; load that one.
    AlreadyExists,
}

/// Storage for the CA, behind a trait so tests and standalone mode need no cluster.
pub trait CaStore: Send + Sync {
    /// Where the CA lives, for messages.
    fn describe(&self) -> String;
    /// The stored CA, or `None` when there is none yet.
    fn load(&self) -> BoxFuture<'_, Result<Option<CaPem>, CaError>>;
    /// Stores a new CA unless one exists; never overwrites.
    fn create<'a>(&'a self, pem: &'a CaPem) -> BoxFuture<'a, Result<Created, CaError>>;
}

/// Loads the CA, generating and storing one when the store is empty. When
/// another replica wins the race to create it, that replica's CA is used.
pub async fn load_or_create(store: &dyn CaStore) -> Result<(DeadboltCa, Created), CaError> {
    if let Some(pem) = store.load().await? {
        return Ok((
            DeadboltCa::from_pem(&pem.cert, &pem.key)?,
            Created::AlreadyExists,
        ));
    }
    let ca = DeadboltCa::generate()?;
    let pem = CaPem {
        cert: ca.cert_pem().to_string(),
        key: ca.key_pem().to_string(),
    };
    match store.create(&pem).await? {
        Created::Yes => Ok((ca, Created::Yes)),
        Created::AlreadyExists => {
            let pem = store.load().await?.ok_or_else(|| CaError::Store {
                store: store.describe(),
                message: "it was created concurrently but cannot be read back".into(),
            })?;
            Ok((
                DeadboltCa::from_pem(&pem.cert, &pem.key)?,
                Created::AlreadyExists,
            ))
        }
    }
}

/// Loads the CA a store already holds. For a directory this is the only way
/// in: a mistyped `--ca-dir` must fail, not mint a new CA that nothing trusts.
pub async fn load_existing(store: &dyn CaStore) -> Result<DeadboltCa, CaError> {
    match store.load().await? {
        Some(pem) => DeadboltCa::from_pem(&pem.cert, &pem.key),
        None => Err(CaError::Store {
            store: store.describe(),
            message: "it holds no Deadbolt CA (ca.crt, ca.key); create one once with \
                      `deadbolt-ca --ca-dir DIR init`"
                .into(),
        }),
    }
}

/// Creates a CA in an empty store; refuses when one exists.
pub async fn init(store: &dyn CaStore) -> Result<DeadboltCa, CaError> {
    let exists = || CaError::Store {
        store: store.describe(),
        message: "it already holds a Deadbolt CA; keep it, or remove ca.crt and ca.key first"
            .into(),
    };
    if store.load().await?.is_some() {
        return Err(exists());
    }
    let ca = DeadboltCa::generate()?;
    let pem = CaPem {
        cert: ca.cert_pem().to_string(),
        key: ca.key_pem().to_string(),
    };
    match store.create(&pem).await? {
        Created::Yes => Ok(ca),
        Created::AlreadyExists => Err(exists()),
    }
}

/// The CA as `ca.crt` and `ca.key` in a directory (standalone mode).
#[derive(Debug, Clone)]
pub struct DirCaStore {
    dir: PathBuf,
}

impl DirCaStore {
    /// A store in `dir`; the directory is created when the CA is.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn error(&self, message: impl Into<String>) -> CaError {
        CaError::Store {
            store: self.describe(),
            message: message.into(),
        }
    }

    fn load_sync(&self) -> Result<Option<CaPem>, CaError> {
        let read = |name: &str| match std::fs::read_to_string(self.dir.join(name)) {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(self.error(format!("cannot read {name}: {error}"))),
        };
        match (read("ca.crt")?, read("ca.key")?) {
            (Some(cert), Some(key)) => Ok(Some(CaPem { cert, key })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(self.error(
                "ca.crt exists but ca.key is missing; restore ca.key or remove ca.crt to generate a new CA",
            )),
            (None, Some(_)) => Err(self.error(
                "ca.key exists but ca.crt is missing; restore ca.crt or remove ca.key to generate a new CA",
            )),
        }
    }

    fn create_sync(&self, pem: &CaPem) -> Result<Created, CaError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|error| self.error(format!("cannot create the directory: {error}")))?;
        // The key first: a key without a certificate is an error on the next
        // start, never a silently different CA.
        for (name, contents, private) in [("ca.key", &pem.key, true), ("ca.crt", &pem.cert, false)]
        {
            match write_new(&self.dir.join(name), contents, private) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    return Ok(Created::AlreadyExists);
                }
                Err(error) => return Err(self.error(format!("cannot write {name}: {error}"))),
            }
        }
        Ok(Created::Yes)
    }
}

fn write_new(path: &std::path::Path, contents: &str, private: bool) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

impl CaStore for DirCaStore {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<CaPem>, CaError>> {
        Box::pin(async move { self.load_sync() })
    }

    fn create<'a>(&'a self, pem: &'a CaPem) -> BoxFuture<'a, Result<Created, CaError>> {
        Box::pin(async move { self.create_sync(pem) })
    }
}

/// The CA in the `deadbolt-ca` Secret (type `kubernetes.io/tls`, keys
/// `tls.crt`, `tls.key` and `ca.crt`), shared by every replica.
#[derive(Clone)]
pub struct SecretCaStore {
    api: Api<Secret>,
    namespace: String,
    owner: Option<OwnerReference>,
}

impl SecretCaStore {
    /// The store in `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            owner: None,
        }
    }

    /// Creates the Secret with `owner` as its owner (see [`crate::ownership`]).
    pub fn with_owner(mut self, owner: Option<OwnerReference>) -> Self {
        self.owner = owner;
        self
    }

    fn error(&self, message: impl Into<String>) -> CaError {
        CaError::Store {
            store: self.describe(),
            message: message.into(),
        }
    }

    fn field(&self, secret: &Secret, key: &str) -> Result<String, CaError> {
        let bytes = secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .ok_or_else(|| self.error(format!("it has no {key}")))?;
        String::from_utf8(bytes.0.clone()).map_err(|_| self.error(format!("{key} is not PEM text")))
    }
}

impl CaStore for SecretCaStore {
    fn describe(&self) -> String {
        format!("Secret {}/{SECRET_NAME}", self.namespace)
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<CaPem>, CaError>> {
        Box::pin(async move {
            let secret = self
                .api
                .get_opt(SECRET_NAME)
                .await
                .map_err(|error| self.error(format!("cannot read it: {error}")))?;
            let Some(secret) = secret else {
                return Ok(None);
            };
            Ok(Some(CaPem {
                cert: self.field(&secret, "tls.crt")?,
                key: self.field(&secret, "tls.key")?,
            }))
        })
    }

    fn create<'a>(&'a self, pem: &'a CaPem) -> BoxFuture<'a, Result<Created, CaError>> {
        Box::pin(async move {
            let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(SECRET_NAME.to_string()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        "deadbolt-operator".to_string(),
                    )])),
                    owner_references: self.owner.clone().map(|owner| vec![owner]),
                    ..Default::default()
                },
                type_: Some("kubernetes.io/tls".to_string()),
                data: Some(BTreeMap::from([
                    ("tls.crt".to_string(), bytes(&pem.cert)),
                    ("tls.key".to_string(), bytes(&pem.key)),
                    ("ca.crt".to_string(), bytes(&pem.cert)),
                ])),
                ..Default::default()
            };
            match self.api.create(&PostParams::default(), &secret).await {
                Ok(_) => Ok(Created::Yes),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Created::AlreadyExists),
                Err(error) => Err(self.error(format!("cannot create it: {error}"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;

    #[tokio::test]
    async fn dir_store_creates_once_and_then_loads_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirCaStore::new(dir.path().join("ca"));
        let (first, created) = load_or_create(&store).await.unwrap();
        assert_eq!(created, Created::Yes);
        let (second, created) = load_or_create(&store).await.unwrap();
        assert_eq!(created, Created::AlreadyExists);
        assert_eq!(first.cert_der(), second.cert_der());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca/ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "the CA key must not be group/world readable"
            );
        }
    }

    #[tokio::test]
    async fn dir_store_refuses_a_lone_certificate() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "x").unwrap();
        let error = load_or_create(&DirCaStore::new(dir.path()))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("ca.key is missing"), "{error}");
    }

    fn json_response(code: u16, body: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    async fn request_json(request: Request<Body>) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn secret_store_creates_the_secret_when_missing() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "deadbolt-system");
        let apiserver = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::GET);
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/deadbolt-system/secrets/deadbolt-ca"
            );
            send.send_response(json_response(
                404,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "secrets \"deadbolt-ca\" not found"}),
            ));

            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::POST);
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/deadbolt-system/secrets"
            );
            let body = request_json(request).await;
            assert_eq!(body["metadata"]["name"], "deadbolt-ca");
            assert_eq!(body["type"], "kubernetes.io/tls");
            for key in ["tls.crt", "tls.key", "ca.crt"] {
                assert!(body["data"][key].is_string(), "missing {key}");
            }
            send.send_response(json_response(201, body));
        });
        let store = SecretCaStore::new(client, "deadbolt-system");
        let (_, created) = load_or_create(&store).await.unwrap();
        assert_eq!(created, Created::Yes);
        apiserver.await.unwrap();
    }

    #[tokio::test]
    async fn secret_store_loads_the_ca_another_replica_created_first() {
        let existing = DeadboltCa::generate().unwrap();
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "deadbolt-ca", "namespace": "deadbolt-system"},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64(existing.cert_pem()),
                "tls.key": base64(existing.key_pem()),
            }
        });
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "deadbolt-system");
        let apiserver = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(json_response(
                404,
                serde_json::json!({"kind": "Status",
                "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
            ));
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::POST);
            send.send_response(json_response(
                409,
                serde_json::json!({"kind": "Status",
                "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409,
                "message": "secrets \"deadbolt-ca\" already exists"}),
            ));
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::GET);
            send.send_response(json_response(200, secret));
        });
        let store = SecretCaStore::new(client, "deadbolt-system");
        let (ca, created) = load_or_create(&store).await.unwrap();
        assert_eq!(created, Created::AlreadyExists);
        assert_eq!(ca.cert_der(), existing.cert_der());
        apiserver.await.unwrap();
    }

    fn base64(text: &str) -> String {
        serde_json::to_value(ByteString(text.as_bytes().to_vec()))
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }
}
