//! The path canonicaliser (`authgate::target`): the input is a raw request target.
//!
//! For every target a `RequestHeader` accepts, in both path modes:
//! - no panic;
//! - canonical mode agrees with an independent model of docs (`model` below): same verdict
//!   (accepted or refused), same rule path, same path sent upstream;
//! - an accepted rule path starts with `/` (or is `*`), has no `//`, `\`, `.`/`..` segment or
//!   control character; the path sent upstream percent-decodes to the rule path, and is its own
//!   canonical form (canonicalising it again changes nothing);
//! - raw mode forwards the target unchanged.
#![no_main]

use authgate::target::{PathMode, Target};
use libfuzzer_sys::fuzz_target;
use pingora::http::RequestHeader;

fuzz_target!(|data: &[u8]| {
    let method = if data == b"*" { "OPTIONS" } else { "GET" };
    let Ok(req) = RequestHeader::build(method, data, None) else {
        return;
    };
    canonical(&req);
    raw(&req);
});

fn canonical(req: &RequestHeader) {
    let result = Target::of(req, PathMode::Canonical);
    let expected = model(req);
    let target = match (result, expected) {
        (Ok(target), Some(expected)) => {
            assert_eq!(target.path(req), expected.0, "rule path of {:?}", lossy(req));
            let mut upstream = req.clone();
            target
                .apply(&mut upstream)
                .expect("a canonical target is a valid request target");
            assert_eq!(
                path_of(upstream.raw_path()),
                expected.1.as_bytes(),
                "upstream path of {:?}",
                lossy(req)
            );
            target
        }
        (Err(_), None) => return,
        (got, want) => panic!("{:?}: canonicaliser says {got:?}, model says {want:?}", lossy(req)),
    };
    let path = target.path(req);
    assert_rule_path(path, req);
    if let Some(stripped) = target.stripped_path() {
        assert_rule_path(stripped, req);
    }
    if path == "*" {
        return;
    }
    let mut upstream = req.clone();
    target
        .apply(&mut upstream)
        .expect("a canonical target is a valid request target");
    let sent = path_of(upstream.raw_path()).to_vec();
    assert_eq!(
        decode(&sent).as_deref(),
        Some(path.as_bytes()),
        "{:?} sent as {sent:?}",
        lossy(req)
    );
    // Idempotence: the path sent upstream is its own canonical form.
    let again = Target::of(&upstream, PathMode::Canonical).expect("the canonical form is accepted");
    assert_eq!(again.path(&upstream), path, "{:?}", lossy(req));
    let mut twice = upstream.clone();
    again
        .apply(&mut twice)
        .expect("a canonical target is a valid request target");
    assert_eq!(twice.raw_path(), upstream.raw_path(), "{:?}", lossy(req));
    // The query goes upstream byte for byte.
    assert_eq!(
        query_of(upstream.raw_path()),
        query_of(req.raw_path()),
        "{:?}",
        lossy(req)
    );
}

fn raw(req: &RequestHeader) {
    let Ok(target) = Target::of(req, PathMode::Raw) else {
        return;
    };
    let path = target.path(req);
    assert!(path == "*" || path.starts_with('/'), "{path:?}");
    assert!(!path.bytes().any(|b| b < 0x20 || b == 0x7f), "{path:?}");
    let mut upstream = req.clone();
    target.apply(&mut upstream).expect("raw mode never rewrites");
    assert_eq!(
        upstream.raw_path(),
        req.raw_path(),
        "raw mode forwards the target unchanged"
    );
}

#[track_caller]
fn assert_rule_path(path: &str, req: &RequestHeader) {
    if path == "*" {
        assert_eq!(req.raw_path(), b"*");
        return;
    }
    let r = lossy(req);
    assert!(path.starts_with('/'), "{r:?} gave {path:?}");
    assert!(!path.contains("//"), "{r:?} gave {path:?}");
    assert!(!path.contains('\\'), "{r:?} gave {path:?}");
    assert!(!path.chars().any(|c| c.is_ascii_control()), "{r:?} gave {path:?}");
    assert!(!path.split('/').any(|s| s == "." || s == ".."), "{r:?} gave {path:?}");
}

