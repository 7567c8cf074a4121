//! The indexed `LockIndex` must give exactly the naive scan's answer, for any
//! locks, any history of upserts and removals, any identity and any clock.

use deadbolt_api::engine::{LockEntry, LockIndex, scan};
use deadbolt_api::resources::LockTargetSpec;
use deadbolt_api::{Identity, TargetKind};
use deadbolt_testkit::{lock_entry, ts};
use jiff::Timestamp;
use proptest::prelude::*;

/// A few values per field, so locks and identities collide often.
fn value() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "d", ""]).prop_map(str::to_string)
}

fn maybe_value() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.35, value())
}

fn target() -> impl Strategy<Value = LockTargetSpec> {
    prop::collection::vec(maybe_value(), TargetKind::ALL.len())
        .prop_map(|values| {
            let mut target = LockTargetSpec::default();
            for (kind, value) in TargetKind::ALL.into_iter().zip(values) {
                *target.field_mut(kind) = value;
            }
            target
        })
        .prop_filter("a lock needs a target", |t| !t.is_empty())
}

fn instant() -> impl Strategy<Value = Timestamp> {
    (0i64..100).prop_map(ts)
}

fn lock() -> impl Strategy<Value = LockEntry> {
    (
        prop::sample::select(vec!["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"]),
        target(),
        instant(),
        prop::option::of(instant()),
    )
        .prop_map(|(name, target, created, expires_at)| {
            lock_entry(name, target)
                .message(format!("message of {name}"))
                .created(created)
                .expires_at(expires_at)
                .build()
        })
}

fn identity() -> impl Strategy<Value = (Identity, Option<String>)> {
    (
        value(),
        prop::collection::vec(value(), 0..3),
        maybe_value(),
        maybe_value(),
        maybe_value(),
        prop::collection::vec(value(), 0..2),
        maybe_value(),
    )
        .prop_map(
            |(user, roles, login, mfa_device, device, access_requests, server_id)| {
                let identity = Identity {
                    user,
                    roles,
                    login,
                    mfa_device,
                    device,
                    access_requests,
                };
                (identity, server_id)
            },
        )
}

#[derive(Clone, Debug)]
enum Change {
    Upsert(Box<LockEntry>),
    Remove(&'static str),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => lock().prop_map(|entry| Change::Upsert(Box::new(entry))),
        1 => prop::sample::select(vec!["l0", "l1", "l2", "l3"]).prop_map(Change::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn index_agrees_with_naive_scan(
        changes in prop::collection::vec(change(), 0..24),
        (identity, server_id) in identity(),
        now in instant(),
    ) {
        let mut view = LockIndex::default();
        let mut reference: Vec<LockEntry> = Vec::new();
        for change in changes {
            match change {
                Change::Upsert(entry) => {
                    reference.retain(|l| l.name != entry.name);
                    reference.push((*entry).clone());
                    view.upsert(*entry);
                }
                Change::Remove(name) => {
                    reference.retain(|l| l.name != name);
                    view.remove(name);
                }
            }
        }
        prop_assert_eq!(view.len(), reference.len());
        let targets = identity.targets(server_id.as_deref());
        let indexed = view.find_in_force(&targets, now).map(|l| l.name.clone());
        let naive = scan(&reference, &targets, now).map(|l| l.name.clone());
        prop_assert_eq!(indexed, naive);
    }

    #[test]
    fn reported_lock_really_matches_and_is_in_force(
        locks in prop::collection::vec(lock(), 0..16),
        (identity, server_id) in identity(),
        now in instant(),
    ) {
        let view = LockIndex::from_entries(locks);
        let targets = identity.targets(server_id.as_deref());
        if let Some(found) = view.find_in_force(&targets, now) {
            prop_assert!(found.is_in_force(now));
            prop_assert!(targets.iter().any(|t| found.matches(t)));
            prop_assert!(found.message().starts_with("lock targeting "));
        }
    }
}
