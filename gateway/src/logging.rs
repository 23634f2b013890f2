//! Log output with `tracing`: human-readable by default, JSON lines for production.
//!
//! The filter comes from `AUTHGATE_LOG` (same syntax as `RUST_LOG`), default `info`.
//! Diagnostics go to standard error through `tracing`. The access log (target
//! `authgate::access`) and the audit log (`authgate::audit`) go to standard output through
//! their own non-blocking writer ([`crate::access_log`]); the same filter decides, at start,
//! whether they are on: `AUTHGATE_LOG=info,authgate::access=off` silences access lines.
//! Pingora's own `log` records are forwarded into the diagnostics.

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

/// Installs the global subscriber. Safe to call once per process. With `request_logs`, also
/// starts the access and audit logs when the filter lets them through.
pub fn init(format: LogFormat, request_logs: bool) {
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
    if request_logs {
        let access = tracing::enabled!(target: "authgate::access", tracing::Level::INFO);
        let audit = tracing::enabled!(target: "authgate::audit", tracing::Level::INFO);
        if let Err(e) = crate::access_log::install(format, access, audit) {
            eprintln!("authgate: cannot start the access log writer: {e}");
        }
    }
}
