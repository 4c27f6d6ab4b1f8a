//! Log output for the agent and the server (`--log-format`): text for a terminal, or one JSON
//! object per line for Loki, ELK or journald's JSON export. Both carry the same events; no
//! event in Tellijn logs a payload, a password or a secret (tests/e2e/log_format_e2e.rs checks the
//! server's lines for markers sent as each).

use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (`message` and the
    /// event's own fields) and the span it happened in.
    Json,
}

/// Installs the global subscriber: `RUST_LOG` if set, else `default_filter`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}
