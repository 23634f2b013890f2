//! Request ids and W3C trace context, for the access log, the upstream and the client.
//!
//! - `X-Request-Id`: taken from the request when it comes from a trusted proxy and is a sane
//!   token (1–200 visible ASCII characters), else generated (32 lowercase hex digits, like
//!   nginx's `$request_id`). It is sent upstream, returned to the client on every response
//!   (proxied or written by the gateway) and logged.
//! - `traceparent` (W3C Trace Context Level 1): a valid one continues its trace with a new span
//!   id (the gateway's hop); a missing or malformed one starts a new trace (flags `01`, sampled,
//!   so that applications sampling on their parent keep tracing). `tracestate` is passed on
//!   unchanged with a valid `traceparent` and removed otherwise, as the specification requires.

use std::cell::Cell;

use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module};

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";
/// The W3C trace parent header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C trace state header.
pub const TRACESTATE: &str = "tracestate";

/// Longest request id accepted from a trusted proxy.
const MAX_REQUEST_ID: usize = 200;

/// The ids of one request.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// `X-Request-Id` value (received from a trusted proxy, or generated).
    pub request_id: HeaderValue,
    /// `00-<trace id>-<span id>-<flags>`: what the upstream receives.
    traceparent: [u8; 55],
    /// Whether the trace came with the request (else the gateway started it).
    pub continued: bool,
    /// The caller's span id (16 hex digits) when the trace came with the request.
    parent: Option<[u8; 16]>,
}

impl RequestTrace {
    /// Reads the ids of `req`. `trusted`: the peer is a trusted proxy, whose `X-Request-Id`
    /// is kept.
    // Wiring point: `trusted` becomes "the peer is in `server.trusted_proxies`".
    pub fn from_request(req: &RequestHeader, trusted: bool) -> RequestTrace {
        let received = trusted
            .then(|| single(req, REQUEST_ID))
            .flatten()
            .filter(|v| valid_request_id(v.as_bytes()))
            .cloned();
        let request_id = received.unwrap_or_else(|| {
            let mut hex = [0u8; 32];
            hex_into(&mut hex, &random_bytes::<16>());
            HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("-"))
        });
        let parent = single(req, TRACEPARENT).and_then(|v| parse_traceparent(v.as_bytes()));
        let mut traceparent = *b"00-00000000000000000000000000000000-0000000000000000-01";
        let parent = match parent {
            Some((trace_id, span_id, flags)) => {
                traceparent[3..35].copy_from_slice(trace_id);
                traceparent[53..55].copy_from_slice(flags);
                let mut parent = [0u8; 16];
                parent.copy_from_slice(span_id);
                Some(parent)
            }
            None => {
                hex_into(&mut traceparent[3..35], &nonzero(random_bytes::<16>()));
                None
            }
        };
        hex_into(&mut traceparent[36..52], &nonzero(random_bytes::<8>()));
        RequestTrace {
            request_id,
            traceparent,
            continued: parent.is_some(),
            parent,
        }
    }

    /// The request id as text.
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }

    /// The trace id, 32 hex digits.
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.traceparent[3..35]).unwrap_or("-")
    }

    /// The gateway's span id, 16 hex digits.
    pub fn span_id(&self) -> &str {
        std::str::from_utf8(&self.traceparent[36..52]).unwrap_or("-")
    }

    /// The caller's span id (16 hex digits), when the trace came with the request.
    pub fn parent_span_id(&self) -> Option<&str> {
        self.parent.as_ref().and_then(|p| std::str::from_utf8(p).ok())
    }

    /// The trace flags, 2 hex digits (`01`: sampled).
    pub fn flags(&self) -> &str {
        std::str::from_utf8(&self.traceparent[53..55]).unwrap_or("00")
    }

    /// Sets `X-Request-Id` and `traceparent` on the upstream request (dropping `tracestate`
    /// with a new trace).
    pub fn apply_upstream(&self, upstream: &mut RequestHeader) -> pingora::Result<()> {
        upstream.insert_header_parsed(
            http::HeaderName::from_static(REQUEST_ID),
            REQUEST_ID,
            self.request_id.clone(),
        );
        let traceparent = HeaderValue::from_bytes(&self.traceparent)
            .map_err(|e| pingora::Error::because(pingora::ErrorType::InternalError, "traceparent", e))?;
        upstream.insert_header_parsed(http::HeaderName::from_static(TRACEPARENT), TRACEPARENT, traceparent);
        if !self.continued {
            upstream.remove_header(TRACESTATE);
        }
        Ok(())
    }
}

