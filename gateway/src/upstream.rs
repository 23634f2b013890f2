//! Upstream pools: backends of an app, load balancing, and active health checks.
//!
//! A [`Pool`] is built from a [`PoolSpec`]; snapshots reuse the `Arc<Pool>` of an equal spec,
//! so a reload that leaves an app's backends alone keeps their health state.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use pingora::connectors::http::Connector as HttpConnector;
use pingora::http::RequestHeader;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::selection::{Consistent, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::protocols::tls::CaType;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::tls::x509::X509;
use pingora::{Error, ErrorType, Result};

use crate::config::schema::{HealthCheckSpec, LoadBalancing, UpstreamTlsSpec};
use crate::config::{resolve, Fingerprint};
use crate::metrics::Metrics;
use crate::state::State;

/// One backend address with what it takes to connect to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetSpec {
    /// The resolved address.
    pub addr: SocketAddr,
    /// `https://` upstream.
    pub tls: bool,
    /// The name from the config (SNI and Host of health checks).
    pub host: String,
    /// The upstream as written in the app file (for logs).
    pub label: String,
}

/// Errors as `(field, message)` pairs, the field relative to the app file.
pub type FieldErrors = Vec<(String, String)>;

/// Everything a pool is built from; equal specs share one pool across reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    /// Backends, in configuration order.
    pub targets: Vec<TargetSpec>,
    /// Selection algorithm.
    pub algorithm: LoadBalancing,
    /// Active health check.
    pub health: HealthCheckSpec,
    /// TLS settings for `https://` backends.
    pub tls: UpstreamTlsSpec,
    /// Digest of the CA file's bytes, so a rotated CA builds a new pool.
    pub ca_digest: u64,
}

impl PoolSpec {
    /// Parses and resolves the `upstreams` of an app (blocking DNS: call off the hot path).
    /// Errors are `(field, message)`.
    pub fn parse(
        upstreams: &[String],
        algorithm: LoadBalancing,
        health: Option<&HealthCheckSpec>,
        tls: Option<&UpstreamTlsSpec>,
        app_dir: &Path,
        fingerprint: &mut Fingerprint,
    ) -> std::result::Result<(PoolSpec, Option<Arc<CaType>>), FieldErrors> {
        let mut errors = Vec::new();
        let mut targets = Vec::new();
        if upstreams.is_empty() {
            errors.push((
                "upstreams".to_owned(),
                "at least one upstream is required, e.g. [\"127.0.0.1:9001\"]".to_owned(),
            ));
        }
        for (i, raw) in upstreams.iter().enumerate() {
            match parse_upstream(raw) {
                Ok(mut resolved) => targets.append(&mut resolved),
                Err(msg) => errors.push((format!("upstreams[{i}]"), msg)),
            }
        }
        let health = health.cloned().unwrap_or_default();
        if health.interval.0 < Duration::from_millis(100) {
            errors.push(("health_check.interval".to_owned(), "must be at least 100ms".to_owned()));
        }
        if health.healthy_threshold == 0 || health.unhealthy_threshold == 0 {
            errors.push(("health_check".to_owned(), "thresholds must be at least 1".to_owned()));
        }
        if let Some(path) = &health.path {
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                errors.push((
                    "health_check.path".to_owned(),
                    format!("{path:?} must be an absolute path such as /healthz"),
                ));
            }
        }
        let tls = tls.cloned().unwrap_or_default();
        let mut ca = None;
        let mut ca_digest = 0;
        if let Some(ca_file) = &tls.ca_file {
            let path = resolve(app_dir, ca_file);
            match std::fs::read(&path) {
                Ok(pem) => {
                    fingerprint.add(&path, &pem);
                    let mut digest = Fingerprint::default();
                    digest.add(&path, &pem);
                    ca_digest = digest.value();
                    match X509::stack_from_pem(&pem) {
                        Ok(certs) if !certs.is_empty() => ca = Some(Arc::new(certs.into_boxed_slice())),
                        _ => errors.push((
                            "upstream_tls.ca_file".to_owned(),
                            format!("{} holds no PEM certificate", path.display()),
                        )),
                    }
                }
                Err(e) => errors.push((
                    "upstream_tls.ca_file".to_owned(),
                    format!("cannot read {}: {e}", path.display()),
                )),
            }
        }
        if errors.is_empty() {
            Ok((
                PoolSpec {
                    targets,
                    algorithm,
                    health,
                    tls,
                    ca_digest,
                },
                ca,
            ))
        } else {
            Err(errors)
        }
    }
}

