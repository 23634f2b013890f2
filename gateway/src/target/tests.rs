use super::*;

/// (rule path, upstream target) for a raw target, through a real `RequestHeader`.
fn canon(raw: &str) -> Result<(String, String), TargetError> {
    canon_mode(raw, PathMode::Canonical)
}

fn canon_mode(raw: &str, mode: PathMode) -> Result<(String, String), TargetError> {
    let req = RequestHeader::build("GET", raw.as_bytes(), None).unwrap();
    let target = Target::of(&req, mode)?;
    let mut upstream = req.clone();
    target.apply(&mut upstream).unwrap();
    let sent = String::from_utf8(upstream.raw_path().to_vec()).unwrap();
    Ok((target.path(&req).to_owned(), sent))
}

#[track_caller]
fn assert_canon(raw: &str, path: &str, upstream: &str) {
    assert_eq!(canon(raw), Ok((path.to_owned(), upstream.to_owned())), "{raw:?}");
}

#[track_caller]
fn assert_same(raw: &str, want: &str) {
    assert_canon(raw, want, want);
}

#[track_caller]
fn assert_err(raw: &str, want: TargetError) {
    assert_eq!(canon(raw), Err(want), "{raw:?}");
}

#[test]
fn issue_forms_resolve_or_are_refused() {
    // Each form once let an unauthenticated request reach /private/ (issue 8).
    assert_err("/private/..;/public/x", TargetError::DotSegmentParameter);
    assert_same("/private;/../public/x", "/public/x");
    assert_same("/private/../public/x", "/public/x");
    assert_same("/private/%2e%2e/public/x", "/public/x");
    assert_err("/private/x%2f..%2f..%2fpublic/y", TargetError::EncodedSeparator);
    assert_same("/private/x\\..\\..\\public/y", "/public/y");
    assert_err("/private/x%5c..%5c..%5cpublic/y", TargetError::EncodedSeparator);
    assert_same("/%70ublic/x", "/public/x");
    // ... and their mirror images, public to private.
    assert_err("/public/..;/private/x", TargetError::DotSegmentParameter);
    assert_same("/public;/../private/x", "/private/x");
    assert_same("/public/../private/x", "/private/x");
    assert_same("/public/%2E%2E/private/x", "/private/x");
    assert_same("/public/x\\..\\..\\private/y", "/private/y");
    assert_same("/%70rivate/x", "/private/x");
}

#[test]
fn canonical_paths_are_untouched() {
    for p in [
        "/",
        "/a",
        "/a/",
        "/a/b/c/",
        "/api/v1/users/42",
        "/static/app.min.js",
        "/a-b_c~d!e$f&g'h(i)j*k+l,m=n:o@p",
        "/...",
        "/a/.../b",
        "/..a/a..",
        "/.a/a./.hidden",
    ] {
        assert_same(p, p);
        let req = RequestHeader::build("GET", p.as_bytes(), None).unwrap();
        assert_eq!(
            Target::of(&req, PathMode::Canonical).unwrap().form,
            Form::Unchanged,
            "{p}"
        );
    }
}

#[test]
fn query_is_forwarded_byte_for_byte() {
    assert_canon("/a/../b?x=/../c&y=%2F%zz", "/b", "/b?x=/../c&y=%2F%zz");
    assert_canon("/%61?", "/a", "/a?");
    assert_canon("/a?x=1", "/a", "/a?x=1");
    // The query never takes part: an invalid escape there is the upstream's business.
    assert_canon("/a?%", "/a", "/a?%");
}

#[test]
fn dot_segments() {
    assert_same("/a/b/../c", "/a/c");
    assert_same("/a/b/../../../../c", "/c");
    assert_same("/..", "/");
    assert_same("/../", "/");
    assert_same("/.", "/");
    assert_same("/a/./b", "/a/b");
    assert_same("/a/.", "/a/");
    assert_same("/a/b/..", "/a/");
    assert_same("/admin/./", "/admin/");
    assert_same("/public/./../admin", "/admin");
    assert_same("/public/.%2e/private", "/private");
    assert_same("/public/%2e./private", "/private");
    assert_same("/public/%2e/private", "/public/private");
}

