//! The request inspector (`authgate::request::inspect`): the input is an HTTP/1.1 request
//! head (`METHOD target HTTP/1.1`, then `Name: value` lines; `\r\n` or `\n`), read leniently
//! so that anything a `RequestHeader` can hold is tried, whatever a wire parser would say.
//!
//! No panic; and when a request is admitted:
//! - its target is within the size limit and is origin form, `*` for `OPTIONS`, or absolute
//!   form whose authority is the request's host;
//! - the header block is within the size limit;
//! - the raw host is the one `Host` header (or, without one, the target's authority), and the
//!   host is its normal form: lower-case DNS labels (or a bracketed IPv6 address), no port, no
//!   trailing dot, at most 253 bytes.
#![no_main]

use std::sync::OnceLock;

use authgate::request::inspect;
use authgate::routing::normalize_host;
use authgate::state::Settings;
use authgate::target::{absolute_authority, PathMode, Target};
use libfuzzer_sys::fuzz_target;
use pingora::http::RequestHeader;

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        max_header_bytes: 4096,
        max_uri_bytes: 1024,
        ..Settings::with_defaults("127.0.0.1:8443")
    })
}

/// Builds the request head the input describes; `None` when `RequestHeader` refuses its
/// method or target. Header lines it refuses are left out.
fn request(data: &[u8]) -> Option<RequestHeader> {
    let mut lines = data.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut start = lines.next()?.splitn(3, |&b| b == b' ');
    let method = std::str::from_utf8(start.next()?).ok()?;
    let target = start.next()?;
    let mut req = RequestHeader::build(method, target, None).ok()?;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        let _ = req.append_header(name, value);
    }
    Some(req)
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = request(data) else {
        return;
    };
    let settings = settings();
    let Ok((host, raw_host)) = inspect(&req, settings) else {
        return;
    };
    let target = req.raw_path();
    assert!(target.len() <= settings.max_uri_bytes);
    let header_bytes: usize = req.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    assert!(header_bytes <= settings.max_header_bytes);

    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(h), None) => assert_eq!(h.as_bytes(), raw_host.as_bytes()),
        (None, None) => {
            let authority = req
                .uri
                .authority()
                .map(|a| a.as_str().as_bytes())
                .or_else(|| absolute_authority(target));
            assert_eq!(authority, Some(raw_host.as_bytes()));
        }
        _ => panic!("admitted with more than one Host"),
    }
    assert_eq!(normalize_host(raw_host).as_deref(), Ok(&*host));
    assert_normal_host(&host);

    if target.first() != Some(&b'/') && !(req.method == http::Method::OPTIONS && target == b"*") {
        let authority = absolute_authority(target).expect("an admitted target that is not a path has an authority");
        let authority = std::str::from_utf8(authority).expect("a host is ASCII");
        assert_eq!(
            normalize_host(authority).as_deref(),
            Ok(&*host),
            "the target names another host"
        );
    }
    let _ = Target::of(&req, PathMode::Canonical);
});

fn assert_normal_host(host: &str) {
    if let Some(v6) = host.strip_prefix('[') {
        let v6 = v6.strip_suffix(']').expect("a bracketed host ends with ]");
        assert!(v6.parse::<std::net::Ipv6Addr>().is_ok(), "{host:?}");
        assert_eq!(v6, v6.to_ascii_lowercase());
        return;
    }
    assert!(!host.is_empty() && host.len() <= 253, "{host:?}");
    for label in host.split('.') {
        assert!(!label.is_empty() && label.len() <= 63, "{host:?}");
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
            "{host:?}"
        );
    }
}
