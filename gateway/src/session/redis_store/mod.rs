//! The shared session store: Redis (standalone or behind Sentinel) with an in-process cache
//! in front ([`cache`]), so an authenticated request whose session is cached makes no network call.
//!
//! - **Keys**: `<prefix>s:<session id hex>` holds the session sealed with the ticket's own key
//!   (Redis never sees plaintext), with a TTL equal to the session's remaining lifetime.
//! - **Cache**: keyed by session id, bounded and time-limited; concurrent misses for one
//!   session make one Redis call. Sign-out deletes the key and publishes the id on
//!   `<prefix>inv`; every replica's subscriber drops it from its cache. A subscriber that
//!   (re)connects drops its whole cache, since it may have missed messages.
//! - **Failover**: the master is found through the sentinels and found again on connection
//!   errors, timeouts, `READONLY`/`MASTERDOWN`/`LOADING`/`NOREPLICAS`, on a `+switch-master`
//!   event and by a periodic check. Writes are confirmed with `WAIT 1`, and each gateway keeps a
//!   journal of its writes of the last seconds that it replays on the new master after a switch,
//!   so an acknowledged write is not lost to a failover.
//! - **Refresh**: a refresh replaces a session only when the record still holds the version it
//!   read (a Lua compare-and-set; see [`ops`]), so a sign-out or another replica's refresh in
//!   the meantime is never undone; the cross-replica refresh lock `<prefix>lk:<id>` holds a
//!   random token and is deleted only by its owner (compare-and-delete).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, ErrorKind, RedisError, ServerErrorKind};

use super::store::StoreError;
use super::{now, Ticket};

mod cache;
mod ops;
use crate::config::schema::{CacheSpec, RedisSpec};
use crate::metrics::Metrics;
use cache::SessionCache;

/// How far back the write journal reaches (longer than a Sentinel failover).
const JOURNAL_WINDOW: Duration = Duration::from_secs(15);
/// How often the master is checked against the sentinels even without errors.
const PERIODIC_CHECK: Duration = Duration::from_secs(5);

enum Source {
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Standalone(redis::Client),
}

struct Current {
    conn: ConnectionManager,
    client: redis::Client,
    addr: String,
    generation: u64,
}

enum Op {
    Set { blob: Vec<u8>, expires_at_ms: u64 },
    Del,
}

struct JournalEntry {
    at: Instant,
    key: String,
    op: Op,
}

/// Redis connection settings resolved from the configuration and the environment.
pub struct RedisSettings {
    /// Sentinel (master name, sentinel addresses, sentinel credentials) or standalone URL.
    pub spec: RedisSpec,
    /// Data-node ACL username.
    pub username: Option<String>,
    /// Data-node password.
    pub password: Option<String>,
    /// Sentinel username.
    pub sentinel_username: Option<String>,
    /// Sentinel password.
    pub sentinel_password: Option<String>,
    /// Cache settings.
    pub cache: CacheSpec,
    /// PEM CA bundle when TLS is on (`Some(None)`: TLS with the system roots).
    pub tls_ca: Option<Option<Vec<u8>>>,
}

/// Sessions in Redis with a cache in front ([`cache::SessionCache`]).
pub struct RedisStore {
    source: Source,
    current: ArcSwapOption<Current>,
    resolving: tokio::sync::Mutex<()>,
    generation_tx: tokio::sync::watch::Sender<u64>,
    cm_config: ConnectionManagerConfig,
    command_timeout: Duration,
    prefix: String,
    channel: String,
    cache: SessionCache,
    revoked: moka::sync::Cache<[u8; 16], ()>,
    journal: Mutex<VecDeque<JournalEntry>>,
    metrics: Arc<Metrics>,
}

fn addr_string(client: &redis::Client) -> String {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        other => format!("{other:?}"),
    }
}

fn parse_host_port(s: &str) -> Result<ConnectionAddr, String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not host:port"))?;
    let port = port.parse::<u16>().map_err(|_| format!("{s:?} has no valid port"))?;
    Ok(ConnectionAddr::Tcp(
        host.trim_start_matches('[').trim_end_matches(']').to_owned(),
        port,
    ))
}

/// The kind label of a Redis error, for metrics (never the message: it may echo arguments).
fn error_kind(e: &RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection"
    } else {
        match e.kind() {
            ErrorKind::Server(ServerErrorKind::ReadOnly) => "readonly",
            ErrorKind::Server(ServerErrorKind::MasterDown) => "masterdown",
            ErrorKind::Server(ServerErrorKind::BusyLoading) => "loading",
            ErrorKind::Server(ServerErrorKind::NoPerm) => "noperm",
            _ if e.code() == Some("NOREPLICAS") => "noreplicas",
            _ if e.code() == Some("NOAUTH") || e.code() == Some("WRONGPASS") => "auth",
            _ => "other",
        }
    }
}

