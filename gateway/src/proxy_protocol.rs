//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on the HTTPS listener, for a gateway
//! behind an L4 load balancer (`listen.proxy_protocol: true`).
//!
//! The header is read before the TLS handshake, and only from peers in
//! `server.trusted_proxies`: from anyone else nothing is read, so a header they send is
//! TLS garbage and the connection fails. From a trusted peer, the address the header names
//! becomes the connection's client address (what `X-Forwarded-For`, `X-Real-IP`, the access
//! log and `consistent_hash` use). A trusted peer that sends no header (a TLS ClientHello
//! first) keeps its own address; `LOCAL` and `UNKNOWN` headers (health checks) too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::{Error, ErrorType, Result};
use tokio::io::AsyncReadExt;

use crate::state::State;

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line (107 bytes, CRLF included).
const V1_MAX: usize = 107;
/// How long a trusted peer may take to send its header.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What a PROXY header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The original client's address.
    Proxied(SocketAddr),
    /// `LOCAL` (v2) or `UNKNOWN` (v1): the connection is the proxy's own (a health check).
    Local,
}

/// Why a PROXY header was refused (the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// More bytes are needed.
    #[error("incomplete PROXY header")]
    Incomplete,
    /// Not a valid header.
    #[error("malformed PROXY header")]
    Malformed,
}

/// Parses a header at the start of `buf`; returns it and its length in bytes. `Ok(None)`
/// when `buf` does not start like a PROXY header at all.
pub fn parse(buf: &[u8]) -> std::result::Result<Option<(Header, usize)>, ParseError> {
    if buf.starts_with(V2_SIGNATURE) {
        return parse_v2(buf).map(Some);
    }
    if buf.starts_with(b"PROXY ") {
        return parse_v1(buf).map(Some);
    }
    let could_be = |sig: &[u8]| buf.len() < sig.len() && sig.starts_with(buf);
    if could_be(V2_SIGNATURE) || could_be(b"PROXY ") {
        return Err(ParseError::Incomplete);
    }
    Ok(None)
}

fn parse_v1(buf: &[u8]) -> std::result::Result<(Header, usize), ParseError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Err(if buf.len() >= V1_MAX {
            ParseError::Malformed
        } else {
            ParseError::Incomplete
        });
    };
    if end + 2 > V1_MAX {
        return Err(ParseError::Malformed);
    }
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| ParseError::Malformed)?;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Header::Local,
        ["PROXY", family @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| ParseError::Malformed)?;
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err(ParseError::Malformed);
            }
            let port: u16 = sport.parse().map_err(|_| ParseError::Malformed)?;
            Header::Proxied(SocketAddr::new(ip, port))
        }
        _ => return Err(ParseError::Malformed),
    };
    Ok((header, end + 2))
}

fn parse_v2(buf: &[u8]) -> std::result::Result<(Header, usize), ParseError> {
    if buf.len() < 16 {
        return Err(ParseError::Incomplete);
    }
    let version_command = buf[12];
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = 16 + len;
    if buf.len() < total {
        return Err(ParseError::Incomplete);
    }
    if version_command >> 4 != 2 {
        return Err(ParseError::Malformed);
    }
    let body = &buf[16..total];
    let header = match (version_command & 0x0f, family >> 4) {
        (0, _) => Header::Local,
        (1, 1) if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Header::Proxied(SocketAddr::new(ip.into(), u16::from_be_bytes([body[8], body[9]])))
        }
        (1, 2) if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Header::Proxied(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
        }
        // Other families (UNIX, UNSPEC) carry no IP client: keep the peer.
        (1, _) => Header::Local,
        _ => return Err(ParseError::Malformed),
    };
    Ok((header, total))
}

/// The pre-TLS step of the HTTPS listener.
pub struct ProxyProtocol {
    state: Arc<State>,
}

impl ProxyProtocol {
    /// Reads headers from the peers the current snapshot trusts.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

fn peer_ip(stream: &L4Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().map(|a| a.ip())
}

#[async_trait]
impl PreTlsProcess for ProxyProtocol {
    async fn process(&self, stream: &mut L4Stream) -> Result<()> {
        let trusted = peer_ip(stream).is_some_and(|ip| self.state.snapshot().settings.trusted_proxies.contains(ip));
        if !trusted {
            return Ok(());
        }
        let read = tokio::time::timeout(READ_TIMEOUT, read_header(stream)).await;
        let (header, leftover) = match read {
            Ok(result) => result?,
            Err(_) => return Error::e_explain(ErrorType::ReadTimedout, "PROXY header"),
        };
        stream.rewind(&leftover);
        if let Some(Header::Proxied(client)) = header {
            let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
            let _ = digest
                .peer_addr
                .set(Some(pingora::protocols::l4::socket::SocketAddr::Inet(client)));
            stream.set_socket_digest(digest);
        }
        Ok(())
    }
}

/// Reads until a header (or the certainty that none was sent); returns it and the bytes read
/// past it, which belong to the TLS handshake.
async fn read_header(stream: &mut L4Stream) -> Result<(Option<Header>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(V1_MAX);
    let mut chunk = [0u8; 256];
    loop {
        match parse(&buf) {
            Ok(Some((header, len))) => return Ok((Some(header), buf.split_off(len))),
            Ok(None) => return Ok((None, buf)),
            Err(ParseError::Incomplete) if buf.len() <= 16 + usize::from(u16::MAX) => {}
            Err(e) => return Error::e_explain(ErrorType::InvalidHTTPHeader, e.to_string()),
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| Error::because(ErrorType::ReadError, "reading a PROXY header", e))?;
        if n == 0 {
            return Error::e_explain(ErrorType::ConnectionClosed, "closed before the PROXY header ended");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1() {
        let line = b"PROXY TCP4 198.51.100.7 10.0.0.1 56324 443\r\n\x16\x03\x01";
        assert_eq!(
            parse(line),
            Ok(Some((Header::Proxied(addr("198.51.100.7:56324")), line.len() - 3)))
        );
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 443\r\n";
        assert_eq!(
            parse(v6),
            Ok(Some((Header::Proxied(addr("[2001:db8::1]:1")), v6.len())))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(Some((Header::Local, 15))));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Err(ParseError::Incomplete));
        assert_eq!(parse(b"PRO"), Err(ParseError::Incomplete));
        for bad in [
            &b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n"[..],
            b"PROXY TCP4 1.2.3.4 1.2.3.4 99999 2\r\n",
            b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4\r\n",
        ] {
            assert_eq!(parse(bad), Err(ParseError::Malformed), "{bad:?}");
        }
        let long = format!("PROXY {}", "x".repeat(200));
        assert_eq!(parse(long.as_bytes()), Err(ParseError::Malformed));
        // A TLS ClientHello is no header.
        assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Ok(None));
    }

    #[test]
    fn v2() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]);
        h.extend_from_slice(&[198, 51, 100, 7, 10, 0, 0, 1, 0xdc, 0x04, 0x01, 0xbb]);
        assert_eq!(parse(&h), Ok(Some((Header::Proxied(addr("198.51.100.7:56324")), 28))));
        assert_eq!(parse(&h[..20]), Err(ParseError::Incomplete));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local), Ok(Some((Header::Local, 16))));
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x11, 0x11, 0, 0]);
        assert_eq!(parse(&bad), Err(ParseError::Malformed));
    }
}
