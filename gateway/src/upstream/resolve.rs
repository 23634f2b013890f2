//! Resolving upstream names. A name that does not resolve leaves its app without that backend
//! (502 while no other backend serves) instead of failing the configuration; pools re-resolve
//! their names every `server.resolve_interval` (Kubernetes headless Services change endpoints)
//! and keep the last known addresses of a name while its look-ups fail.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use super::spec::{TargetSpec, UpstreamSpec};

/// Turns a host name and port into addresses (blocking: call off the async workers).
pub trait Resolver: Send + Sync {
    /// The addresses of `host`, or why there are none.
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo`: `/etc/hosts`, then DNS as `/etc/resolv.conf` says).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// No DNS at all (`authgate check --offline`): IP literals only, names resolve to nothing
/// without an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

impl Resolver for Offline {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(host
            .parse::<IpAddr>()
            .map(|ip| SocketAddr::new(ip, port))
            .into_iter()
            .collect())
    }
}

/// True when `upstream` names a host (rather than an IP literal) and so may change.
pub fn is_name(upstream: &UpstreamSpec) -> bool {
    upstream.host.parse::<IpAddr>().is_err()
}

/// One upstream whose name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// Its index in the app's `upstreams`.
    pub index: usize,
    /// The upstream as written.
    pub label: String,
    /// Why.
    pub message: String,
}

/// Resolves every upstream; returns the targets found and the upstreams that failed.
pub fn resolve_all(upstreams: &[UpstreamSpec], resolver: &dyn Resolver) -> (Vec<TargetSpec>, Vec<Unresolved>) {
    let mut targets = Vec::new();
    let mut failed = Vec::new();
    for (index, u) in upstreams.iter().enumerate() {
        let fail = |message: String| Unresolved {
            index,
            label: u.label.clone(),
            message,
        };
        match resolver.resolve(&u.host, u.port) {
            Ok(addrs) if addrs.is_empty() && is_name(u) => {
                failed.push(fail(format!("{:?}: {} resolves to no address", u.label, u.host)));
            }
            Ok(addrs) => {
                for addr in addrs {
                    let target = TargetSpec {
                        addr,
                        tls: u.tls,
                        host: u.host.clone(),
                        label: u.label.clone(),
                    };
                    if !targets.contains(&target) {
                        targets.push(target);
                    }
                }
            }
            Err(e) => failed.push(fail(format!("{:?}: cannot resolve {}: {e}", u.label, u.host))),
        }
    }
    (targets, failed)
}