/// The only value of header `name`: none when absent or repeated.
fn single<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r HeaderValue> {
    let mut values = req.headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The trace id, parent span id and flags of a valid `traceparent` (W3C Trace Context,
/// version 00 and the forward-compatible rules for later versions), as their lowercase hex
/// text.
fn parse_traceparent(v: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    if v.len() < 55 {
        return None;
    }
    let (version, trace_id, span_id, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    let dashes = v[2] == b'-' && v[35] == b'-' && v[52] == b'-';
    let lower_hex = |s: &[u8]| s.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let zero = |s: &[u8]| s.iter().all(|b| *b == b'0');
    let version_ok = match version {
        b"00" => v.len() == 55,
        b"ff" => false,
        _ => lower_hex(version) && (v.len() == 55 || v[55] == b'-'),
    };
    (dashes
        && version_ok
        && lower_hex(trace_id)
        && lower_hex(span_id)
        && lower_hex(flags)
        && !zero(trace_id)
        && !zero(span_id))
    .then_some((trace_id, span_id, flags))
}

fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

/// All-zero ids are invalid: make the last byte non-zero if ever needed.
fn nonzero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes.iter().all(|b| *b == 0) {
        bytes[N - 1] = 1;
    }
    bytes
}

thread_local! {
    /// Per-thread wyrand state, seeded from the operating system's random source.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        // Unreachable in practice; ids stay unique per process and thread.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32);
    }
    u64::from_le_bytes(b)
}

/// Fast random bytes for ids (wyrand: not for secrets, unique enough for ids).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    RNG.with(|state| {
        for chunk in out.chunks_mut(8) {
            let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
            state.set(s);
            let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
            let r = ((t >> 64) as u64) ^ (t as u64);
            chunk.copy_from_slice(&r.to_le_bytes()[..chunk.len()]);
        }
    });
    out
}

/// Returns `X-Request-Id` on every response to the client, including those the gateway
/// writes itself (error pages, redirects), through Pingora's downstream module chain.
pub struct ResponseRequestId {
    /// Set by the proxy when the request is read.
    pub value: Option<HeaderValue>,
}

#[async_trait::async_trait]
impl HttpModule for ResponseRequestId {
    async fn response_header_filter(&mut self, resp: &mut ResponseHeader, _end_of_stream: bool) -> pingora::Result<()> {
        // Every response header (an informational 1xx and the final one) carries the id.
        if let Some(v) = &self.value {
            resp.insert_header_parsed(http::HeaderName::from_static(REQUEST_ID), REQUEST_ID, v.clone());
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Builds a [`ResponseRequestId`] per request.
pub struct ResponseRequestIdBuilder;

impl HttpModuleBuilder for ResponseRequestIdBuilder {
    fn init(&self) -> Module {
        Box::new(ResponseRequestId { value: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_continues_its_trace_with_a_new_span() {
        let req = request(&[(TRACEPARENT, PARENT), (TRACESTATE, "congo=t61rcWkgMzE")]);
        let t = RequestTrace::from_request(&req, false);
        assert!(t.continued);
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(t.span_id(), "00f067aa0ba902b7");
        assert_eq!(t.parent_span_id(), Some("00f067aa0ba902b7"));
        assert_eq!(t.flags(), "01");
        let mut up = req.clone();
        t.apply_upstream(&mut up).unwrap();
        let tp = up.headers[TRACEPARENT].to_str().unwrap();
        assert_eq!(tp, format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", t.span_id()));
        assert_eq!(up.headers[TRACESTATE], "congo=t61rcWkgMzE");
        // A later version with more fields is read forward-compatibly.
        let v2 = format!("cc{}-what-the-future-will-be-like", &PARENT[2..]);
        assert!(RequestTrace::from_request(&request(&[(TRACEPARENT, &v2)]), false).continued);
    }

    #[test]
    fn a_malformed_or_missing_traceparent_starts_a_new_trace_without_tracestate() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            let req = request(&[(TRACEPARENT, bad), (TRACESTATE, "congo=t61rcWkgMzE")]);
            let t = RequestTrace::from_request(&req, false);
            assert!(!t.continued, "{bad:?}");
            assert_eq!(t.parent_span_id(), None);
            assert_ne!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
            let mut up = req.clone();
            t.apply_upstream(&mut up).unwrap();
            assert!(up.headers.get(TRACESTATE).is_none());
            assert!(parse_traceparent(up.headers[TRACEPARENT].as_bytes()).is_some());
        }
        let t = RequestTrace::from_request(&request(&[]), false);
        assert_eq!(t.trace_id().len(), 32);
        assert_eq!(t.span_id().len(), 16);
    }

    #[test]
    fn request_ids_are_generated_unless_a_trusted_proxy_sent_a_sane_one() {
        let req = request(&[(REQUEST_ID, "from-the-lb-123")]);
        assert_eq!(RequestTrace::from_request(&req, true).request_id(), "from-the-lb-123");
        let generated = RequestTrace::from_request(&req, false);
        assert_ne!(generated.request_id(), "from-the-lb-123");
        assert_eq!(generated.request_id().len(), 32);
        assert!(generated.request_id().bytes().all(|b| b.is_ascii_hexdigit()));
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        for bad in ["has space", long.as_str()] {
            let req = request(&[(REQUEST_ID, bad)]);
            assert_ne!(RequestTrace::from_request(&req, true).request_id(), bad);
        }
        let a = RequestTrace::from_request(&request(&[]), false);
        let b = RequestTrace::from_request(&request(&[]), false);
        assert_ne!(a.request_id(), b.request_id());
        assert_ne!(a.trace_id(), b.trace_id());
    }
}
