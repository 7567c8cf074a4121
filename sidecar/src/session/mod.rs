//! Live sessions: the registry a new lock consults to find what to cut.

mod registry;

pub use registry::{SessionHandle, SessionId, SessionRegistry};