#[test]
fn slashes_collapse_and_backslashes_separate() {
    assert_same("//a//b//", "/a/b/");
    assert_same("////etc/passwd", "/etc/passwd");
    assert_same("/a\\b", "/a/b");
    assert_same("/a\\", "/a/");
}

#[test]
fn refusals() {
    assert_err("/a%2Fb", TargetError::EncodedSeparator);
    assert_err("/a%2f", TargetError::EncodedSeparator);
    assert_err("/a%5Cb", TargetError::EncodedSeparator);
    assert_err("/a%00b", TargetError::ControlCharacter);
    assert_err("/a%0d%0aSet-Cookie:x", TargetError::ControlCharacter);
    assert_err("/a%7f", TargetError::ControlCharacter);
    assert_err("/a%zz", TargetError::InvalidPercentEncoding);
    assert_err("/a%", TargetError::InvalidPercentEncoding);
    assert_err("/a%2", TargetError::InvalidPercentEncoding);
    assert_err("/a%FF", TargetError::InvalidUtf8);
    assert_err("/%C0%AE%C0%AE/private", TargetError::InvalidUtf8);
    assert_err("/a/.;x/b", TargetError::DotSegmentParameter);
    assert_err("/a/..;", TargetError::DotSegmentParameter);
    assert_err("/a/..%3Bx/b", TargetError::DotSegmentParameter);
    assert_err("/a/%2e%2e%3b/b", TargetError::DotSegmentParameter);
}

#[test]
fn re_encoding() {
    // Unreserved characters are decoded; other bytes encoded with upper-case digits.
    assert_canon("/%7euser/%41", "/~user/A", "/~user/A");
    assert_canon("/a%20b", "/a b", "/a%20b");
    assert_canon("/caf%c3%a9", "/café", "/caf%C3%A9");
    assert_canon("/100%25", "/100%", "/100%25");
    // Double encoding is decoded once only.
    assert_canon(
        "/public/%252e%252e/private",
        "/public/%2e%2e/private",
        "/public/%252e%252e/private",
    );
    // Encoded delimiters stay encoded; literal ones stay literal.
    assert_canon("/a%3Bb", "/a;b", "/a%3Bb");
    assert_canon("/a%3fb", "/a?b", "/a%3Fb");
    assert_canon("/a%23b", "/a#b", "/a%23b");
    assert_canon("/a%40b@c", "/a@b@c", "/a%40b@c");
}

#[test]
fn fragments_never_reach_rules_or_upstream() {
    // The HTTP parser drops a fragment: neither view has it.
    assert_same("/a#/../../b", "/a");
    assert_same("/public/x#/../../../private", "/public/x");
}

#[test]
fn matrix_parameters_and_the_stripped_view() {
    let stripped = |raw: &str| {
        let req = RequestHeader::build("GET", raw.as_bytes(), None).unwrap();
        let t = Target::of(&req, PathMode::Canonical).unwrap();
        (t.path(&req).to_owned(), t.stripped_path().map(str::to_owned))
    };
    assert_eq!(
        stripped("/a;jsessionid=1"),
        ("/a;jsessionid=1".into(), Some("/a".into()))
    );
    assert_eq!(stripped("/admin;.css"), ("/admin;.css".into(), Some("/admin".into())));
    assert_eq!(stripped("/a;x/b;y/"), ("/a;x/b;y/".into(), Some("/a/b/".into())));
    assert_eq!(stripped("/;x/a"), ("/;x/a".into(), Some("/a".into())));
    assert_eq!(stripped("/a/;x"), ("/a/;x".into(), Some("/a/".into())));
    // An encoded ';' is data, not a parameter.
    assert_eq!(stripped("/a%3Bx"), ("/a;x".into(), None));
    assert_eq!(stripped("/a/b"), ("/a/b".into(), None));
}

