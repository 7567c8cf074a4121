//! The MFA service: WebAuthn security-key registration and per-session MFA
//! checks that end in short-lived session credentials (client certificates
//! from the Deadbolt CA carrying the user, roles, the MFA device and when it
//! was verified), which the proxies require where per-session MFA applies
//! (`deadbolt_api::mfa`). Served on its own HTTPS port (`--mfa-listen`).

mod ceremony;
mod devices;
mod http;
mod lockout;
mod service;
mod store;

pub use devices::{DeviceStore, DeviceUse, KubeDevices, MemoryDevices, StoredDevice};
pub use http::{ALPN, Endpoint, serve};
pub use lockout::{LeaseLockout, LockoutRule, LockoutStore, MemoryLockout, Standing};
pub use service::{Caller, MfaService};
pub use store::{StoreError, StoreFuture};
