#![no_main]
//! The lock-view stream as a proxy reads it: arbitrary bytes, split at `\n`
//! as the sidecar's view client splits them, go through
//! `protocol::decode_line::<ViewEvent>` and `::<Ack>`; every decoded event is
//! applied to a `replica::ViewReplica`. Proves that none of this panics,
//! whatever the operator (or anything posing as it) sends, and that:
//! - a decoded event survives `encode_line` / `decode_line` unchanged;
//! - the replica's revision moves exactly as `apply` reports (a snapshot
//!   always resets it, a delta only moves it forward, a refused event leaves it);
//! - after each event, the lock index (`LockIndex::find_in_force`) agrees with
//!   the reference scan (`engine::scan`) for every target the held locks name,
//!   at several instants around their creation and expiry;
//! - the queries a proxy makes after a change (`check`, `roles_for`,
//!   `locking_mode`, the lock message) do not panic.

use deadbolt_api::engine::{Identity, LockEntry, Target, scan};
use deadbolt_api::protocol::{Ack, ViewEvent, decode_line, encode_line};
use deadbolt_api::replica::{Applied, ViewReplica};
use deadbolt_api::LockingMode;
use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut replica = ViewReplica::default();
    for line in data.split_inclusive(|b| *b == b'\n') {
        let _ = decode_line::<Ack>(line).map(|ack| {
            let back: Ack = decode_line(&encode_line(&ack)).expect("an encoded ack decodes");
            assert_eq!(back, ack);
        });
        let Ok(event) = decode_line::<ViewEvent>(line) else {
            continue;
        };
        let back: ViewEvent = decode_line(&encode_line(&event)).expect("an encoded event decodes");
        assert_eq!(back, event, "event does not survive a round trip");
        apply(&mut replica, event);
    }
});

fn apply(replica: &mut ViewReplica, event: ViewEvent) {
    let before = replica.revision();
    let received = event.revision();
    let lock = match &event {
        ViewEvent::Upsert {
            object: deadbolt_api::protocol::ViewObject::Lock(lock),
            ..
        } => Some(lock.clone()),
        _ => None,
    };
    match replica.apply(event) {
        Ok(applied) => {
            assert_eq!(replica.revision(), Some(received));
            if let Some(before) = before
                && applied != Applied::Snapshot
            {
                assert!(received >= before, "revision went back from {before} to {received}");
            }
            if let Applied::Lock(entry) = &applied {
                assert_eq!(Some(entry.as_ref()), lock.as_ref());
                assert_eq!(replica.locks().get(&entry.name), Some(entry.as_ref()));
            }
        }
        Err(_) => assert_eq!(replica.revision(), before, "a refused event moved the revision"),
    }
    check_index(replica);
    exercise_queries(replica);
}

/// The hash index must report the same lock as a scan over every lock.
fn check_index(replica: &ViewReplica) {
    let locks: Vec<&LockEntry> = replica.locks().iter().collect();
    assert_eq!(locks.len(), replica.locks().len());
    // Keep the quadratic part bounded: inputs with many locks still check the first ones.
    for lock in locks.iter().take(16) {
        let _ = lock.message();
        let targets: Vec<Target> = lock
            .target
            .fields()
            .map(|(kind, value)| Target::new(kind, value))
            .collect();
        for now in instants(lock) {
            for target in &targets {
                let one = std::slice::from_ref(target);
                let indexed = replica.locks().find_in_force(one, now).map(|l| &l.name);
                let scanned = scan(locks.iter().copied(), one, now).map(|l| &l.name);
                assert_eq!(indexed, scanned, "index and scan disagree on {target} at {now}");
            }
            let indexed = replica.locks().find_in_force(&targets, now).map(|l| &l.name);
            let scanned = scan(locks.iter().copied(), &targets, now).map(|l| &l.name);
            assert_eq!(indexed, scanned, "index and scan disagree on {targets:?} at {now}");
        }
    }
}

fn instants(lock: &LockEntry) -> Vec<Timestamp> {
    let mut out = vec![lock.created];
    if let Some(expires) = lock.expires_at {
        out.push(expires);
        out.extend(expires.checked_sub(SignedDuration::from_nanos(1)).ok());
        out.extend(expires.checked_add(SignedDuration::from_nanos(1)).ok());
    }
    out
}

/// What a proxy asks once a change is applied: the identity of a session
/// built from the first lock's fields, its roles and mode, and the decision.
fn exercise_queries(replica: &ViewReplica) {
    let Some(lock) = replica.locks().iter().next() else {
        let identity = Identity::default();
        let _ = replica.check(&identity, "proxy-1", LockingMode::BestEffort, true, Timestamp::UNIX_EPOCH);
        return;
    };
    let target = &lock.target;
    let roles = replica.roles_for(
        target.user.as_deref().unwrap_or_default(),
        &target.role.iter().cloned().collect::<Vec<_>>(),
        &target.access_request.iter().cloned().collect::<Vec<_>>(),
    );
    let mode = replica.locking_mode(&roles);
    let identity = Identity {
        user: target.user.clone().unwrap_or_default(),
        roles,
        login: target.login.clone(),
        mfa_device: target.mfa_device.clone(),
        device: target.device.clone(),
        access_requests: target.access_request.iter().cloned().collect(),
    };
    let server_id = target.server_id.as_deref().unwrap_or("proxy-1");
    for now in instants(lock) {
        if let Err(denial) = replica.check(&identity, server_id, mode, true, now) {
            let _ = denial.to_string();
        }
    }
}
