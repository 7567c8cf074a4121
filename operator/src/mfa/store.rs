//! What the MFA service's stores (devices, lock-out standings) return: a
//! boxed future, so each store can be a trait object, and one error type
//! whose message says what could not be done.

use futures::future::BoxFuture;

/// Why a store failed: what could not be done, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// What a store call returns.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;
