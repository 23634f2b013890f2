//! The runtime state: an immutable [`Snapshot`] compiled from one configuration, held in an
//! `ArcSwap` so that a request loads it once and keeps it to the end, and a reload swaps it
//! atomically. [`build`] compiles a configuration into a snapshot.

mod build;

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
use crate::routing::{HostPattern, RouteTable};
use crate::session::Store;
use crate::target::PathMode;
use crate::tls::CertStore;
use crate::upstream::Pool;

/// One app, compiled.
#[derive(Debug)]
pub struct App {
    /// Name (the app file's stem), used in logs and metric labels.
    pub name: String,
    /// The `host:` pattern.
    pub host: HostPattern,
    /// The file it came from.
    pub file: PathBuf,
    /// Its backends.
    pub pool: Arc<Pool>,
    /// Upstream timeouts.
    pub timeouts: TimeoutsSpec,
    /// Authentication policy; `None` for a public app.
    pub auth: Option<Arc<AppAuth>>,
    /// How the request path is read and forwarded (`forward_raw_path`).
    pub path_mode: PathMode,
    /// Its metric handles, resolved once (kept across reloads).
    pub metrics: Arc<AppMetrics>,
}

/// Why `forward_raw_path` cannot serve this app, if it cannot: rules would judge a path the
/// upstream does not receive.
pub(crate) fn raw_path_conflict(spec: &crate::config::schema::AppFile) -> Option<&'static str> {
    let has_rules = spec
        .auth
        .as_ref()
        .is_some_and(|a| !a.skip_auth_routes.is_empty() || !a.api_routes.is_empty());
    (spec.forward_raw_path && has_rules).then_some(
        "cannot be combined with auth.skip_auth_routes or auth.api_routes: those rules judge the \
         canonical path, which the upstream would not receive; remove the rules or forward_raw_path",
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
        self.publish_gauges(&snapshot);
        self.snapshot.store(snapshot);
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
            for (target, healthy) in app.pool.health() {
                let backend = target.addr.to_string();
                gauge
                    .with_label_values(&[app.name.as_str(), backend.as_str()])
                    .set(i64::from(healthy));
            }
        }
    }
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
        let auth_of = |s: &Snapshot, host: &str| s.routes.lookup(host).unwrap().auth.clone().unwrap();
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
        let a_before = &first.routes.lookup("a.example.com").unwrap().pool;
        let a_after = &next.routes.lookup("a.example.com").unwrap().pool;
        assert!(
            Arc::ptr_eq(a_before, a_after),
            "an unchanged pool is reused with its health state"
        );
    }
}
