//! Locks as tests write them: a [`LockEntry`] has five fields, most tests care
//! about two, and every test used to spell out all five. [`lock_entry`] takes
//! the two and defaults the rest; [`target`] and [`targets`] build the
//! [`LockTargetSpec`] with only the named fields set.

use deadbolt_api::TargetKind;
use deadbolt_api::engine::LockEntry;
use deadbolt_api::protocol::ViewObject;
use deadbolt_api::resources::LockTargetSpec;
use jiff::Timestamp;

/// A target with one field set, e.g. `target(TargetKind::User, "alice")`.
pub fn target(kind: TargetKind, value: &str) -> LockTargetSpec {
    targets([(kind, value)])
}

/// A target with these fields set (a later value for the same kind wins).
pub fn targets<'a>(fields: impl IntoIterator<Item = (TargetKind, &'a str)>) -> LockTargetSpec {
    let mut target = LockTargetSpec::default();
    for (kind, value) in fields {
        *target.field_mut(kind) = Some(value.into());
    }
    target
}

/// A lock named `name` on `target`: no message, created at the Unix epoch,
/// never expiring, until the builder's methods say otherwise.
pub fn lock_entry(name: impl Into<String>, target: LockTargetSpec) -> LockBuilder {
    LockBuilder(LockEntry {
        name: name.into(),
        target,
        message: None,
        created: Timestamp::UNIX_EPOCH,
        expires_at: None,
    })
}

/// A [`LockEntry`] being built; see [`lock_entry`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a builder does nothing until built"]
pub struct LockBuilder(LockEntry);

impl LockBuilder {
    /// The administrator's message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.0.message = Some(message.into());
        self
    }

    /// When it was created.
    pub fn created(mut self, created: Timestamp) -> Self {
        self.0.created = created;
        self
    }

    /// When it stops being in force (`None`: never).
    pub fn expires_at(mut self, expires_at: impl Into<Option<Timestamp>>) -> Self {
        self.0.expires_at = expires_at.into();
        self
    }

    /// The lock.
    pub fn build(self) -> LockEntry {
        self.0
    }

    /// The lock as a view object, ready for a view store.
    pub fn object(self) -> ViewObject {
        ViewObject::Lock(self.0)
    }
}

impl From<LockBuilder> for LockEntry {
    fn from(builder: LockBuilder) -> Self {
        builder.build()
    }
}

impl From<LockBuilder> for ViewObject {
    fn from(builder: LockBuilder) -> Self {
        builder.object()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ts;

    #[test]
    fn a_built_lock_has_exactly_what_was_asked_for() {
        let built = lock_entry("incident", targets([(TargetKind::User, "alice")]))
            .message("Suspicious activity.")
            .created(ts(10))
            .expires_at(ts(20))
            .build();
        assert_eq!(
            built,
            LockEntry {
                name: "incident".into(),
                target: LockTargetSpec {
                    user: Some("alice".into()),
                    ..Default::default()
                },
                message: Some("Suspicious activity.".into()),
                created: ts(10),
                expires_at: Some(ts(20)),
            }
        );
    }

    #[test]
    fn the_defaults_are_no_message_the_epoch_and_no_expiry() {
        let built = lock_entry("l", target(TargetKind::Role, "dev")).build();
        assert_eq!(built.message, None);
        assert_eq!(built.created, Timestamp::UNIX_EPOCH);
        assert_eq!(built.expires_at, None);
        assert_eq!(built.target.role.as_deref(), Some("dev"));
        assert_eq!(
            ViewObject::from(lock_entry("l", built.target.clone())),
            ViewObject::Lock(built)
        );
    }
}