/// True when the error means "this is not (or no longer) a usable master".
fn needs_new_master(e: &RedisError) -> bool {
    matches!(
        error_kind(e),
        "timeout" | "connection" | "readonly" | "masterdown" | "loading" | "noreplicas"
    ) || e.is_unrecoverable_error()
}

impl RedisStore {
    /// Builds the store (no connection is made yet) and validates the settings.
    pub fn new(settings: RedisSettings, metrics: Arc<Metrics>) -> Result<Arc<RedisStore>, String> {
        let spec = &settings.spec;
        let source = match (&spec.sentinel, &spec.url) {
            (Some(s), None) => {
                let addrs = s
                    .addresses
                    .iter()
                    .map(|a| parse_host_port(a))
                    .collect::<Result<Vec<_>, _>>()?;
                if addrs.is_empty() {
                    return Err("sentinel.addresses is empty".into());
                }
                let mut b = SentinelClientBuilder::new(addrs, &s.master, SentinelServerType::Master)
                    .map_err(|e| e.to_string())?;
                if let Some(u) = &settings.username {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some(p) = &settings.password {
                    b = b.set_client_to_redis_password(p);
                }
                if let Some(u) = &settings.sentinel_username {
                    b = b.set_client_to_sentinel_username(u);
                }
                if let Some(p) = &settings.sentinel_password {
                    b = b.set_client_to_sentinel_password(p);
                }
                Source::Sentinel(tokio::sync::Mutex::new(b.build().map_err(|e| e.to_string())?))
            }
            (None, Some(url)) => {
                use redis::IntoConnectionInfo;
                let mut info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| format!("invalid url: {e}"))?;
                let mut redis_info = info.redis_settings().clone();
                if let Some(u) = &settings.username {
                    redis_info = redis_info.set_username(u);
                }
                if let Some(p) = &settings.password {
                    redis_info = redis_info.set_password(p);
                }
                info = info.set_redis_settings(redis_info);
                let tls_url = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
                let client = match (&settings.tls_ca, tls_url) {
                    (None, false) => redis::Client::open(info),
                    (Some(ca), true) => redis::Client::build_with_tls(
                        info,
                        redis::TlsCertificates {
                            client_tls: None,
                            root_cert: ca.clone(),
                        },
                    ),
                    (Some(_), false) => return Err("tls is set: the url must start with rediss://".into()),
                    (None, true) => redis::Client::open(info),
                };
                Source::Standalone(client.map_err(|e| e.to_string())?)
            }
            _ => return Err("give exactly one of sentinel or url".into()),
        };
        let timeouts = spec.timeouts;
        let cm_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeouts.connect.0))
            .set_response_timeout(Some(timeouts.command.0 + Duration::from_millis(250)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let cache = SessionCache::new(settings.cache.max_entries, settings.cache.ttl.0);
        let revoked = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(settings.cache.ttl.0)
            .build();
        let (generation_tx, _) = tokio::sync::watch::channel(0);
        Ok(Arc::new(RedisStore {
            source,
            current: ArcSwapOption::empty(),
            resolving: tokio::sync::Mutex::new(()),
            generation_tx,
            cm_config,
            command_timeout: timeouts.command.0,
            prefix: spec.key_prefix.clone(),
            channel: format!("{}inv", spec.key_prefix),
            cache,
            revoked,
            journal: Mutex::new(VecDeque::new()),
            metrics,
        }))
    }

    fn key(&self, ticket: &Ticket) -> String {
        format!("{}s:{}", self.prefix, ticket.id_hex())
    }

    /// The set of a user's session ids (`<prefix>u:<digest>`).
    fn user_index(&self, user: &super::store::UserKey) -> String {
        format!("{}u:{}", self.prefix, user.digest_hex())
    }

    fn aad(ticket: &Ticket) -> Vec<u8> {
        format!("authgate/store/v1|{}", ticket.id_hex()).into_bytes()
    }

    async fn resolve_client(&self) -> Result<redis::Client, RedisError> {
        match &self.source {
            Source::Standalone(c) => Ok(c.clone()),
            Source::Sentinel(s) => s.lock().await.async_get_client().await,
        }
    }

    /// The current master connection, resolving one when there is none.
    async fn connection(&self) -> Result<Arc<Current>, StoreError> {
        if let Some(c) = self.current.load_full() {
            return Ok(c);
        }
        self.reresolve(None, "startup").await?;
        self.current
            .load_full()
            .ok_or_else(|| StoreError::Unavailable("no Redis master".into()))
    }

    /// Finds the master again (single-flight). `seen` is the generation the caller saw fail;
    /// when another task already moved past it, nothing is done.
    async fn reresolve(&self, seen: Option<u64>, trigger: &'static str) -> Result<(), StoreError> {
        let _guard = self.resolving.lock().await;
        let old = self.current.load_full();
        if let (Some(seen), Some(cur)) = (seen, &old) {
            if cur.generation != seen {
                return Ok(());
            }
        }
        if seen.is_none() && old.is_some() && trigger == "startup" {
            return Ok(());
        }
        let resolved = tokio::time::timeout(self.command_timeout * 8, self.resolve_client()).await;
        let client = match resolved {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.metrics
                    .redis_resolutions
                    .with_label_values(&[trigger, "error"])
                    .inc();
                return Err(StoreError::Unavailable(format!(
                    "cannot find the Redis master ({})",
                    error_kind(&e)
                )));
            }
            Err(_) => {
                self.metrics
                    .redis_resolutions
                    .with_label_values(&[trigger, "timeout"])
                    .inc();
                return Err(StoreError::Unavailable("timed out finding the Redis master".into()));
            }
        };
        let addr = addr_string(&client);
        let conn = ConnectionManager::new_with_config(client.clone(), self.cm_config.clone())
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to the Redis master ({})", error_kind(&e))))?;
        let generation = old.as_ref().map_or(1, |c| c.generation + 1);
        let switched = old.as_ref().is_some_and(|c| c.addr != addr);
        self.current.store(Some(Arc::new(Current {
            conn,
            client,
            addr: addr.clone(),
            generation,
        })));
        self.generation_tx.send_replace(generation);
        self.metrics.redis_resolutions.with_label_values(&[trigger, "ok"]).inc();
        if switched {
            self.metrics.redis_failovers.inc();
            tracing::warn!(master = %addr, trigger, "Redis master changed; flushing the session cache and replaying recent writes");
            self.cache.invalidate_all();
            self.replay().await;
        } else if old.is_none() {
            tracing::info!(master = %addr, "connected to the Redis master");
        }
        Ok(())
    }

    /// Runs `op` on the master, finding a new master and retrying once when the first try
    /// fails in a way a failover explains.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut last = String::new();
        for attempt in 0..2 {
            let cur = self.connection().await?;
            let started = Instant::now();
            let result = tokio::time::timeout(self.command_timeout * 2, f(cur.conn.clone())).await;
            self.metrics
                .redis_latency
                .with_label_values(&[op])
                .observe(started.elapsed().as_secs_f64());
            let err_kind = match result {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    let kind = error_kind(&e);
                    self.metrics.redis_errors.with_label_values(&[op, kind]).inc();
                    if !needs_new_master(&e) {
                        return Err(StoreError::Unavailable(format!("Redis {op} failed ({kind})")));
                    }
                    kind
                }
                Err(_) => {
                    self.metrics.redis_errors.with_label_values(&[op, "timeout"]).inc();
                    "timeout"
                }
            };
            last = format!("Redis {op} failed ({err_kind})");
            if attempt == 0 {
                self.reresolve(Some(cur.generation), "error").await?;
            }
        }
        Err(StoreError::Unavailable(last))
    }

    fn journal(&self, key: String, op: Op) {
        if let Ok(mut j) = self.journal.lock() {
            let cutoff = Instant::now().checked_sub(JOURNAL_WINDOW);
            while j.front().is_some_and(|e| cutoff.is_some_and(|c| e.at < c)) {
                j.pop_front();
            }
            j.push_back(JournalEntry {
                at: Instant::now(),
                key,
                op,
            });
        }
    }

    /// Writes this gateway's recent writes again on the (new) master, so a write acknowledged
    /// just before a failover and lost by it comes back.
    async fn replay(&self) {
        let now_ms = now() * 1000;
        let mut pipe = redis::pipe();
        let mut count = 0;
        {
            let Ok(journal) = self.journal.lock() else { return };
            for entry in journal.iter() {
                match &entry.op {
                    Op::Set { blob, expires_at_ms } if *expires_at_ms > now_ms => {
                        pipe.cmd("SET")
                            .arg(&entry.key)
                            .arg(blob.as_slice())
                            .arg("PXAT")
                            .arg(*expires_at_ms)
                            .ignore();
                        count += 1;
                    }
                    Op::Set { .. } => {}
                    Op::Del => {
                        pipe.cmd("DEL").arg(&entry.key).ignore();
                        count += 1;
                    }
                }
            }
        }
        if count == 0 {
            return;
        }
        let Some(cur) = self.current.load_full() else { return };
        let mut conn = cur.conn.clone();
        let result: redis::RedisResult<()> =
            match tokio::time::timeout(self.command_timeout * 4, pipe.query_async(&mut conn)).await {
                Ok(r) => r,
                Err(_) => Err(RedisError::from((ErrorKind::Io, "timeout"))),
            };
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics.redis_replayed.with_label_values(&[label]).inc_by(count);
        tracing::info!(
            writes = count,
            result = label,
            "replayed recent session writes on the new master"
        );
    }

    /// Starts the background tasks: the invalidation subscriber, the `+switch-master`
    /// listener and the periodic master check. They end when the store is dropped.
    pub fn start(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move { subscriber(weak).await });
        if matches!(self.source, Source::Sentinel(_)) {
            let weak = Arc::downgrade(self);
            tokio::spawn(async move { sentinel_events(weak).await });
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PERIODIC_CHECK).await;
                let Some(store) = weak.upgrade() else { return };
                store.periodic_check().await;
            }
        });
    }

    async fn periodic_check(&self) {
        let Some(cur) = self.current.load_full() else {
            let _ = self.reresolve(None, "periodic").await;
            return;
        };
        if let Source::Sentinel(_) = &self.source {
            if let Ok(Ok(client)) = tokio::time::timeout(self.command_timeout * 8, self.resolve_client()).await {
                if addr_string(&client) != cur.addr {
                    let _ = self.reresolve(Some(cur.generation), "periodic").await;
                }
            }
        }
    }

    fn invalidate_local(&self, id: [u8; 16]) {
        self.revoked.insert(id, ());
        self.cache.invalidate(&id);
    }
}

