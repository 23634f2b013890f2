//! The runtime state: an immutable [`Snapshot`] compiled from one configuration, held in an
//! `ArcSwap` so that a request loads it once and keeps it to the end, and a reload swaps it
//! atomically. [`build`] compiles a configuration into a snapshot.

mod build;
mod dispatch;
mod settings;

pub use dispatch::{Class, Dispatched, Unrouted};

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::auth::{AppAuth, AuthSettings};
use crate::client::TrustedProxies;
use crate::config::schema::{Listen, LogIdentity, TimeoutsSpec};
use crate::config::ConfigError;
use crate::metrics::app::AppMetrics;
use crate::metrics::Metrics;
use crate::routing::{HostPattern, PathRoutes, RouteTable};
use crate::session::Store;
use crate::target::PathMode;
use crate::tls::CertStore;
use crate::upstream::Pool;

/// Where a request goes once its app and path are known: backends, timeouts and policy.
#[derive(Debug)]
pub struct Route {
    /// Its backends.
    pub pool: Arc<Pool>,
    /// Upstream timeouts.
    pub timeouts: TimeoutsSpec,
    /// Authentication policy; `None` for a public route.
    pub auth: Option<Arc<AppAuth>>,
}

/// One app, compiled.
#[derive(Debug)]
pub struct App {
    /// Name (the app file's stem), used in logs and metric labels.
    pub name: String,
    /// The `host:` pattern.
    pub host: HostPattern,
    /// The file it came from.
    pub file: PathBuf,
    /// The app's own `upstreams`, `timeouts` and `auth`: requests no path route matches.
    pub default: Route,
    /// The `routes:` entries, by path prefix.
    pub routes: PathRoutes<Route>,
    /// How the request path is read and forwarded (`forward_raw_path`).
    pub path_mode: PathMode,
    /// Its metric handles, resolved once (kept across reloads).
    pub metrics: Arc<AppMetrics>,
    /// The signed identity assertion sent upstream for admitted users (`identity_jwt:`).
    pub identity_jwt: Option<crate::auth::identity_jwt::AppAssertion>,
}

/// Which of an app's routes serves a request: `None` is the app's own.
pub type RouteId = Option<usize>;

/// A request whose path and path without matrix parameters choose different routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmbiguousRoute;

impl App {
    /// The route for canonical `path`. `stripped` is the same path without matrix parameters
    /// ([`Target::stripped_path`](crate::target::Target::stripped_path)): when the two choose
    /// different routes the request is ambiguous (an upstream that cuts parameters would get
    /// a request another route's policy judged).
    pub fn select_route(&self, path: &str, stripped: Option<&str>) -> Result<RouteId, AmbiguousRoute> {
        let chosen = self.routes.lookup(path);
        match stripped {
            Some(s) if self.routes.lookup(s) != chosen => Err(AmbiguousRoute),
            _ => Ok(chosen),
        }
    }

    /// The route `id` names (the app's own when it names none).
    pub fn route(&self, id: RouteId) -> &Route {
        id.and_then(|i| self.routes.get(i))
            .map_or(&self.default, |(_, route)| route)
    }

    /// The app's own route and then every path route, with the field prefix of its settings
    /// in the app file (`""`, `routes[0].`, ...).
    pub fn all_routes(&self) -> impl Iterator<Item = (String, &Route)> {
        std::iter::once((String::new(), &self.default)).chain(
            self.routes
                .iter()
                .enumerate()
                .map(|(i, (_, route))| (format!("routes[{i}]."), route)),
        )
    }

    /// The app's distinct pools, with the field prefix of their `upstreams` in the app file
    /// (a route without its own `upstreams` uses the app's pool and is not listed again).
    pub fn pools(&self) -> impl Iterator<Item = (String, &Arc<Pool>)> {
        self.all_routes()
            .filter(|(field, route)| field.is_empty() || !Arc::ptr_eq(&route.pool, &self.default.pool))
            .map(|(field, route)| (field, &route.pool))
    }

