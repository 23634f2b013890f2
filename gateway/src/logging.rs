//! Log output with `tracing`: human-readable by default, JSON lines for production.
//!
//! The filter comes from `AUTHGATE_LOG` (same syntax as `RUST_LOG`), default `info`.
//! Access-log lines use the target `authgate::access`, so `AUTHGATE_LOG=info,authgate::access=off`
//! silences them. Pingora's own `log` records are forwarded into the same output.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("AUTHGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    if let Err(e) = result {
        eprintln!("authgate: cannot install the logger: {e}");
    }
}
