//! The plumbing every Deadbolt process shares, so the operator and each proxy
//! set up TLS (and, in time, their admin endpoints, logs and shutdown) the same way.

pub mod tls;
pub mod token;
