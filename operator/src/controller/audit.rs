//! The audit sink: `lock.created`, `lock.expired` and `lock.deleted` as JSON
//! lines ([`AuditEvent`]), to stdout (the default, where log collectors pick
//! them up) or to the file named by `--audit-log`.
//!
//! Event uids are derived from the lock (name, creation time, event kind), so
//! the same event written twice (a retried reconcile, a leader change) carries
//! the same uid and downstream pipelines can drop the duplicate.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use deadbolt_api::LockEntry;
use deadbolt_api::audit::{AuditEvent, AuditEventKind};
use jiff::Timestamp;
use uuid::Uuid;

/// The fixed UUID namespace Deadbolt derives audit event uids in (never change it:
/// uids would stop matching across versions).
const UID_NAMESPACE: Uuid = Uuid::from_u128(0x4b6f_2f8e_59a3_5d2e_8c1f_2a5e_6d7c_9b01);

/// Where audit events go. Cheap to clone; clones share the writer.
#[derive(Clone)]
pub struct AuditSink {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSink").finish_non_exhaustive()
    }
}

/// The lines an in-memory sink has received, for tests.
#[derive(Clone, Debug, Default)]
pub struct AuditBuffer(Arc<Mutex<Vec<u8>>>);

impl AuditSink {
    /// Writes to standard output (logs go to standard error, so the two never mix).
    pub fn stdout() -> Self {
        Self::to_writer(io::stdout())
    }

    /// Appends to `path`, creating it if needed.
    pub fn file(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::to_writer(file))
    }

    /// Keeps the lines in memory.
    pub fn memory() -> (Self, AuditBuffer) {
        let buffer = AuditBuffer::default();
        (Self::to_writer(buffer.clone()), buffer)
    }

    fn to_writer(writer: impl Write + Send + 'static) -> Self {
        Self {
            out: Arc::new(Mutex::new(Box::new(writer))),
        }
    }

    /// Writes one event as one line. A failing sink is logged, never fatal:
    /// losing an audit line must not stop the controllers.
    pub fn record(&self, event: &AuditEvent) {
        let line = event.to_json_line();
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(error) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            tracing::error!(%error, event = %event.event, "cannot write an audit event");
        }
    }
}

impl AuditBuffer {
    /// Every event written so far, in order.
    pub fn events(&self) -> Vec<AuditEvent> {
        let bytes = self.lock().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The raw text written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Write for AuditBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

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
    use deadbolt_api::resources::LockTargetSpec;

    fn entry(created: i64) -> LockEntry {
        LockEntry {
            name: "incident".into(),
            target: LockTargetSpec {
                user: Some("alice".into()),
                ..Default::default()
            },
            message: Some("Suspicious activity.".into()),
            created: Timestamp::from_second(created).unwrap(),
            expires_at: None,
        }
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
        sink.record(&created);
        sink.record(&lock_event(
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

    #[test]
    fn a_file_sink_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let time = Timestamp::from_second(100).unwrap();
        for _ in 0..2 {
            let sink = AuditSink::file(&path).unwrap();
            sink.record(&lock_event(
                AuditEventKind::LockExpired,
                &entry(1),
                time,
                None,
            ));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains(r#""event":"lock.expired""#), "{text}");
    }
}
