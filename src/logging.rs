//! Structured logs with tracing: human-readable by default, one JSON object per line with
//! `NEPHROCARE_LOG_FORMAT=json`. Logs go to standard error, so that a command's own
//! output (standard output) stays clean for scripts.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Later calls (tests starting several apps) are no-ops.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
