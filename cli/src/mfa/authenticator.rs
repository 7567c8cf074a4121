//! The security key that answers WebAuthn challenges.
//!
//! Two kinds: a soft token kept in a file (`--soft-token FILE`, for tests,
//! CI and demos: its secret is only as safe as the file), and a real key over
//! USB (CTAP2), available when the plugin is built with `--features usb`.
//! Both are driven through `webauthn-authenticator-rs`'s
//! [`WebauthnAuthenticator`], which performs the client-side checks a browser
//! does (the origin must match the relying party id).
//!
//! Challenges and answers cross this module as WebAuthn JSON
//! ([`serde_json::Value`]), exactly as the MFA service carries them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::error::WebauthnCError;
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_rs_proto::{CreationChallengeResponse, RequestChallengeResponse};

use super::MfaError;
use super::files::{PRIVATE, write_atomically};

/// A security key, and the origin it tells the key it is talking to.
pub struct Authenticator {
    backend: Backend,
    origin: Option<Url>,
}

enum Backend {
    Soft(Box<SoftTokenStore>),
    #[cfg(feature = "usb")]
    Usb,
}

/// A [`SoftToken`] persisted in a file. The file is rewritten, atomically,
/// after every ceremony, so the signature counter survives across runs (a
/// counter that goes backwards looks like a cloned key to the service).
struct SoftTokenStore {
    path: PathBuf,
    token: SoftToken,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.backend {
            Backend::Soft(store) => format!("soft token {}", store.path.display()),
            #[cfg(feature = "usb")]
            Backend::Usb => "USB security key".to_string(),
        };
        f.debug_struct("Authenticator")
            .field("kind", &kind)
            .field("origin", &self.origin.as_ref().map(Url::as_str))
            .finish()
    }
}

/// What is said when no key can be used.
pub const NO_AUTHENTICATOR: &str = "no security key available: this kubectl-deadbolt was built without USB support; \
     use --soft-token FILE, or rebuild with `cargo install --path cli --features usb`";

impl Authenticator {
    /// The soft token stored in `path`, created (mode 0600) when the file does not exist.
    pub fn soft_token(path: &Path) -> Result<Authenticator, MfaError> {
        let error = |reason: String| MfaError::SoftToken {
            path: path.to_path_buf(),
            reason,
        };
        let token = match std::fs::read(path) {
            Ok(bytes) => SoftToken::from_cbor(&bytes).map_err(|_| {
                error("the file is not a soft token (it was not written by --soft-token)".into())
            })?,
            Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => {
                // The soft token reports user verification: it has no PIN or
                // fingerprint, so holding the file is what verifies the user.
                let (token, _attestation_ca) = SoftToken::new(true)
                    .map_err(|failure| error(format!("creating it: {failure:?}")))?;
                let store = SoftTokenStore {
                    path: path.to_path_buf(),
                    token,
                };
                store.save()?;
                return Ok(Authenticator {
                    backend: Backend::Soft(Box::new(store)),
                    origin: None,
                });
            }
            Err(other) => return Err(error(other.to_string())),
        };
        Ok(Authenticator {
            backend: Backend::Soft(Box::new(SoftTokenStore {
                path: path.to_path_buf(),
                token,
            })),
            origin: None,
        })
    }

    /// A USB security key (CTAP2); an error naming the alternatives when the
    /// plugin was built without the `usb` feature.
    pub fn usb() -> Result<Authenticator, MfaError> {
        #[cfg(feature = "usb")]
        {
            Ok(Authenticator {
                backend: Backend::Usb,
                origin: None,
            })
        }
        #[cfg(not(feature = "usb"))]
        {
            Err(MfaError::Authenticator(NO_AUTHENTICATOR.to_string()))
        }
    }

    /// The soft token in `soft_token` when given, else a USB key: what `--soft-token` chooses.
    pub fn from_flags(soft_token: Option<&Path>) -> Result<Authenticator, MfaError> {
        match soft_token {
            Some(path) => Authenticator::soft_token(path),
            None => Authenticator::usb(),
        }
    }

    /// Uses `origin` instead of `https://<relying party id>`.
    pub fn with_origin(mut self, origin: Option<Url>) -> Authenticator {
        self.origin = origin;
        self
    }

