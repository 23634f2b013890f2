//! The YAML schema of the gateway's files: `gateway.yaml` and one file per app in `apps_dir`.
//!
//! These types are the contract documented in `docs/configuration.md`: every struct refuses
//! unknown fields so a typo is an error, not a silently ignored setting.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

pub use super::auth_schema::{
    AuthSpec, CookieSection, GithubSpec, OidcSpec, ProviderSpec, SameSite, ASYMMETRIC_ALGORITHMS,
};

/// A duration written the human way: `250ms`, `5s`, `1h 30m`, `168h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 5s, 2m or 168h")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                humantime::parse_duration(v.trim())
                    .map(HumanDuration)
                    .map_err(|e| E::custom(format!("invalid duration {v:?}: {e} (examples: 500ms, 5s, 2m, 168h)")))
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

/// The main file, `gateway.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Listening addresses.
    pub listen: Listen,
    /// Certificates served on the HTTPS listener.
    pub tls: TlsSection,
    /// Directory holding one YAML file per app, relative to this file.
    #[serde(default = "default_apps_dir")]
    pub apps_dir: PathBuf,
    /// The HTTPS port clients see, when a load balancer in front maps ports
    /// (used in the HTTP→HTTPS redirect). Defaults to the port of `listen.https`.
    #[serde(default)]
    pub public_https_port: Option<u16>,
    /// Process and request limits.
    #[serde(default)]
    pub server: ServerSection,
    /// The session cookie; required when any app has an `auth` block.
    #[serde(default)]
    pub cookie: Option<CookieSection>,
    /// Identity providers by name, referenced by apps' `auth.provider`.
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, ProviderSpec>,
    /// Directory with a `sign_in.html` that replaces the built-in sign-in page.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// Where sessions are kept (read at start; changing it needs a restart).
    #[serde(default)]
    pub sessions: SessionsSection,
    /// Per-client-address limits on logins and failed bearer tokens.
    #[serde(default)]
    pub rate_limits: RateLimitsSection,
    /// What the access and audit logs record.
    #[serde(default)]
    pub log: LogSection,
    /// Signed identity assertions for upstreams: the issuer and the signing keys.
    #[serde(default)]
    pub identity_jwt: Option<IdentityJwtSection>,
    /// OpenTelemetry traces (OTLP/HTTP), off by default; read at start.
    #[serde(default)]
    pub tracing: super::traces::TracingSection,
}

/// The main file's `identity_jwt:` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityJwtSection {
    /// The `iss` claim: an `https://` URL naming this gateway.
    pub issuer: String,
    /// The environment variable holding PEM EC P-256 private keys (the first signs).
    pub keys_env: String,
}

/// An app's `identity_jwt:` block.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppIdentityJwt {
    /// The header carrying the assertion.
    #[serde(default = "default_identity_jwt_header")]
    pub header: String,
    /// The `aud` claim; the app's name by default.
    #[serde(default)]
    pub audience: Option<String>,
    /// Lifetime of an assertion.
    #[serde(default = "default_identity_jwt_ttl")]
    pub ttl: HumanDuration,
}

fn default_identity_jwt_header() -> String {
    "X-Authgate-Jwt-Assertion".to_owned()
}

fn default_identity_jwt_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

impl GatewayFile {
    /// The environment variables holding the cookie keys and the providers' client secrets.
    pub fn auth_secret_vars(&self) -> Vec<&str> {
        let mut vars: Vec<&str> = self.cookie.iter().map(|c| c.secrets_env.as_str()).collect();
        for spec in self.providers.values() {
            vars.push(match spec {
                ProviderSpec::Oidc(o) | ProviderSpec::Google(o) | ProviderSpec::Entra(o) => &o.client_secret_env,
                ProviderSpec::Github(g) => &g.client_secret_env,
            });
        }
        vars
    }
}

/// `rate_limits:` section: requests per client address per `window`; beyond, 429 with
/// `Retry-After`. On by default, with limits a NAT full of real users does not reach.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsSection {
    /// `false` turns every limit off.
    pub enabled: bool,
    /// The counting window.
    pub window: HumanDuration,
    /// `/oauth2/start` requests per address per window.
    pub oauth2_start: u32,
    /// `/oauth2/callback` requests per address per window.
    pub oauth2_callback: u32,
    /// Bearer tokens that fail verification, per address per window; beyond it, bearer
    /// requests from the address are answered 429 without verifying.
    pub bearer_failures: u32,
}

impl Default for RateLimitsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            window: HumanDuration(Duration::from_secs(60)),
            oauth2_start: 3000,
            oauth2_callback: 3000,
            bearer_failures: 1200,
        }
    }
}

/// `log:` section.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Which identity of the signed-in user the access and audit logs record.
    #[serde(default)]
    pub identity: LogIdentity,
}

/// `log.identity` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogIdentity {
    /// The provider's stable user id (`sub`): pseudonymous.
    #[default]
    Sub,
    /// The email address (the subject when there is none).
    Email,
    /// Nothing: no personal data in the logs.
    None,
}

