//! Who the client is: the connection's peer, or the address trusted proxies vouch for.
//!
//! `X-Forwarded-For` is a list anyone can write to. The gateway believes it only as far as a
//! chain of trusted proxies (`server.trusted_proxies`, CIDRs) reaches: reading right to left
//! from the connection's peer, each trusted hop vouches for the address to its left, and the
//! first address not in a trusted network is the client. From an untrusted peer the header is
//! ignored and replaced. That one address is used by the access log, `consistent_hash`, rate
//! limits and `X-Real-IP`.

use std::net::IpAddr;

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR such as 10.0.0.0/8 or fd00::/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Cidr { addr, prefix })
    }

    /// True when `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => masked(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32),
            (IpAddr::V6(net), IpAddr::V6(ip)) => masked(u128::from(net), u128::from(ip), self.prefix, 128),
            _ => false,
        }
    }
}

fn masked(net: u128, ip: u128, prefix: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix);
    shift >= bits || (net >> shift) == (ip >> shift)
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The networks whose forwarding headers (and PROXY protocol headers) are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<Cidr>,
}

impl TrustedProxies {
    /// Parses `server.trusted_proxies`; `Err((index, message))` names the first bad entry.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, (usize, String)> {
        let nets = entries
            .iter()
            .enumerate()
            .map(|(i, e)| Cidr::parse(e).map_err(|m| (i, m)))
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// True when `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// True when no proxy is trusted (the default).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// The client of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address: the peer, or the first untrusted address of a trusted chain.
    pub addr: Option<IpAddr>,
    /// The `X-Forwarded-For` value to send upstream: the trusted part of the chain followed
    /// by the peer; just the peer when it is not trusted.
    pub forwarded_for: Option<String>,
    /// True when the connection's peer is a trusted proxy (its other headers, such as
    /// `X-Request-Id`, may then be believed too).
    pub peer_trusted: bool,
}

impl Client {
    /// Works out the client from the peer address and the request's `X-Forwarded-For` values
    /// (in header order). Nothing is parsed unless the peer is trusted.
    pub fn resolve<'v>(
        peer: Option<IpAddr>,
        forwarded_for: impl Iterator<Item = &'v str>,
        trusted: &TrustedProxies,
    ) -> Client {
        let Some(peer) = peer.map(canonical) else {
            return Client {
                addr: None,
                forwarded_for: None,
                peer_trusted: false,
            };
        };
        if !trusted.contains(peer) {
            return Client {
                addr: Some(peer),
                forwarded_for: Some(peer.to_string()),
                peer_trusted: false,
            };
        }
        let hops: Vec<&str> = forwarded_for
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        // Walk right to left while each hop is a trusted proxy.
        let mut client = peer;
        let mut kept = hops.len();
        for (i, hop) in hops.iter().enumerate().rev() {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            kept = i;
            if !trusted.contains(ip) {
                break;
            }
        }
        let mut chain: Vec<&str> = hops[kept..].to_vec();
        let peer_text = peer.to_string();
        chain.push(&peer_text);
        Client {
            addr: Some(client),
            forwarded_for: Some(chain.join(", ")),
            peer_trusted: true,
        }
    }
}

/// One `X-Forwarded-For` hop: an address, optionally `[v6]` or with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(!Cidr::parse("fd00::/8").unwrap().contains(ip("10.0.0.1")));
        assert!(Cidr::parse("192.168.1.7").unwrap().contains(ip("192.168.1.7")));
        assert!(!Cidr::parse("192.168.1.7").unwrap().contains(ip("192.168.1.8")));
        for bad in ["10.0.0.0/33", "x/8", "10.0.0.0/", "::/129", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TrustedProxies::parse(&["10.0.0.0/8".into(), "bad".into()])
                .unwrap_err()
                .0,
            1
        );
    }

    #[test]
    fn untrusted_peers_are_the_client_and_their_header_is_ignored() {
        let c = Client::resolve(Some(ip("203.0.113.9")), ["1.2.3.4"].into_iter(), &trusted(&[]));
        assert_eq!(c.addr, Some(ip("203.0.113.9")));
        assert_eq!(c.forwarded_for.as_deref(), Some("203.0.113.9"));
        assert!(!c.peer_trusted);
    }

    #[test]
    fn trusted_chains_are_read_right_to_left() {
        let t = trusted(&["10.0.0.0/8"]);
        // client, then a spoofed entry the client wrote, then two trusted proxies.
        let c = Client::resolve(
            Some(ip("10.0.0.2")),
            ["6.6.6.6, 198.51.100.7", "10.0.0.1"].into_iter(),
            &t,
        );
        assert_eq!(c.addr, Some(ip("198.51.100.7")));
        assert_eq!(c.forwarded_for.as_deref(), Some("198.51.100.7, 10.0.0.1, 10.0.0.2"));
        assert!(c.peer_trusted);
        // No header: the trusted peer is the client.
        let c = Client::resolve(Some(ip("10.0.0.2")), std::iter::empty(), &t);
        assert_eq!(c.addr, Some(ip("10.0.0.2")));
        // Garbage stops the walk at the last trusted hop.
        let c = Client::resolve(Some(ip("10.0.0.2")), ["1.1.1.1, nonsense"].into_iter(), &t);
        assert_eq!(c.addr, Some(ip("10.0.0.2")));
        // Ports and brackets are tolerated.
        let c = Client::resolve(Some(ip("10.0.0.2")), ["[2001:db8::1]:443"].into_iter(), &t);
        assert_eq!(c.addr, Some(ip("2001:db8::1")));
        // A chain of only trusted hops ends at its leftmost.
        let c = Client::resolve(Some(ip("10.0.0.2")), ["10.9.9.9"].into_iter(), &t);
        assert_eq!(c.addr, Some(ip("10.9.9.9")));
    }
}
