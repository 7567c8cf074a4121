//! Operations endpoints on a separate plain-HTTP listener: `/metrics`,
//! `/healthz` and `/readyz`.

mod metrics;
mod readiness;
mod server;

pub use deadbolt_runtime::admin::serve;
pub use metrics::Metrics;
pub use readiness::Readiness;
pub use server::AdminState;
