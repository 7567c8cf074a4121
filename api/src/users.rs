//! The rules about users, in one place (as Teleport keeps its lock rules in
//! `lib/services/lock.go`): how long a temporary user may live, and how a
//! suspended user's automatic lock is named and labelled. The controller
//! enforces them and the admission webhook refuses what breaks them.

use jiff::{SignedDuration, Timestamp};

use crate::resources::{User, UserType};

/// The longest a temporary user may live after its creation, as in Teleport.
pub const MAX_TEMPORARY_LIFETIME: SignedDuration = SignedDuration::from_hours(30);

/// The message of a suspended user's automatic lock.
pub const SUSPENDED_MESSAGE: &str = "user suspended in identity provider";

/// The label on automatic locks; its value says why the lock exists.
pub const AUTO_LOCK_LABEL: &str = "deadbolt.dev/auto-lock";

/// The [`AUTO_LOCK_LABEL`] value of a suspended user's lock.
pub const SUSPENDED_REASON: &str = "suspended-user";

/// Lock names with this prefix are reserved for suspended users' automatic locks.
pub const AUTO_LOCK_PREFIX: &str = "deadbolt-suspended-";

/// Longest Kubernetes object name.
const MAX_NAME_LEN: usize = 253;

/// Whether the user was synced from an identity provider (it carries
/// [`crate::ORIGIN_LABEL`]).
pub fn is_synced(user: &User) -> bool {
    user.metadata
        .labels
        .as_ref()
        .is_some_and(|labels| labels.contains_key(crate::ORIGIN_LABEL))
}

/// The automatic lock's name: `deadbolt-suspended-<User object name>` (an
/// object name is always a valid name, a username need not be), shortened
/// with a hash when that would exceed 253 characters.
pub fn auto_lock_name(user: &str) -> String {
    let name = format!("{AUTO_LOCK_PREFIX}{user}");
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    let hash = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, user.as_bytes())
        .simple()
        .to_string();
    let hash = &hash[..10];
    let mut keep = MAX_NAME_LEN - hash.len() - 1;
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let stem = name[..keep].trim_end_matches(['.', '-']);
    format!("{stem}-{hash}")
}

/// The latest a temporary user created at `created` may expire; `None` past
/// the end of time, where there is no bound left.
pub fn latest_expiry(created: Timestamp) -> Option<Timestamp> {
    created.checked_add(MAX_TEMPORARY_LIFETIME).ok()
}

/// When a temporary user goes, and whether the 30h bound shortened its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// When the user is deleted.
    pub at: Timestamp,
    /// `spec.expires` was later than creation + 30h (or missing).
    pub capped: bool,
    /// `spec.expires` as written.
    pub requested: Option<Timestamp>,
}

impl Deadline {
    /// A sentence for the `Ready` condition and the Warning event.
    pub fn describe(&self) -> String {
        match (self.capped, self.requested) {
            (false, _) => format!("temporary user, deleted at {}", self.at),
            (true, Some(requested)) => format!(
                "spec.expires {requested} is more than 30h after creation; the user is deleted at {} (creation + 30h)",
                self.at
            ),
            (true, None) => format!(
                "temporary user without spec.expires; deleted at {} (creation + 30h)",
                self.at
            ),
        }
    }
}

/// The deletion time of a temporary user: `spec.expires`, but never more than
/// 30h after `creationTimestamp` (`now` when it has none yet). `None` for
/// other users.
pub fn temporary_deadline(user: &User, now: Timestamp) -> Option<Deadline> {
    if user.spec.type_ != UserType::Temporary {
        return None;
    }
    let created = user
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |time| time.0);
    let limit = latest_expiry(created).unwrap_or(Timestamp::MAX);
    let requested = user.spec.expires.as_ref().map(|time| time.0);
    Some(match requested {
        Some(expires) if expires <= limit => Deadline {
            at: expires,
            capped: false,
            requested,
        },
        _ => Deadline {
            at: limit,
            capped: true,
            requested,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::UserSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn temporary(expires: Option<i64>) -> User {
        let mut user = User::new(
            "tmp",
            UserSpec {
                type_: UserType::Temporary,
                expires: expires.map(|s| Time(at(s))),
                ..UserSpec::default()
            },
        );
        user.metadata.creation_timestamp = Some(Time(at(0)));
        user
    }

    #[test]
    fn temporary_users_live_at_most_30_hours() {
        let within = temporary_deadline(&temporary(Some(3600)), at(0)).unwrap();
        assert_eq!((within.at, within.capped), (at(3600), false));
        let beyond = temporary_deadline(&temporary(Some(31 * 3600)), at(0)).unwrap();
        assert_eq!((beyond.at, beyond.capped), (at(30 * 3600), true));
        assert!(
            beyond.describe().contains("more than 30h"),
            "{}",
            beyond.describe()
        );
        let missing = temporary_deadline(&temporary(None), at(0)).unwrap();
        assert_eq!((missing.at, missing.capped), (at(30 * 3600), true));
        let local = User::new("l", UserSpec::default());
        assert_eq!(temporary_deadline(&local, at(0)), None);
        assert_eq!(latest_expiry(at(0)), Some(at(30 * 3600)));
    }

    #[test]
    fn auto_lock_names_are_deterministic_and_valid() {
        assert_eq!(auto_lock_name("bob"), "deadbolt-suspended-bob");
        let long = format!("{}.example.com", "a".repeat(240));
        let name = auto_lock_name(&long);
        assert!(name.len() <= MAX_NAME_LEN);
        assert_eq!(name, auto_lock_name(&long));
        assert_ne!(
            name,
            auto_lock_name(&format!("{}.example.org", "a".repeat(240)))
        );
        assert!(!name.contains(".-") && !name.contains("--"), "{name}");
    }
}
