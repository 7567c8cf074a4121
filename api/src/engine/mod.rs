//! The lock engine: which single-attribute targets an interaction has, which
//! unexpired lock (if any) matches one of them, and what the client is told.
//!
//! It follows Teleport: an interaction becomes one target per attribute, and a
//! lock is in force for it when any field of the lock equals the matching
//! attribute. Lookups go through a hash index per target kind, so a check costs
//! one lookup per target whatever the number of locks.

mod decision;
mod entry;
mod identity;
mod index;
mod target;

pub use decision::{Decision, Denial, STALE_VIEW_MESSAGE, evaluate, locking_mode};
pub use entry::{LockEntry, LockError};
pub use identity::Identity;
pub use index::{LockIndex, scan};
pub use target::{Target, TargetKind};
