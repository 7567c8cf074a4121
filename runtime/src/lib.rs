//! The plumbing every Deadbolt process shares, so the operator and each proxy
//! set up TLS, check bearer tokens, serve their operations endpoints, log and
//! shut down the same way.

pub mod admin;
pub mod audit;
pub mod body;
pub mod certificate;
pub mod clock;
pub mod connection;
pub mod files;
pub mod listener;
pub mod logging;
pub mod output;
pub mod shutdown;
pub mod status;
pub mod tls;
pub mod token;
