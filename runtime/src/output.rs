//! The flags every Deadbolt process takes for what it writes: its log (format
//! and filter) and its audit log. One struct, flattened into each binary's
//! flags, so the names, variables and defaults cannot drift apart.

use std::path::PathBuf;

use crate::audit::AuditSink;
use crate::logging::{self, LogFormat};

/// `--log-format`, `--log-level`, `--audit-log`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct OutputArgs {
    /// Log format.
    #[arg(long, env = "DEADBOLT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `deadbolt_operator=debug,info`.
    #[arg(long, env = "DEADBOLT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// File to append audit events to (JSON lines); without it they go to
    /// standard output.
    #[arg(long, env = "DEADBOLT_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
}

impl OutputArgs {
    /// Installs the logger these flags ask for.
    pub fn init_logging(&self) -> Result<(), String> {
        logging::init(self.log_format, &self.log_level)
    }

    /// The audit sink these flags ask for: the file, or standard output.
    pub fn audit_sink(&self) -> Result<AuditSink, String> {
        match &self.audit_log {
            Some(path) => AuditSink::file(path)
                .map_err(|error| format!("cannot open --audit-log {}: {error}", path.display())),
            None => Ok(AuditSink::stdout()),
        }
    }
}