#[test]
fn absolute_form_gives_its_path() {
    assert_canon("http://app1.example.com/a/../b?q", "/b", "/b?q");
    assert_canon("https://app1.example.com", "/", "/");
    assert_canon("https://app1.example.com?x=1", "/", "/?x=1");
    assert_eq!(
        absolute_authority(b"https://app1.example.com:8443/x"),
        Some(&b"app1.example.com:8443"[..])
    );
    assert_eq!(absolute_authority(b"/x"), None);
}

#[test]
fn an_empty_target_is_the_root() {
    // Found by the path_canonical fuzz target: the header's URI path is "" here.
    let req = RequestHeader::build("GET", b"", None).unwrap();
    let t = Target::of(&req, PathMode::Canonical).unwrap();
    assert_eq!(t.path(&req), "/");
}

#[test]
fn asterisk_only_for_options() {
    let req = RequestHeader::build("OPTIONS", b"*", None).unwrap();
    let t = Target::of(&req, PathMode::Canonical).unwrap();
    assert_eq!(t.path(&req), "*");
    let req = RequestHeader::build("GET", b"*", None).unwrap();
    assert_eq!(Target::of(&req, PathMode::Canonical), Err(TargetError::NotAPath));
}

#[test]
fn raw_mode_forwards_the_target_unchanged() {
    assert_eq!(
        canon_mode("/api/v4/projects/group%2Fproject", PathMode::Raw),
        Ok((
            "/api/v4/projects/group/project".into(),
            "/api/v4/projects/group%2Fproject".into()
        ))
    );
    assert_eq!(
        canon_mode("/a/..;/b", PathMode::Raw),
        Ok(("/a/..;/b".into(), "/a/..;/b".into()))
    );
    // What can never be safe stays refused.
    assert_eq!(canon_mode("/a%00", PathMode::Raw), Err(TargetError::ControlCharacter));
    assert_eq!(
        canon_mode("/a%zz", PathMode::Raw),
        Err(TargetError::InvalidPercentEncoding)
    );
}

#[test]
fn errors_have_messages() {
    for e in [
        TargetError::InvalidPercentEncoding,
        TargetError::InvalidUtf8,
        TargetError::ControlCharacter,
        TargetError::EncodedSeparator,
        TargetError::DotSegmentParameter,
        TargetError::Fragment,
        TargetError::NotAPath,
    ] {
        assert!(!e.to_string().is_empty());
    }
}

/// An independent reading of a raw path, written from RFC 3986 rather than from the code
/// above: §6.2.2.1 (upper-case escapes), §6.2.2.2 (decode unreserved), the documented
/// refusals and slash merging, then §5.2.4 `remove_dot_segments` as the RFC's own loop.
mod reference {
    /// The canonical encoded path, or `None` when the gateway must refuse the input.
    pub fn canonical(raw: &[u8]) -> Option<String> {
        let encoded = normalise_escapes(raw)?;
        let merged = merge_slashes(&encoded);
        for segment in merged.split('/') {
            let decoded = decode(segment);
            let name = decoded.split(|&b| b == b';').next().unwrap_or_default();
            if (name == b"." || name == b"..") && name.len() != decoded.len() {
                return None;
            }
        }
        let resolved = remove_dot_segments(&merged);
        let resolved = merge_slashes(&resolved);
        std::str::from_utf8(&decode(&resolved)).ok()?;
        Some(if resolved.is_empty() { "/".into() } else { resolved })
    }