/// Parses `host:port`, `http://host:port` or `https://host[:port]` and resolves it.
fn parse_upstream(raw: &str) -> std::result::Result<Vec<TargetSpec>, String> {
    let (tls, rest) = if let Some(r) = raw.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = raw.strip_prefix("http://") {
        (false, r)
    } else if raw.contains("://") {
        return Err(format!("{raw:?}: only http:// and https:// upstreams are supported"));
    } else {
        (false, raw)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(format!(
            "{raw:?} is not an upstream address: write host:port or https://host:port, without a path"
        ));
    }
    let (host, port) = split_host_port(rest, if tls { 443 } else { 80 })
        .ok_or_else(|| format!("{raw:?} is not an upstream address: write host:port, e.g. 127.0.0.1:9001"))?;
    if !tls && !raw.starts_with("http://") && !rest.contains(':') {
        return Err(format!("{raw:?} has no port: write host:port, e.g. {raw}:8080"));
    }
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("{raw:?}: cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{raw:?}: {host} resolves to no address"));
    }
    Ok(addrs
        .into_iter()
        .map(|addr| TargetSpec {
            addr,
            tls,
            host: host.clone(),
            label: raw.to_owned(),
        })
        .collect())
}

fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((h.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains(':') => Some((h.to_owned(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((s.to_owned(), default_port)),
    }
}

enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Consistent(LoadBalancer<Consistent>),
}

/// A target with its connection template.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where it came from.
    pub spec: TargetSpec,
    /// Address, TLS and verification settings; timeouts are set per request by the app.
    pub peer: HttpPeer,
}

/// The backends of one or more apps, load balanced and health checked.
pub struct Pool {
    spec: PoolSpec,
    balancer: Balancer,
    targets: HashMap<SocketAddr, Target>,
    next_check: Mutex<Instant>,
    checking: AtomicBool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl Pool {
    /// Builds a pool; backends start healthy and are probed from the next health-check tick.
    pub fn build(spec: PoolSpec, ca: Option<Arc<CaType>>, metrics: Arc<Metrics>) -> Result<Pool> {
        let mut targets = HashMap::new();
        let mut set = BTreeSet::new();
        for t in &spec.targets {
            let sni = if t.tls {
                spec.tls.server_name.clone().unwrap_or_else(|| t.host.clone())
            } else {
                String::new()
            };
            let mut peer = HttpPeer::new(t.addr, t.tls, sni);
            if t.tls {
                peer.options.verify_cert = !spec.tls.insecure_skip_verify;
                peer.options.verify_hostname = !spec.tls.insecure_skip_verify;
                peer.options.ca = ca.clone();
            }
            set.insert(Backend::new(&t.addr.to_string())?);
            targets.insert(t.addr, Target { spec: t.clone(), peer });
        }
        let check = Box::new(PoolHealthCheck {
            health: spec.health.clone(),
            targets: targets.clone(),
            metrics,
        });
        let mut backends = Backends::new(Static::new(set));
        backends.set_health_check(check);
        let balancer = match spec.algorithm {
            LoadBalancing::RoundRobin => Balancer::RoundRobin(LoadBalancer::from_backends(backends)),
            LoadBalancing::ConsistentHash => Balancer::Consistent(LoadBalancer::from_backends(backends)),
        };
        let updated = match &balancer {
            Balancer::RoundRobin(lb) => lb.update().now_or_never(),
            Balancer::Consistent(lb) => lb.update().now_or_never(),
        };
        match updated {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => return Error::e_explain(ErrorType::InternalError, "static discovery did not complete"),
        }
        Ok(Pool {
            spec,
            balancer,
            targets,
            next_check: Mutex::new(Instant::now()),
            checking: AtomicBool::new(false),
        })
    }

    /// The spec this pool was built from.
    pub fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    /// Picks a healthy backend not yet `tried`, hashing `key` for consistent hashing.
    pub fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<&Target> {
        let accept = |b: &Backend, healthy: bool| healthy && b.addr.as_inet().is_some_and(|a| !tried.contains(a));
        let max_iterations = self.targets.len() * 2 + 1;
        let backend = match &self.balancer {
            Balancer::RoundRobin(lb) => lb.select_with(key, max_iterations, accept),
            Balancer::Consistent(lb) => lb.select_with(key, max_iterations, accept),
        }?;
        self.targets.get(backend.addr.as_inet()?)
    }

    fn backends(&self) -> &Backends {
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.backends(),
            Balancer::Consistent(lb) => lb.backends(),
        }
    }

    /// Each target with its current health.
    pub fn health(&self) -> Vec<(&TargetSpec, bool)> {
        let backends = self.backends();
        backends
            .get_backend()
            .iter()
            .filter_map(|b| {
                let target = self.targets.get(b.addr.as_inet()?)?;
                Some((&target.spec, backends.ready(b)))
            })
            .collect()
    }

    /// True (and the pass is claimed) when the interval has elapsed and no pass is running.
    fn claim_health_check(&self, now: Instant) -> bool {
        let Ok(mut next) = self.next_check.lock() else {
            return false;
        };
        if *next > now || self.checking.swap(true, Ordering::AcqRel) {
            return false;
        }
        *next = now + self.spec.health.interval.0;
        true
    }

    /// Runs one health-check pass of every backend, in parallel.
    async fn run_health_check(self: Arc<Self>) {
        self.backends().run_health_check(true).await;
        self.checking.store(false, Ordering::Release);
    }
}

/// The HTTP connector of every health check. One per process: building a connector loads
/// the system trust store (~100 ms and ~2 MB), so one per pool made 1,000 apps take minutes to
/// start and gigabytes of memory.
static HEALTH_CONNECTOR: std::sync::LazyLock<HttpConnector> = std::sync::LazyLock::new(|| HttpConnector::new(None));

/// Probes the backends of one pool: a TCP connect, or a GET of `health_check.path`.
struct PoolHealthCheck {
    health: HealthCheckSpec,
    targets: HashMap<SocketAddr, Target>,
    metrics: Arc<Metrics>,
}

impl PoolHealthCheck {
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
            .and_then(|a| self.targets.get(a))
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "unknown backend"))?;
        let result = tokio::time::timeout(self.health.timeout.0 * 2, self.probe(target)).await;
        match result {
            Ok(r) => r,
            Err(_) => Error::e_explain(ErrorType::ReadTimedout, "health check timed out"),
        }
    }

    async fn health_status_change(&self, backend: &Backend, healthy: bool) {
        let label = backend
            .addr
            .as_inet()
            .and_then(|a| self.targets.get(a))
            .map(|t| t.spec.label.as_str())
            .unwrap_or("?");
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

/// Background service that runs the health checks of the current snapshot's pools.
pub struct HealthChecker {
    state: Arc<State>,
}

impl HealthChecker {
    /// A checker of `state`'s pools.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
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
                    for pool in self.state.snapshot().pools.iter() {
                        if pool.claim_health_check(now) {
                            tokio::spawn(pool.clone().run_health_check());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstreams() {
        let t = parse_upstream("127.0.0.1:9001").unwrap();
        assert_eq!(t[0].addr, "127.0.0.1:9001".parse().unwrap());
        assert!(!t[0].tls);
        let t = parse_upstream("https://localhost").unwrap();
        assert!(t.iter().all(|t| t.tls && t.addr.port() == 443 && t.host == "localhost"));
        let t = parse_upstream("http://[::1]:8080").unwrap();
        assert_eq!(t[0].addr, "[::1]:8080".parse().unwrap());
        for bad in [
            "",
            "127.0.0.1",
            "ftp://x:1",
            "127.0.0.1:99999",
            "http://a:1/path",
            "https://user@h:1",
            "no-such-host.invalid:80",
            "a:b:c",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }
}
