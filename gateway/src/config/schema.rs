//! The YAML schema of the gateway's files: `gateway.yaml` and one file per app in `apps_dir`.
//!
//! These types are the contract documented in `docs/configuration.md`: every struct refuses
//! unknown fields so a typo is an error, not a silently ignored setting.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

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