    /// The policy serving the host's `/oauth2/*` endpoints: the app's, else the first path
    /// route's (every policy of one app signs in with the same provider).
    pub fn endpoint_auth(&self) -> Option<&Arc<AppAuth>> {
        self.default
            .auth
            .as_ref()
            .or_else(|| self.routes.iter().find_map(|(_, r)| r.auth.as_ref()))
    }
}

/// Why `forward_raw_path` cannot serve this app, if it cannot: rules would judge a path the
/// upstream does not receive.
pub(crate) fn raw_path_conflict(spec: &crate::config::schema::AppFile) -> Option<&'static str> {
    let has_rules = spec
        .auth
        .as_ref()
        .is_some_and(|a| !a.skip_auth_routes.is_empty() || !a.api_routes.is_empty())
        || !spec.routes.is_empty();
    (spec.forward_raw_path && has_rules).then_some(
        "cannot be combined with auth.skip_auth_routes, auth.api_routes or routes: those judge \
         the canonical path, which the upstream would not receive; remove them or forward_raw_path",
    )
}

/// Gateway-wide settings that requests need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listening addresses (changing them needs a restart).
    pub listen: Listen,
    /// The HTTPS port used in redirects (`public_https_port`, else the listener's port).
    pub redirect_https_port: u16,
    /// Request header block limit.
    pub max_header_bytes: usize,
    /// Request target limit.
    pub max_uri_bytes: usize,
    /// Downstream keep-alive idle limit.
    pub keepalive_timeout: Duration,
    /// Peers whose `X-Forwarded-For` (and PROXY protocol header) is believed.
    pub trusted_proxies: TrustedProxies,
    /// Interval between look-ups of upstream names.
    pub resolve_interval: Duration,
}

impl Settings {
    /// The settings of a main file with only `listen: { https: <https> }`: every `server`
    /// default (for benchmarks, fuzz targets and tests that need no file).
    pub fn with_defaults(https: &str) -> Settings {
        let server = crate::config::schema::ServerSection::default();
        Settings {
            listen: Listen {
                https: https.to_owned(),
                http: None,
                admin: None,
                proxy_protocol: false,
            },
            redirect_https_port: https.parse::<std::net::SocketAddr>().map_or(443, |a| a.port()),
            max_header_bytes: server.max_header_bytes,
            max_uri_bytes: server.max_uri_bytes,
            keepalive_timeout: server.keepalive_timeout.0,
            trusted_proxies: TrustedProxies::default(),
            resolve_interval: server.resolve_interval.0,
        }
    }
}

/// The compiled configuration served by the gateway.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one with each applied configuration.
    pub generation: u64,
    /// Host → app.
    pub routes: RouteTable<App>,
    /// Certificates for the HTTPS listener.
    pub certs: CertStore,
    /// Every distinct pool (for health checks).
    pub pools: Vec<Arc<Pool>>,
    /// Gateway-wide settings.
    pub settings: Settings,
    /// Cookie and providers, when the main file has a `cookie` section.
    pub auth: Option<Arc<AuthSettings>>,
    /// Digest of every file the configuration was built from.
    pub fingerprint: u64,
    /// Errors of the app files this snapshot left out or kept at their last good version
    /// (tenant isolation: a broken app file never blocks the others).
    pub rejected: Vec<ConfigError>,
    /// Upstreams whose names did not resolve when their pool was built (the app serves
    /// without them; they are looked up again every `server.resolve_interval`).
    pub unresolved: Vec<ConfigError>,
    /// Which user identity the access and audit logs record (`log.identity`).
    pub log_identity: LogIdentity,
    /// Signs identity assertions for apps with `identity_jwt:` (main file `identity_jwt:`).
    pub identity_jwt: Option<Arc<crate::auth::identity_jwt::IdentitySigner>>,
}