    /// Answers a registration challenge (`CreationChallengeResponse` JSON) with
    /// a `RegisterPublicKeyCredential` (JSON).
    pub async fn register(
        &mut self,
        challenge: &serde_json::Value,
    ) -> Result<serde_json::Value, MfaError> {
        let options: CreationChallengeResponse = decode(challenge, "registration challenge")?;
        let origin = self.origin_for(&options.public_key.rp.id)?;
        let credential = match &mut self.backend {
            Backend::Soft(store) => {
                let result = store.token.do_registration(origin, options);
                store.save()?;
                result.map_err(ceremony_error)?
            }
            #[cfg(feature = "usb")]
            Backend::Usb => usb::ceremony(move |key| key.do_registration(origin, options)).await?,
        };
        encode(&credential)
    }

    /// Answers an authentication challenge (`RequestChallengeResponse` JSON)
    /// with a `PublicKeyCredential` assertion (JSON).
    pub async fn authenticate(
        &mut self,
        challenge: &serde_json::Value,
    ) -> Result<serde_json::Value, MfaError> {
        let options: RequestChallengeResponse = decode(challenge, "authentication challenge")?;
        let origin = self.origin_for(&options.public_key.rp_id)?;
        let assertion = match &mut self.backend {
            Backend::Soft(store) => {
                let result = store.token.do_authentication(origin, options);
                // Saved whatever the outcome: the counter may have moved.
                store.save()?;
                result.map_err(soft_authentication_error)?
            }
            #[cfg(feature = "usb")]
            Backend::Usb => {
                usb::ceremony(move |key| key.do_authentication(origin, options)).await?
            }
        };
        encode(&assertion)
    }

    /// `--origin`, else `https://<rp id>`.
    fn origin_for(&self, rp_id: &str) -> Result<Url, MfaError> {
        if let Some(origin) = &self.origin {
            return Ok(origin.clone());
        }
        Url::parse(&format!("https://{rp_id}")).map_err(|error| MfaError::Malformed {
            what: "challenge",
            reason: format!("relying party id {rp_id:?} is not a host name: {error}"),
        })
    }
}

impl SoftTokenStore {
    fn save(&self) -> Result<(), MfaError> {
        let bytes = self.token.to_cbor().map_err(|error| MfaError::SoftToken {
            path: self.path.clone(),
            reason: format!("encoding it: {error:?}"),
        })?;
        write_atomically(&self.path, &bytes, PRIVATE).map_err(|error| MfaError::SoftToken {
            path: self.path.clone(),
            reason: format!("saving it: {error}"),
        })
    }
}

