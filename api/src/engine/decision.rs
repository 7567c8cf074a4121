use std::fmt;

use jiff::Timestamp;

use super::{LockEntry, LockIndex, Target};
use crate::resources::LockingMode;

/// What a strict-mode proxy says when it cannot trust its lock view (Teleport's wording).
pub const STALE_VIEW_MESSAGE: &str =
    "preventive lock-out due to local lock view becoming unreliable";

/// Why an interaction is refused or cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// A lock is in force; its exact message goes to the client.
    Locked {
        /// The lock's name, for audit.
        lock: String,
        /// The message the client sees.
        message: String,
    },
    /// Strict mode and the view is unreliable.
    StaleView,
}

impl Denial {
    /// The text the client sees.
    pub fn message(&self) -> &str {
        match self {
            Self::Locked { message, .. } => message,
            Self::StaleView => STALE_VIEW_MESSAGE,
        }
    }

    fn locked(lock: &LockEntry) -> Self {
        Self::Locked {
            lock: lock.name.clone(),
            message: lock.message(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Denial {}

/// The outcome of a lock check: allowed, or the reason it is not.
pub type Decision = Result<(), Denial>;

/// The locking mode of an interaction: the cluster's, unless any one of its
/// roles says `strict`; a single strict role is enough.
pub fn locking_mode(
    cluster: LockingMode,
    role_modes: impl IntoIterator<Item = Option<LockingMode>>,
) -> LockingMode {
    if cluster == LockingMode::Strict
        || role_modes
            .into_iter()
            .any(|mode| mode == Some(LockingMode::Strict))
    {
        LockingMode::Strict
    } else {
        LockingMode::BestEffort
    }
}

/// Decides an interaction, as Teleport's lock watcher does: a strict
/// interaction on an unreliable view is refused first, then any in-force lock
/// matching one of the targets refuses it.
pub fn evaluate(
    view: &LockIndex,
    targets: &[Target],
    mode: LockingMode,
    view_reliable: bool,
    now: Timestamp,
) -> Decision {
    if !view_reliable && mode == LockingMode::Strict {
        return Err(Denial::StaleView);
    }
    match view.find_in_force(targets, now) {
        Some(lock) => Err(Denial::locked(lock)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TargetKind;
    use crate::resources::LockTargetSpec;

    fn alice_lock() -> LockEntry {
        LockEntry {
            name: "l1".into(),
            target: LockTargetSpec {
                user: Some("alice".into()),
                ..Default::default()
            },
            message: Some("Suspicious activity.".into()),
            created: Timestamp::UNIX_EPOCH,
            expires_at: None,
        }
    }

    #[test]
    fn one_strict_role_is_enough() {
        use LockingMode::*;
        assert_eq!(
            locking_mode(BestEffort, [None, Some(BestEffort)]),
            BestEffort
        );
        assert_eq!(locking_mode(BestEffort, [None, Some(Strict)]), Strict);
        assert_eq!(locking_mode(Strict, [Some(BestEffort)]), Strict);
        assert_eq!(locking_mode(BestEffort, []), BestEffort);
    }

    #[test]
    fn stale_strict_view_refuses_before_lock_lookup() {
        let mut view = LockIndex::default();
        view.upsert(alice_lock());
        let targets = [Target::new(TargetKind::User, "alice")];
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(
            evaluate(&view, &targets, LockingMode::Strict, false, now),
            Err(Denial::StaleView)
        );
        let denial = evaluate(&view, &targets, LockingMode::BestEffort, false, now).unwrap_err();
        assert_eq!(
            denial.message(),
            r#"lock targeting User:"alice" is in force: Suspicious activity."#
        );
        let bob = [Target::new(TargetKind::User, "bob")];
        assert_eq!(
            evaluate(&view, &bob, LockingMode::Strict, true, now),
            Ok(())
        );
        assert_eq!(
            Denial::StaleView.to_string(),
            "preventive lock-out due to local lock view becoming unreliable"
        );
    }
}
