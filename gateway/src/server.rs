//! Assembling the Pingora server: the HTTPS gateway, the HTTP redirect, the admin listener,
//! and the background services (reloader, health checks).

use std::path::Path;
use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::prelude::background_service;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use pingora::tls::ssl::SslVersion;

use crate::admin::{Admin, HttpsRedirect};
use crate::config::watch::{watch_set, Reloader};
use crate::config::{self, ConfigErrors};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::state::{Snapshot, State};
use crate::tls::SniResolver;
use crate::upstream::HealthChecker;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    /// The metrics registry could not be built.
    #[error("cannot create metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A listener could not be set up.
    #[error("cannot set up the {what} listener: {error}")]
    Listener {
        /// Which listener.
        what: &'static str,
        /// The cause.
        error: String,
    },
}

/// Loads and checks the whole configuration without serving it (`authgate check`).
pub fn check(config_path: &Path) -> Result<Snapshot, StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let config = config::load(config_path)?;
    let store_errors = session_store_errors(&config, &metrics).err();
    let snapshot = Snapshot::build(config, None, &metrics);
    match (snapshot, store_errors) {
        (Ok(s), None) => Ok(s),
        (Ok(_), Some(e)) => Err(e.into()),
        (Err(mut e), Some(more)) => {
            e.0.extend(more.0);
            Err(e.into())
        }
        (Err(e), None) => Err(e.into()),
    }
}

fn session_store_errors(
    config: &config::Config,
    metrics: &Arc<Metrics>,
) -> Result<crate::session::OpenedStore, ConfigErrors> {
    crate::session::open_store(&config.gateway.sessions, &config::base_dir(&config.main_path), metrics).map_err(
        |list| {
            ConfigErrors(
                list.into_iter()
                    .map(|(f, m)| config::ConfigError::new(&config.main_path, f, m))
                    .collect(),
            )
        },
    )
}

/// Starts the Redis store's background tasks (subscriber, Sentinel events) in a service runtime.
struct StoreTasks(Option<Arc<crate::session::redis_store::RedisStore>>);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for StoreTasks {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        if let Some(store) = &self.0 {
            store.start();
        }
        let _ = shutdown.changed().await;
    }
}

/// Builds every service from the configuration at `config_path` and serves until a signal
/// stops the process. Returns only on a start-up error.
pub fn run(config_path: &Path) -> Result<(), StartError> {
    // File events carry absolute paths: make ours absolute too (without resolving symlinks,
    // which Kubernetes swaps under mounted ConfigMaps), or a relative `-c` never reloads.
    let absolute = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let config_path = absolute.as_path();
    let metrics = Arc::new(Metrics::new()?);
    let config = config::load(config_path)?;
    let watch = watch_set(&config);
    let server_section = config.gateway.server.clone();
    let (sessions, redis) = session_store_errors(&config, &metrics)?;
    let snapshot = Snapshot::build(config, None, &metrics)?;
    let listen = snapshot.settings.listen.clone();
    let apps = snapshot.routes.len();
    let state = Arc::new(State::new(snapshot, metrics, config_path.to_path_buf(), sessions));

    let threads = server_section
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(server_section.grace_period.0.as_secs()),
        graceful_shutdown_timeout_seconds: Some(server_section.shutdown_timeout.0.as_secs()),
        upstream_keepalive_pool_size: server_section.upstream_keepalive_pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);

    let mut gateway =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, Gateway::new(state.clone()), "authgate");
    let mut tls =
        TlsSettings::with_callbacks(Box::new(SniResolver::new(state.clone()))).map_err(|e| StartError::Listener {
            what: "https",
            error: e.to_string(),
        })?;
    tls.enable_h2();
    tls.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| StartError::Listener {
            what: "https",
            error: e.to_string(),
        })?;
    gateway.add_tls_with_settings(&listen.https, None, tls);
    if listen.proxy_protocol {
        gateway
            .endpoints()
            .set_pre_tls_callback(Arc::new(crate::proxy_protocol::ProxyProtocol::new(state.clone())));
    }
    gateway.threads = Some(threads);
    server.add_service(gateway);

    if let Some(addr) = &listen.http {
        let mut redirect = Service::new("http-redirect".to_owned(), HttpsRedirect::new(state.clone()));
        redirect.add_tcp(addr);
        redirect.threads = Some(1);
        server.add_service(redirect);
    }
    if let Some(addr) = &listen.admin {
        let mut admin = Service::new("admin".to_owned(), Admin::new(state.clone()));
        admin.add_tcp(addr);
        admin.threads = Some(1);
        server.add_service(admin);
    }
    server.add_service(background_service("reloader", Reloader::new(state.clone(), watch)));
    server.add_service(background_service("health-checks", HealthChecker::new(state)));
    server.add_service(background_service("session-store", StoreTasks(redis)));

    tracing::info!(https = %listen.https, http = ?listen.http, admin = ?listen.admin, apps, threads, "authgate starting");
    server.bootstrap();
    server.run_forever()
}
