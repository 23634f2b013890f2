//! Parsing an app's `upstreams` and the rest of what a [`super::Pool`] is built from. No DNS
//! here: `authgate check --offline` and reloads never wait on it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openssl::x509::X509;
use pingora::protocols::tls::CaType;
use pingora::utils::tls::WrappedX509;

use crate::config::schema::{HealthCheckSpec, LoadBalancing, UpstreamTlsSpec};
use crate::config::{resolve, Fingerprint};

/// The certificates of a PEM CA bundle, as the upstream TLS connector (rustls) takes them.
/// Each is checked to parse as DER here, so no handshake meets one that does not.
fn ca_certificates(pem: &[u8]) -> std::result::Result<Arc<CaType>, String> {
    let certs = X509::stack_from_pem(pem).map_err(|e| format!("is not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".to_owned());
    }
    let wrapped = certs
        .iter()
        .enumerate()
        .map(|(i, cert)| {
            let der = cert.to_der().map_err(|e| format!("certificate #{}: {e}", i + 1))?;
            WrappedX509::try_new(der, |raw| {
                x509_parser::parse_x509_certificate(raw).map(|(_, parsed)| parsed)
            })
            .map_err(|e| format!("certificate #{} cannot be used: {e}", i + 1))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Arc::from(wrapped))
}

/// One entry of an app's `upstreams`, parsed but not resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamSpec {
    /// The host name or IP literal (SNI and Host of health checks).
    pub host: String,
    /// The port.
    pub port: u16,
    /// `https://` upstream.
    pub tls: bool,
    /// The upstream as written in the app file (for logs and metrics).
    pub label: String,
}

/// One backend address, resolved from an [`UpstreamSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetSpec {
    /// The resolved address.
    pub addr: SocketAddr,
    /// `https://` upstream.
    pub tls: bool,
    /// The name from the config (SNI and Host of health checks).
    pub host: String,
    /// The upstream as written in the app file (for logs).
    pub label: String,
}

/// Errors as `(field, message)` pairs, the field relative to the app file.
pub type FieldErrors = Vec<(String, String)>;

/// Everything a pool is built from; equal specs share one pool across reloads (names are
/// resolved by the pool, and re-resolved while it runs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    /// Backends, in configuration order.
    pub upstreams: Vec<UpstreamSpec>,
    /// Selection algorithm.
    pub algorithm: LoadBalancing,
    /// Active health check.
    pub health: HealthCheckSpec,
    /// TLS settings for `https://` backends.
    pub tls: UpstreamTlsSpec,
    /// Digest of the CA file's bytes, so a rotated CA builds a new pool.
    pub ca_digest: u64,
}

