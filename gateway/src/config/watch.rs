//! Hot reload: watch the configuration's directories (notify) and SIGHUP, then load, check
//! and compile off the hot path and swap the snapshot atomically. A broken main file rejects
//! the whole change (the old configuration keeps serving); a broken app file is rejected alone
//! and every other change applies.
//!
//! Directories are watched rather than files, so editors that rename over a file and the
//! `..data` symlink swap of Kubernetes ConfigMaps and Secrets are both seen; events for other
//! files in those directories are ignored.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use notify::{EventKind, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use super::{base_dir, load, resolve, Config, ConfigErrors};
use crate::state::{Snapshot, State};

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// Longest a stream of events can delay a reload.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// A new snapshot is being served.
    Applied {
        /// Its generation.
        generation: u64,
        /// Time spent loading and compiling.
        took: Duration,
    },
    /// The files are byte for byte what is being served.
    Unchanged,
    /// The configuration was rejected; the old one keeps serving.
    Rejected(ConfigErrors),
}

/// The files a configuration is made of, and the directories to watch for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchSet {
    /// Directories watched (non-recursively).
    pub dirs: BTreeSet<PathBuf>,
    /// Files whose change matters: the main file, certificates, keys, CA files, page
    /// templates and `authenticated_emails_file`s.
    pub files: HashSet<PathBuf>,
    /// Any `*.yaml` / `*.yml` here matters.
    pub apps_dir: PathBuf,
}

impl WatchSet {
    /// True when a change to `path` may change the configuration. Other files in the same
    /// directories (logs, editor swap files) are ignored; `..`-prefixed names are the
    /// atomic-swap entries of Kubernetes volumes and always count.
    pub fn is_relevant(&self, path: &Path) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.starts_with("..")
            || self.files.contains(path)
            || (path.parent() == Some(self.apps_dir.as_path()) && (name.ends_with(".yaml") || name.ends_with(".yml")))
    }
}

/// What to watch for `config`.
pub fn watch_set(config: &Config) -> WatchSet {
    let mut files = HashSet::new();
    files.insert(config.main_path.clone());
    let main_base = base_dir(&config.main_path);
    for c in &config.gateway.tls.certificates {
        files.insert(resolve(&main_base, &c.cert_file));
        files.insert(resolve(&main_base, &c.key_file));
    }
    if let Some(dir) = &config.gateway.templates_dir {
        let dir = resolve(&main_base, dir);
        files.extend(crate::templates::FILES.iter().map(|f| dir.join(f)));
    }
    for app in &config.apps {
        if let Some(ca) = app.spec.upstream_tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
            files.insert(resolve(&base_dir(&app.file), ca));
        }
        let route_auths = app
            .spec
            .routes
            .iter()
            .filter_map(|r| r.auth.as_ref().and_then(Option::as_ref));
        for auth in app.spec.auth.iter().chain(route_auths) {
            if let Some(emails) = &auth.authenticated_emails_file {
                files.insert(resolve(&base_dir(&app.file), emails));
            }
        }
    }
    let mut dirs: BTreeSet<PathBuf> = files.iter().map(|f| base_dir(f)).collect();
    dirs.insert(config.apps_dir.clone());
    WatchSet {
        dirs,
        files,
        apps_dir: config.apps_dir.clone(),
    }
}

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A file event: swap only when the content changed.
    Change,
    /// SIGHUP: swap even when nothing changed (re-resolves names, re-reads secrets).
    Signal,
    /// The watcher has just started: catch up with changes made since the configuration was
    /// first loaded (not counted when there is none).
    Startup,
}

/// Loads, checks and compiles the configuration and, when it differs from the one served
/// (or on [`Trigger::Signal`]), swaps it in. Blocking (file I/O, DNS): run it off the async workers.
/// Returns the outcome and what to watch from now on.
pub fn reload(state: &State, trigger: Trigger) -> (ReloadOutcome, Option<WatchSet>) {
    let force = trigger == Trigger::Signal;
    let started = Instant::now();
    let current = state.snapshot();
    let config = match load(&state.config_path) {
        Ok(c) => c,
        Err(errors) => return (reject(state, errors, current.generation), None),
    };
    let watch = watch_set(&config);
    let outcome = match Snapshot::build(config, Some(&current), &state.metrics) {
        Ok(next) if !force && next.fingerprint == current.fingerprint => {
            if trigger != Trigger::Startup {
                state.metrics.reloads.with_label_values(&["unchanged"]).inc();
            }
            tracing::debug!("configuration files changed but their content did not");
            ReloadOutcome::Unchanged
        }
        Ok(next) => {
            let generation = next.generation;
            let apps = next.routes.len();
            let partial = log_rejected_files(&next.rejected);
            log_unresolved(&next.unresolved);
            state.store(next);
            let took = started.elapsed();
            let result = if partial { "partial" } else { "success" };
            state.metrics.reloads.with_label_values(&[result]).inc();
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            state.metrics.last_reload_success.set(i64::try_from(now).unwrap_or(0));
            tracing::info!(
                generation,
                apps,
                took_ms = took.as_millis() as u64,
                "configuration reloaded"
            );
            ReloadOutcome::Applied { generation, took }
        }
        Err(errors) => reject(state, errors, current.generation),
    };
    (outcome, Some(watch))
}

