//! The proxy side of the lock-view stream: the shared state every protocol
//! adapter consults, and the client that keeps it current.

mod client;
mod state;

pub use client::{ClientError, ViewClient, ViewClientConfig, ViewCredentials, staleness_watchdog};
pub use state::{Admission, Reach, ViewState};