impl PoolSpec {
    /// Parses the `upstreams` of an app (no DNS: names are resolved by the pool). Errors are
    /// `(field, message)`.
    pub fn parse(
        upstreams: &[String],
        algorithm: LoadBalancing,
        health: Option<&HealthCheckSpec>,
        tls: Option<&UpstreamTlsSpec>,
        app_dir: &Path,
        fingerprint: &mut Fingerprint,
    ) -> std::result::Result<(PoolSpec, Option<Arc<CaType>>), FieldErrors> {
        let mut errors = Vec::new();
        let mut parsed = Vec::new();
        if upstreams.is_empty() {
            errors.push((
                "upstreams".to_owned(),
                "at least one upstream is required, e.g. [\"127.0.0.1:9001\"]".to_owned(),
            ));
        }
        for (i, raw) in upstreams.iter().enumerate() {
            match parse_upstream(raw) {
                Ok(u) => parsed.push(u),
                Err(msg) => errors.push((format!("upstreams[{i}]"), msg)),
            }
        }
        let health = health.cloned().unwrap_or_default();
        if health.interval.0 < Duration::from_millis(100) {
            errors.push(("health_check.interval".to_owned(), "must be at least 100ms".to_owned()));
        }
        if health.healthy_threshold == 0 || health.unhealthy_threshold == 0 {
            errors.push(("health_check".to_owned(), "thresholds must be at least 1".to_owned()));
        }
        if let Some(path) = &health.path {
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                errors.push((
                    "health_check.path".to_owned(),
                    format!("{path:?} must be an absolute path such as /healthz"),
                ));
            }
        }
        let tls = tls.cloned().unwrap_or_default();
        let mut ca = None;
        let mut ca_digest = 0;
        if let Some(ca_file) = &tls.ca_file {
            let path = resolve(app_dir, ca_file);
            match std::fs::read(&path) {
                Ok(pem) => {
                    fingerprint.add(&path, &pem);
                    let mut digest = Fingerprint::default();
                    digest.add(&path, &pem);
                    ca_digest = digest.value();
                    match ca_certificates(&pem) {
                        Ok(certs) => ca = Some(certs),
                        Err(why) => {
                            errors.push(("upstream_tls.ca_file".to_owned(), format!("{}: {why}", path.display())))
                        }
                    }
                }
                Err(e) => errors.push((
                    "upstream_tls.ca_file".to_owned(),
                    format!("cannot read {}: {e}", path.display()),
                )),
            }
        }
        if errors.is_empty() {
            Ok((
                PoolSpec {
                    upstreams: parsed,
                    algorithm,
                    health,
                    tls,
                    ca_digest,
                },
                ca,
            ))
        } else {
            Err(errors)
        }
    }
}

/// Parses `host:port`, `http://host:port` or `https://host[:port]`.
fn parse_upstream(raw: &str) -> std::result::Result<UpstreamSpec, String> {
    let (tls, rest) = if let Some(r) = raw.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = raw.strip_prefix("http://") {
        (false, r)
    } else if raw.contains("://") {
        return Err(format!("{raw:?}: only http:// and https:// upstreams are supported"));
    } else {
        (false, raw)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(format!(
            "{raw:?} is not an upstream address: write host:port or https://host:port, without a path"
        ));
    }
    let (host, port) = split_host_port(rest, if tls { 443 } else { 80 })
        .ok_or_else(|| format!("{raw:?} is not an upstream address: write host:port, e.g. 127.0.0.1:9001"))?;
    if !tls && !raw.starts_with("http://") && !rest.contains(':') {
        return Err(format!("{raw:?} has no port: write host:port, e.g. {raw}:8080"));
    }
    if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == b'/' || b == 0x7f) {
        return Err(format!("{raw:?} has an invalid host name"));
    }
    Ok(UpstreamSpec {
        host,
        port,
        tls,
        label: raw.to_owned(),
    })
}

fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((h.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains(':') => Some((h.to_owned(), p.parse().ok()?)),
        Some(_) => None,
        None => Some((s.to_owned(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstreams() {
        let u = parse_upstream("127.0.0.1:9001").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 9001, false));
        let u = parse_upstream("https://backend.internal").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("backend.internal", 443, true));
        let u = parse_upstream("http://[::1]:8080").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8080));
        // Names are not resolved here: an unresolvable one parses.
        assert!(parse_upstream("no-such-host.invalid:80").is_ok());
        for bad in [
            "",
            "127.0.0.1",
            "ftp://x:1",
            "127.0.0.1:99999",
            "http://a:1/path",
            "https://user@h:1",
            "a:b:c",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ca_bundles_are_parsed_whole_or_refused_with_the_reason() {
        let (first, _) = crate::tls::test_certs::self_signed(&["ca-one.internal"]);
        let (second, _) = crate::tls::test_certs::self_signed(&["ca-two.internal"]);
        let bundle = [first.as_slice(), second.as_slice()].concat();
        assert_eq!(ca_certificates(&bundle).unwrap().len(), 2);
        assert!(ca_certificates(b"").unwrap_err().contains("holds no PEM certificate"));
        assert!(ca_certificates(b"just text\n")
            .unwrap_err()
            .contains("holds no PEM certificate"));
        let broken = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        assert!(ca_certificates(broken)
            .unwrap_err()
            .contains("not a PEM certificate bundle"));
    }
}