/// Logs each error of the app files a snapshot leaves out (or keeps at their last good
/// version); true when there is any.
pub fn log_rejected_files(rejected: &[super::ConfigError]) -> bool {
    for e in rejected {
        tracing::error!(
            file = %e.file.display(),
            field = %e.field,
            "app file rejected (the app keeps its last good version, or stays absent if new): {}",
            e.message
        );
    }
    !rejected.is_empty()
}

/// Logs each upstream whose name did not resolve when its pool was built.
pub fn log_unresolved(unresolved: &[super::ConfigError]) {
    for e in unresolved {
        tracing::warn!(
            file = %e.file.display(),
            field = %e.field,
            "upstream name does not resolve; the app serves without it until it does: {}",
            e.message
        );
    }
}

fn reject(state: &State, errors: ConfigErrors, serving: u64) -> ReloadOutcome {
    state.metrics.reloads.with_label_values(&["failure"]).inc();
    for e in &errors.0 {
        tracing::error!(file = %e.file.display(), field = %e.field, "configuration rejected: {}", e.message);
    }
    tracing::warn!(
        errors = errors.0.len(),
        generation = serving,
        "configuration change rejected; still serving the previous configuration"
    );
    ReloadOutcome::Rejected(errors)
}

/// The background service that reloads on file changes and SIGHUP.
pub struct Reloader {
    state: Arc<State>,
    initial: WatchSet,
}

impl Reloader {
    /// A reloader for `state`, first watching `watch` (from the configuration loaded at start).
    pub fn new(state: Arc<State>, watch: WatchSet) -> Self {
        Self { state, initial: watch }
    }

    async fn reload_blocking(&self, trigger: Trigger) -> Option<WatchSet> {
        let state = self.state.clone();
        match tokio::task::spawn_blocking(move || reload(&state, trigger)).await {
            Ok((outcome, dirs)) => {
                if matches!(outcome, ReloadOutcome::Applied { .. }) {
                    warm_up_providers(&self.state);
                }
                dirs
            }
            Err(e) => {
                tracing::error!(error = %e, "reload task failed");
                None
            }
        }
    }
}

/// True for events that can change a relevant file's content or presence.
fn is_change(event: &notify::Event, watch: &RwLock<WatchSet>) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    match watch.read() {
        Ok(set) => event.paths.iter().any(|p| set.is_relevant(p)),
        Err(_) => true,
    }
}

fn rewatch(watcher: &mut notify::RecommendedWatcher, watched: &mut BTreeSet<PathBuf>, wanted: BTreeSet<PathBuf>) {
    for dir in watched.difference(&wanted) {
        if let Err(e) = watcher.unwatch(dir) {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot unwatch");
        }
    }
    for dir in wanted.difference(watched) {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory; changes there need SIGHUP");
        }
    }
    *watched = wanted;
}

/// Fetches identity providers' metadata in the background, so first logins do not wait.
fn warm_up_providers(state: &State) {
    if let Some(auth) = state.snapshot().auth.clone() {
        for provider in auth.providers.values() {
            let provider = provider.clone();
            tokio::spawn(async move { provider.warm_up().await });
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        warm_up_providers(&self.state);
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let current = Arc::new(RwLock::new(self.initial.clone()));
        let filter = current.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(ev) if is_change(&ev, &filter) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "file watcher error"),
        });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the file watcher; reload with SIGHUP");
                None
            }
        };
        let mut watched = BTreeSet::new();
        if let Some(w) = watcher.as_mut() {
            rewatch(w, &mut watched, self.initial.dirs.clone());
        }
        // Changes made between the first load and the watch are seen by nothing else.
        let mut pending_catch_up = Some(());
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { pending_catch_up.take() } => self.reload_blocking(Trigger::Startup).await,
                Some(()) = rx.recv() => {
                    let first = Instant::now();
                    loop {
                        let quiet = tokio::time::timeout(DEBOUNCE, rx.recv()).await;
                        if quiet.is_err() || first.elapsed() > MAX_DELAY {
                            break;
                        }
                    }
                    self.reload_blocking(Trigger::Change).await
                }
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading configuration");
                    self.reload_blocking(Trigger::Signal).await
                }
            };
            if let Some(next) = next {
                if let Some(w) = watcher.as_mut() {
                    rewatch(w, &mut watched, next.dirs.clone());
                }
                if let Ok(mut set) = current.write() {
                    *set = next;
                }
            }
        }
    }
}
