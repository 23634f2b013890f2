//! Compiling a [`Config`] into a [`Snapshot`], with tenant isolation: an error in the main
//! file rejects the whole configuration, but an error in one app file rejects that file alone.
//! A rejected app keeps the version the previous snapshot served (or stays absent if it is
//! new), and every other change applies.
//!
//! Host clashes between app files are decided deterministically: an app already serving a host
//! (in the previous snapshot, and still claiming it) keeps it, and a newcomer claiming it is
//! rejected; among newcomers, the first file by name wins.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{App, Route, Snapshot};
use crate::auth::identity_jwt::{AppAssertion, IdentitySigner};
use crate::auth::{AppAuth, AuthSettings};
use crate::config::schema::{
    AppFile, AppIdentityJwt, AuthSpec, HealthCheckSpec, LoadBalancing, RouteSpec, UpstreamTlsSpec,
};
use crate::config::{base_dir, AppEntry, Config, ConfigError, ConfigErrors};
use crate::metrics::app::AppMetrics;
use crate::metrics::Metrics;
use crate::routing::{HostPattern, PathRoutes, RouteTable};
use crate::target::PathMode;
use crate::tls::CertStore;
use crate::upstream::{Pool, PoolSpec, Resolver, SystemResolver};

impl Snapshot {
    /// [`Snapshot::build_with`] the system resolver.
    pub fn build(
        config: Config,
        previous: Option<&Snapshot>,
        metrics: &Arc<Metrics>,
    ) -> Result<Snapshot, ConfigErrors> {
        Self::build_with(config, previous, metrics, &SystemResolver)
    }

    /// Checks and compiles a loaded configuration. Pools whose spec equals one in `previous`
    /// are reused with their health state. Errors of the main file (or of anything it names,
    /// such as certificates) reject the whole configuration, listing every error found; errors
    /// of an app file are kept in [`Snapshot::rejected`] and only leave that app out.
    /// Upstream names are resolved with `resolver`; those that do not resolve are listed in
    /// [`Snapshot::unresolved`], not errors.
    pub fn build_with(
        config: Config,
        previous: Option<&Snapshot>,
        metrics: &Arc<Metrics>,
        resolver: &dyn Resolver,
    ) -> Result<Snapshot, ConfigErrors> {
        let Config {
            main_path,
            gateway,
            apps,
            mut fingerprint,
            errors: load_errors,
            ..
        } = config;
        let (main_list, app_errors): (Vec<ConfigError>, Vec<ConfigError>) =
            load_errors.0.into_iter().partition(|e| e.file == main_path);
        let mut main_errors = ConfigErrors(main_list);
        let settings = super::settings::settings(&main_path, &gateway, &mut main_errors);
        gateway.tracing.check(&main_path, &mut main_errors);
        let certs = CertStore::load(
            &gateway.tls.certificates,
            &main_path,
            &mut fingerprint,
            &mut main_errors,
        );
        let auth_settings = build_auth(&main_path, &gateway, previous, &mut fingerprint, &mut main_errors);
        let identity_jwt = gateway.identity_jwt.as_ref().and_then(|section| {
            let previous = previous.and_then(|p| p.identity_jwt.as_ref());
            fingerprint.add(
                Path::new(&section.keys_env),
                std::env::var(&section.keys_env).unwrap_or_default().as_bytes(),
            );
            IdentitySigner::build(section, previous)
                .map_err(|(field, message)| main_errors.push(ConfigError::new(&main_path, field, message)))
                .ok()
        });
        let mut tenants = Tenants::new(previous, &apps, app_errors);
        let auth_broken = auth_settings.is_none() && gateway.cookie.is_some();
        for entry in apps {
            let context = AppContext {
                auth: auth_settings.as_deref(),
                identity_jwt: gateway.identity_jwt.is_some(),
                auth_broken,
                metrics,
                resolver,
            };
            tenants.add(entry, &context, &mut fingerprint);
        }
        tenants.carry_over_unparsed();
        if !main_errors.0.is_empty() {
            main_errors.0.extend(tenants.rejected);
            return Err(main_errors);
        }
        for provider in gateway.providers.keys() {
            metrics.zero_provider(provider);
        }
        Ok(Snapshot {
            generation: previous.map_or(1, |p| p.generation + 1),
            routes: tenants.routes,
            certs,
            pools: tenants.pools.into_values().collect(),
            settings,
            auth: auth_settings,
            fingerprint: fingerprint.value(),
            rejected: tenants.rejected,
            unresolved: tenants.unresolved,
            log_identity: gateway.log.identity,
            identity_jwt,
        })
    }
}

