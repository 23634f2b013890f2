//! Canonical request path for policy matching.
//!
//! Policy regexes (`skip_auth_routes`, `api_routes`, per-path rules) must see one canonical
//! spelling of a path, or an attacker can dress a protected path up as a public one
//! (`/public/../admin`, `/public%2f..%2fadmin`, `/public/..;/admin`, `\admin`, ...).
//! [`normalize_path`] computes that spelling. The steps run once, in this order:
//!
//! 1. cut at the first `?` or `#` (queries and fragments never take part);
//! 2. percent-decode every `%XX` exactly once (`%2F` becomes a separator like `/`); a `%` not
//!    followed by two hex digits is an error;
//! 3. turn every backslash, literal or decoded (`\`, `%5C`), into `/`;
//! 4. require valid UTF-8 and no control character (U+0000–U+001F, U+007F);
//! 5. split into segments on `/` and cut each segment at its first `;` (matrix parameters), so
//!    `..;x` counts as `..` and `public;x` as `public`;
//! 6. drop empty segments (collapses `//`) and `.` segments; `..` removes the previous segment
//!    and never climbs above the root;
//! 7. join with `/`, always starting with `/`.
//!
//! Trailing slash: the result ends with `/` when the last segment of the decoded input (after
//! cutting its parameters) was empty, `.` or `..` (`/a/`, `/a/.`, `/a/b/..`, `/a/;p` all give
//! `/a/`), as RFC 3986 dot-segment removal does, so a rule such as `^/admin/` also sees
//! `/admin/.`. The root is always just `/`.
//!
//! Other decisions:
//! - The request target `*` (used by `OPTIONS *`) and any other path without a leading `/`
//!   gets one: `*` becomes `/*`, `a/b` becomes `/a/b`. The empty path is `/`.
//! - Decoding happens once only: `%252e%252e` becomes the literal segment `%2e%2e`, not `..`.
//!   An upstream that decodes a second time would see a different path; such upstreams need
//!   the gateway to forward a canonical path or to reject `%25`.
//! - A decoded `?` or `#` (`%3F`, `%23`) is an ordinary path character.
//! - Matrix parameters are dropped from every segment, including the last (`/a;jsessionid=1`
//!   is `/a`).
//!
//! The result is for matching only; it is not meant to be forwarded as is (it is decoded).

/// Why a request path was refused (the request should get a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("the request path has an invalid percent-encoding")]
    InvalidPercentEncoding,
    /// The percent-decoded path is not valid UTF-8.
    #[error("the request path is not valid UTF-8 once percent-decoded")]
    InvalidUtf8,
    /// The percent-decoded path holds a control character (U+0000–U+001F or U+007F).
    #[error("the request path contains a control character")]
    ControlCharacter,
}

