//! The view: every object the proxies need, at a revision.
//!
//! Sources ([`crate::source`]) write into the [`ViewStore`]; the lock-view
//! stream reads from it through a [`ViewFeed`]. Each effective change gets the
//! next revision and is broadcast as a [`ViewEvent`]; unchanged writes are no-ops.
//!
//! [`ViewEvent`]: deadbolt_api::protocol::ViewEvent

mod convert;
mod feed;
mod store;

pub use convert::{ConvertError, cluster_config, default_cluster_config, role_record, user_record};
pub use feed::ViewFeed;
pub use store::{DEFAULT_EVENT_CAPACITY, ViewStore};

use deadbolt_api::protocol::{ObjectKey, ViewObject};

/// The kinds of object the view holds, so a source can replace one kind at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViewKind {
    /// Locks.
    Lock,
    /// Access roles.
    Role,
    /// Users.
    User,
    /// The cluster settings singleton.
    Config,
}

impl ViewKind {
    /// Every kind, for sources that own the whole view (the `dir:` source).
    pub const ALL: [Self; 4] = [Self::Lock, Self::Role, Self::User, Self::Config];

    /// The kind of an object.
    pub fn of(object: &ViewObject) -> Self {
        match object {
            ViewObject::Lock(_) => Self::Lock,
            ViewObject::Role(_) => Self::Role,
            ViewObject::User(_) => Self::User,
            ViewObject::Config(_) => Self::Config,
        }
    }
}

/// The name an object is deleted by; `None` for the config singleton, which is
/// reset to its defaults instead of deleted.
pub fn object_key(object: &ViewObject) -> Option<ObjectKey> {
    match object {
        ViewObject::Lock(lock) => Some(ObjectKey::Lock(lock.name.clone())),
        ViewObject::Role(role) => Some(ObjectKey::Role(role.name.clone())),
        ViewObject::User(user) => Some(ObjectKey::User(user.name.clone())),
        ViewObject::Config(_) => None,
    }
}

/// Objects the unit tests of several modules build views from.
#[cfg(test)]
pub(crate) mod fixtures {
    use deadbolt_api::TargetKind;
    use deadbolt_api::protocol::ViewObject;
    use deadbolt_testkit::{lock_entry, target};

    /// A lock named `name` on the user `name`, created at the epoch, never expiring.
    pub(crate) fn user_lock(name: &str) -> ViewObject {
        lock_entry(name, target(TargetKind::User, name)).object()
    }
}
