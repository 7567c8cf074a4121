//! Per-session MFA from the command line: registering security keys with
//! Deadbolt's MFA service, and trading a WebAuthn check for a short-lived
//! client certificate that kubectl, psql and mysql present to the proxies.
//!
//! - [`client`]: one HTTP/2 connection to the service, one method per endpoint;
//! - [`authenticator`]: the security key (a soft token file, or USB);
//! - [`register`] and [`login`]: the two ceremonies end to end;
//! - [`exec`] and [`cache`]: kubectl's exec credential plugin output and the
//!   cache that spares a touch per kubectl process;
//! - [`command`] and [`render`]: the `mfa`, `login` and `status` commands.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kubectl_deadbolt::mfa::MfaError> {
//! use kubectl_deadbolt::mfa::{Authenticator, Caller, MfaClient, MfaService, login, register};
//! let service = MfaService {
//!     url: "https://deadbolt-mfa.deadbolt.svc:8443".into(),
//!     ca_pem: std::fs::read_to_string("ca.crt").unwrap(),
//!     caller: Caller::Token(std::fs::read_to_string("token").unwrap()),
//! };
//! let mut key = Authenticator::soft_token("alice.token".as_ref())?;
//! let client = MfaClient::connect(&service).await?;
//! let device = register(&client, &mut key, "laptop").await?;
//! let credential = login(&client, &mut key, None).await?;
//! assert_eq!(credential.mfa_device, device.uuid);
//! # Ok(())
//! # }
//! ```

pub mod authenticator;
pub mod cache;
pub mod ceremony;
pub mod client;
pub mod command;
pub mod error;
pub mod exec;
pub mod files;
pub mod render;

pub use authenticator::Authenticator;
pub use cache::{CacheKey, CredentialCache};
pub use ceremony::{IssuedLogin, check_device_name, check_issued, login, register};
pub use client::{Caller, MfaClient, MfaService};
pub use error::MfaError;
pub use exec::{exec_credential, render_exec_credential};
