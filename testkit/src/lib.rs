//! What Deadbolt's test suites share, so that each is written once: one
//! patience and one way to wait for something ([`wait`]), builders for the
//! objects tests feed the engine and the view ([`lock`], [`role`]), a fake
//! TokenReview ([`tokens`]), timestamps from
//! seconds or RFC 3339 text ([`time`]), a free loopback port ([`net`]), a CA
//! and serving configs for loopback TLS servers ([`tls`]), the in-memory
//! audit sink ([`audit`]), a mocked API server for exact request checks
//! ([`api_server`]), deterministic garbage for parser tests ([`garbage`]), a
//! real PostgreSQL from Debian's packages ([`postgres`]), raw PostgreSQL and
//! HTTP clients for what real clients would never send ([`pg_session`],
//! [`kube_client`]), the output of a real client that must succeed
//! ([`command`]), and the benches' percentiles ([`stats`]).
//!
//! A dev-dependency only: no production code depends on it.

pub mod api_server;
pub mod audit;
pub mod command;
pub mod garbage;
pub mod kube_client;
pub mod lock;
pub mod net;
pub mod pg_session;
pub mod postgres;
pub mod role;
pub mod stats;
pub mod time;
pub mod tls;
pub mod tokens;
pub mod wait;

pub use api_server::ApiServer;
pub use garbage::Garbage;
pub use lock::{LockBuilder, lock_entry, target, targets};
pub use net::free_port;
pub use time::{at, ts};
pub use tokens::FakeTokens;
pub use wait::{PATIENCE, POLL, eventually, eventually_some, poll};