/// State shared by every service of the process.
pub struct State {
    snapshot: ArcSwap<Snapshot>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The main configuration file.
    pub config_path: PathBuf,
    /// Where sessions live (outlives snapshots: a reload signs nobody out).
    pub sessions: Arc<dyn Store>,
    /// Collapses concurrent refreshes of one session in this process.
    pub refresh_locks: crate::session::locks::RefreshLocks,
    /// Per-client-address counters of the rate limits.
    pub rate_limiter: crate::auth::limits::RateLimiter,
}

impl State {
    /// State serving `snapshot`, keeping sessions in `sessions`.
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>, config_path: PathBuf, sessions: Arc<dyn Store>) -> Self {
        let state = Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            config_path,
            sessions,
            refresh_locks: crate::session::locks::RefreshLocks::default(),
            rate_limiter: crate::auth::limits::RateLimiter::default(),
        };
        state.publish_gauges(&state.snapshot());
        state
    }

    /// The snapshot being served: load it once per request and keep it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Makes `snapshot` the one served to new requests.
    pub fn store(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        self.retire_series(&self.snapshot(), &snapshot);
        self.publish_gauges(&snapshot);
        self.snapshot.store(snapshot);
    }

    /// Removes the series of apps and upstream names that `next` no longer has.
    fn retire_series(&self, previous: &Snapshot, next: &Snapshot) {
        let apps: HashSet<&str> = next.routes.values().map(|a| a.name.as_str()).collect();
        for app in previous.routes.values().filter(|a| !apps.contains(a.name.as_str())) {
            self.metrics.remove_app(&app.name);
        }
        let upstreams: HashSet<&str> = named_upstreams(next).collect();
        for gone in named_upstreams(previous).filter(|u| !upstreams.contains(u)) {
            // Absent when it was removed with another app already.
            let _ = self.metrics.upstream_resolution_failures.remove_label_values(&[gone]);
        }
    }

    fn publish_gauges(&self, snapshot: &Snapshot) {
        let m = &self.metrics;
        m.config_generation
            .set(i64::try_from(snapshot.generation).unwrap_or(i64::MAX));
        m.tls_certificate_expiry.reset();
        for ck in snapshot.certs.iter() {
            if let Some(name) = ck.names.first() {
                m.tls_certificate_expiry
                    .with_label_values(&[name.as_str()])
                    .set(ck.not_after_unix);
            }
        }
        m.config_file_rejected.reset();
        for app in snapshot.routes.values() {
            let file = app.file.display().to_string();
            m.config_file_rejected
                .with_label_values(&[app.name.as_str(), file.as_str()])
                .set(0);
        }
        for upstream in named_upstreams(snapshot) {
            m.upstream_resolution_failures.with_label_values(&[upstream]);
        }
        for e in &snapshot.rejected {
            let app = e.file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let file = e.file.display().to_string();
            m.config_file_rejected.with_label_values(&[app, file.as_str()]).set(1);
        }
    }

    /// Refreshes the per-backend health gauges from the current snapshot (called at scrape).
    pub fn refresh_backend_gauges(&self) {
        let snapshot = self.snapshot();
        let gauge = &self.metrics.backend_healthy;
        gauge.reset();
        for app in snapshot.routes.values() {
            for (_, pool) in app.pools() {
                for (target, healthy) in pool.health() {
                    let backend = target.addr.to_string();
                    gauge
                        .with_label_values(&[app.name.as_str(), backend.as_str()])
                        .set(i64::from(healthy));
                }
            }
        }
    }
}