/// What every app build needs from the main file.
struct AppContext<'a> {
    auth: Option<&'a AuthSettings>,
    /// The main file has an `identity_jwt:` section.
    identity_jwt: bool,
    /// The cookie section is broken (already reported against the main file).
    auth_broken: bool,
    metrics: &'a Arc<Metrics>,
    resolver: &'a dyn Resolver,
}

/// The apps of the snapshot being built, and the app files rejected so far.
struct Tenants<'a> {
    previous: HashMap<&'a Path, &'a Arc<App>>,
    reusable_pools: HashMap<&'a PoolSpec, &'a Arc<Pool>>,
    /// Hosts kept by the app already serving them: host → that app's file.
    reserved: HashMap<HostPattern, PathBuf>,
    /// Hosts given out in this build: host → file.
    taken: HashMap<HostPattern, PathBuf>,
    /// Files that failed to parse (they have no entry).
    unparsed: Vec<PathBuf>,
    routes: RouteTable<App>,
    pools: HashMap<PoolSpec, Arc<Pool>>,
    rejected: Vec<ConfigError>,
    unresolved: Vec<ConfigError>,
}

impl<'a> Tenants<'a> {
    fn new(previous: Option<&'a Snapshot>, entries: &[AppEntry], load_errors: Vec<ConfigError>) -> Self {
        let prev_apps: HashMap<&Path, &Arc<App>> = previous
            .map(|p| p.routes.values().map(|a| (a.file.as_path(), a)).collect())
            .unwrap_or_default();
        let reusable_pools = previous
            .map(|p| p.pools.iter().map(|pool| (pool.spec(), pool)).collect())
            .unwrap_or_default();
        let unparsed: Vec<PathBuf> = {
            let mut seen = HashSet::new();
            load_errors
                .iter()
                .filter(|e| seen.insert(e.file.clone()))
                .map(|e| e.file.clone())
                .collect()
        };
        let claims: HashMap<&Path, Option<HostPattern>> = entries
            .iter()
            .map(|e| (e.file.as_path(), HostPattern::parse(&e.spec.host).ok()))
            .collect();
        // An app keeps its host while its file still claims it, or cannot say otherwise
        // (unparsable, or an invalid host: it will be kept at its last good version).
        let mut reserved = HashMap::new();
        for (file, app) in &prev_apps {
            let keeps = match claims.get(file) {
                Some(Some(host)) => *host == app.host,
                Some(None) => true,
                None => unparsed.iter().any(|f| f == file),
            };
            if keeps {
                reserved.insert(app.host.clone(), file.to_path_buf());
            }
        }
        Tenants {
            previous: prev_apps,
            reusable_pools,
            reserved,
            taken: HashMap::new(),
            unparsed,
            routes: RouteTable::default(),
            pools: HashMap::new(),
            rejected: load_errors,
            unresolved: Vec::new(),
        }
    }

    /// Compiles one app file, or rejects it (keeping its previous version).
    fn add(&mut self, entry: AppEntry, context: &AppContext<'_>, fingerprint: &mut crate::config::Fingerprint) {
        let file = entry.file.clone();
        match self.compile(entry, context, fingerprint) {
            Ok(app) => {
                self.taken.insert(app.host.clone(), file);
                self.routes.insert(app.host.clone(), Arc::new(app));
            }
            Err(errors) => {
                self.rejected.extend(errors);
                self.carry_over(&file);
            }
        }
    }

    /// Keeps the previous version of each app whose file could not even be parsed.
    fn carry_over_unparsed(&mut self) {
        for file in std::mem::take(&mut self.unparsed) {
            self.carry_over(&file);
        }
    }

