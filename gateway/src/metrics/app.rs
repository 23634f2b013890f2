//! Metric handles of one app, resolved once when a snapshot is built (and carried over from
//! the previous snapshot for an app of the same name), so that a request increments counters
//! directly instead of hashing label values on every request.

use std::sync::OnceLock;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use super::Metrics;
use crate::auth::outcome::Outcome;

/// Statuses whose `authgate_requests_total` series are kept as handles (others are looked up).
const STATUSES: [u16; 25] = [
    200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 409, 413, 414, 421, 429, 431, 500, 502,
    503, 504,
];

/// Upstream error kinds of `authgate_upstream_errors_total`.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamError {
    /// A connection to a backend failed.
    Connect,
    /// A backend did not answer in time.
    Timeout,
    /// No backend is healthy.
    NoHealthyBackend,
}

impl UpstreamError {
    const ALL: [UpstreamError; 3] = [
        UpstreamError::Connect,
        UpstreamError::Timeout,
        UpstreamError::NoHealthyBackend,
    ];

    fn as_str(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::NoHealthyBackend => "no_healthy_backend",
        }
    }
}

/// The handles of one app. Counters an operator alerts on exist (at 0) from the moment the app
/// is loaded; histograms and per-status series appear with their first observation.
pub struct AppMetrics {
    name: String,
    vecs: Vecs,
    by_status: [OnceLock<IntCounter>; STATUSES.len()],
    auth: Option<[IntCounter; Outcome::ALL.len()]>,
    upstream_errors: [IntCounter; UpstreamError::ALL.len()],
    cookies_dropped: IntCounter,
    upstream_latency: OnceLock<Histogram>,
    request_duration: OnceLock<Histogram>,
}

/// The labelled families the lazily resolved handles come from.
struct Vecs {
    requests: IntCounterVec,
    auth_decisions: IntCounterVec,
    upstream_latency: HistogramVec,
    request_duration: HistogramVec,
}

impl std::fmt::Debug for AppMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppMetrics")
            .field("app", &self.name)
            .finish_non_exhaustive()
    }
}

impl AppMetrics {
    /// Resolves the handles of app `name` (with auth-decision counters when `protected`).
    pub fn new(metrics: &Metrics, name: &str, protected: bool) -> AppMetrics {
        AppMetrics {
            name: name.to_owned(),
            vecs: Vecs {
                requests: metrics.requests.clone(),
                auth_decisions: metrics.auth_decisions.clone(),
                upstream_latency: metrics.upstream_latency.clone(),
                request_duration: metrics.request_duration.clone(),
            },
            by_status: std::array::from_fn(|_| OnceLock::new()),
            auth: protected
                .then(|| Outcome::ALL.map(|o| metrics.auth_decisions.with_label_values(&[name, o.as_str()]))),
            upstream_errors: UpstreamError::ALL.map(|k| metrics.upstream_errors.with_label_values(&[name, k.as_str()])),
            cookies_dropped: metrics.upstream_cookies_dropped.with_label_values(&[name]),
            upstream_latency: OnceLock::new(),
            request_duration: OnceLock::new(),
        }
    }

    /// Whether these handles fit app `name` with or without an auth block.
    pub fn fits(&self, name: &str, protected: bool) -> bool {
        self.name == name && self.auth.is_some() == protected
    }

    /// Counts a response.
    pub fn response(&self, status: u16) {
        match STATUSES.binary_search(&status) {
            Ok(i) => self.by_status[i]
                .get_or_init(|| {
                    self.vecs
                        .requests
                        .with_label_values(&[&self.name, itoa::Buffer::new().format(status)])
                })
                .inc(),
            Err(_) => self
                .vecs
                .requests
                .with_label_values(&[&self.name, itoa::Buffer::new().format(status)])
                .inc(),
        }
    }

    /// Counts an authentication decision.
    pub fn auth_decision(&self, outcome: Outcome) {
        match &self.auth {
            Some(counters) => counters[outcome.index()].inc(),
            None => self
                .vecs
                .auth_decisions
                .with_label_values(&[&self.name, outcome.as_str()])
                .inc(),
        }
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].inc();
    }

    /// Counts `Set-Cookie`s for the gateway's own cookies removed from an upstream response.
    pub fn upstream_cookies_dropped(&self, dropped: usize) {
        self.cookies_dropped.inc_by(dropped as u64);
    }

    /// Observes the time to the upstream's response header.
    pub fn upstream_latency(&self, seconds: f64) {
        self.upstream_latency
            .get_or_init(|| self.vecs.upstream_latency.with_label_values(&[&self.name]))
            .observe(seconds);
    }

    /// Observes a whole request, first byte read to last byte written.
    pub fn request_duration(&self, seconds: f64) {
        self.request_duration
            .get_or_init(|| self.vecs.request_duration.with_label_values(&[&self.name]))
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_count_into_the_labelled_series() {
        assert!(STATUSES.windows(2).all(|w| w[0] < w[1]), "sorted for binary_search");
        let m = Metrics::new().unwrap();
        let app = AppMetrics::new(&m, "app1", true);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("authgate_auth_decisions_total{app=\"app1\",outcome=\"idp_unavailable\"} 0"));
        assert!(text.contains("authgate_upstream_errors_total{app=\"app1\",kind=\"connect\"} 0"));
        assert!(text.contains("authgate_upstream_cookies_dropped_total{app=\"app1\"} 0"));
        assert!(text.contains("authgate_auth_decisions_total{app=\"app1\",outcome=\"rate_limited\"} 0"));
        app.response(200);
        app.response(200);
        app.response(599);
        app.auth_decision(Outcome::Forbidden);
        app.upstream_error(UpstreamError::Timeout);
        app.upstream_cookies_dropped(2);
        app.request_duration(0.002);
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            "authgate_requests_total{app=\"app1\",status=\"200\"} 2",
            "authgate_requests_total{app=\"app1\",status=\"599\"} 1",
            "authgate_auth_decisions_total{app=\"app1\",outcome=\"forbidden\"} 1",
            "authgate_upstream_errors_total{app=\"app1\",kind=\"timeout\"} 1",
            "authgate_upstream_cookies_dropped_total{app=\"app1\"} 2",
            "authgate_request_duration_seconds_count{app=\"app1\"} 1",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
    }
}
