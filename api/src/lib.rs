//! Deadbolt's shared contract: the `deadbolt.dev/v1` resource types, the lock
//! engine that decides whether an interaction is locked, the access rules that
//! decide what a caller's roles let it reach, the lock-view wire
//! protocol between the operator and the proxies, and the audit event type.
//!
//! Everything here is pure: no I/O, no clocks. Callers pass the current time
//! in, so the same code runs in the operator, the proxies, tests and benches.

pub mod access;
pub mod audit;
pub mod credential;
pub mod duration;
pub mod engine;
pub mod mfa;
pub mod protocol;
pub mod replica;
pub mod resources;
pub mod service_account;
pub mod users;

pub use engine::{
    Decision, Denial, Identity, LockEntry, LockIndex, Target, TargetKind, evaluate, locking_mode,
};
pub use resources::{
    AccessRole, AccessRoleSpec, ClusterAuthPreference, ClusterAuthPreferenceSpec, Lock, LockSpec,
    LockingMode, MfaDevice, MfaDeviceSpec, RequireSessionMfa, User, UserSpec, UserType,
};

/// The API group every Deadbolt resource lives in.
pub const GROUP: &str = "deadbolt.dev";

/// Label that marks a User as synced from an identity provider; its value names the provider.
pub const ORIGIN_LABEL: &str = "deadbolt.dev/origin";

/// Annotation the mutating webhook stamps on new Locks, like Teleport's `created_by`.
pub const CREATED_BY_ANNOTATION: &str = "deadbolt.dev/created-by";
