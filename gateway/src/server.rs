//! Assembling the Pingora server: the HTTPS gateway, the HTTP redirect, the admin listener,
//! and the background services (reloader, health checks).

use std::path::Path;
use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::prelude::background_service;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use crate::admin::{Admin, HttpsRedirect};
use crate::config::watch::{watch_set, Reloader};
use crate::config::{self, ConfigErrors};
use crate::listen::{self, PreBound};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::signals::Signals;
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
    /// A listening socket could not be bound or taken over.
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    /// Trace export could not be set up.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    /// A listener could not be set up.
    #[error("cannot set up the {what} listener: {error}")]
    Listener {
        /// Which listener.
        what: &'static str,
        /// The cause.
        error: String,
    },
}

/// Loads and checks the whole configuration without serving it (`authgate check`). Any error
/// fails, including an app file the gateway would leave out and, unless `offline`, an upstream
/// name that does not resolve (`offline`: no DNS at all, for CI outside the cluster).
pub fn check(config_path: &Path, offline: bool) -> Result<Snapshot, StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let config = config::load(config_path)?;
    let mut errors = session_store_errors(&config, &metrics).err().unwrap_or_default();
    let snapshot = if offline {
        Snapshot::build_with(config, None, &metrics, &crate::upstream::resolve::Offline)
    } else {
        Snapshot::build(config, None, &metrics)
    };
    match snapshot {
        Ok(s) => {
            errors.0.extend(s.rejected.iter().cloned());
            if !offline {
                errors.0.extend(s.unresolved.iter().cloned());
            }
            errors.into_result(s).map_err(StartError::from)
        }
        Err(e) => {
            let mut all = e;
            all.0.extend(errors.0);
            Err(all.into())
        }
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

/// How `run` gets its listening sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sockets {
    /// Bind every listener (exit at once when one cannot be bound).
    Bind,
    /// Take them over from the running process, which is sent SIGQUIT (`run --upgrade`).
    Upgrade,
}

/// Builds every service from the configuration at `config_path` and serves until a signal
/// stops the process; then writes the access-log lines still queued. Returns an error only at
/// start-up.
pub fn run(config_path: &Path, sockets: Sockets) -> Result<(), StartError> {
    // File events carry absolute paths: make ours absolute too (without resolving symlinks,
    // which Kubernetes swaps under mounted ConfigMaps), or a relative `-c` never reloads.
    let absolute = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let config_path = absolute.as_path();
    let metrics = Arc::new(Metrics::new()?);
    let config = config::load(config_path)?;
    let watch = watch_set(&config);
    let server_section = config.gateway.server.clone();
    let tracing_section = config.gateway.tracing.clone();
    let (sessions, redis) = session_store_errors(&config, &metrics)?;
    let snapshot = Snapshot::build(config, None, &metrics)?;
    let traced = crate::telemetry::start(&tracing_section, metrics.trace_export_failures.clone())?;
    let sessions = if traced {
        crate::session::traced::TracedStore::wrap(sessions)
    } else {
        sessions
    };
    crate::config::watch::log_rejected_files(&snapshot.rejected);
    crate::config::watch::log_unresolved(&snapshot.unresolved);
    let listen = snapshot.settings.listen.clone();
    let apps = snapshot.routes.len();
    let state = Arc::new(State::new(snapshot, metrics, config_path.to_path_buf(), sessions));

    // Only now that the configuration is known good: take over or bind the sockets.
    let inherited = match sockets {
        Sockets::Upgrade => Some(listen::receive_inherited(&server_section.upgrade_socket)?),
        Sockets::Bind => None,
    };
    let mut bound = listen::bind_all(&listen, inherited)?;
    let mut take = |addr: &str| -> Vec<listen::Bound> {
        let (mine, rest) = std::mem::take(&mut bound).into_iter().partition(|b| b.addr == addr);
        bound = rest;
        mine
    };

    let threads = server_section
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(server_section.grace_period.0.as_secs()),
        graceful_shutdown_timeout_seconds: Some(server_section.shutdown_timeout.0.as_secs()),
        upstream_keepalive_pool_size: server_section.upstream_keepalive_pool_size,
        upgrade_sock: server_section.upgrade_socket.clone(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);

    let mut gateway =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, Gateway::new(state.clone()), "authgate");
    gateway.add_tls_with_settings(&listen.https, None, tls_settings(&state)?);
    if listen.proxy_protocol {
        gateway
            .endpoints()
            .set_pre_tls_callback(Arc::new(crate::proxy_protocol::ProxyProtocol::new(state.clone())));
    }
    gateway.threads = Some(threads);
    server.add_service(PreBound::new(Box::new(gateway), take(&listen.https)));

    if let Some(addr) = &listen.http {
        let mut redirect = Service::new("http-redirect".to_owned(), HttpsRedirect::new(state.clone()));
        redirect.add_tcp(addr);
        redirect.threads = Some(1);
        server.add_service(PreBound::new(Box::new(redirect), take(addr)));
    }
    if let Some(addr) = &listen.admin {
        let mut admin = Service::new("admin".to_owned(), Admin::new(state.clone()));
        admin.add_tcp(addr);
        admin.threads = Some(1);
        server.add_service(PreBound::new(Box::new(admin), take(addr)));
    }
    server.add_service(background_service("reloader", Reloader::new(state.clone(), watch)));
    server.add_service(background_service("health-checks", HealthChecker::new(state)));
    server.add_service(background_service("session-store", StoreTasks(redis)));

    tracing::info!(
        https = %listen.https,
        http = listen.http.as_deref().unwrap_or("-"),
        admin = listen.admin.as_deref().unwrap_or("-"),
        apps,
        threads,
        upgraded = sockets == Sockets::Upgrade,
        tracing = traced,
        "authgate starting"
    );
    server.bootstrap();
    // Every socket is bound (connections queue in its backlog until the services accept).
    listen::notify_ready();
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals::new(server_section.upgrade_socket)),
    });
    crate::access_log::flush();
    crate::telemetry::shutdown();
    Ok(())
}

/// The HTTPS listener's TLS: rustls, TLS 1.2 and 1.3 only (rustls has nothing older), h2 and
/// http/1.1 by ALPN, the certificate picked per handshake from the current snapshot.
fn tls_settings(state: &Arc<State>) -> Result<TlsSettings, StartError> {
    let mut tls =
        TlsSettings::with_callbacks(Box::new(SniResolver::new(state.clone()))).map_err(|e| StartError::Listener {
            what: "https",
            error: e.to_string(),
        })?;
    tls.set_cert_resolver(Arc::new(SniResolver::new(state.clone())));
    tls.enable_h2();
    Ok(tls)
}
