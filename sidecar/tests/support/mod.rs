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

use std::time::Duration;

/// The generous bound on anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `check` until it holds or [`PATIENCE`] runs out.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port (bound and released; the caller binds it right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
