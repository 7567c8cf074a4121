//! The proxy side of the lock-view stream: the shared state every protocol
//! adapter consults, and the client that keeps it current.

mod client;
mod enforcer;

pub use client::{ClientError, ViewClient, ViewClientConfig, ViewCredentials, staleness_watchdog};
pub use enforcer::{Admission, Enforcer, Reach};