fn lossy(req: &RequestHeader) -> String {
    String::from_utf8_lossy(req.raw_path()).into_owned()
}

/// The path of a target: before the first `?`; an absolute-form target's path.
fn path_of(raw: &[u8]) -> &[u8] {
    raw.split(|&b| b == b'?').next().unwrap_or_default()
}

fn query_of(raw: &[u8]) -> Option<&[u8]> {
    raw.iter().position(|&b| b == b'?').map(|i| &raw[i..])
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Percent-decodes once; `None` for a malformed escape.
fn decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hi = hex(*s.get(i + 1)?)?;
            let lo = hex(*s.get(i + 2)?)?;
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Independent model of the canonical form as `gateway/src/target.rs` documents it: `(rule
/// path, upstream path)`, or `None` when the target must be refused. Written from the docs,
/// not the code: split on `/` and `\`, decode each segment once (remembering which bytes were
/// escaped), refuse what the docs refuse, then resolve the segments as RFC 3986 §5.2.4 does,
/// empty segments dropped, and re-encode.
fn model(req: &RequestHeader) -> Option<(String, String)> {
    let raw = req.raw_path();
    if raw == b"*" && req.method == http::Method::OPTIONS {
        return Some(("*".into(), "*".into()));
    }
    std::str::from_utf8(raw).ok()?;
    let path = if raw.first() == Some(&b'/') {
        path_of(raw)
    } else {
        // Where an absolute-form target's path starts is pingora's classifier's business
        // (the same one that checks its authority against Host).
        match pingora::http::authority::raw_target_authority(raw) {
            pingora::http::authority::RawTargetAuthority::Absolute { path_and_query, .. } => {
                match path_of(path_and_query) {
                    b"" => b"/",
                    p => p,
                }
            }
            _ => return None,
        }
    };
    // (decoded bytes, escaped?) per segment.
    let mut segments: Vec<Vec<(u8, bool)>> = Vec::new();
    for raw_segment in path.split(|&b| b == b'/' || b == b'\\') {
        let mut seg = Vec::new();
        let mut i = 0;
        while i < raw_segment.len() {
            let (b, escaped) = if raw_segment[i] == b'%' {
                let hi = hex(*raw_segment.get(i + 1)?)?;
                let lo = hex(*raw_segment.get(i + 2)?)?;
                i += 3;
                (hi * 16 + lo, true)
            } else {
                i += 1;
                (raw_segment[i - 1], false)
            };
            if b < 0x20 || b == 0x7f || (escaped && (b == b'/' || b == b'\\')) || (!escaped && b == b'#') {
                return None;
            }
            seg.push((b, escaped));
        }
        segments.push(seg);
    }
    // The first split item is the empty string before the leading '/'.
    let mut out: Vec<&Vec<(u8, bool)>> = Vec::new();
    let mut trailing = false;
    for seg in segments.iter().skip(1) {
        let bytes: Vec<u8> = seg.iter().map(|&(b, _)| b).collect();
        let name = bytes.split(|&b| b == b';').next().unwrap_or_default();
        let is_dot = name == b"." || name == b"..";
        if is_dot && name.len() != bytes.len() {
            return None;
        }
        if name == b"." || bytes.is_empty() {
            trailing = true;
        } else if name == b".." {
            out.pop();
            trailing = true;
        } else {
            out.push(seg);
            trailing = false;
        }
    }
    let mut rule = Vec::new();
    let mut sent = String::new();
    for seg in &out {
        rule.push(b'/');
        sent.push('/');
        for &(b, escaped) in seg.iter() {
            rule.push(b);
            let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            if unreserved || (!escaped && b"!$&'()*+,;=:@".contains(&b)) {
                sent.push(char::from(b));
            } else {
                sent.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if out.is_empty() || trailing {
        rule.push(b'/');
        sent.push('/');
    }
    Some((String::from_utf8(rule).ok()?, sent))
}