    /// Serves the previous snapshot's version of the app from `file`, if there was one and its
    /// host is still free.
    fn carry_over(&mut self, file: &Path) {
        let Some(app) = self.previous.get(file).copied() else {
            return;
        };
        if let Some(other) = self.taken.get(&app.host) {
            tracing::warn!(
                file = %file.display(),
                host = %app.host,
                now_served_by = %other.display(),
                "the last good version of a rejected app cannot keep its host; the app is left out"
            );
            return;
        }
        self.taken.insert(app.host.clone(), file.to_path_buf());
        for (_, pool) in app.pools() {
            self.pools.entry(pool.spec().clone()).or_insert_with(|| pool.clone());
        }
        self.routes.insert(app.host.clone(), app.clone());
    }

    fn compile(
        &mut self,
        entry: AppEntry,
        context: &AppContext<'_>,
        fingerprint: &mut crate::config::Fingerprint,
    ) -> Result<App, Vec<ConfigError>> {
        let AppEntry { file, name, spec } = entry;
        let fail = |field: &str, message: String| vec![ConfigError::new(&file, field, message)];
        let host = HostPattern::parse(&spec.host).map_err(|m| fail("host", m))?;
        let owner = self
            .taken
            .get(&host)
            .or_else(|| self.reserved.get(&host).filter(|f| **f != file));
        if let Some(other) = owner {
            return Err(fail(
                "host",
                format!(
                    "{host} is already served by {}: each host belongs to exactly one app file (the app already serving it keeps it)",
                    other.display()
                ),
            ));
        }
        if let Some(message) = super::raw_path_conflict(&spec) {
            return Err(fail("forward_raw_path", message.to_owned()));
        }
        if context.auth_broken && (spec.auth.is_some() || spec.routes.iter().any(|r| matches!(r.auth, Some(Some(_))))) {
            // The cookie section itself is broken and already reported.
            return Err(Vec::new());
        }
        check_one_provider(&file, &spec)?;
        let prev = self.previous.get(file.as_path()).copied();
        let app_pool = PoolInputs {
            upstreams: &spec.upstreams,
            load_balancing: spec.load_balancing,
            health_check: spec.health_check.as_ref(),
            upstream_tls: spec.upstream_tls.as_ref(),
        };
        let pool = self.pool_for(&file, "", &app_pool, context, fingerprint)?;
        let prev_auth = prev.filter(|p| p.host == host).and_then(|p| p.default.auth.as_ref());
        let auth = compile_auth(&file, "", spec.auth.as_ref(), prev_auth, &host, context, fingerprint)?;
        let default = Route {
            pool,
            timeouts: spec.timeouts,
            auth,
        };
        let routes = self.compile_routes(&file, &spec, &default, prev, &host, context, fingerprint)?;
        let protected = default.auth.is_some() || routes.iter().any(|(_, r)| r.auth.is_some());
        let identity_jwt = app_identity_jwt(&file, &name, spec.identity_jwt.as_ref(), context)?;
        let metrics = prev
            .map(|prev| &prev.metrics)
            .filter(|m| m.fits(&name, protected))
            .cloned()
            .unwrap_or_else(|| Arc::new(AppMetrics::new(context.metrics, &name, protected)));
        Ok(App {
            name,
            host,
            file,
            default,
            routes,
            path_mode: if spec.forward_raw_path {
                PathMode::Raw
            } else {
                PathMode::Canonical
            },
            metrics,
            identity_jwt,
        })
    }

    /// Compiles the app's `routes:`; an absent setting of a route is the app's (`default`).
    #[allow(clippy::too_many_arguments)]
    fn compile_routes(
        &mut self,
        file: &Path,
        spec: &AppFile,
        default: &Route,
        prev: Option<&Arc<App>>,
        host: &HostPattern,
        context: &AppContext<'_>,
        fingerprint: &mut crate::config::Fingerprint,
    ) -> Result<PathRoutes<Route>, Vec<ConfigError>> {
        let mut routes = PathRoutes::default();
        let mut errors = Vec::new();
        for (i, r) in spec.routes.iter().enumerate() {
            let field = format!("routes[{i}].");
            let pool = match &r.upstreams {
                Some(upstreams) => {
                    let inputs = PoolInputs {
                        upstreams,
                        load_balancing: r.load_balancing.unwrap_or(spec.load_balancing),
                        health_check: r.health_check.as_ref().or(spec.health_check.as_ref()),
                        upstream_tls: r.upstream_tls.as_ref().or(spec.upstream_tls.as_ref()),
                    };
                    self.pool_for(file, &field, &inputs, context, fingerprint)
                }
                None => pool_settings_without_upstreams(file, &field, r).map(|()| default.pool.clone()),
            };
            let auth = match &r.auth {
                None => Ok(default.auth.clone()),
                Some(None) => Ok(None),
                Some(Some(a)) => {
                    let prev_auth = prev
                        .filter(|p| p.host == *host)
                        .and_then(|p| p.routes.iter().find(|(prefix, _)| *prefix == r.path_prefix))
                        .and_then(|(_, route)| route.auth.as_ref());
                    compile_auth(file, &field, Some(a), prev_auth, host, context, fingerprint)
                }
            };
            match (pool, auth) {
                (Ok(pool), Ok(auth)) => {
                    let route = Route {
                        pool,
                        timeouts: r.timeouts.unwrap_or(default.timeouts),
                        auth,
                    };
                    if let Err(e) = routes.insert(&r.path_prefix, route) {
                        errors.push(ConfigError::new(file, format!("{field}path_prefix"), e.to_string()));
                    }
                }
                (pool, auth) => errors.extend(pool.err().into_iter().chain(auth.err()).flatten()),
            }
        }
        if errors.is_empty() {
            Ok(routes)
        } else {
            Err(errors)
        }
    }