/// `sessions:` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionsSection {
    /// `memory` (one instance) or `redis` (shared by every replica).
    #[serde(default)]
    pub store: StoreKind,
    /// The in-process cache in front of Redis.
    #[serde(default)]
    pub cache: CacheSpec,
    /// Redis settings, required with `store: redis`.
    #[serde(default)]
    pub redis: Option<RedisSpec>,
}

/// `sessions.store` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process's memory.
    #[default]
    Memory,
    /// Redis (standalone or Sentinel), with an in-process cache.
    Redis,
}

/// `sessions.cache`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSpec {
    /// Most sessions kept in memory.
    pub max_entries: u64,
    /// How long a cached session is trusted before Redis is asked again.
    pub ttl: HumanDuration,
}

impl Default for CacheSpec {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            ttl: HumanDuration(Duration::from_secs(30)),
        }
    }
}

/// `sessions.redis`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// Sentinel discovery (production).
    #[serde(default)]
    pub sentinel: Option<SentinelSpec>,
    /// A standalone server, `redis://host:port/db` (development).
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the ACL username of the data nodes.
    #[serde(default)]
    pub username_env: Option<String>,
    /// Environment variable holding the password of the data nodes.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Every key and pub/sub channel starts with this (a `{hash tag}` keeps them in one slot).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Connect and command timeouts.
    #[serde(default)]
    pub timeouts: RedisTimeouts,
    /// TLS to the data nodes and the sentinels (`rediss`).
    #[serde(default)]
    pub tls: Option<RedisTlsSpec>,
}

/// `sessions.redis.tls`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisTlsSpec {
    /// PEM bundle of the CAs that sign the Redis and Sentinel certificates (default: system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_key_prefix() -> String {
    "authgate:".to_owned()
}

/// `sessions.redis.sentinel`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SentinelSpec {
    /// The monitored master's name.
    pub master: String,
    /// Sentinel addresses, `host:port`.
    pub addresses: Vec<String>,
    /// Environment variable with the sentinels' own ACL username, if they require one.
    #[serde(default)]
    pub username_env: Option<String>,
    /// Environment variable with the sentinels' own password, if they require one.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// `sessions.redis.timeouts`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTimeouts {
    /// Connecting to a node.
    pub connect: HumanDuration,
    /// One command (or pipeline), `WAIT` included.
    pub command: HumanDuration,
}

impl Default for RedisTimeouts {
    fn default() -> Self {
        Self {
            connect: HumanDuration(Duration::from_millis(500)),
            command: HumanDuration(Duration::from_millis(250)),
        }
    }
}

fn default_apps_dir() -> PathBuf {
    PathBuf::from("apps.d")
}

/// `listen:` addresses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The TLS listener that serves every app, e.g. `0.0.0.0:8443`.
    pub https: String,
    /// Optional plain-HTTP listener: 308 to HTTPS, plus `/ping`.
    #[serde(default)]
    pub http: Option<String>,
    /// Optional admin listener: `/ping`, `/ready`, `/metrics`. Keep it on loopback.
    #[serde(default)]
    pub admin: Option<String>,
    /// Read a PROXY protocol header (v1 or v2) before TLS on the HTTPS listener, from peers
    /// in `server.trusted_proxies` only.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// `tls:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Certificates, chosen per SNI: an exact name beats a wildcard; the first is the default.
    pub certificates: Vec<CertificateFiles>,
}

/// One certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// PEM file: the leaf certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM file: the private key of the leaf.
    pub key_file: PathBuf,
}

/// `server:` section: process settings and request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Worker threads of the HTTPS service; default: the number of CPUs.
    pub threads: Option<usize>,
    /// How long in-flight requests may finish after SIGTERM.
    pub grace_period: HumanDuration,
    /// Hard stop after the grace period.
    pub shutdown_timeout: HumanDuration,
    /// Largest request header block accepted (bytes); bigger gets 431.
    pub max_header_bytes: usize,
    /// Longest request target (path and query, bytes) accepted; longer gets 414.
    pub max_uri_bytes: usize,
    /// Idle time after which a downstream keep-alive connection is closed.
    pub keepalive_timeout: HumanDuration,
    /// Idle upstream connections kept for reuse, across all backends.
    pub upstream_keepalive_pool_size: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed, read right to left; default none.
    pub trusted_proxies: Vec<String>,
    /// Unix socket over which a running process hands its listening sockets to a new one
    /// started with `run --upgrade` (binary upgrades without refusing a connection).
    pub upgrade_socket: String,
    /// How often upstream host names are resolved again (without a reload).
    pub resolve_interval: HumanDuration,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            threads: None,
            grace_period: HumanDuration(Duration::from_secs(10)),
            shutdown_timeout: HumanDuration(Duration::from_secs(5)),
            max_header_bytes: 32 * 1024,
            max_uri_bytes: 8 * 1024,
            keepalive_timeout: HumanDuration(Duration::from_secs(60)),
            upstream_keepalive_pool_size: 1024,
            trusted_proxies: Vec::new(),
            upgrade_socket: "/run/authgate/upgrade.sock".to_owned(),
            resolve_interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

