//! Upstream pools: backends of an app, load balancing, active health checks, and names
//! re-resolved while the pool runs.
//!
//! A [`Pool`] is built from a [`PoolSpec`]; snapshots reuse the `Arc<Pool>` of an equal spec,
//! so a reload that leaves an app's backends alone keeps their health state. A re-resolution
//! that changes a name's addresses changes the pool's backends in place: addresses that stay
//! keep their health state, new ones start healthy.

mod health;
pub mod resolve;
mod spec;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use futures::FutureExt;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::selection::{Consistent, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::protocols::tls::CaType;
use pingora::{Error, ErrorType, Result};

pub use health::HealthChecker;
pub use resolve::{Resolver, SystemResolver, Unresolved};
pub use spec::{FieldErrors, PoolSpec, TargetSpec, UpstreamSpec};

use crate::config::schema::LoadBalancing;
use crate::metrics::Metrics;

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

/// The current targets of a pool by address, shared with its health check.
type Targets = Arc<ArcSwap<HashMap<SocketAddr, Arc<Target>>>>;

/// Pingora service discovery over the pool's current backend set.
struct Discovered(Arc<ArcSwap<BTreeSet<Backend>>>);

#[async_trait]
impl ServiceDiscovery for Discovered {
    async fn discover(&self) -> Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok(((*self.0.load_full()).clone(), HashMap::new()))
    }
}

/// The backends of one or more apps, load balanced and health checked.
pub struct Pool {
    spec: PoolSpec,
    ca: Option<Arc<CaType>>,
    balancer: Balancer,
    targets: Targets,
    discovered: Arc<ArcSwap<BTreeSet<Backend>>>,
    next_check: Mutex<Instant>,
    checking: AtomicBool,
    next_resolve: Mutex<Instant>,
    resolving: AtomicBool,
    unresolved: ArcSwap<Vec<Unresolved>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("spec", &self.spec).finish_non_exhaustive()
    }
}

fn backend_set(targets: &HashMap<SocketAddr, Arc<Target>>) -> Result<BTreeSet<Backend>> {
    targets.keys().map(|a| Backend::new(&a.to_string())).collect()
}

impl Pool {
    /// Builds a pool, resolving its names with `resolver` (blocking). Upstreams that do not
    /// resolve are returned: the pool runs without them and retries them later. Backends start
    /// healthy and are probed from the next health-check tick.
    pub fn build(
        spec: PoolSpec,
        ca: Option<Arc<CaType>>,
        metrics: Arc<Metrics>,
        resolver: &dyn Resolver,
    ) -> Result<(Pool, Vec<Unresolved>)> {
        let (resolved, unresolved) = resolve::resolve_all(&spec.upstreams, resolver);
        let map: HashMap<SocketAddr, Arc<Target>> = resolved
            .into_iter()
            .map(|t| (t.addr, Arc::new(target(&spec, t, ca.as_ref()))))
            .collect();
        let discovered = Arc::new(ArcSwap::from_pointee(backend_set(&map)?));
        let targets: Targets = Arc::new(ArcSwap::from_pointee(map));
        let mut backends = Backends::new(Box::new(Discovered(discovered.clone())));
        backends.set_health_check(health::PoolHealthCheck::boxed(&spec, targets.clone(), metrics.clone()));
        let balancer = match spec.algorithm {
            LoadBalancing::RoundRobin => Balancer::RoundRobin(LoadBalancer::from_backends(backends)),
            LoadBalancing::ConsistentHash => Balancer::Consistent(LoadBalancer::from_backends(backends)),
        };
        let pool = Pool {
            spec,
            ca,
            balancer,
            targets,
            discovered,
            next_check: Mutex::new(Instant::now()),
            checking: AtomicBool::new(false),
            next_resolve: Mutex::new(Instant::now()),
            resolving: AtomicBool::new(false),
            unresolved: ArcSwap::from_pointee(unresolved.clone()),
            metrics,
        };
        match pool.update_balancer().now_or_never() {
            Some(Ok(())) => Ok((pool, unresolved)),
            Some(Err(e)) => Err(e),
            None => Error::e_explain(ErrorType::InternalError, "backend discovery did not complete"),
        }
    }