/// The upstreams of `snapshot` written as names (IP literals are never looked up).
fn named_upstreams(snapshot: &Snapshot) -> impl Iterator<Item = &str> {
    snapshot
        .pools
        .iter()
        .flat_map(|p| p.spec().upstreams.iter())
        .filter(|u| u.host.parse::<std::net::IpAddr>().is_err())
        .map(|u| u.label.as_str())
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A real [`State`] built from files in a temporary directory, for socket-free tests.
    use super::*;

    /// State serving `apps` (file stem, YAML), with a self-signed `*.example.com` certificate.
    pub fn state(apps: &[(&str, &str)]) -> (Arc<State>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = crate::tls::test_certs::self_signed(&["*.example.com"]);
        std::fs::write(dir.path().join("c.crt"), crt).unwrap();
        std::fs::write(dir.path().join("c.key"), key).unwrap();
        std::fs::create_dir(dir.path().join("apps.d")).unwrap();
        for (name, yaml) in apps {
            std::fs::write(dir.path().join(format!("apps.d/{name}.yaml")), yaml).unwrap();
        }
        let main = dir.path().join("gateway.yaml");
        std::fs::write(
            &main,
            "listen: { https: \"127.0.0.1:8443\" }\ntls: { certificates: [ { cert_file: c.crt, key_file: c.key } ] }\n",
        )
        .unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let snapshot = Snapshot::build(crate::config::load(&main).unwrap(), None, &metrics).unwrap();
        let store = Arc::new(crate::session::MemoryStore::new(1000));
        (Arc::new(State::new(snapshot, metrics, main, store)), dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_auth_policies_are_reused_and_changed_ones_recompiled() {
        let auth = "auth: { provider: corp, email_domains: [example.com], skip_auth_routes: [\"^/public/\"] }\n";
        let yaml = |host: &str, extra: &str| format!("host: {host}\nupstreams: [\"127.0.0.1:9001\"]\n{extra}");
        let (state, dir) = test_support::state(&[]);
        std::fs::write(dir.path().join("apps.d/a.yaml"), yaml("a.example.com", auth)).unwrap();
        std::fs::write(dir.path().join("apps.d/b.yaml"), yaml("b.example.com", auth)).unwrap();
        let main = dir.path().join("gateway.yaml");
        let text = std::fs::read_to_string(&main).unwrap();
        std::fs::write(
            &main,
            format!(
                "{text}cookie: {{ secrets_env: AUTHGATE_STATE_TEST_KEYS }}\nproviders:\n  corp: {{ type: oidc, issuer_url: \"https://idp.invalid\", client_id: c, client_secret_env: AUTHGATE_STATE_TEST_SECRET }}\n"
            ),
        )
        .unwrap();
        std::env::set_var(
            "AUTHGATE_STATE_TEST_KEYS",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        );
        std::env::set_var("AUTHGATE_STATE_TEST_SECRET", "s");
        let first = Snapshot::build(crate::config::load(&main).unwrap(), None, &state.metrics).unwrap();
        std::fs::write(
            dir.path().join("apps.d/b.yaml"),
            yaml("b.example.com", "auth: { provider: corp, email_domains: [\"*\"] }\n"),
        )
        .unwrap();
        let next = Snapshot::build(crate::config::load(&main).unwrap(), Some(&first), &state.metrics).unwrap();
        let auth_of = |s: &Snapshot, host: &str| s.routes.lookup(host).unwrap().default.auth.clone().unwrap();
        assert!(
            Arc::ptr_eq(&auth_of(&first, "a.example.com"), &auth_of(&next, "a.example.com")),
            "unchanged: reused"
        );
        assert!(
            !Arc::ptr_eq(&auth_of(&first, "b.example.com"), &auth_of(&next, "b.example.com")),
            "changed: rebuilt"
        );
    }

    #[test]
    fn equal_pool_specs_share_one_pool_across_apps_and_reloads() {
        let yaml = |host: &str| format!("host: {host}\nupstreams: [\"127.0.0.1:9001\"]\n");
        let (state, dir) = test_support::state(&[("a", &yaml("a.example.com")), ("b", &yaml("b.example.com"))]);
        let first = state.snapshot();
        assert_eq!(first.pools.len(), 1, "a and b have the same backends");
        std::fs::write(
            dir.path().join("apps.d/c.yaml"),
            "host: c.example.com\nupstreams: [\"127.0.0.1:9002\"]\n",
        )
        .unwrap();
        let config = crate::config::load(&state.config_path).unwrap();
        let next = Snapshot::build(config, Some(&first), &state.metrics).unwrap();
        assert_eq!(next.generation, first.generation + 1);
        assert_eq!(next.pools.len(), 2);
        let a_before = &first.routes.lookup("a.example.com").unwrap().default.pool;
        let a_after = &next.routes.lookup("a.example.com").unwrap().default.pool;
        assert!(
            Arc::ptr_eq(a_before, a_after),
            "an unchanged pool is reused with its health state"
        );
    }

    #[test]
    fn broken_routes_reject_their_app_file_naming_the_field() {
        let app = |routes: &str| format!("host: a.example.com\nupstreams: [\"127.0.0.1:9001\"]\n{routes}");
        let cases = [
            ("routes: [{ path_prefix: /oauth2/x }]", "routes[0].path_prefix"),
            ("routes: [{ path_prefix: api }]", "routes[0].path_prefix"),
            ("routes: [{ path_prefix: /a/../b }]", "routes[0].path_prefix"),
            (
                "routes: [{ path_prefix: /api }, { path_prefix: /api/ }]",
                "routes[1].path_prefix",
            ),
            (
                "routes: [{ path_prefix: /api, load_balancing: consistent_hash }]",
                "routes[0].load_balancing",
            ),
            ("routes: [{ path_prefix: /api, upstreams: [] }]", "routes[0].upstreams"),
            (
                "routes: [{ path_prefix: /api, upstreams: [\"nope:x\"] }]",
                "routes[0].upstreams[0]",
            ),
            (
                "auth: { provider: corp }\nroutes: [{ path_prefix: /api, auth: { provider: other } }]",
                "routes[0].auth.provider",
            ),
            (
                "forward_raw_path: true\nroutes: [{ path_prefix: /api }]",
                "forward_raw_path",
            ),
            ("routes: [{ path_prefix: /api, nope: 1 }]", "routes[0]"),
            ("identity_jwt: { audience: a }", "identity_jwt"),
        ];
        for (routes, field) in cases {
            let (state, _dir) = test_support::state(&[("a", &app(routes))]);
            let snapshot = state.snapshot();
            assert!(snapshot.routes.lookup("a.example.com").is_none(), "{routes}");
            assert!(
                snapshot.rejected.iter().any(|e| e.field.starts_with(field)),
                "{routes}: {:?}",
                snapshot.rejected
            );
        }
    }

    #[test]
    fn routes_inherit_the_app_settings_they_do_not_set() {
        let yaml = "host: a.example.com\nupstreams: [\"127.0.0.1:9001\"]\ntimeouts: { read: 7s }\n\
                    routes:\n  - { path_prefix: /same }\n  - { path_prefix: /own, upstreams: [\"127.0.0.1:9002\"], timeouts: { read: 3s } }\n";
        let (state, _dir) = test_support::state(&[("a", yaml)]);
        let snapshot = state.snapshot();
        let app = snapshot.routes.lookup("a.example.com").unwrap();
        let same = app.route(app.select_route("/same/x", None).unwrap());
        let own = app.route(app.select_route("/own", None).unwrap());
        assert!(
            Arc::ptr_eq(&same.pool, &app.default.pool),
            "no upstreams: the app's pool"
        );
        assert_eq!(same.timeouts.read.0, Duration::from_secs(7));
        assert!(!Arc::ptr_eq(&own.pool, &app.default.pool));
        assert_eq!(own.timeouts.read.0, Duration::from_secs(3));
        assert_eq!(
            snapshot.pools.len(),
            2,
            "the route's pool is health-checked with the others"
        );
        assert_eq!(app.pools().count(), 2);
        assert!(std::ptr::eq(
            app.route(app.select_route("/other", None).unwrap()),
            &app.default
        ));
        assert_eq!(app.select_route("/own;x/y", Some("/own/y")), Err(AmbiguousRoute));
    }
}