/// Returns the canonical form of a request path, the string policy regexes match.
///
/// `raw` is the path component of the request target; anything from a `?` or `#` on is
/// ignored. See the [module documentation](self) for the exact steps. The result always starts
/// with `/`, never contains `//`, `\`, `;`, a control character, or a `.` / `..` segment.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    let raw = raw.split(['?', '#']).next().unwrap_or_default();
    let decoded = String::from_utf8(percent_decode(raw)?).map_err(|_| PathError::InvalidUtf8)?;
    if decoded.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(PathError::ControlCharacter);
    }

    let mut segments: Vec<&str> = Vec::new();
    // Whether the output ends in '/': decided by the last segment seen.
    let mut trailing_slash = false;
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            name => {
                segments.push(name);
                trailing_slash = false;
            }
        }
    }

    let mut out = String::with_capacity(decoded.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Decodes every `%XX` once and maps backslashes (literal or decoded) to `/`.
fn percent_decode(raw: &str) -> Result<Vec<u8>, PathError> {
    let mut out = decode_percent(raw).ok_or(PathError::InvalidPercentEncoding)?;
    for byte in &mut out {
        if *byte == b'\\' {
            *byte = b'/';
        }
    }
    Ok(out)
}

/// Decodes every `%XX` of `s` exactly once; `None` for a `%` not followed by two hex digits.
/// Shared by path normalisation and redirect checks, so both read a value the same way.
pub fn decode_percent(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value)?;
            let lo = bytes.get(i + 2).copied().and_then(hex_value)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// The value of one hexadecimal digit (either case).
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match normalize_path(raw) {
            Ok(p) => p,
            Err(e) => panic!("{raw:?} was refused: {e}"),
        }
    }

    fn assert_norm(raw: &str, want: &str) {
        assert_eq!(ok(raw), want, "normalize_path({raw:?})");
    }

    fn assert_err(raw: &str, want: PathError) {
        assert_eq!(normalize_path(raw), Err(want), "normalize_path({raw:?})");
    }

    #[test]
    fn brief_examples() {
        assert_norm("/public/../private", "/private");
        assert_norm("//public/x", "/public/x");
        assert_norm("/%70ublic/x", "/public/x");
        assert_norm("/public%2f..%2fprivate", "/private");
        assert_norm("/public/%2e%2e/private", "/private");
        assert_norm("/public/..;/private", "/private");
        assert_norm("/./a/./b/", "/a/b/");
        assert_norm("/../../etc", "/etc");
        assert_norm("\\public\\x", "/public/x");
        assert_err("%", PathError::InvalidPercentEncoding);
        assert_err("/a%zz", PathError::InvalidPercentEncoding);
        assert_err("/a%00b", PathError::ControlCharacter);
        assert_norm("/caf%C3%A9", "/café");
        assert_err("/a%FF", PathError::InvalidUtf8);
        assert_norm("", "/");
        assert_norm("*", "/*");
    }

    #[test]
    fn plain_paths_are_unchanged() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/a/b/c",
            "/a/b/c/",
            "/healthz",
            "/api/v1/users/42",
            "/static/app.min.js",
            "/a-b_c~d!e$f&g'h(i)j*k+l,m=n:o@p",
            "/...",
            "/a/.../b",
            "/..a/a..",
            "/.a/a./.hidden",
        ] {
            assert_norm(p, p);
        }
    }

    #[test]
    fn dot_segments() {
        assert_norm("/a/b/../c", "/a/c");
        assert_norm("/a/b/../../c", "/c");
        assert_norm("/a/b/../../../../c", "/c");
        assert_norm("/..", "/");
        assert_norm("/../", "/");
        assert_norm("/.", "/");
        assert_norm("/./", "/");
        assert_norm(".", "/");
        assert_norm("..", "/");
        assert_norm("../a", "/a");
        assert_norm("/a/./b", "/a/b");
        assert_norm("/a/b/../../..", "/");
        assert_norm("/admin/./", "/admin/");
        assert_norm("/public/./../admin", "/admin");
    }

    #[test]
    fn trailing_slash_rules() {
        assert_norm("/a/", "/a/");
        assert_norm("/a//", "/a/");
        assert_norm("/a", "/a");
        // A trailing dot segment names the directory, as in RFC 3986.
        assert_norm("/a/.", "/a/");
        assert_norm("/a/b/..", "/a/");
        assert_norm("/a/b/..;x", "/a/");
        assert_norm("/a/b/;x", "/a/b/");
        // The root is never doubled.
        assert_norm("/a/..", "/");
        assert_norm("//", "/");
        assert_norm("///", "/");
        assert_norm("/a/../", "/");
        // An encoded trailing slash counts like a literal one.
        assert_norm("/a%2F", "/a/");
        assert_norm("/a%5c", "/a/");
    }

    #[test]
    fn slashes_collapse() {
        assert_norm("//a//b//", "/a/b/");
        assert_norm("////etc/passwd", "/etc/passwd");
        assert_norm("/a/%2F/b", "/a/b");
        assert_norm("%2F%2Fa", "/a");
    }

    #[test]
    fn encoded_dots() {
        assert_norm("/public/%2E%2E/private", "/private");
        assert_norm("/public/.%2e/private", "/private");
        assert_norm("/public/%2e./private", "/private");
        assert_norm("/public/%2e/private", "/public/private");
        assert_norm("/%2e%2e/%2e%2e/etc", "/etc");
        assert_norm("/public%2F%2E%2E%2Fprivate", "/private");
        assert_norm("/public%2f%2e%2e%2fprivate%2f", "/private/");
    }

    #[test]
    fn backslashes() {
        assert_norm("/public\\..\\private", "/private");
        assert_norm("/public%5C..%5Cprivate", "/private");
        assert_norm("/public%5c%2e%2e%5cprivate", "/private");
        assert_norm("\\\\evil\\x", "/evil/x");
        assert_norm("/a\\", "/a/");
        assert!(!ok("/a\\b%5Cc").contains('\\'));
    }

    #[test]
    fn matrix_parameters() {
        assert_norm("/public;x/../private", "/private");
        assert_norm("/public/..;x=1/private", "/private");
        assert_norm("/public/.;x/private", "/public/private");
        assert_norm("/a;jsessionid=123", "/a");
        assert_norm("/a;b/c;d", "/a/c");
        assert_norm("/;x/a", "/a");
        assert_norm(";", "/");
        assert_norm("/a;", "/a");
        // A decoded ';' is a parameter separator too (decoding comes first).
        assert_norm("/public/..%3B/private", "/private");
        assert_norm("/public%3Bx/../private", "/private");
        // Parameters cannot hide a separator either: %2F is decoded before the cut.
        assert_norm("/public;a%2F..%2F..%2Fadmin", "/admin");
        assert!(!ok("/a;b;c/d;e").contains(';'));
    }

    #[test]
    fn query_and_fragment_are_cut() {
        assert_norm("/a?x=1", "/a");
        assert_norm("/a?x=/../../b", "/a");
        assert_norm("/a#frag", "/a");
        assert_norm("/a#/../../b", "/a");
        assert_norm("/a/?x", "/a/");
        assert_norm("?x", "/");
        assert_norm("#x", "/");
        // Invalid encodings after the cut do not matter.
        assert_norm("/a?%zz", "/a");
        assert_norm("/a#%00", "/a");
        // Decoded '?' and '#' are path data.
        assert_norm("/a%3Fb", "/a?b");
        assert_norm("/a%23b", "/a#b");
    }

    #[test]
    fn percent_decoding_once() {
        assert_norm("/%61%62%63", "/abc");
        assert_norm("/%41", "/A");
        assert_norm("/a%20b", "/a b");
        assert_norm("/100%25", "/100%");
        // Double encoding stays encoded: one decode only.
        assert_norm("/public/%252e%252e/private", "/public/%2e%2e/private");
        assert_norm("/a%252Fb", "/a%2Fb");
    }

    #[test]
    fn invalid_percent_encoding() {
        for raw in [
            "%", "%2", "/a%", "/a%2", "/a%zz", "/a%g0", "/a%0g", "/%%32%65", "/a%-1", "/a% 1", "/%2%2e",
        ] {
            assert_err(raw, PathError::InvalidPercentEncoding);
        }
        // The multi-byte character after '%' is not a hex digit.
        assert_err("/%é1", PathError::InvalidPercentEncoding);
    }

    #[test]
    fn control_characters() {
        for raw in [
            "/a%00b",
            "/a%01",
            "/a%09b",
            "/a%0Ab",
            "/a%0d%0aSet-Cookie:x",
            "/a%1F",
            "/a%7F",
            "/a%7f",
            "/a\tb",
            "/a\nb",
            "/a\rb",
            "/a\u{0}b",
            "/a\u{7f}",
            "\u{1b}[31m",
        ] {
            assert_err(raw, PathError::ControlCharacter);
        }
        // Control characters in a dropped parameter or dot segment are still refused.
        assert_err("/a;%00", PathError::ControlCharacter);
        // ... but not in the query, which never takes part.
        assert_norm("/a?\u{0}", "/a");
    }

    #[test]
    fn utf8() {
        assert_norm("/café", "/café");
        assert_norm("/%E2%82%AC", "/€");
        assert_norm("/%F0%9F%98%80", "/😀");
        assert_err("/a%FF", PathError::InvalidUtf8);
        assert_err("/a%C3", PathError::InvalidUtf8);
        assert_err("/a%80", PathError::InvalidUtf8);
        // Overlong encodings of '.' and '/' are not UTF-8.
        assert_err("/%C0%AE%C0%AE/private", PathError::InvalidUtf8);
        assert_err("/a%C0%AFb", PathError::InvalidUtf8);
        assert_err("/a%E0%80%AF", PathError::InvalidUtf8);
        // UTF-16 surrogates encoded as UTF-8 are not UTF-8.
        assert_err("/a%ED%A0%80", PathError::InvalidUtf8);
        // Raw multi-byte characters mixed with encoded continuation bytes.
        assert_norm("/caf%c3%a9/é", "/café/é");
    }

    #[test]
    fn paths_without_leading_slash() {
        assert_norm("*", "/*");
        assert_norm("a", "/a");
        assert_norm("a/b/", "/a/b/");
        assert_norm("http://host/x", "/http:/host/x");
    }

    #[test]
    fn errors_have_messages() {
        for e in [
            PathError::InvalidPercentEncoding,
            PathError::InvalidUtf8,
            PathError::ControlCharacter,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    /// Every combination of up to four tokens from an adversarial alphabet: the result is
    /// either an error or a canonical path, and canonical paths are fixed points.
    #[test]
    fn invariants_over_generated_paths() {
        const TOKENS: &[&str] = &[
            "/", "\\", ".", "..", "a", ";", ";x", "%2e", "%2E", "%2f", "%5c", "%3b", "%", "%zz", "%00", "?", "#",
            "%c3%a9",
        ];
        let mut stack = vec![(String::new(), 0usize)];
        let mut checked = 0usize;
        while let Some((raw, depth)) = stack.pop() {
            checked += 1;
            match normalize_path(&raw) {
                Ok(p) => {
                    assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
                    assert!(!p.contains("//"), "{raw:?} -> {p:?}");
                    assert!(!p.contains('\\'), "{raw:?} -> {p:?}");
                    assert!(!p.contains(';'), "{raw:?} -> {p:?}");
                    assert!(!p.bytes().any(|b| b < 0x20 || b == 0x7f), "{raw:?} -> {p:?}");
                    assert!(p.split('/').all(|s| s != "." && s != ".."), "{raw:?} -> {p:?}");
                    // No '%' can survive from this alphabet, so the result is a fixed point.
                    assert!(!p.contains('%'), "{raw:?} -> {p:?}");
                    assert_eq!(normalize_path(&p).as_deref(), Ok(p.as_str()), "{raw:?}");
                }
                Err(_) => assert!(raw.contains('%'), "{raw:?} refused without a '%'"),
            }
            if depth < 4 {
                for t in TOKENS {
                    stack.push((format!("{raw}{t}"), depth + 1));
                }
            }
        }
        assert!(checked > 100_000, "{checked}");
    }
}
