//! Test harness: a real PostgreSQL and a real MariaDB (Debian's binaries, in
//! temporary directories, on free loopback ports), an in-process operator
//! serving the lock view over TLS, and in-process Deadbolt proxies subscribed
//! to it.

#![allow(dead_code)]

pub mod kube_client;
pub mod kube_proxy;
pub mod kube_spdy;
pub mod kube_upstream;
pub mod mariadb;
pub mod mfa;
pub mod mysql_proxy;
pub mod operator;
pub mod pg_session;
pub mod postgres;
pub mod proxy;
pub mod proxy_process;
pub mod stats;

/// Waiting and free ports come from the workspace's test kit; re-exported so
/// the modules here and the benches that include this harness find them.
pub use deadbolt_testkit::{PATIENCE, eventually, free_port};