fn decode<T: DeserializeOwned>(
    value: &serde_json::Value,
    what: &'static str,
) -> Result<T, MfaError> {
    serde_json::from_value(value.clone()).map_err(|error| MfaError::Malformed {
        what,
        reason: error.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Result<serde_json::Value, MfaError> {
    serde_json::to_value(value)
        .map_err(|error| MfaError::Authenticator(format!("encoding its answer: {error}")))
}

/// What is said when the key holds none of the credentials the service allows.
const UNKNOWN_KEY: &str = "this key holds none of the MFA devices registered for you \
     (register it with `kubectl deadbolt mfa add`)";

/// A failed ceremony in words a user can act on.
fn ceremony_error(error: WebauthnCError) -> MfaError {
    use webauthn_authenticator_rs::error::CtapError;
    let text = match error {
        WebauthnCError::Security => {
            "the origin does not match the relying party id of the challenge (see --origin)"
                .to_string()
        }
        WebauthnCError::Ctap(CtapError::Ctap2NoCredentials) => UNKNOWN_KEY.to_string(),
        other => format!("the ceremony failed: {other}"),
    };
    MfaError::Authenticator(text)
}

/// The soft token says `Internal` when none of its credentials is allowed.
fn soft_authentication_error(error: WebauthnCError) -> MfaError {
    match error {
        WebauthnCError::Internal => MfaError::Authenticator(UNKNOWN_KEY.to_string()),
        other => ceremony_error(other),
    }
}

/// USB keys: each ceremony runs on its own thread with its own runtime, since
/// the CTAP2 code blocks on futures that need a Tokio runtime being driven.
#[cfg(feature = "usb")]
mod usb {
    use std::fmt;

    use webauthn_authenticator_rs::AuthenticatorBackend;
    use webauthn_authenticator_rs::ctap2::select_one_device;
    use webauthn_authenticator_rs::error::WebauthnCError;
    use webauthn_authenticator_rs::transport::Transport;
    use webauthn_authenticator_rs::types::{CableRequestType, CableState, EnrollSampleStatus};
    use webauthn_authenticator_rs::ui::UiCallback;
    use webauthn_authenticator_rs::usb::USBTransport;

    use super::{MfaError, ceremony_error};

    /// Prompts on stderr; stdout may be an ExecCredential kubectl is reading.
    struct Prompt;

    impl fmt::Debug for Prompt {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Prompt")
        }
    }

    impl UiCallback for Prompt {
        fn request_pin(&self) -> Option<String> {
            eprintln!(
                "This security key asks for its PIN, which kubectl deadbolt cannot prompt for."
            );
            None
        }
        fn request_touch(&self) {
            eprintln!("Touch your security key.");
        }
        fn processing(&self) {}
        fn fingerprint_enrollment_feedback(
            &self,
            _remaining_samples: u32,
            _feedback: Option<EnrollSampleStatus>,
        ) {
        }
        fn cable_qr_code(&self, _request_type: CableRequestType, _url: String) {}
        fn dismiss_qr_code(&self) {}
        fn cable_status_update(&self, _state: CableState) {}
    }

    /// Finds a key (asking to touch it) and runs `ceremony` with it.
    pub(super) async fn ceremony<R, F>(ceremony: F) -> Result<R, MfaError>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn AuthenticatorBackend) -> Result<R, WebauthnCError> + Send + 'static,
    {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = sender.send(run(ceremony));
        });
        receiver.await.map_err(|_| {
            MfaError::Authenticator("the security key thread stopped unexpectedly".into())
        })?
    }

    fn run<R, F>(ceremony: F) -> Result<R, MfaError>
    where
        F: FnOnce(&mut dyn AuthenticatorBackend) -> Result<R, WebauthnCError>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|error| MfaError::Authenticator(format!("starting USB I/O: {error}")))?;
        let prompt = Prompt;
        let transport = runtime
            .block_on(USBTransport::new())
            .map_err(|error| MfaError::Authenticator(format!("opening USB: {error:?}")))?;
        eprintln!("Touch your security key.");
        let mut key = runtime
            .block_on(async {
                let stream = transport.watch().await?;
                Ok::<_, WebauthnCError>(select_one_device(stream, &prompt).await)
            })
            .map_err(|error| MfaError::Authenticator(format!("looking for USB keys: {error:?}")))?
            .ok_or_else(|| {
                MfaError::Authenticator("no USB security key found; plug one in".into())
            })?;
        // The CTAP2 calls block on their own futures; they need the runtime
        // entered (its worker drives the USB I/O), not blocked on.
        let _entered = runtime.enter();
        ceremony(&mut key).map_err(ceremony_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soft_token_is_created_private_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = Authenticator::soft_token(&path).unwrap();
        assert!(format!("{first:?}").contains("soft token"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let bytes = std::fs::read(&path).unwrap();
        drop(first);
        Authenticator::soft_token(&path).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "opening does not rewrite it"
        );
    }

    #[test]
    fn a_file_that_is_not_a_soft_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "not cbor").unwrap();
        let error = Authenticator::soft_token(&path).unwrap_err().to_string();
        assert!(error.contains("not a soft token"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not cbor");
    }

    #[cfg(not(feature = "usb"))]
    #[test]
    fn without_usb_support_the_error_names_the_ways_out() {
        let error = Authenticator::from_flags(None).unwrap_err().to_string();
        assert!(error.contains("--soft-token"), "{error}");
        assert!(error.contains("--features usb"), "{error}");
    }

    #[tokio::test]
    async fn malformed_challenges_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut key = Authenticator::soft_token(&dir.path().join("token")).unwrap();
        let error = key
            .register(&serde_json::json!({"publicKey": 1}))
            .await
            .unwrap_err();
        assert!(matches!(error, MfaError::Malformed { .. }), "{error}");
        let error = key
            .authenticate(&serde_json::json!("nope"))
            .await
            .unwrap_err();
        assert!(matches!(error, MfaError::Malformed { .. }), "{error}");
    }
}
