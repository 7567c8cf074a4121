//! Admission webhooks, served over HTTPS to the API server.
//!
//! Four endpoints, each answering an `admission.k8s.io/v1` AdmissionReview:
//!
//! - `POST /validate/deadbolt`: what the CRD schema and CEL cannot check on
//!   Deadbolt resources (`validate_locks_and_users.rs`): a temporary User's 30h bound, SSO and
//!   synced Users being read-only, warnings for Locks on unknown users and roles,
//!   and the `created-by` annotation never changing.
//! - `POST /validate/locks-enforcement`: direct API access (`enforcement.rs`):
//!   a write or CONNECT by a locked identity is refused with the lock's message.
//! - `POST /mutate/locks`: stamps `deadbolt.dev/created-by` on new Locks (`mutate.rs`).
//! - `POST /mutate/pods`: adds a database proxy container to Pods annotated
//!   `deadbolt.dev/inject` (`inject.rs`).
//!
//! Every decision is an in-memory lookup in a [`ViewReplica`] that follows the
//! operator's [`ViewStore`] (`view.rs`), so answers take microseconds.
//!
//! [`ViewReplica`]: deadbolt_api::replica::ViewReplica
//! [`ViewStore`]: crate::view::ViewStore

mod ca_bundle;
mod enforcement;
mod exempt;
mod identity;
mod inject;
mod mutate;
mod replica;
mod review;
mod server;
mod validate_locks_and_users;
mod webhook;

pub use ca_bundle::{CaBundle, WebhookConfigurations};
pub use enforcement::{ViewHealth, enforce_locks};
pub use exempt::{Exemptions, is_control_plane_user, service_account_username};
pub use identity::{Requester, identity_for};
pub use inject::{CONTAINER_NAME, INJECT_ANNOTATION, InjectSettings, PROXY_LABEL, pod_patch};
pub use mutate::{created_by_patch, mutate_lock};
pub use replica::FollowingReplica;
pub use review::{MAX_REVIEW_BYTES, Refusal, Request, Verdict, decode, encode};
pub use server::{ALPN, serve};
pub use validate_locks_and_users::{missing_role_warning, missing_user_warning, validate_deadbolt};
pub use webhook::{DEFAULT_EXEMPT_GROUP, Endpoint, ViewReliability, Webhook, WebhookSettings};
