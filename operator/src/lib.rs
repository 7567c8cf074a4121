//! `deadbolt-operator`: serves the lock view to Deadbolt's proxies.
//!
//! The pieces, each in its own module:
//!
//! - [`source`] reads Locks, AccessRoles, Users and the ClusterAuthPreference
//!   from Kubernetes or a directory into the [`view`] store, which numbers
//!   every change with a revision and broadcasts it.
//! - [`stream`] serves `POST /v1/lockview` over HTTP/2 and TLS:
//!   a snapshot, then deltas and heartbeats, while reading the proxies' acks
//!   into the [`subscribers`] registry (which feeds `Lock.status.enforcedBy`).
//! - [`auth`] admits proxies by client certificate from the Deadbolt [`ca`]
//!   or by TokenReview'd bearer token.
//! - [`admin`] serves `/metrics`, `/healthz` and `/readyz`.
//! - [`controller`] writes status (expiry, `enforcedBy`, user locks, role
//!   checks), audits lock events and handles temporary and suspended users,
//!   in the replica that [`leader`] election picked. Kubernetes source only.
//! - [`ownership`] makes what the operator creates (CA Secret, Leases) owned
//!   by its ServiceAccount, so uninstalling removes it.
//! - [`admission`] validates Locks and Users, enforces locks on direct API
//!   writes and injects the database sidecar.
//! - [`mfa`] registers security keys and turns a WebAuthn check into a
//!   short-lived session credential (per-session MFA).
//! - [`failure`] is how every endpoint above says no: a Kubernetes `Status`.
//! - [`https`] is the one server loop under the stream, the webhooks and the
//!   MFA service: TLS, HTTP/2 (or HTTP/1.1), limits, idle close and drain.

pub use deadbolt_runtime::{body, logging, shutdown};

pub mod admin;
pub mod admission;
pub mod args;
pub mod auth;
pub mod ca;
pub mod controller;
pub mod failure;
pub mod https;
pub mod leader;
pub mod mfa;
pub mod ownership;
pub mod source;
pub mod stream;
pub mod subscribers;
pub mod view;

mod run;

pub use args::Args;
pub use run::run;
