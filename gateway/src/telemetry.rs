//! OpenTelemetry traces exported with OTLP/HTTP (protobuf), off by default (`tracing:` in
//! the main file, read at start).
//!
//! When off, nothing here runs on the request path: [`tracer`] is an empty `OnceLock` and
//! callers skip every span. When on, finished spans go into the SDK's batch processor, a
//! bounded queue drained by its own thread, so a slow or unreachable collector never blocks
//! a request: the queue drops spans when full, failed exports are counted
//! (`authgate_trace_export_failures_total`) and logged once per outage.
//!
//! The request's server span is made by the proxy (`proxy::spans`), with the ids the access
//! log and the upstream see; code below it opens child spans of the current OpenTelemetry
//! context with [`child`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{Span as _, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;

use crate::config::traces::TracingSection;

/// The exporting pipeline, once started.
struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP trace exporter: {0}")]
    Exporter(String),
}

/// Starts exporting traces when `section.enabled`; returns whether it did. Called once, at
/// start; `export_failures` counts the batches the collector did not take.
pub fn start(section: &TracingSection, export_failures: IntCounter) -> Result<bool, TelemetryError> {
    if !section.enabled || TELEMETRY.get().is_some() {
        return Ok(TELEMETRY.get().is_some());
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(url) = section.traces_url() {
        builder = builder.with_endpoint(url);
    }
    let exporter = builder.build().map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let service = section
        .service_name
        .clone()
        .or_else(|| std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "authgate".to_owned());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Counted {
            inner: exporter,
            failures: export_failures,
            failing: AtomicBool::new(false),
        })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            section.sample_ratio,
        ))))
        .with_resource(resource)
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "authgate");
    let started = TELEMETRY.set(Telemetry { provider, tracer }).is_ok();
    Ok(started)
}

/// Exports the spans still queued and stops the exporter (at exit; waits a few seconds at
/// most for the collector).
pub fn shutdown() {
    if let Some(t) = TELEMETRY.get() {
        if let Err(e) = t.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::debug!(error = %e, "trace exporter shutdown");
        }
    }
}

/// The tracer, when tracing is on.
pub fn tracer() -> Option<&'static SdkTracer> {
    TELEMETRY.get().map(|t| &t.tracer)
}

/// A child span `name` of the current context's span, when tracing is on and that span is
/// sampled; it ends when dropped. Background work (no request span current) opens none.
pub fn child(name: &'static str) -> Option<Span> {
    let tracer = tracer()?;
    Context::map_current(|cx| {
        cx.span()
            .span_context()
            .is_sampled()
            .then(|| tracer.start_with_context(name, cx))
    })
}

/// As [`child`], with `attributes` (computed only when the span is made).
pub fn child_with(name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) -> Option<Span> {
    let mut span = child(name)?;
    span.set_attributes(attributes());
    Some(span)
}

/// Marks `span` failed with `error`, when there is one.
pub fn fail(span: &mut Option<Span>, error: &dyn std::fmt::Display) {
    if let Some(span) = span {
        span.set_status(Status::error(error.to_string()));
    }
}

/// The OTLP exporter, counting the batches it fails to deliver.
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    failures: IntCounter,
    /// The last export failed (log once per outage, and its end).
    failing: AtomicBool,
}

impl SpanExporter for Counted {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Err(e) => {
                self.failures.inc();
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, spans, "cannot export traces; spans are dropped until the collector answers");
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("trace export works again");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
