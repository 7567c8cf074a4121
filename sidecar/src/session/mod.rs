//! Live sessions: the registry a new lock consults to find what to cut.

mod registry;

pub use registry::{Reassessed, SessionHandle, SessionId, SessionRegistry, Subject};