/// One app file in `apps_dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppFile {
    /// `app1.example.com`, or a wildcard such as `*.preview.example.com`.
    pub host: String,
    /// Backends: `127.0.0.1:9001`, `backend.internal:8080`, `https://api.internal:8443`.
    pub upstreams: Vec<String>,
    /// How requests are spread over the backends.
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// Active health check; absent means a TCP connect check every 10s.
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    /// TLS towards `https://` upstreams.
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTlsSpec>,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsSpec,
    /// Authentication policy; absent means a public app, proxied as is.
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    /// Forward the raw request target instead of the canonical one, and accept encoded
    /// slashes (`%2F`) and dot segments with parameters. Only for apps without path rules.
    #[serde(default)]
    pub forward_raw_path: bool,
    /// Path prefixes of this host served by their own backends and/or policy; a request no
    /// route matches is served by the app's own `upstreams` and `auth`.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Send a signed identity assertion (JWT) upstream for admitted users.
    #[serde(default)]
    pub identity_jwt: Option<AppIdentityJwt>,
}

/// One `routes:` entry of an app file. Every field but `path_prefix` is optional: an absent
/// one is the app's (`auth: null` makes the route public in a protected app).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// `/api/`: matches `/api`, `/api/` and everything under it (whole segments; the longest
    /// matching prefix wins), on the canonical path.
    pub path_prefix: String,
    /// Backends of this route; absent: the app's pool.
    #[serde(default)]
    pub upstreams: Option<Vec<String>>,
    /// Load balancing over the route's own `upstreams`; absent: the app's.
    #[serde(default)]
    pub load_balancing: Option<LoadBalancing>,
    /// Health check of the route's own `upstreams`; absent: the app's.
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    /// TLS towards the route's own `https://` upstreams; absent: the app's.
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTlsSpec>,
    /// Upstream timeouts of the route (the whole block replaces the app's); absent: the app's.
    #[serde(default)]
    pub timeouts: Option<TimeoutsSpec>,
    /// The route's policy: absent means the app's `auth`, `null` a public route, a block its
    /// own policy (same provider as the app's).
    #[serde(default, deserialize_with = "explicit")]
    pub auth: Option<Option<AuthSpec>>,
}

/// Reads a field that is present (possibly `null`) as `Some(value)`; with `#[serde(default)]`
/// an absent field stays `None`.
fn explicit<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `load_balancing:` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Each request to the next healthy backend.
    #[default]
    RoundRobin,
    /// Consistent (ketama) hashing of the client address: a client sticks to one backend.
    ConsistentHash,
}

/// `health_check:` block.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// HTTP path to GET; a 2xx or 3xx answer is healthy. Absent: TCP connect only.
    #[serde(default)]
    pub path: Option<String>,
    /// Time between checks.
    #[serde(default = "default_hc_interval")]
    pub interval: HumanDuration,
    /// Connect and read timeout of one check.
    #[serde(default = "default_hc_timeout")]
    pub timeout: HumanDuration,
    /// Consecutive successes that bring a backend back.
    #[serde(default = "default_threshold")]
    pub healthy_threshold: usize,
    /// Consecutive failures that take a backend out.
    #[serde(default = "default_threshold")]
    pub unhealthy_threshold: usize,
}

impl Default for HealthCheckSpec {
    fn default() -> Self {
        Self {
            path: None,
            interval: HumanDuration(Duration::from_secs(10)),
            timeout: default_hc_timeout(),
            healthy_threshold: default_threshold(),
            unhealthy_threshold: default_threshold(),
        }
    }
}

fn default_hc_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_hc_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_threshold() -> usize {
    2
}

/// `upstream_tls:` block, for `https://` upstreams.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// PEM bundle of CAs that sign the upstream certificates (default: system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SNI and name to verify, when it differs from the upstream's host name.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Skip certificate verification. Only for development.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `timeouts:` block.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsSpec {
    /// TCP (and TLS) connect to a backend.
    pub connect: HumanDuration,
    /// Longest wait for the next bytes from a backend (504 when it expires before the response).
    pub read: HumanDuration,
    /// Longest wait to write to a backend.
    pub write: HumanDuration,
    /// How long an idle upstream connection is kept for reuse.
    pub idle: HumanDuration,
}

impl Default for TimeoutsSpec {
    fn default() -> Self {
        Self {
            connect: HumanDuration(Duration::from_secs(3)),
            read: HumanDuration(Duration::from_secs(60)),
            write: HumanDuration(Duration::from_secs(60)),
            idle: HumanDuration(Duration::from_secs(60)),
        }
    }
}
