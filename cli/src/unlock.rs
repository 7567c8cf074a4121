//! `kubectl deadbolt unlock`: deletes the locks whose target is exactly the one given.
//!
//! Exact means the same set of fields with the same values. A lock on
//! `User:"alice" Role:"dev"` is left alone by `unlock --user=alice`: deleting it
//! would also lift the role lock, which the caller did not ask for.

use std::io::Write;

use deadbolt_api::resources::{Lock, LockTargetSpec};
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};

use crate::Error;

/// Whether `lock_target` has exactly the fields of `wanted`, with equal values (empty fields count as unset).
pub fn targets_exactly(lock_target: &LockTargetSpec, wanted: &LockTargetSpec) -> bool {
    lock_target.fields().eq(wanted.fields())
}

/// Whether `lock_target` has every field of `wanted` (and maybe more); used to point at locks left alone.
fn targets_including(lock_target: &LockTargetSpec, wanted: &LockTargetSpec) -> bool {
    wanted
        .fields()
        .all(|(kind, value)| lock_target.get(kind) == Some(value))
}

/// Lists the locks, deletes every exact match and prints tctl rm's `lock "<name>" has been deleted`
/// for each. Fails with [`Error::NoMatch`] when nothing matched. A lock someone else deleted
/// between the list and the delete is reported as already deleted, not as an error.
pub async fn unlock(
    api: &Api<Lock>,
    wanted: &LockTargetSpec,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let locks = crate::list_all(api).await?;
    let (matching, others): (Vec<&Lock>, Vec<&Lock>) = locks
        .iter()
        .filter(|lock| targets_including(&lock.spec.target, wanted))
        .partition(|lock| targets_exactly(&lock.spec.target, wanted));
    if matching.is_empty() {
        return Err(Error::NoMatch {
            target: Box::new(wanted.clone()),
            others: others.iter().map(|lock| lock.name_any()).collect(),
        });
    }
    for lock in matching {
        let name = lock.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => writeln!(out, "lock {name:?} has been deleted")?,
            Err(error) => {
                let error = Error::from(error);
                if !error.is_missing_object() {
                    return Err(error);
                }
                writeln!(out, "lock {name:?} was already deleted")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: Option<&str>, role: Option<&str>) -> LockTargetSpec {
        LockTargetSpec {
            user: user.map(str::to_string),
            role: role.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn exact_match_needs_the_same_fields() {
        let alice = target(Some("alice"), None);
        assert!(targets_exactly(&alice, &alice));
        assert!(!targets_exactly(
            &target(Some("alice"), Some("dev")),
            &alice
        ));
        assert!(!targets_exactly(&target(Some("bob"), None), &alice));
        assert!(!targets_exactly(&target(None, Some("alice")), &alice));
        let with_empty = LockTargetSpec {
            user: Some("alice".into()),
            login: Some(String::new()),
            ..Default::default()
        };
        assert!(targets_exactly(&with_empty, &alice));
        assert!(targets_including(
            &target(Some("alice"), Some("dev")),
            &alice
        ));
    }
}