    async fn update_balancer(&self) -> Result<()> {
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.update().await,
            Balancer::Consistent(lb) => lb.update().await,
        }
    }

    /// The spec this pool was built from.
    pub fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    /// Picks a healthy backend not yet `tried`, hashing `key` for consistent hashing.
    pub fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<Arc<Target>> {
        let accept = |b: &Backend, healthy: bool| healthy && b.addr.as_inet().is_some_and(|a| !tried.contains(a));
        let targets = self.targets.load();
        let max_iterations = targets.len() * 2 + 1;
        let backend = match &self.balancer {
            Balancer::RoundRobin(lb) => lb.select_with(key, max_iterations, accept),
            Balancer::Consistent(lb) => lb.select_with(key, max_iterations, accept),
        }?;
        targets.get(backend.addr.as_inet()?).cloned()
    }

    fn backends(&self) -> &Backends {
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.backends(),
            Balancer::Consistent(lb) => lb.backends(),
        }
    }

    /// The upstreams whose names did not resolve at the last look-up.
    pub fn unresolved(&self) -> Arc<Vec<Unresolved>> {
        self.unresolved.load_full()
    }

    /// Each target with its current health.
    pub fn health(&self) -> Vec<(TargetSpec, bool)> {
        let backends = self.backends();
        let targets = self.targets.load();
        backends
            .get_backend()
            .iter()
            .filter_map(|b| {
                let target = targets.get(b.addr.as_inet()?)?;
                Some((target.spec.clone(), backends.ready(b)))
            })
            .collect()
    }

    /// True (and the pass is claimed) when the interval has elapsed and no pass is running.
    fn claim_health_check(&self, now: Instant) -> bool {
        claim(&self.next_check, &self.checking, now, self.spec.health.interval.0)
    }

    /// Runs one health-check pass of every backend, in parallel.
    async fn run_health_check(self: Arc<Self>) {
        self.backends().run_health_check(true).await;
        self.checking.store(false, Ordering::Release);
    }

    /// True (and the look-up claimed) when the pool has names and `interval` has elapsed.
    fn claim_resolve(&self, now: Instant, interval: Duration) -> bool {
        self.spec.upstreams.iter().any(resolve::is_name) && claim(&self.next_resolve, &self.resolving, now, interval)
    }

    /// Resolves the pool's names again and applies any change to its backends. A name whose
    /// look-up fails keeps its last known addresses.
    async fn refresh_names(self: Arc<Self>, resolver: Arc<dyn Resolver>) {
        let pool = self.clone();
        let looked_up =
            tokio::task::spawn_blocking(move || resolve::resolve_all(&pool.spec.upstreams, &*resolver)).await;
        if let Ok((resolved, failed)) = looked_up {
            self.apply(resolved, &failed).await;
            if failed.is_empty() && !self.unresolved.load().is_empty() {
                tracing::info!("every upstream name resolves again");
            }
            self.unresolved.store(Arc::new(failed));
        }
        self.resolving.store(false, Ordering::Release);
    }

    async fn apply(&self, resolved: Vec<TargetSpec>, failed: &[Unresolved]) {
        let current = self.targets.load_full();
        let mut next: HashMap<SocketAddr, Arc<Target>> = HashMap::new();
        for t in resolved {
            let kept = current.get(&t.addr).filter(|c| c.spec == t).cloned();
            next.insert(
                t.addr,
                kept.unwrap_or_else(|| Arc::new(target(&self.spec, t, self.ca.as_ref()))),
            );
        }
        let before = self.unresolved.load();
        for f in failed {
            self.metrics
                .upstream_resolution_failures
                .with_label_values(&[f.label.as_str()])
                .inc();
            if before.iter().any(|b| b.label == f.label) {
                tracing::debug!(upstream = %f.label, "{}; keeping its last known addresses", f.message);
            } else {
                tracing::warn!(upstream = %f.label, "{}; keeping its last known addresses", f.message);
            }
            for (addr, t) in current.iter().filter(|(_, t)| t.spec.label == f.label) {
                next.insert(*addr, t.clone());
            }
        }
        if next.len() == current.len() && next.keys().all(|a| current.contains_key(a)) {
            return;
        }
        let Ok(set) = backend_set(&next) else {
            return;
        };
        let added: Vec<String> = next
            .keys()
            .filter(|a| !current.contains_key(a))
            .map(|a| a.to_string())
            .collect();
        let removed: Vec<String> = current
            .keys()
            .filter(|a| !next.contains_key(a))
            .map(|a| a.to_string())
            .collect();
        tracing::info!(?added, ?removed, "upstream addresses changed");
        // Both old and new targets are known while the balancer switches over.
        let mut union = (*current).clone();
        union.extend(next.iter().map(|(a, t)| (*a, t.clone())));
        self.targets.store(Arc::new(union));
        self.discovered.store(Arc::new(set));
        if let Err(e) = self.update_balancer().await {
            tracing::error!(error = %e, "cannot apply new upstream addresses");
        }
        self.targets.store(Arc::new(next));
    }
}