    fn normalise_escapes(raw: &[u8]) -> Option<String> {
        const UNRESERVED: &[u8] = b"-._~";
        const LITERAL: &[u8] = b"!$&'()*+,;=:@/";
        let mut out = String::new();
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if b == b'%' {
                let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                let v = u8::from_str_radix(hex, 16).ok()?;
                if v < 0x20 || v == 0x7f || v == b'/' || v == b'\\' {
                    return None;
                }
                if v.is_ascii_alphanumeric() || UNRESERVED.contains(&v) {
                    out.push(char::from(v));
                } else {
                    out.push_str(&format!("%{v:02X}"));
                }
                i += 3;
                continue;
            }
            if b < 0x20 || b == 0x7f {
                return None;
            }
            if b == b'\\' {
                out.push('/');
            } else if b.is_ascii_alphanumeric() || UNRESERVED.contains(&b) || LITERAL.contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
            i += 1;
        }
        Some(out)
    }

    fn merge_slashes(s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            if !(c == '/' && out.ends_with('/')) {
                out.push(c);
            }
        }
        out
    }

    pub fn decode(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let Some(v) = s
                    .get(i + 1..i + 3)
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }

    /// RFC 3986 §5.2.4, step by step.
    fn remove_dot_segments(input: &str) -> String {
        let mut input = input.to_owned();
        let mut output = String::new();
        while !input.is_empty() {
            if let Some(rest) = input.strip_prefix("../").or_else(|| input.strip_prefix("./")) {
                input = rest.to_owned();
            } else if input.starts_with("/./") {
                input = input[2..].to_owned();
            } else if input == "/." {
                input = "/".into();
            } else if input.starts_with("/../") || input == "/.." {
                input = if input == "/.." {
                    "/".into()
                } else {
                    input[3..].to_owned()
                };
                match output.rfind('/') {
                    Some(i) => output.truncate(i),
                    None => output.clear(),
                }
            } else if input == "." || input == ".." {
                input.clear();
            } else {
                let start = usize::from(input.starts_with('/'));
                let end = input[start..].find('/').map_or(input.len(), |i| i + start);
                output.push_str(&input[..end]);
                input = input[end..].to_owned();
            }
        }
        output
    }
}

use proptest::prelude::{ProptestConfig, Strategy};

/// Rules whose verdicts the property test compares, compiled once.
static RULES: std::sync::LazyLock<crate::auth::routes::RouteRules> = std::sync::LazyLock::new(|| {
    crate::auth::routes::RouteRules::compile(&[
        "^/public/".to_owned(),
        "\\.css$".to_owned(),
        "GET=^/api/v[0-9]+/".to_owned(),
    ])
    .unwrap()
});

proptest::proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    /// For arbitrary paths: the gateway refuses exactly what the reference refuses; otherwise
    /// the upstream receives the reference's canonical path, the rules see its decoding, and
    /// a rule's verdict is the same on both views.
    #[test]
    fn agrees_with_an_independent_rfc3986_resolution(
        parts in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::sample::select(vec![
                    "/", "//", "\\", ".", "..", "public", "private", "api", "a", ";", ";x", "%2e", "%2E", "%2f",
                    "%5c", "%3b", "%25", "%", "%zz", "%00", "%41", "%70", "%c3%a9", "%ff", "é", "~", "!", "@",
                    ":", "%20", "%3F", "%23", "x.css",
                ]).prop_map(str::to_owned),
                proptest::string::string_regex("[!-~]{1,3}").unwrap().prop_filter("no query", |s| !s.contains(['?', '#'])),
            ],
            0..10,
        )
    ) {
        let raw = format!("/{}", parts.concat());
        let rules = &*RULES;
        let Ok(req) = RequestHeader::build("GET", raw.as_bytes(), None) else {
            return Ok(());
        };
        let want = reference::canonical(raw.as_bytes());
        match (Target::of(&req, PathMode::Canonical), want) {
            (Ok(target), Some(want)) => {
                let mut upstream = req.clone();
                target.apply(&mut upstream).unwrap();
                proptest::prop_assert_eq!(std::str::from_utf8(upstream.raw_path()).unwrap(), want.as_str(), "{}", raw);
                let judged = target.path(&req);
                let decoded = String::from_utf8(reference::decode(&want)).unwrap();
                proptest::prop_assert_eq!(judged, decoded.as_str(), "{}", raw);
                proptest::prop_assert_eq!(
                    rules.matches(&http::Method::GET, judged),
                    rules.matches(&http::Method::GET, &decoded)
                );
            }
            (Err(_), None) => {}
            (got, want) => proptest::prop_assert!(false, "{raw:?}: gateway {got:?}, reference {want:?}"),
        }
    }
}
