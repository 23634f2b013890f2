//! Prometheus metrics: every outcome an operator would alert on.
//!
//! Metrics live in their own [`Registry`] (not the process-global one), created once at
//! start-up and shared through [`crate::state::State`]; tests build their own. Counters with a
//! known set of labels exist at 0 from the start, so that `increase()` sees their first event;
//! per-app handles are resolved once per snapshot ([`app::AppMetrics`]).

pub mod app;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets of the request and upstream latency histograms (seconds).
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric the gateway exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `authgate_requests_total{app,status}`: responses sent, by app and status code.
    pub requests: IntCounterVec,
    /// `authgate_upstream_response_seconds{app}`: time from choosing a backend to its response header.
    pub upstream_latency: HistogramVec,
    /// `authgate_upstream_errors_total{app,kind}`: connect failures, timeouts, no healthy backend.
    pub upstream_errors: IntCounterVec,
    /// `authgate_backend_healthy{app,backend}`: 1 when a backend is in rotation.
    pub backend_healthy: IntGaugeVec,
    /// `authgate_backend_health_changes_total{to}`: backends taken out (`down`) or back (`up`).
    pub backend_health_changes: IntCounterVec,
    /// `authgate_config_reloads_total{result}`: reloads applied (`success`), rejected (`failure`),
    /// or with no change in content (`unchanged`).
    pub reloads: IntCounterVec,
    /// `authgate_config_generation`: the generation of the config being served.
    pub config_generation: IntGauge,
    /// `authgate_config_last_reload_success_timestamp_seconds`.
    pub last_reload_success: IntGauge,
    /// `authgate_tls_handshakes_total{version}`: completed downstream TLS handshakes.
    pub tls_handshakes: IntCounterVec,
    /// `authgate_tls_certificate_selections_total{match}`: how the certificate was chosen.
    pub tls_certificate_selections: IntCounterVec,
    /// `authgate_tls_certificate_expiry_timestamp_seconds{name}`: notAfter of each served certificate.
    pub tls_certificate_expiry: IntGaugeVec,
    /// `authgate_rejected_requests_total{reason}`: requests refused before routing (400/404/414/421/431).
    pub rejected_requests: IntCounterVec,
    /// `authgate_upstream_cookies_dropped_total{app}`: `Set-Cookie`s for the gateway's own
    /// cookie names removed from upstream responses (an app fixing another tenant's session).
    pub upstream_cookies_dropped: IntCounterVec,
    /// `authgate_auth_decisions_total{app,outcome}`: allowed, bearer, skipped, redirect,
    /// unauthorized, forbidden, store_unavailable, idp_unavailable, rate_limited.
    pub auth_decisions: IntCounterVec,
    /// `authgate_logins_total{provider,result}`: completed and failed logins.
    pub logins: IntCounterVec,
    /// `authgate_logouts_total{provider,channel,result}`: sessions ended by `sign_out`,
    /// `everywhere`, `backchannel` or `frontchannel` logout; result `ok`, `invalid`,
    /// `replayed`, `rate_limited`, `store_unavailable`, `idp_unavailable`.
    pub logouts: IntCounterVec,
    /// `authgate_rate_limited_total{limit}`: requests answered 429 (`oauth2_start`,
    /// `oauth2_callback`, `bearer_failures`).
    pub rate_limited: IntCounterVec,
    /// `authgate_session_refreshes_total{provider,result}`: refreshed, refused, unavailable,
    /// store_unavailable, expired_unavailable, signed_out, superseded.
    pub session_refreshes: IntCounterVec,
    /// `authgate_session_cache_requests_total{result}`: hit or miss of the in-process cache.
    pub session_cache: IntCounterVec,
    /// `authgate_redis_command_seconds{op}`: Redis command latency.
    pub redis_latency: HistogramVec,
    /// `authgate_redis_errors_total{op,kind}`: Redis errors by kind (timeout, connection, readonly, ...).
    pub redis_errors: IntCounterVec,
    /// `authgate_redis_master_resolutions_total{trigger,result}`: finding the master through Sentinel.
    pub redis_resolutions: IntCounterVec,
    /// `authgate_redis_failovers_total`: master changes observed.
    pub redis_failovers: prometheus::IntCounter,
    /// `authgate_redis_replayed_writes_total{result}`: journal writes replayed after a master change.
    pub redis_replayed: IntCounterVec,
    /// `authgate_redis_pubsub_connected`: 1 while the invalidation subscription is up.
    pub redis_pubsub_connected: IntGauge,
    /// `authgate_session_invalidations_total{direction}`: sign-out invalidations sent and received.
    pub invalidations: IntCounterVec,
    /// `authgate_session_store_up`: 1 when the session store answers (probed at each scrape and
    /// `/ready`); 0 while Redis is unreachable. The replica stays ready either way.
    pub session_store_up: IntGauge,
    /// `authgate_config_file_rejected{app,file}`: 1 for each app file the served configuration
    /// left out (or kept at its last good version) because it is broken.
    pub config_file_rejected: IntGaugeVec,
    /// `authgate_upstream_resolution_failures_total{upstream}`: look-ups of an upstream name that
    /// failed (the pool keeps the name's last known addresses, or has none).
    pub upstream_resolution_failures: IntCounterVec,
    /// `authgate_request_duration_seconds{app}`: whole requests, first byte read to last written.
    pub request_duration: HistogramVec,
    /// `authgate_access_log_dropped_total`: access and audit log lines dropped because the log
    /// output could not keep up (the writer never blocks a request).
    pub access_log_dropped: prometheus::IntCounter,
    /// `authgate_trace_export_failures_total`: span batches the OTLP collector did not take
    /// (their spans are dropped; requests never wait for the collector).
    pub trace_export_failures: prometheus::IntCounter,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("authgate_requests_total", "Responses sent, by app and HTTP status"),
            &["app", "status"],
        )?;
        let upstream_latency = HistogramVec::new(
            HistogramOpts::new(
                "authgate_upstream_response_seconds",
                "Time from choosing a backend to receiving its response header",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["app"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new("authgate_upstream_errors_total", "Upstream failures by app and kind"),
            &["app", "kind"],
        )?;
        let backend_healthy = IntGaugeVec::new(
            Opts::new(
                "authgate_backend_healthy",
                "1 when the backend is healthy and in rotation",
            ),
            &["app", "backend"],
        )?;
        let backend_health_changes = IntCounterVec::new(
            Opts::new(
                "authgate_backend_health_changes_total",
                "Backends taken out of (down) or put back into (up) rotation",
            ),
            &["to"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("authgate_config_reloads_total", "Configuration reloads by result"),
            &["result"],
        )?;
        let config_generation = IntGauge::new(
            "authgate_config_generation",
            "Generation of the configuration being served",
        )?;
        let last_reload_success = IntGauge::new(
            "authgate_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration that was applied",
        )?;
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "authgate_tls_handshakes_total",
                "Completed downstream TLS handshakes by protocol version",
            ),
            &["version"],
        )?;
        let tls_certificate_selections = IntCounterVec::new(
            Opts::new(
                "authgate_tls_certificate_selections_total",
                "Certificate choices at handshake, by how the SNI matched",
            ),
            &["match"],
        )?;
        let tls_certificate_expiry = IntGaugeVec::new(
            Opts::new(
                "authgate_tls_certificate_expiry_timestamp_seconds",
                "notAfter of each served certificate, by its first name",
            ),
            &["name"],
        )?;
        let rejected_requests = IntCounterVec::new(
            Opts::new(
                "authgate_rejected_requests_total",
                "Requests refused before routing, by reason",
            ),
            &["reason"],
        )?;
        let upstream_cookies_dropped = IntCounterVec::new(
            Opts::new(
                "authgate_upstream_cookies_dropped_total",
                "Set-Cookie headers for the gateway's own cookies removed from upstream responses, by app",
            ),
            &["app"],
        )?;
        let auth_decisions = IntCounterVec::new(
            Opts::new(
                "authgate_auth_decisions_total",
                "Authentication decisions by app and outcome",
            ),
            &["app", "outcome"],
        )?;
        let logins = IntCounterVec::new(
            Opts::new("authgate_logins_total", "Logins by provider and result"),
            &["provider", "result"],
        )?;
        let logouts = IntCounterVec::new(
            Opts::new("authgate_logouts_total", "Logouts by provider, channel and result"),
            &["provider", "channel", "result"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "authgate_rate_limited_total",
                "Requests answered 429 by the per-client-address rate limits",
            ),
            &["limit"],
        )?;
        let session_refreshes = IntCounterVec::new(
            Opts::new(
                "authgate_session_refreshes_total",
                "Session token refreshes by provider and result",
            ),
            &["provider", "result"],
        )?;
        let session_cache = IntCounterVec::new(
            Opts::new(
                "authgate_session_cache_requests_total",
                "Session cache lookups by result",
            ),
            &["result"],
        )?;
        let redis_latency = HistogramVec::new(
            HistogramOpts::new("authgate_redis_command_seconds", "Redis command latency").buckets(vec![
                0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["op"],
        )?;
        let redis_errors = IntCounterVec::new(
            Opts::new("authgate_redis_errors_total", "Redis errors by operation and kind"),
            &["op", "kind"],
        )?;
        let redis_resolutions = IntCounterVec::new(
            Opts::new(
                "authgate_redis_master_resolutions_total",
                "Redis master look-ups by trigger and result",
            ),
            &["trigger", "result"],
        )?;
        let redis_failovers =
            prometheus::IntCounter::new("authgate_redis_failovers_total", "Redis master changes observed")?;
        let redis_replayed = IntCounterVec::new(
            Opts::new(
                "authgate_redis_replayed_writes_total",
                "Session writes replayed on a new master",
            ),
            &["result"],
        )?;
        let redis_pubsub_connected = IntGauge::new(
            "authgate_redis_pubsub_connected",
            "1 while the session invalidation subscription is up",
        )?;
        let invalidations = IntCounterVec::new(
            Opts::new(
                "authgate_session_invalidations_total",
                "Sign-out invalidations sent and received",
            ),
            &["direction"],
        )?;
        let session_store_up = IntGauge::new(
            "authgate_session_store_up",
            "1 when the session store answers, 0 while it is unreachable",
        )?;
        let config_file_rejected = IntGaugeVec::new(
            Opts::new(
                "authgate_config_file_rejected",
                "1 for each app file rejected by the last reload (the app keeps its last good version or is absent)",
            ),
            &["app", "file"],
        )?;
        let upstream_resolution_failures = IntCounterVec::new(
            Opts::new(
                "authgate_upstream_resolution_failures_total",
                "Failed look-ups of upstream names, by upstream as written",
            ),
            &["upstream"],
        )?;
        registry.register(Box::new(upstream_resolution_failures.clone()))?;
        registry.register(Box::new(session_store_up.clone()))?;
        registry.register(Box::new(config_file_rejected.clone()))?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "authgate_request_duration_seconds",
                "Whole requests through the gateway, from the request read to the last byte sent",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["app"],
        )?;
        let access_log_dropped = prometheus::IntCounter::new(
            "authgate_access_log_dropped_total",
            "Access and audit log lines dropped because the log output could not keep up",
        )?;
        let trace_export_failures = prometheus::IntCounter::new(
            "authgate_trace_export_failures_total",
            "Span batches the OTLP trace collector did not take (their spans are dropped)",
        )?;
        registry.register(Box::new(trace_export_failures.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new("authgate_build_info", "Always 1; the labels describe the running build"),
            &["version"],
        )?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        registry.register(Box::new(session_cache.clone()))?;
        registry.register(Box::new(redis_latency.clone()))?;
        registry.register(Box::new(redis_errors.clone()))?;
        registry.register(Box::new(redis_resolutions.clone()))?;
        registry.register(Box::new(redis_failovers.clone()))?;
        registry.register(Box::new(redis_replayed.clone()))?;
        registry.register(Box::new(redis_pubsub_connected.clone()))?;
        registry.register(Box::new(invalidations.clone()))?;
        registry.register(Box::new(auth_decisions.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(logouts.clone()))?;
        registry.register(Box::new(session_refreshes.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(upstream_latency.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(backend_healthy.clone()))?;
        registry.register(Box::new(backend_health_changes.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(config_generation.clone()))?;
        registry.register(Box::new(last_reload_success.clone()))?;
        registry.register(Box::new(tls_handshakes.clone()))?;
        registry.register(Box::new(tls_certificate_selections.clone()))?;
        registry.register(Box::new(tls_certificate_expiry.clone()))?;
        registry.register(Box::new(rejected_requests.clone()))?;
        registry.register(Box::new(upstream_cookies_dropped.clone()))?;
        let metrics = Self {
            registry,
            requests,
            upstream_latency,
            upstream_errors,
            backend_healthy,
            backend_health_changes,
            reloads,
            config_generation,
            last_reload_success,
            tls_handshakes,
            tls_certificate_selections,
            tls_certificate_expiry,
            rejected_requests,
            upstream_cookies_dropped,
            auth_decisions,
            logins,
            logouts,
            session_refreshes,
            rate_limited,
            session_cache,
            redis_latency,
            redis_errors,
            redis_resolutions,
            redis_failovers,
            redis_replayed,
            redis_pubsub_connected,
            invalidations,
            session_store_up,
            config_file_rejected,
            upstream_resolution_failures,
            request_duration,
            access_log_dropped,
            trace_export_failures,
        };
        metrics.zero_fixed_labels();
        Ok(metrics)
    }

    /// Creates, at 0, every series whose labels are known in advance.
    fn zero_fixed_labels(&self) {
        let zero = |vec: &IntCounterVec, sets: &[&[&str]]| {
            for labels in sets {
                vec.with_label_values(labels);
            }
        };
        zero(&self.reloads, &[&["success"], &["failure"], &["unchanged"]]);
        zero(&self.backend_health_changes, &[&["up"], &["down"]]);
        zero(&self.tls_handshakes, &[&["TLSv1.2"], &["TLSv1.3"]]);
        zero(
            &self.tls_certificate_selections,
            &[&["exact"], &["wildcard"], &["default"]],
        );
        zero(
            &self.rejected_requests,
            &[
                &["uri_too_long"],
                &["headers_too_large"],
                &["bad_target"],
                &["bad_host"],
                &["unknown_host"],
                &["misdirected"],
                &["bad_path"],
                &["ambiguous_path"],
                &["duplicate_authorization"],
            ],
        );
        zero(
            &self.rate_limited,
            &[&["oauth2_start"], &["oauth2_callback"], &["bearer_failures"]],
        );
        zero(&self.session_cache, &[&["hit"], &["miss"]]);
        zero(&self.redis_replayed, &[&["ok"], &["error"]]);
        zero(&self.invalidations, &[&["sent"], &["received"]]);
    }

    /// Creates, at 0, the login and refresh series of provider `name`.
    pub fn zero_provider(&self, name: &str) {
        for result in [
            "success",
            "refused",
            "provider_error",
            "bad_state",
            "bad_request",
            "idp_unavailable",
            "store_unavailable",
        ] {
            self.logins.with_label_values(&[name, result]);
        }
        for result in [
            "refreshed",
            "refused",
            "unavailable",
            "store_unavailable",
            "expired_unavailable",
            "signed_out",
            "superseded",
        ] {
            self.session_refreshes.with_label_values(&[name, result]);
        }
    }

    /// Removes every series of app `app` (deleted by a reload), so that dashboards show no
    /// ghost of it.
    pub fn remove_app(&self, app: &str) {
        remove_matching(&self.requests, "app", app);
        remove_matching(&self.upstream_latency, "app", app);
        remove_matching(&self.upstream_errors, "app", app);
        remove_matching(&self.backend_healthy, "app", app);
        remove_matching(&self.upstream_cookies_dropped, "app", app);
        remove_matching(&self.auth_decisions, "app", app);
        remove_matching(&self.request_duration, "app", app);
        remove_matching(&self.config_file_rejected, "app", app);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let dropped = crate::access_log::dropped_total();
        let counted = self.access_log_dropped.get();
        if dropped > counted {
            self.access_log_dropped.inc_by(dropped - counted);
        }
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// Removes the series of `vec` whose label `name` is `value`.
fn remove_matching<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    name: &str,
    value: &str,
) {
    use prometheus::core::Collector;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: std::collections::HashMap<&str, &str> =
                metric.get_label().iter().map(|l| (l.name(), l.value())).collect();
            if labels.get(name) == Some(&value) {
                // Absent already: nothing to remove.
                let _ = vec.remove(&labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_metrics() {
        let m = Metrics::new().unwrap();
        m.requests.with_label_values(&["app1", "200"]).inc();
        m.reloads.with_label_values(&["failure"]).inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("authgate_requests_total{app=\"app1\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("authgate_config_reloads_total{result=\"failure\"} 1"));
    }

    #[test]
    fn counters_with_known_labels_start_at_zero() {
        let m = Metrics::new().unwrap();
        m.zero_provider("corp");
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            "authgate_config_reloads_total{result=\"failure\"} 0",
            "authgate_rejected_requests_total{reason=\"bad_host\"} 0",
            "authgate_rate_limited_total{limit=\"bearer_failures\"} 0",
            "authgate_session_refreshes_total{provider=\"corp\",result=\"superseded\"} 0",
            "authgate_logins_total{provider=\"corp\",result=\"idp_unavailable\"} 0",
            "authgate_access_log_dropped_total 0",
            "authgate_redis_failovers_total 0",
            "authgate_trace_export_failures_total 0",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        assert!(text.contains(&format!(
            "authgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_open_fds "), "{text}");
    }

    #[test]
    fn a_removed_app_leaves_no_series_and_others_keep_theirs() {
        let m = Metrics::new().unwrap();
        for app in ["gone", "kept"] {
            let handles = app::AppMetrics::new(&m, app, true);
            handles.response(200);
            handles.response(599);
            handles.upstream_latency(0.1);
            handles.request_duration(0.1);
            m.backend_healthy.with_label_values(&[app, "127.0.0.1:1"]).set(1);
            m.config_file_rejected.with_label_values(&[app, "apps.d/x.yaml"]).set(0);
        }
        m.remove_app("gone");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains("app=\"gone\""), "{text}");
        for family in [
            "authgate_requests_total",
            "authgate_upstream_response_seconds_count",
            "authgate_upstream_errors_total",
            "authgate_backend_healthy",
            "authgate_upstream_cookies_dropped_total",
            "authgate_auth_decisions_total",
            "authgate_request_duration_seconds_count",
            "authgate_config_file_rejected",
        ] {
            assert!(text.contains(&format!("{family}{{app=\"kept\"")), "{family}\n{text}");
        }
    }
}