/// Claims a periodic job: true when `next` has passed and no run is in progress.
fn claim(next: &Mutex<Instant>, running: &AtomicBool, now: Instant, interval: Duration) -> bool {
    let Ok(mut next) = next.lock() else {
        return false;
    };
    if *next > now || running.swap(true, Ordering::AcqRel) {
        return false;
    }
    *next = now + interval;
    true
}

/// The connection template of one resolved backend.
fn target(spec: &PoolSpec, t: TargetSpec, ca: Option<&Arc<CaType>>) -> Target {
    let sni = if t.tls {
        spec.tls.server_name.clone().unwrap_or_else(|| t.host.clone())
    } else {
        String::new()
    };
    let mut peer = HttpPeer::new(t.addr, t.tls, sni);
    if t.tls {
        peer.options.verify_cert = !spec.tls.insecure_skip_verify;
        peer.options.verify_hostname = !spec.tls.insecure_skip_verify;
        peer.options.ca = ca.cloned();
        // Pingora's connection reuse key leaves the CA out: without this, a connection one
        // app verified against its CA would serve another app that trusts a different one.
        peer.group_key = spec.ca_digest;
    }
    Target { spec: t, peer }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Fingerprint;

    /// DNS answers scripted by the test; everything else (sockets, health checks) is real.
    #[derive(Default)]
    struct Scripted(Mutex<HashMap<String, Vec<SocketAddr>>>);

    impl Scripted {
        fn set(&self, host: &str, addrs: &[SocketAddr]) {
            self.0.lock().unwrap().insert(host.to_owned(), addrs.to_vec());
        }
        fn fail(&self, host: &str) {
            self.0.lock().unwrap().remove(host);
        }
    }

    impl Resolver for Scripted {
        fn resolve(&self, host: &str, _port: u16) -> std::io::Result<Vec<SocketAddr>> {
            self.0
                .lock()
                .unwrap()
                .get(host)
                .cloned()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
        }
    }

    fn addrs(pool: &Pool) -> BTreeSet<SocketAddr> {
        pool.health().into_iter().map(|(t, _)| t.addr).collect()
    }

    fn healthy(pool: &Pool, addr: SocketAddr) -> bool {
        pool.health().into_iter().any(|(t, h)| t.addr == addr && h)
    }

    #[tokio::test]
    async fn names_are_re_resolved_keeping_the_health_of_addresses_that_stay() {
        let live_a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live_c = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = live_a.local_addr().unwrap();
        let c = live_c.local_addr().unwrap();
        let b = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        }; // closed: refuses connections
        let hc = crate::config::schema::HealthCheckSpec {
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            ..Default::default()
        };
        let (spec, ca) = PoolSpec::parse(
            &["backend.test:80".to_owned()],
            LoadBalancing::RoundRobin,
            Some(&hc),
            None,
            std::path::Path::new("."),
            &mut Fingerprint::default(),
        )
        .unwrap();
        let dns = Arc::new(Scripted::default());
        let metrics = Arc::new(Metrics::new().unwrap());
        // Not resolvable at first: the pool is built, empty, and says why.
        let (pool, unresolved) = Pool::build(spec, ca, metrics.clone(), dns.as_ref()).unwrap();
        let pool = Arc::new(pool);
        assert_eq!(unresolved.len(), 1);
        assert!(pool.select(b"", &[]).is_none());

        // The name comes back: its addresses are used.
        dns.set("backend.test", &[a, b]);
        pool.clone().refresh_names(dns.clone()).await;
        assert_eq!(addrs(&pool), [a, b].into());
        assert!(pool.unresolved().is_empty());
        pool.clone().run_health_check().await;
        assert!(healthy(&pool, a) && !healthy(&pool, b), "{:?}", pool.health());

        // The answer changes: b stays (still unhealthy: its state is kept), a goes, c arrives.
        dns.set("backend.test", &[b, c]);
        pool.clone().refresh_names(dns.clone()).await;
        assert_eq!(addrs(&pool), [b, c].into());
        assert!(!healthy(&pool, b), "b kept its health state");
        assert!(healthy(&pool, c), "a new address starts healthy");
        for _ in 0..4 {
            assert_eq!(pool.select(b"", &[]).unwrap().spec.addr, c);
        }

        // A failed look-up keeps the last known addresses.
        dns.fail("backend.test");
        pool.clone().refresh_names(dns.clone()).await;
        assert_eq!(addrs(&pool), [b, c].into());
        assert_eq!(pool.unresolved().len(), 1);
        let failures = metrics
            .upstream_resolution_failures
            .with_label_values(&["backend.test:80"])
            .get();
        assert_eq!(failures, 1);
        drop((live_a, live_c));
    }
}
