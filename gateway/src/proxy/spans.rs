//! OpenTelemetry spans of a request (when `tracing.enabled`; nothing is made otherwise).
//!
//! The server span takes the ids [`crate::trace_context`] computed: its trace id is the one in
//! the access log and in the `traceparent` sent upstream, its span id is the access log's
//! `span_id` and the upstream's parent id, and its parent is the caller's span from the
//! incoming `traceparent`. Children: `tls.handshake` (first request of a connection),
//! `auth` (with the session store and provider calls below it) and `upstream` (one per
//! attempt, from choosing the backend to its response header).

use std::borrow::Cow;
use std::future::Future;
use std::time::SystemTime;

use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::Span;
use pingora::proxy::Session;
use pingora::Error;

use super::RequestCtx;
use crate::state::Class;
use crate::telemetry;
use crate::tls::TlsConnInfo;

/// The spans of one traced request.
pub(crate) struct RequestSpans {
    /// The context holding the server span: the parent of every child.
    server: Context,
    /// The upstream attempt in progress.
    upstream: Option<Span>,
}

/// Opens the server span, once the request's trace ids are known.
pub(super) fn begin(session: &Session, ctx: &mut RequestCtx) {
    let (Some(tracer), Some(trace)) = (telemetry::tracer(), &ctx.trace) else {
        return;
    };
    let (Ok(trace_id), Ok(span_id)) = (TraceId::from_hex(trace.trace_id()), SpanId::from_hex(trace.span_id())) else {
        return;
    };
    let parent = match trace.parent_span_id().map(SpanId::from_hex) {
        Some(Ok(parent_id)) => {
            let flags = u8::from_str_radix(trace.flags(), 16).unwrap_or(0);
            let remote = SpanContext::new(trace_id, parent_id, TraceFlags::new(flags), true, TraceState::NONE);
            Context::new().with_remote_span_context(remote)
        }
        _ => Context::new(),
    };
    let req = session.req_header();
    let started = SystemTime::now()
        .checked_sub(ctx.started.elapsed())
        .unwrap_or_else(SystemTime::now);
    let span = tracer
        .span_builder(Cow::Owned(req.method.as_str().to_owned()))
        .with_kind(SpanKind::Server)
        .with_trace_id(trace_id)
        .with_span_id(span_id)
        .with_start_time(started)
        .with_attributes([
            KeyValue::new("http.request.method", req.method.as_str().to_owned()),
            KeyValue::new("url.scheme", "https"),
            KeyValue::new("authgate.request_id", trace.request_id().to_owned()),
        ])
        .start_with_context(tracer, &parent);
    let server = parent.with_span(span);
    tls_handshake(session, &server);
    ctx.spans = Some(RequestSpans { server, upstream: None });
}

/// The connection's TLS handshake, as a child of its first request's span.
fn tls_handshake(session: &Session, server: &Context) {
    let Some(tracer) = telemetry::tracer() else { return };
    let Some(digest) = session.digest() else { return };
    let Some(info) = digest
        .ssl_digest
        .as_ref()
        .and_then(|s| s.extension.get::<TlsConnInfo>())
    else {
        return;
    };
    let Some((start, end)) = info.take_handshake(&digest.timing_digest) else {
        return;
    };
    let mut span = tracer
        .span_builder("tls.handshake")
        .with_kind(SpanKind::Internal)
        .with_start_time(start)
        .with_attributes([KeyValue::new("tls.protocol.version", info.version)])
        .start_with_context(tracer, server);
    if let Some(sni) = &info.sni {
        span.set_attribute(KeyValue::new("tls.server_name", sni.clone()));
    }
    span.end_with_timestamp(end);
}

