//! `deadbolt-sidecar`: the proxies that stand in front of PostgreSQL, MySQL
//! and the Kubernetes API, refuse locked identities and cut their live
//! sessions. The protocol adapters are thin; what they share lives in
//! [`view`] (the lock view and its client), [`session`] (the registry a new
//! lock consults), [`gate`] (admission, audit, metrics), [`database`] (the
//! one session driver of the database proxies) and [`identity`].

pub mod args;
pub mod audit;
pub mod credentials;
pub mod database;
pub mod framing;
pub mod gate;
pub mod identity;
pub mod io;
pub mod kube;
pub mod metrics;
pub mod mysql;
pub mod postgres;
pub mod run;
pub mod session;
pub mod view;

pub use args::Cli;
