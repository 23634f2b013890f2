//! The access log (`authgate::access`, one line per request) and the audit log
//! (`authgate::audit`, one line per authentication decision), written to standard output off
//! the request path.
//!
//! A worker formats its line into a thread-local buffer ([`format`]) and hands the bytes to a
//! bounded queue ([`queue`]) drained by one writer thread, which writes them in batches. A
//! worker never waits for the output: when it cannot keep up, lines are dropped and counted in
//! `authgate_access_log_dropped_total`. Whether each log is on follows `AUTHGATE_LOG`, read at
//! start like every other log target: `AUTHGATE_LOG=info,authgate::access=off` turns the access
//! log off, `authgate::audit=off` the audit log; a level above `info` turns both off.

pub mod format;
pub mod queue;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use format::Line;
use queue::{LineQueue, QueueLimits, Writer};

use crate::logging::LogFormat;

/// Target (filter name) of the access log.
pub const ACCESS_TARGET: &str = "authgate::access";
/// Target (filter name) of the audit log.
pub const AUDIT_TARGET: &str = "authgate::audit";

struct Sink {
    format: LogFormat,
    access: bool,
    audit: bool,
    queue: LineQueue,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static WRITER: Mutex<Option<Writer>> = Mutex::new(None);

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// Starts the writer thread when either log is on. Call once, at start-up.
pub fn install(format: LogFormat, access: bool, audit: bool) -> std::io::Result<()> {
    if !(access || audit) || SINK.get().is_some() {
        return Ok(());
    }
    let (queue, writer) = LineQueue::start("access-log", QueueLimits::default(), std::io::stdout())?;
    if SINK
        .set(Sink {
            format,
            access,
            audit,
            queue,
        })
        .is_ok()
    {
        *WRITER.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
    }
    Ok(())
}

/// Writes the lines still queued and stops the writer (at exit).
pub fn flush() {
    let writer = WRITER.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(w) = writer {
        w.finish();
    }
}

/// Lines dropped so far because the output could not keep up.
pub fn dropped_total() -> u64 {
    SINK.get().map_or(0, |s| s.queue.dropped())
}

/// Whether the access log is on (callers skip gathering its fields otherwise).
pub fn access_enabled() -> bool {
    SINK.get().is_some_and(|s| s.access)
}

fn emit(sink: &Sink, target: &str, fields: impl FnOnce(&mut Line<'_>)) {
    LINE.with(|cell| {
        let Ok(mut buf) = cell.try_borrow_mut() else { return };
        let mut line = Line::begin(&mut buf, sink.format, target);
        fields(&mut line);
        line.end();
        sink.queue.push(&buf);
    });
}

/// One access-log line.
#[derive(Debug, Default)]
pub struct Access<'a> {
    /// `X-Request-Id`.
    pub request_id: &'a str,
    /// W3C trace id.
    pub trace_id: &'a str,
    /// The gateway's span id.
    pub span_id: &'a str,
    /// The client's address.
    pub client: Option<IpAddr>,
    /// HTTP method.
    pub method: &'a str,
    /// The normalised host (empty when the request had none).
    pub host: &'a str,
    /// Request path (no query: it may carry codes and tokens).
    pub path: &'a str,
    /// Response status (0: none was sent).
    pub status: u16,
    /// App name, `-` when unrouted.
    pub app: &'a str,
    /// The signed-in user, per `log.identity`.
    pub user: Option<&'a str>,
    /// The authentication outcome.
    pub auth: Option<&'a str>,
    /// The last backend tried.
    pub upstream: Option<SocketAddr>,
    /// The whole request.
    pub duration: Duration,
    /// Backend chosen to its response header.
    pub upstream_duration: Option<Duration>,
    /// Response body bytes sent.
    pub bytes: usize,
    /// Pingora's error type, when the request failed.
    pub error: Option<&'a str>,
}

/// Writes an access-log line (when the access log is on).
pub fn access(e: &Access<'_>) {
    let Some(sink) = SINK.get().filter(|s| s.access) else {
        return;
    };
    emit(sink, ACCESS_TARGET, |l| {
        l.str("request_id", e.request_id)
            .str("trace_id", e.trace_id)
            .str("span_id", e.span_id)
            .display("client", e.client)
            .str("method", e.method)
            .str("host", e.host)
            .str("path", e.path)
            .u64("status", u64::from(e.status))
            .str("app", e.app)
            .opt_str("user", e.user)
            .opt_str("auth", e.auth)
            .display("upstream", e.upstream)
            .millis("duration_ms", e.duration)
            .opt_millis("upstream_ms", e.upstream_duration)
            .u64("bytes", e.bytes as u64)
            .opt_str("error", e.error);
    });
}

/// One audit-log line: an authentication decision.
#[derive(Debug, Default)]
pub struct Audit<'a> {
    /// `X-Request-Id`.
    pub request_id: &'a str,
    /// The client's address.
    pub client: Option<IpAddr>,
    /// App name.
    pub app: &'a str,
    /// The normalised host.
    pub host: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Who, per `log.identity` (none when no credentials were presented).
    pub user: Option<&'a str>,
    /// The identity provider of the session or token.
    pub provider: &'a str,
    /// The rule that decided.
    pub rule: &'a str,
    /// The outcome.
    pub outcome: &'a str,
}

/// Writes an audit-log line (when the audit log is on).
pub fn audit(e: &Audit<'_>) {
    let Some(sink) = SINK.get().filter(|s| s.audit) else {
        return;
    };
    emit(sink, AUDIT_TARGET, |l| {
        l.str("request_id", e.request_id)
            .display("client", e.client)
            .str("app", e.app)
            .str("host", e.host)
            .str("path", e.path)
            .opt_str("user", e.user)
            .str("provider", e.provider)
            .str("rule", e.rule)
            .str("outcome", e.outcome);
    });
}