/// Runs `work` inside a child span `name` of the request (with the app as attribute), so
/// that spans opened below it ([`telemetry::child`]) are its children.
pub(super) async fn in_child<F: Future>(ctx: &RequestCtx, name: &'static str, work: F) -> F::Output {
    let (Some(tracer), Some(spans)) = (telemetry::tracer(), &ctx.spans) else {
        return work.await;
    };
    let span = tracer
        .span_builder(name)
        .with_attributes([KeyValue::new("authgate.app", ctx.app_name().to_owned())])
        .start_with_context(tracer, &spans.server);
    let cx = spans.server.with_span(span);
    let out = work.with_context(cx.clone()).await;
    cx.span().end();
    out
}

/// Notes how the request is handled (`authgate.route_class`).
pub(super) fn route(ctx: &RequestCtx, class: Class) {
    let Some(spans) = &ctx.spans else { return };
    let class = match class {
        Class::Jwks => "jwks",
        Class::Endpoint => "oauth2",
        Class::Unprotected => "unprotected",
        Class::Skipped => "skipped",
        Class::Api => "api",
        Class::Protected => "protected",
        Class::Ambiguous => "ambiguous",
    };
    spans
        .server
        .span()
        .set_attribute(KeyValue::new("authgate.route_class", class));
}

/// Opens the span of an upstream attempt (a retry ends the previous one as failed).
pub(super) fn upstream_chosen(ctx: &mut RequestCtx) {
    let (Some(tracer), Some(addr)) = (telemetry::tracer(), ctx.tried.last().copied()) else {
        return;
    };
    let app = ctx.app_name().to_owned();
    let Some(spans) = &mut ctx.spans else { return };
    if let Some(mut previous) = spans.upstream.take() {
        previous.set_status(Status::error("retried on another backend"));
    }
    let span = tracer
        .span_builder("upstream")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("authgate.app", app),
            KeyValue::new("server.address", addr.ip().to_string()),
            KeyValue::new("server.port", i64::from(addr.port())),
            KeyValue::new("authgate.attempt", ctx.tried.len() as i64),
        ])
        .start_with_context(tracer, &spans.server);
    spans.upstream = Some(span);
}

/// Notes the upstream connection (new or reused) in the attempt's span.
pub(super) fn upstream_connected(ctx: &mut RequestCtx, reused: bool) {
    if let Some(span) = ctx.spans.as_mut().and_then(|s| s.upstream.as_mut()) {
        span.add_event("connected", vec![KeyValue::new("reused", reused)]);
    }
}

/// Ends the attempt's span at the upstream's response header.
pub(super) fn upstream_responded(ctx: &mut RequestCtx, status: u16) {
    if let Some(mut span) = ctx.spans.as_mut().and_then(|s| s.upstream.take()) {
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
        if status >= 500 {
            span.set_status(Status::error(""));
        }
    }
}

/// Ends the request's spans: the response status, app, auth outcome and error.
pub(super) fn finish(mut spans: RequestSpans, ctx: &RequestCtx, status: u16, path: &str, e: Option<&Error>) {
    if let Some(mut upstream) = spans.upstream.take() {
        upstream.set_status(Status::error(e.map_or("no response", |e| e.etype().as_str())));
    }
    let span = spans.server.span();
    let mut attributes = vec![
        KeyValue::new("authgate.app", ctx.app_name().to_owned()),
        KeyValue::new("url.path", path.to_owned()),
        KeyValue::new("http.response.status_code", i64::from(status)),
    ];
    if let Some(host) = &ctx.host {
        attributes.push(KeyValue::new("server.address", host.clone()));
    }
    if let Some(addr) = ctx.client.as_ref().and_then(|c| c.addr) {
        attributes.push(KeyValue::new("client.address", addr.to_string()));
    }
    if let Some(outcome) = ctx.auth {
        attributes.push(KeyValue::new("authgate.auth.outcome", outcome.as_str()));
    }
    if let Some(e) = e {
        attributes.push(KeyValue::new("error.type", e.etype().as_str()));
    }
    span.set_attributes(attributes);
    if status >= 500 || (status == 0 && e.is_some()) {
        span.set_status(Status::error(e.map_or("", |e| e.etype().as_str()).to_owned()));
    }
    span.end();
}