    /// The pool for `inputs` (errors named with `field`, e.g. `routes[0].`).
    fn pool_for(
        &mut self,
        file: &Path,
        field: &str,
        inputs: &PoolInputs<'_>,
        context: &AppContext<'_>,
        fingerprint: &mut crate::config::Fingerprint,
    ) -> Result<Arc<Pool>, Vec<ConfigError>> {
        let (pool_spec, ca) = PoolSpec::parse(
            inputs.upstreams,
            inputs.load_balancing,
            inputs.health_check,
            inputs.upstream_tls,
            &base_dir(file),
            fingerprint,
        )
        .map_err(|list| field_errors(file, field, list))?;
        self.pool(file, field, pool_spec, ca, context).map_err(|e| {
            vec![ConfigError::new(
                file,
                format!("{field}upstreams"),
                format!("cannot build the pool: {e}"),
            )]
        })
    }

    /// The pool for `spec`: shared with another app of this build, reused from the previous
    /// snapshot (keeping its health state), or new.
    fn pool(
        &mut self,
        file: &Path,
        field: &str,
        spec: PoolSpec,
        ca: Option<Arc<pingora::protocols::tls::CaType>>,
        context: &AppContext<'_>,
    ) -> pingora::Result<Arc<Pool>> {
        if let Some(p) = self.pools.get(&spec) {
            return Ok(p.clone());
        }
        let pool = match self.reusable_pools.get(&spec) {
            Some(p) => (*p).clone(),
            None => {
                let (pool, unresolved) = Pool::build(spec.clone(), ca, context.metrics.clone(), context.resolver)?;
                for u in unresolved {
                    self.unresolved.push(ConfigError::new(
                        file,
                        format!("{field}upstreams[{}]", u.index),
                        u.message,
                    ));
                }
                Arc::new(pool)
            }
        };
        self.pools.insert(spec, pool.clone());
        Ok(pool)
    }
}

/// An app's `identity_jwt:` block, compiled (the main file must have the section).
fn app_identity_jwt(
    file: &Path,
    name: &str,
    spec: Option<&AppIdentityJwt>,
    context: &AppContext<'_>,
) -> Result<Option<AppAssertion>, Vec<ConfigError>> {
    let Some(spec) = spec else { return Ok(None) };
    if !context.identity_jwt {
        return Err(vec![ConfigError::new(
            file,
            "identity_jwt",
            "the main file has no identity_jwt section: add identity_jwt: { issuer: https://..., keys_env: AUTHGATE_JWT_KEYS }",
        )]);
    }
    AppAssertion::build(spec, name)
        .map(Some)
        .map_err(|(field, message)| vec![ConfigError::new(file, field, message)])
}

/// What a pool is built from: the app's settings, or a route's with the app's as defaults.
struct PoolInputs<'a> {
    upstreams: &'a [String],
    load_balancing: LoadBalancing,
    health_check: Option<&'a HealthCheckSpec>,
    upstream_tls: Option<&'a UpstreamTlsSpec>,
}

