//! Test harness: a real MariaDB (Debian's binaries, in a temporary
//! directory, on a free loopback port; the real PostgreSQL is the test kit's),
//! an in-process operator serving the lock view over TLS, and in-process
//! Deadbolt proxies subscribed to it.

#![allow(dead_code)]

pub mod kube_proxy;
pub mod kube_spdy;
pub mod kube_upstream;
pub mod mariadb;
pub mod mfa;
pub mod mysql_proxy;
pub mod operator;
pub mod parts;
pub mod proxy;
pub mod proxy_process;

/// Waiting and free ports, re-exported from the workspace's test kit so the
/// modules here and the benches that include this harness find them. The
/// kit's other pieces (a real PostgreSQL, the raw clients, the benches'
/// statistics) are used from `deadbolt_testkit` directly.
pub use deadbolt_testkit::{PATIENCE, eventually, free_port};
