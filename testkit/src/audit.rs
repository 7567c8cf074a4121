//! The in-memory audit sink, where tests look for it: the runtime owns it
//! (`AuditSink::memory()` writes through the same thread as the real sinks),
//! so this only re-exports it.

pub use deadbolt_runtime::audit::{AuditBuffer, AuditSink};
