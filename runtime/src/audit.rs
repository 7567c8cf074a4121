//! The audit log every Deadbolt process writes: one JSON line per event
//! ([`AuditEvent`]), to standard output (where log collectors pick it up),
//! a file, or memory (tests).
//!
//! Writing happens on a thread of its own, fed through a bounded channel, so
//! a slow disk or a blocked pipe never stalls a proxy's async runtime. If the
//! writer falls 16,384 lines behind (besides the 64 KiB it buffers), further
//! lines are dropped, counted ([`AuditSink::dropped`], exported as a metric)
//! and logged: a session is never held up for its audit line.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use deadbolt_api::audit::AuditEvent;

/// Lines that may wait for the writer.
pub const QUEUE: usize = 16_384;

enum Message {
    Line(String),
    /// Answered once every line queued before it is written and flushed.
    Flush(SyncSender<()>),
}

/// Where audit events go. Cheap to clone; clones share the writer.
#[derive(Clone)]
pub struct AuditSink {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl AuditSink {
    /// Audit lines on standard output (logs go to standard error, so the two never mix).
    pub fn stdout() -> Self {
        Self::to_writer(Box::new(io::stdout()))
    }

    /// Audit lines appended to `path`, created if needed.
    pub fn file(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::to_writer(Box::new(file)))
    }

    /// Audit lines kept in memory, for tests.
    pub fn memory() -> (Self, AuditBuffer) {
        let lines = Lines::default();
        let sink = Self::to_writer(Box::new(lines.clone()));
        let buffer = AuditBuffer {
            lines,
            sink: sink.clone(),
        };
        (sink, buffer)
    }

    /// Audit lines to any writer, from a thread of their own.
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        let (queue, lines) = mpsc::sync_channel::<Message>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_lines(&lines, out));
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the audit writer; audit events will be dropped");
        }
        Self {
            queue,
            dropped: Arc::default(),
        }
    }

    /// Queues one event. Never blocks: a full queue drops the line (counted
    /// and logged) rather than hold up a session.
    pub fn emit(&self, event: &AuditEvent) {
        match self.queue.try_send(Message::Line(event.to_json_line())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(
                    event = %event.event,
                    dropped,
                    "the audit writer is {QUEUE} lines behind; dropping an audit event"
                );
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(event = %event.event, "the audit writer is gone; dropping an audit event");
            }
        }
    }

    /// Waits until every event emitted so far is written (at shutdown, and in
    /// tests before reading). Blocks the calling thread.
    pub fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// How many events were dropped because the writer fell behind or failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// How long the writer lets a burst gather after writing more than one line.
const BURST_PAUSE: Duration = Duration::from_millis(1);

/// The writer thread: takes what is queued, writes it with one flush once the
/// queue is empty (so a collector sees every line without waiting for more),
/// and, in a burst (a lock cutting thousands of sessions at once), pauses a
/// moment before looking again, so the proxies wake it about once per
/// millisecond rather than once per line.
fn write_lines(lines: &Receiver<Message>, out: Box<dyn Write + Send>) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(first) = lines.recv() {
        let mut written = 0usize;
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    if let Err(error) = out.write_all(line.as_bytes()) {
                        tracing::error!(%error, "cannot write an audit event");
                    }
                    written += 1;
                }
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = lines.try_recv().ok();
        }
        if let Err(error) = out.flush() {
            tracing::error!(%error, "cannot write an audit event");
        }
        if written > 1 {
            std::thread::sleep(BURST_PAUSE);
        }
    }
}

/// The lines of an in-memory sink, for tests.
#[derive(Clone, Debug)]
pub struct AuditBuffer {
    lines: Lines,
    sink: AuditSink,
}

impl AuditBuffer {
    /// Every event written so far, in order (after waiting for the writer).
    pub fn events(&self) -> Vec<AuditEvent> {
        self.text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Every event as JSON, for checks by field name.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The sink that writes here.
    pub fn sink(&self) -> AuditSink {
        self.sink.clone()
    }

    /// The raw text written so far (after waiting for the writer).
    pub fn text(&self) -> String {
        self.sink.flush();
        String::from_utf8_lossy(&self.lines.lock()).into_owned()
    }
}

#[derive(Clone, Debug, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Lines {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadbolt_api::audit::AuditEventKind;
    use jiff::Timestamp;

    fn event(uid: &str) -> AuditEvent {
        AuditEvent::new(AuditEventKind::SessionStart, uid, Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn events_are_written_in_order_off_the_caller() {
        let (sink, buffer) = AuditSink::memory();
        for n in 0..100 {
            sink.emit(&event(&n.to_string()));
        }
        let uids: Vec<String> = buffer.events().into_iter().map(|e| e.uid).collect();
        assert_eq!(uids, (0..100).map(|n| n.to_string()).collect::<Vec<_>>());
        assert!(buffer.text().ends_with('\n'));
        assert_eq!(sink.dropped(), 0);
    }

    /// A writer that blocks until the test lets it go.
    struct Stuck(std::sync::mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_writer_drops_lines_instead_of_blocking() {
        let (release, stuck) = std::sync::mpsc::channel();
        let sink = AuditSink::to_writer(Box::new(Stuck(stuck)));
        // Every emit returns although nothing is written: the queue and the
        // writer's 64 KiB buffer (well under a thousand of these lines) fill,
        // and the rest is dropped.
        for n in 0..2 * QUEUE {
            sink.emit(&event(&n.to_string()));
        }
        assert!(
            sink.dropped() >= QUEUE as u64 / 2,
            "dropped {}",
            sink.dropped()
        );
        drop(release);
    }

    #[test]
    fn a_file_sink_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        for _ in 0..2 {
            let sink = AuditSink::file(&path).unwrap();
            sink.emit(&event("x"));
            sink.flush();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains(r#""event":"session.start""#), "{text}");
    }
}
