//! Active health checks of every pool, and the background service that schedules them and
//! the periodic re-resolution of upstream names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::connectors::http::Connector as HttpConnector;
use pingora::http::RequestHeader;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::Backend;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::{Error, ErrorType, Result};

use super::{PoolSpec, Resolver, SystemResolver, Target, Targets};
use crate::config::schema::HealthCheckSpec;
use crate::metrics::Metrics;
use crate::state::State;

/// The HTTP connector of every health check. One per process: building a connector loads
/// the system trust store (~100 ms and ~2 MB), so one per pool made 1,000 apps take minutes to
/// start and gigabytes of memory.
static HEALTH_CONNECTOR: std::sync::LazyLock<HttpConnector> = std::sync::LazyLock::new(|| HttpConnector::new(None));

/// Probes the backends of one pool: a TCP connect, or a GET of `health_check.path`.
pub(super) struct PoolHealthCheck {
    health: HealthCheckSpec,
    targets: Targets,
    metrics: Arc<Metrics>,
}

impl PoolHealthCheck {
    /// The health check of a pool built from `spec`, probing its current `targets`.
    pub(super) fn boxed(spec: &PoolSpec, targets: Targets, metrics: Arc<Metrics>) -> Box<Self> {
        Box::new(Self {
            health: spec.health.clone(),
            targets,
            metrics,
        })
    }

    async fn probe(&self, target: &Target) -> Result<()> {
        let timeout = self.health.timeout.0;
        let Some(path) = &self.health.path else {
            return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target.spec.addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Error::e_because(ErrorType::ConnectError, "health check connect", e),
                Err(_) => Error::e_explain(ErrorType::ConnectTimedout, "health check connect"),
            };
        };
        let mut peer = target.peer.clone();
        peer.options.connection_timeout = Some(timeout);
        peer.options.total_connection_timeout = Some(timeout);
        peer.options.read_timeout = Some(timeout);
        peer.options.write_timeout = Some(timeout);
        let (mut session, _) = HEALTH_CONNECTOR.get_http_session(&peer).await?;
        let mut req = RequestHeader::build("GET", path.as_bytes(), None)?;
        req.insert_header(http::header::HOST, &target.spec.host)?;
        req.insert_header(http::header::USER_AGENT, "authgate-health-check")?;
        session.write_request_header(Box::new(req)).await?;
        session.finish_request_body().await?;
        session.read_response_header().await?;
        let status = session.response_header().map(|r| r.status.as_u16()).unwrap_or(0);
        if !(200..400).contains(&status) {
            return Error::e_explain(
                ErrorType::new("HealthCheckStatus"),
                format!("GET {path} answered {status}"),
            );
        }
        while session.read_response_body().await?.is_some() {}
        Ok(())
    }
}

#[async_trait]
impl HealthCheck for PoolHealthCheck {
    async fn check(&self, backend: &Backend) -> Result<()> {
        let target = backend
            .addr
            .as_inet()
            .and_then(|a| self.targets.load().get(a).cloned())
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "unknown backend"))?;
        let result = tokio::time::timeout(self.health.timeout.0 * 2, self.probe(&target)).await;
        match result {
            Ok(r) => r,
            Err(_) => Error::e_explain(ErrorType::ReadTimedout, "health check timed out"),
        }
    }

    async fn health_status_change(&self, backend: &Backend, healthy: bool) {
        let target = backend.addr.as_inet().and_then(|a| self.targets.load().get(a).cloned());
        let label = target.as_ref().map_or("?", |t| t.spec.label.as_str());
        if healthy {
            tracing::info!(backend = %backend.addr, upstream = label, "backend is healthy again");
        } else {
            tracing::warn!(backend = %backend.addr, upstream = label, "backend failed its health check and is taken out");
        }
        self.metrics
            .backend_health_changes
            .with_label_values(&[if healthy { "up" } else { "down" }])
            .inc();
    }

    fn health_threshold(&self, success: bool) -> usize {
        if success {
            self.health.healthy_threshold
        } else {
            self.health.unhealthy_threshold
        }
    }
}

/// Background service that runs the health checks of the current snapshot's pools and
/// re-resolves their names every `server.resolve_interval`.
pub struct HealthChecker {
    state: Arc<State>,
    resolver: Arc<dyn Resolver>,
}

impl HealthChecker {
    /// A checker of `state`'s pools, resolving names with the system resolver.
    pub fn new(state: Arc<State>) -> Self {
        Self {
            state,
            resolver: Arc::new(SystemResolver),
        }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    let now = Instant::now();
                    let snapshot = self.state.snapshot();
                    let resolve_every = snapshot.settings.resolve_interval;
                    for pool in snapshot.pools.iter() {
                        if pool.claim_health_check(now) {
                            tokio::spawn(pool.clone().run_health_check());
                        }
                        if pool.claim_resolve(now, resolve_every) {
                            tokio::spawn(pool.clone().refresh_names(self.resolver.clone()));
                        }
                    }
                }
            }
        }
    }
}
