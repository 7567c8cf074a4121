//! `deadbolt-sidecar`: the proxies that stand in front of PostgreSQL, MySQL
//! and the Kubernetes API, refuse locked identities and cut their live
//! sessions. The protocol adapters are thin; what they share lives in
//! [`view`] (the lock view and its client), [`session`] (the registry a new
//! lock consults), [`gate`] (admission, audit, metrics), [`database`] (the
//! one session driver of the database proxies), [`identity`] and
//! [`workers`] (the threads a proxy serves on).

//!
//! Each proxy is a cargo feature (`postgres`, `mysql`, `kube`; all on by
//! default), so a build of one leaves the others' codecs out.

pub mod args;
pub mod audit;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub mod database;
pub mod framing;
pub mod gate;
pub mod identity;
pub mod io;
#[cfg(feature = "kube")]
pub mod kube;
pub mod metrics;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod run;
pub mod session;
pub mod view;
pub mod workers;

pub use args::Cli;
