//! The proxy's observability glue, kept apart from the request logic: request ids and trace
//! context in, the per-app metrics, the access log and the audit log out.

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::{Error, Result};

use super::RequestCtx;
use crate::access_log::{self, Access, Audit};
use crate::auth::flow::{Decided, Decision, Granted};
use crate::auth::outcome::Outcome;
use crate::auth::policy::Identity;
use crate::config::schema::LogIdentity;
use crate::state::State;
use crate::trace_context::{RequestTrace, ResponseRequestId};

/// Reads (or makes) the request's ids, first thing for every request once its client is
/// known: a trusted proxy's (`server.trusted_proxies`) `X-Request-Id` is kept, any other
/// peer's replaced.
pub(super) fn begin(session: &mut Session, ctx: &mut RequestCtx) {
    let trusted = ctx.client.as_ref().is_some_and(|c| c.peer_trusted);
    let trace = RequestTrace::from_request(session.req_header(), trusted);
    if let Some(module) = session.downstream_modules_ctx.get_mut::<ResponseRequestId>() {
        module.value = Some(trace.request_id.clone());
    }
    ctx.trace = Some(trace);
    super::spans::begin(session, ctx);
}

/// Sets `X-Request-Id` and `traceparent` (and drops a stale `tracestate`) upstream.
pub(super) fn upstream_headers(ctx: &RequestCtx, upstream: &mut RequestHeader) -> Result<()> {
    match &ctx.trace {
        Some(trace) => trace.apply_upstream(upstream),
        None => Ok(()),
    }
}

/// Notes the upstream's response header: its latency, in the metrics and for the access log.
pub(super) fn upstream_responded(ctx: &mut RequestCtx, status: u16) {
    super::spans::upstream_responded(ctx, status);
    if let Some(started) = ctx.upstream_started {
        let elapsed = started.elapsed();
        ctx.upstream_elapsed = Some(elapsed);
        if let Some(app) = &ctx.app {
            app.metrics.upstream_latency(elapsed.as_secs_f64());
        }
    }
}

/// Notes a route skipped by `skip_auth_routes`.
pub(super) fn skipped(ctx: &mut RequestCtx) {
    if let Some(app) = &ctx.app {
        app.metrics.auth_decision(Outcome::Skipped);
    }
    ctx.auth = Some(Outcome::Skipped);
}

/// Notes an authentication decision for the access log and writes the audit line.
pub(super) fn decided(session: &Session, ctx: &mut RequestCtx, decided: &Decided) {
    ctx.auth = Some(decided.outcome);
    let who = match &decided.decision {
        Decision::Pass(granted) => granted.as_ref(),
        Decision::Answer(_) => decided.refused.as_ref(),
    };
    let identity = ctx.snapshot.as_ref().map_or(LogIdentity::Sub, |s| s.log_identity);
    access_log::audit(&Audit {
        request_id: ctx.trace.as_ref().map_or("-", |t| t.request_id()),
        client: client_addr(ctx),
        app: ctx.app_name(),
        host: ctx.host.as_deref().unwrap_or_default(),
        path: logged_path(session, ctx),
        user: who.and_then(|g| logged_user(g.identity(), identity)),
        provider: ctx
            .app
            .as_ref()
            .and_then(|a| a.endpoint_auth())
            .map_or("-", |a| a.provider.name.as_str()),
        rule: decided.rule,
        outcome: decided.outcome.as_str(),
    });
}

/// The client's address, as far as trusted proxies vouch for it.
fn client_addr(ctx: &RequestCtx) -> Option<std::net::IpAddr> {
    ctx.client.as_ref().and_then(|c| c.addr)
}

/// The canonical path once known, else the path as received.
fn logged_path<'s>(session: &'s Session, ctx: &'s RequestCtx) -> &'s str {
    let req = session.req_header();
    ctx.target.as_ref().map_or(req.uri.path(), |t| t.path(req))
}

/// The user as `log.identity` wants them logged.
fn logged_user(identity: &Identity, mode: LogIdentity) -> Option<&str> {
    match mode {
        LogIdentity::Sub => Some(identity.user()),
        LogIdentity::Email => Some(identity.email.as_deref().unwrap_or(identity.user())),
        LogIdentity::None => None,
    }
}

/// The end of every request: the response counter, the duration histogram, the access log.
pub(super) fn finish(state: &State, session: &Session, e: Option<&Error>, ctx: &mut RequestCtx) {
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    if let Some(spans) = ctx.spans.take() {
        super::spans::finish(spans, ctx, status, logged_path(session, ctx), e);
    }
    let duration = ctx.started.elapsed();
    match &ctx.app {
        Some(app) => {
            app.metrics.response(status);
            app.metrics.request_duration(duration.as_secs_f64());
        }
        None => state
            .metrics
            .requests
            .with_label_values(&["-", itoa::Buffer::new().format(status)])
            .inc(),
    }
    if !access_log::access_enabled() {
        return;
    }
    let req = session.req_header();
    let identity = ctx.snapshot.as_ref().map_or(LogIdentity::Sub, |s| s.log_identity);
    access_log::access(&Access {
        request_id: ctx.trace.as_ref().map_or("-", |t| t.request_id()),
        trace_id: ctx.trace.as_ref().map_or("-", |t| t.trace_id()),
        span_id: ctx.trace.as_ref().map_or("-", |t| t.span_id()),
        client: client_addr(ctx),
        method: req.method.as_str(),
        host: ctx.host.as_deref().unwrap_or_default(),
        path: logged_path(session, ctx),
        status,
        app: ctx.app_name(),
        user: ctx
            .granted
            .as_ref()
            .map(Granted::identity)
            .and_then(|id| logged_user(id, identity)),
        auth: ctx.auth.map(Outcome::as_str),
        upstream: ctx.tried.last().copied(),
        duration,
        upstream_duration: ctx.upstream_elapsed,
        bytes: session.body_bytes_sent(),
        error: e.map(|e| e.etype().as_str()),
    });
}