/// A route without its own `upstreams` uses the app's pool: pool settings would change nothing.
fn pool_settings_without_upstreams(file: &Path, field: &str, r: &RouteSpec) -> Result<(), Vec<ConfigError>> {
    let stray = [
        ("load_balancing", r.load_balancing.is_some()),
        ("health_check", r.health_check.is_some()),
        ("upstream_tls", r.upstream_tls.is_some()),
    ];
    let errors: Vec<ConfigError> = stray
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| {
            ConfigError::new(
                file,
                format!("{field}{name}"),
                "applies to the route's own upstreams, and the route has none: add upstreams to the route or remove it",
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Every policy of one host signs in with one provider: they share the host's `/oauth2/`
/// endpoints and its session cookie.
fn check_one_provider(file: &Path, spec: &AppFile) -> Result<(), Vec<ConfigError>> {
    let mut first = spec
        .auth
        .as_ref()
        .map(|a| ("auth.provider".to_owned(), a.provider.as_str()));
    for (i, r) in spec.routes.iter().enumerate() {
        let Some(Some(a)) = &r.auth else { continue };
        match &first {
            None => first = Some((format!("routes[{i}].auth.provider"), a.provider.as_str())),
            Some((field, provider)) if *provider != a.provider => {
                return Err(vec![ConfigError::new(
                    file,
                    format!("routes[{i}].auth.provider"),
                    format!(
                        "is {:?} but {field} is {provider:?}: every policy of one host signs in with the same provider (they share its /oauth2/ endpoints and session cookie)",
                        a.provider
                    ),
                )]);
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Compiles an `auth` block (errors named with `field`, e.g. `routes[0].`), reusing
/// `prev`'s compiled policy when it can serve the block unchanged (compiling 1,000 apps' route
/// regexes is most of a reload).
fn compile_auth(
    file: &Path,
    field: &str,
    spec: Option<&AuthSpec>,
    prev: Option<&Arc<AppAuth>>,
    host: &HostPattern,
    context: &AppContext<'_>,
    fingerprint: &mut crate::config::Fingerprint,
) -> Result<Option<Arc<AppAuth>>, Vec<ConfigError>> {
    let Some(spec) = spec else { return Ok(None) };
    // Files the block names (`authenticated_emails_file`) are read on every build: their
    // content decides reuse, and their bytes the fingerprint.
    let emails =
        crate::auth::load_files(spec, &base_dir(file), fingerprint).map_err(|list| field_errors(file, field, list))?;
    if let (Some(prev), Some(settings)) = (prev, context.auth) {
        if prev.reusable_for(spec, settings, host, &emails) {
            return Ok(Some(prev.clone()));
        }
    }
    AppAuth::build(spec, host, context.auth, emails)
        .map(|a| Some(Arc::new(a)))
        .map_err(|list| field_errors(file, field, list))
}

fn field_errors(file: &Path, prefix: &str, list: Vec<(String, String)>) -> Vec<ConfigError> {
    list.into_iter()
        .map(|(field, message)| ConfigError::new(file, format!("{prefix}{field}"), message))
        .collect()
}

fn build_auth(
    main_path: &Path,
    gateway: &crate::config::schema::GatewayFile,
    previous: Option<&Snapshot>,
    fingerprint: &mut crate::config::Fingerprint,
    errors: &mut ConfigErrors,
) -> Option<Arc<AuthSettings>> {
    let Some(cookie) = &gateway.cookie else {
        if !gateway.providers.is_empty() {
            errors.push(ConfigError::new(
                main_path,
                "cookie",
                "providers need a cookie section: cookie: { secrets_env: AUTHGATE_COOKIE_SECRETS }",
            ));
        }
        return None;
    };
    // Secrets come from the environment: mix them in so a changed secret is a change.
    for var in gateway.auth_secret_vars() {
        fingerprint.add(Path::new(var), std::env::var(var).unwrap_or_default().as_bytes());
    }
    let base = base_dir(main_path);
    let prev = previous.and_then(|p| p.auth.as_deref());
    match AuthSettings::build(
        cookie,
        &gateway.providers,
        &gateway.rate_limits,
        gateway.templates_dir.as_deref(),
        &base,
        prev,
        fingerprint,
    ) {
        Ok(a) => Some(Arc::new(a)),
        Err(list) => {
            for (field, message) in list {
                errors.push(ConfigError::new(main_path, field, message));
            }
            None
        }
    }
}