fn parse_sid(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Applies invalidations published by any replica to this replica's cache.
async fn subscriber(weak: std::sync::Weak<RedisStore>) {
    let mut generations = match weak.upgrade() {
        Some(s) => s.generation_tx.subscribe(),
        None => return,
    };
    loop {
        let Some(store) = weak.upgrade() else { return };
        let cur = match store.connection().await {
            Ok(c) => c,
            Err(_) => {
                drop(store);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut pubsub = match cur.client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                store
                    .metrics
                    .redis_errors
                    .with_label_values(&["subscribe", error_kind(&e)])
                    .inc();
                drop(store);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if pubsub.subscribe(&store.channel).await.is_err() {
            drop(store);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        // Messages may have been missed while unsubscribed: nothing cached can be trusted.
        store.cache.invalidate_all();
        store.metrics.redis_pubsub_connected.set(1);
        let generation = cur.generation;
        drop(store);
        let mut stream = pubsub.into_on_message();
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let Some(store) = weak.upgrade() else { return };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if let Some(id) = parse_sid(&payload) {
                        store.metrics.invalidations.with_label_values(&["received"]).inc();
                        store.invalidate_local(id);
                    }
                }
                changed = generations.changed() => {
                    if changed.is_err() || *generations.borrow() != generation {
                        break;
                    }
                }
            }
        }
        if let Some(store) = weak.upgrade() {
            store.metrics.redis_pubsub_connected.set(0);
        }
    }
}

/// Follows `+switch-master` announcements from the sentinels.
async fn sentinel_events(weak: std::sync::Weak<RedisStore>) {
    loop {
        let Some(store) = weak.upgrade() else { return };
        let client = match &store.source {
            Source::Sentinel(s) => s.lock().await.async_get_sentinel_client().await,
            Source::Standalone(_) => return,
        };
        drop(store);
        let Ok(client) = client else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let Ok(mut pubsub) = client.get_async_pubsub().await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if pubsub.subscribe("+switch-master").await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut stream = pubsub.into_on_message();
        while stream.next().await.is_some() {
            let Some(store) = weak.upgrade() else { return };
            let seen = store.current.load_full().map(|c| c.generation);
            let _ = store.reresolve(seen, "event").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_session_ids() {
        let id = [0xab; 16];
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_sid(&hex), Some(id));
        assert_eq!(parse_sid("zz"), None);
        assert_eq!(parse_sid(&"g".repeat(32)), None);
    }
}
