//! Log setup: text for people, JSON for pipelines, filtered by `--log-level`.
//! Every line carries the span it was written in (a reconcile's kind and
//! name, a session's id, user and lock), so call sites need not repeat them.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Installs the global subscriber. Fails on an invalid filter or when one is
/// already installed.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    init_with_writer(format, filter, std::io::stderr)
}

/// The same, writing to `writer` (tests read their logs back).
pub fn init_with_writer<W>(format: LogFormat, filter: &str, writer: W) -> Result<(), String>
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter)
        .map_err(|error| format!("invalid --log-level {filter:?}: {error}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        // The innermost span's fields under `span`, its ancestors' under `spans`.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|error| format!("cannot install the logger: {error}"))
}
