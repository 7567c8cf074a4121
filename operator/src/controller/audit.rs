//! The operator's audit events: `lock.created`, `lock.expired` and
//! `lock.deleted` ([`AuditEvent`]), written through the shared sink
//! ([`deadbolt_runtime::audit`]) to stdout or the file named by `--audit-log`.
//!
//! Event uids are derived from the lock (name, creation time, event kind), so
//! the same event written twice (a retried reconcile, a leader change) carries
//! the same uid and downstream pipelines can drop the duplicate.

use deadbolt_api::LockEntry;
use deadbolt_api::audit::{AuditEvent, AuditEventKind};
use jiff::Timestamp;
use uuid::Uuid;

pub use deadbolt_runtime::audit::{AuditBuffer, AuditSink};

/// The fixed UUID namespace Deadbolt derives audit event uids in (never change it:
/// uids would stop matching across versions).
const UID_NAMESPACE: Uuid = Uuid::from_u128(0x4b6f_2f8e_59a3_5d2e_8c1f_2a5e_6d7c_9b01);

/// A lock event for `entry` at `time`. `actor` is who caused it, when known
/// (the `deadbolt.dev/created-by` annotation for `lock.created`).
pub fn lock_event(
    kind: AuditEventKind,
    entry: &LockEntry,
    time: Timestamp,
    actor: Option<String>,
) -> AuditEvent {
    let mut event = AuditEvent::new(kind, lock_event_uid(kind, entry), time);
    event.lock = Some(entry.name.clone());
    event.reason = Some(entry.message());
    event.user = actor;
    event
}

/// The same for every replica and every retry: one lock incarnation (name and
/// creation time) has one event of each kind, except that a lock whose expiry
/// was moved can expire once per expiry instant.
fn lock_event_uid(kind: AuditEventKind, entry: &LockEntry) -> String {
    let mut key = format!("{kind}/{}/{}", entry.name, entry.created);
    if let (AuditEventKind::LockExpired, Some(expires_at)) = (kind, entry.expires_at) {
        key.push_str(&format!("/{expires_at}"));
    }
    Uuid::new_v5(&UID_NAMESPACE, key.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::TargetKind;
    use deadbolt_testkit::{lock_entry, target, ts};

    fn entry(created: i64) -> LockEntry {
        lock_entry("incident", target(TargetKind::User, "alice"))
            .message("Suspicious activity.")
            .created(ts(created))
            .build()
    }

    #[test]
    fn events_are_json_lines_with_stable_uids() {
        let (sink, buffer) = AuditSink::memory();
        let time = Timestamp::from_second(100).unwrap();
        let created = lock_event(
            AuditEventKind::LockCreated,
            &entry(1),
            time,
            Some("bob".into()),
        );
        sink.emit(&created);
        sink.emit(&lock_event(
            AuditEventKind::LockDeleted,
            &entry(1),
            time,
            None,
        ));
        let events = buffer.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], created);
        assert_eq!(
            events[0].reason.as_deref(),
            Some(r#"lock targeting User:"alice" is in force: Suspicious activity."#)
        );
        assert!(buffer.text().ends_with('\n'));
        // Same lock, same kind: same uid. Another kind or incarnation: another uid.
        let again = lock_event(AuditEventKind::LockCreated, &entry(1), time, None);
        assert_eq!(again.uid, created.uid);
        assert_ne!(events[1].uid, created.uid);
        let recreated = lock_event(AuditEventKind::LockCreated, &entry(2), time, None);
        assert_ne!(recreated.uid, created.uid);
    }
}
