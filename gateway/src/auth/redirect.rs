//! Where to send the browser after sign-in or sign-out: validation of the `rd` parameter.
//!
//! An open redirect on the sign-in flow hands attackers a trusted-looking phishing link, and
//! with some flows a token, so [`safe_redirect`] accepts only two shapes and answers `/` for
//! everything else:
//!
//! - **A relative path** `/...` on the current host: not `//` or `/\` (scheme-relative URLs
//!   to another host), no backslash anywhere, and nothing but printable ASCII (no control
//!   character, no whitespace, no non-ASCII character: browsers strip tabs and newlines inside
//!   URLs, so `/\t/evil.com` would become `//evil.com`). The path is then percent-decoded once
//!   more, *for checking only*, in case something down the line decodes it again: the decoded
//!   form must not start with `//` or `/\`, nor contain a backslash or a control character,
//!   and every `%` must start a valid `%XX`. So `/%2F%2Fevil.com`, `/%5Cevil.com`,
//!   `/%09/evil.com` and `/%0d%0aSet-Cookie:...` all give `/`, while `/a/%2F%2Fb` (the
//!   sequence not at the start) and `/my%20file` are returned unchanged.
//! - **An absolute URL** `https://host[:port][/path][?query][#fragment]` (the scheme compared
//!   case-insensitively; `http://` too only when `allow_http`). Its host must equal `app_host`
//!   or, when a cookie domain is set, equal that domain or be a dot-bounded subdomain of it.
//!   The authority must not hold userinfo (`@`), a `%` (nothing is decoded there), brackets
//!   (IP literals) or anything but letters, digits, `-`, `_` and dots; the port, if present,
//!   must be 1–65535 and is not compared. Hosts compare case-insensitively after dropping one
//!   trailing dot. Non-ASCII (IDN, homoglyph) hosts are refused; punycode `xn--` hosts are
//!   plain ASCII and match only if configured so.
//!
//! Everything else gives `/`: `https:evil.com`, `https:/evil.com`, `javascript:`, `data:`,
//! other schemes, a leading space, the empty string, and values longer than
//! [`MAX_REDIRECT_LEN`] bytes.
//!
//! `app_host` may carry a port (`app.example.com:8443`), which is ignored. A cookie domain may
//! be written `.example.com` or `example.com`; one that is empty or a single label (`com`,
//! `localhost`) counts as unset, so a misconfiguration cannot open redirects to a whole
//! top-level domain (multi-label public suffixes such as `co.uk` are the configuration's job). The
//! accepted value is returned exactly as given (not re-encoded or lower-cased).

use super::whitelist::AllowedDomain;

/// Longest `rd` value accepted, in bytes; longer values give `/`.
pub const MAX_REDIRECT_LEN: usize = 4096;

/// Returns `rd` when it is safe, else `"/"`.
///
/// Safe: a relative path `/...` (not `//`, not `/\`, no control characters or whitespace
/// anywhere, no backslash anywhere, and the same after one more percent-decoding), or an
/// absolute `https://` URL (also `http://` only if `allow_http`: pass false in normal use)
/// whose host is `app_host` or, when `cookie_domain` is `Some(".example.com")` or
/// `Some("example.com")`, equals that domain or is a dot-bounded subdomain of it. Userinfo
/// (`@`) is forbidden, a port is allowed, hosts compare case-insensitively after removing one
/// trailing dot, and non-ASCII hosts are refused. See the [module documentation](self).
pub fn safe_redirect(rd: &str, app_host: &str, cookie_domain: Option<&str>, allow_http: bool) -> String {
    safe_redirect_within(rd, app_host, cookie_domain, &[], allow_http)
}

/// [`safe_redirect`], also allowing absolute URLs whose host and port one of `allowed`
/// (`whitelist_domains`, see [`super::whitelist`]) admits.
pub fn safe_redirect_within(
    rd: &str,
    app_host: &str,
    cookie_domain: Option<&str>,
    allowed: &[AllowedDomain],
    allow_http: bool,
) -> String {
    if is_safe(rd, app_host, cookie_domain, allowed, allow_http) {
        rd.to_owned()
    } else {
        "/".to_owned()
    }
}

fn is_safe(rd: &str, app_host: &str, cookie_domain: Option<&str>, allowed: &[AllowedDomain], allow_http: bool) -> bool {
    if rd.is_empty() || rd.len() > MAX_REDIRECT_LEN {
        return false;
    }
    // Printable ASCII only: no space, control character or non-ASCII character anywhere.
    if !rd.bytes().all(|b| b.is_ascii_graphic()) || rd.contains('\\') {
        return false;
    }
    if rd.starts_with('/') {
        is_safe_relative(rd)
    } else {
        is_safe_absolute(rd, app_host, cookie_domain, allowed, allow_http)
    }
}

/// `rd` starts with `/` and is printable ASCII without backslashes.
fn is_safe_relative(rd: &str) -> bool {
    if rd.starts_with("//") {
        return false;
    }
    let Some(decoded) = crate::target::decode_percent(rd) else {
        return false;
    };
    !(decoded.starts_with(b"//")
        || decoded.starts_with(b"/\\")
        || decoded.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\'))
}

/// `rd` is printable ASCII without backslashes and does not start with `/`.
fn is_safe_absolute(
    rd: &str,
    app_host: &str,
    cookie_domain: Option<&str>,
    allowed: &[AllowedDomain],
    allow_http: bool,
) -> bool {
    let rest = match strip_prefix_ignore_case(rd, "https://") {
        Some(rest) => rest,
        None => match strip_prefix_ignore_case(rd, "http://") {
            Some(rest) if allow_http => rest,
            _ => return false,
        },
    };
    // The authority ends at the first '/', '?' or '#'; whatever follows is path, query or
    // fragment on that host.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Userinfo, escapes and IP literals are refused outright (the host check below would
    // refuse them too).
    if authority.contains(['@', '%', '[', ']']) {
        return false;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            if !valid_port(port) {
                return false;
            }
            (host, port.parse::<u16>().ok())
        }
        None => (authority, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if !valid_host(host) {
        return false;
    }
    host_allowed(host, app_host, cookie_domain) || allowed.iter().any(|d| d.allows(host, port))
}

/// `host` (already validated, trailing dot removed) is the app's host or within the cookie
/// domain.
fn host_allowed(host: &str, app_host: &str, cookie_domain: Option<&str>) -> bool {
    let app = strip_port(app_host);
    let app = app.strip_suffix('.').unwrap_or(app);
    if !app.is_empty() && host.eq_ignore_ascii_case(app) {
        return true;
    }
    let Some(domain) = cookie_domain else {
        return false;
    };
    let domain = domain.strip_prefix('.').unwrap_or(domain);
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    // A single label ("com", "localhost") would open the redirect to a whole top-level
    // domain: such a cookie domain counts as unset.
    if !domain.contains('.') {
        return false;
    }
    if host.eq_ignore_ascii_case(domain) {
        return true;
    }
    // A dot-bounded subdomain: a '.' then the domain, at the end of the host (valid_host
    // guarantees a non-empty label before that dot).
    let bytes = host.as_bytes();
    host.len() > domain.len() + 1
        && bytes.get(host.len() - domain.len() - 1) == Some(&b'.')
        && bytes
            .get(host.len() - domain.len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(domain.as_bytes()))
}

/// Removes a `:port` suffix (digits only) from a configured host.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// A DNS name: labels of 1–63 letters, digits, `-` or `_`, at most 253 bytes in all.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A port: 1 to 5 digits, value 1–65535.
fn valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// `s` without `prefix`, compared ASCII case-insensitively.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "app1.example.com";

    /// With the app host only (no cookie domain), https only.
    fn rd(value: &str) -> String {
        safe_redirect(value, APP, None, false)
    }

    /// With cookie domain `.example.com`.
    fn rd_cd(value: &str) -> String {
        safe_redirect(value, APP, Some(".example.com"), false)
    }

    fn assert_refused(value: &str) {
        assert_eq!(rd(value), "/", "{value:?} without cookie domain");
        assert_eq!(rd_cd(value), "/", "{value:?} with cookie domain");
        assert_eq!(
            safe_redirect(value, APP, Some(".example.com"), true),
            "/",
            "{value:?} with allow_http"
        );
    }

    fn assert_kept(value: &str) {
        assert_eq!(rd(value), value, "{value:?} without cookie domain");
        assert_eq!(rd_cd(value), value, "{value:?} with cookie domain");
    }

    #[test]
    fn brief_attack_corpus() {
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "/%09/evil.com",
            "https://example.com.evil.com",
            "https://evil.com/.example.com",
            "https://evilexample.com",
            "https://app1.example.com@evil.com",
            "https:evil.com",
            "https:/evil.com",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,x",
            " /x",
            "/x\r\nSet-Cookie: a=b",
            "https://EVIL.com",
            "",
            "https://xn--80ak6aa92e.com",
            "https://аpp1.example.com",
            "https://evil.com%2F@app1.example.com",
            "%2F%2Fevil.com",
        ] {
            assert_refused(bad);
        }
        // Decided: refused, because a second decoding downstream would make it "///evil.com".
        assert_refused("/%2F%2Fevil.com");
        assert_refused("/%2f%2fevil.com");

        assert_kept("https://app1.example.com./x");
        assert_kept("https://APP1.example.com:8443/x?y#z");
        assert_kept("/ok/path?q=1");
        assert_eq!(rd_cd("https://other.example.com/x"), "https://other.example.com/x");
        assert_eq!(rd("https://other.example.com/x"), "/");
        assert_eq!(rd("http://app1.example.com/x"), "/");
        assert_eq!(
            safe_redirect("http://app1.example.com/x", APP, None, true),
            "http://app1.example.com/x"
        );
    }

    #[test]
    fn cookie_domain_without_leading_dot() {
        let f = |v: &str| safe_redirect(v, APP, Some("example.com"), false);
        assert_eq!(f("https://other.example.com/x"), "https://other.example.com/x");
        assert_eq!(f("https://a.b.example.com/x"), "https://a.b.example.com/x");
        assert_eq!(f("https://example.com/x"), "https://example.com/x");
        assert_eq!(f("https://EXAMPLE.COM./x"), "https://EXAMPLE.COM./x");
        assert_eq!(f("https://evilexample.com/"), "/");
        assert_eq!(f("https://example.com.evil.com/"), "/");
        assert_eq!(f("https://.example.com/"), "/");
        assert_eq!(f("https://a..example.com/"), "/");
    }

    #[test]
    fn cookie_domain_forms() {
        for cd in [
            ".example.com",
            "example.com",
            "EXAMPLE.com",
            ".example.com.",
            "example.com.",
        ] {
            assert_eq!(
                safe_redirect("https://other.example.com/", APP, Some(cd), false),
                "https://other.example.com/",
                "{cd}"
            );
            assert_eq!(
                safe_redirect("https://evilexample.com/", APP, Some(cd), false),
                "/",
                "{cd}"
            );
            assert_eq!(safe_redirect("https://example.org/", APP, Some(cd), false), "/", "{cd}");
        }
        // An empty or single-label cookie domain is no cookie domain.
        for cd in ["", ".", "..", "com", ".com", "com.", "localhost"] {
            assert_eq!(safe_redirect("https://evil.com/", APP, Some(cd), false), "/", "{cd:?}");
            assert_eq!(
                safe_redirect("https://app1.example.com/", APP, Some(cd), false),
                "https://app1.example.com/"
            );
        }
    }

    #[test]
    fn app_host_forms() {
        for app in [
            "app1.example.com",
            "APP1.EXAMPLE.COM",
            "app1.example.com.",
            "app1.example.com:8443",
        ] {
            assert_eq!(
                safe_redirect("https://app1.example.com/x", app, None, false),
                "https://app1.example.com/x",
                "{app}"
            );
            assert_eq!(
                safe_redirect("https://app2.example.com/x", app, None, false),
                "/",
                "{app}"
            );
        }
        // An empty app host matches nothing.
        assert_eq!(safe_redirect("https://app1.example.com/x", "", None, false), "/");
        assert_eq!(safe_redirect("/x", "", None, false), "/x");
    }

    #[test]
    fn relative_paths_kept() {
        for ok in [
            "/",
            "/x",
            "/a/b/c",
            "/a/b/",
            "/ok/path?q=1",
            "/search?q=a+b&x=%2F%2F",
            "/p#frag",
            "/x?next=//evil.com",
            "/x?rd=https://evil.com",
            "/a/%2F%2Fb",
            "/my%20file.pdf",
            "/caf%C3%A9",
            "/a/../b",
            "/..",
            "/.",
            "/~user/",
            "/a:b@c",
            "/%25",
            "/?",
            "/#",
        ] {
            assert_kept(ok);
        }
    }

    #[test]
    fn relative_paths_refused() {
        for bad in [
            "//",
            "///",
            "///evil.com",
            "//evil.com/x",
            "/\\",
            "/\\evil.com",
            "/x\\y",
            "/x/\\/evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r/evil.com",
            "/ /evil.com",
            "/x y",
            "/x\u{0}",
            "/x\u{7f}",
            "/x\u{85}",
            "/x\u{a0}",
            "/café",
            "/\u{ff0f}evil.com",
            "/x ",
            // One more decoding must not make it dangerous.
            "/%2F%2Fevil.com",
            "/%2Fevil.com",
            "/%5Cevil.com",
            "/%5cevil.com",
            "/x%5Cy",
            "/%09/evil.com",
            "/%0a/evil.com",
            "/%0d%0aSet-Cookie:a=b",
            "/x%00",
            "/x%7F",
            // Malformed escapes.
            "/100%",
            "/x%zz",
            "/x%2",
            "/x%%",
        ] {
            assert_refused(bad);
        }
    }

    #[test]
    fn double_encoding_is_only_checked_once_more() {
        // "%252F%252F" decodes once to "%2F%2F": a path segment, harmless.
        assert_kept("/%252F%252Fevil.com");
    }

    #[test]
    fn schemes() {
        for bad in [
            "ftp://app1.example.com/",
            "ws://app1.example.com/",
            "wss://app1.example.com/",
            "file:///etc/passwd",
            "javascript://app1.example.com/%0aalert(1)",
            "vbscript:x",
            "data:,x",
            "mailto:a@app1.example.com",
            "https//app1.example.com",
            "https:\\\\app1.example.com",
            "https:/\\app1.example.com",
            "app1.example.com",
            "app1.example.com/x",
            "x",
            "?x",
            "#x",
            ".",
            "./x",
            "../x",
        ] {
            assert_refused(bad);
        }
        assert_kept("HTTPS://app1.example.com/x");
        assert_kept("HtTpS://app1.example.com/x");
        assert_eq!(
            safe_redirect("HTTP://app1.example.com/", APP, None, true),
            "HTTP://app1.example.com/"
        );
        assert_eq!(safe_redirect("HTTP://app1.example.com/", APP, None, false), "/");
    }

    #[test]
    fn absolute_url_shapes_kept() {
        for ok in [
            "https://app1.example.com",
            "https://app1.example.com/",
            "https://app1.example.com?x=1",
            "https://app1.example.com#x",
            "https://app1.example.com/a/b?c=d#e",
            "https://app1.example.com:1/",
            "https://app1.example.com:65535/",
            "https://app1.example.com.:443/",
            "https://app1.example.com//evil.com",
            "https://app1.example.com/?next=https://evil.com",
            "https://app1.example.com#@evil.com",
            "https://app1.example.com/@evil.com",
            "https://app1.example.com/%2F%2Fevil.com",
        ] {
            assert_kept(ok);
        }
    }

    #[test]
    fn authority_tricks_refused() {
        for bad in [
            "https://",
            "https:///app1.example.com",
            "https://:443/",
            "https://app1.example.com@evil.com",
            "https://user:pass@app1.example.com/",
            "https://@app1.example.com/",
            "https://app1.example.com:443@evil.com/",
            "https://evil.com?@app1.example.com",
            "https://evil.com#@app1.example.com",
            "https://evil.com?.app1.example.com",
            "https://evil.com\\@app1.example.com",
            "https://evil.com\\.app1.example.com",
            "https://app1.example.com%2F@evil.com",
            "https://app1.example.com%40evil.com",
            "https://app1%2Eexample.com/",
            "https://%61pp1.example.com/",
            "https://app1.example.com:/",
            "https://app1.example.com:0/",
            "https://app1.example.com:65536/",
            "https://app1.example.com:123456/",
            "https://app1.example.com:+443/",
            "https://app1.example.com:-1/",
            "https://app1.example.com:44a/",
            "https://app1.example.com:443:443/",
            "https://app1.example.com..",
            "https://app1.example.com../",
            "https://.app1.example.com/",
            "https://app1..example.com/",
            "https://[::1]/",
            "https://[app1.example.com]/",
            "https://app1.example.com\t/",
            "https://app1.example.com /",
            "https://app1.example.com\u{3002}/",
            "https://app1。example.com/",
            "https://аpp1.example.com/",
            "https://app1.example.com\u{200b}/",
            "https://app1.example.co/",
            "https://app1.example.comm/",
            "https://xapp1.example.com/",
            "https://app1.example.com.evil.com/",
            "https://evil.com/app1.example.com",
            "https://evil.com:443/",
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0x7f.1/",
        ] {
            assert_eq!(rd(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn subdomains_need_the_cookie_domain() {
        assert_eq!(rd_cd("https://a.b.c.example.com/"), "https://a.b.c.example.com/");
        assert_eq!(rd_cd("https://example.com/"), "https://example.com/");
        assert_eq!(rd_cd("https://EXAMPLE.COM/"), "https://EXAMPLE.COM/");
        assert_eq!(rd_cd("https://x.example.com.:8443/y"), "https://x.example.com.:8443/y");
        assert_eq!(rd_cd("https://evilexample.com/"), "/");
        assert_eq!(rd_cd("https://example.com.evil.com/"), "/");
        assert_eq!(rd_cd("https://example.co/"), "/");
        assert_eq!(rd_cd("https://xample.com/"), "/");
        assert_eq!(rd_cd("https://com/"), "/");
        assert_eq!(rd_cd("https://a.example.com@evil.com/"), "/");
        assert_eq!(rd_cd("https://evil.com/.example.com"), "/");
        assert_eq!(rd_cd("https://evil.com#.example.com"), "/");
        assert_eq!(rd_cd("https://evil.com?.example.com"), "/");
        assert_eq!(rd_cd("https://evil.com%2F.example.com"), "/");
        for host in ["a.example.com", "b.example.com", "deep.er.example.com"] {
            assert_eq!(rd(&format!("https://{host}/")), "/", "{host}");
        }
    }

    #[test]
    fn length_limit() {
        let long = format!("/{}", "a".repeat(MAX_REDIRECT_LEN - 1));
        assert_eq!(rd(&long), long);
        let too_long = format!("/{}", "a".repeat(MAX_REDIRECT_LEN));
        assert_eq!(rd(&too_long), "/");
    }

    #[test]
    fn non_ascii_never_passes() {
        for bad in [
            "/é",
            "https://app1.example.com/é",
            "https://app1.exämple.com/",
            "https://ａpp1.example.com/",
            "/\u{2028}",
            "/\u{feff}x",
            "\u{feff}/x",
        ] {
            assert_refused(bad);
        }
    }

    /// Anything accepted is either a same-host path whose second byte is not '/' or '\', or
    /// an https URL: checked over every short string from an adversarial alphabet.
    #[test]
    fn accepted_values_have_a_safe_shape() {
        const TOKENS: &[&str] = &[
            "/",
            "\\",
            "%2F",
            "%5C",
            "%09",
            "%",
            ":",
            "@",
            ".",
            "evil.com",
            "app1.example.com",
            "https:",
            "?",
            "#",
            " ",
            "\t",
        ];
        let mut stack = vec![(String::new(), 0usize)];
        let mut accepted = 0;
        while let Some((value, depth)) = stack.pop() {
            for cd in [None, Some(".example.com")] {
                let out = safe_redirect(&value, APP, cd, false);
                if out == "/" {
                    continue;
                }
                assert_eq!(out, value);
                accepted += 1;
                if let Some(rest) = value.strip_prefix("https://") {
                    let authority = rest.split(['/', '?', '#']).next().unwrap();
                    let host = authority.split(':').next().unwrap();
                    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
                    assert!(
                        host == APP || (cd.is_some() && (host == "example.com" || host.ends_with(".example.com"))),
                        "{value:?} accepted with host {host:?}"
                    );
                    assert!(!authority.contains('@') && !authority.contains('%'), "{value:?}");
                } else {
                    assert!(value.starts_with('/'), "{value:?}");
                    let second = value.as_bytes().get(1).copied();
                    assert!(second != Some(b'/') && second != Some(b'\\'), "{value:?}");
                    assert!(
                        !value.contains('\\') && !value.contains(' ') && !value.contains('\t'),
                        "{value:?}"
                    );
                    assert!(!value.starts_with("/%2F") && !value.starts_with("/%5C"), "{value:?}");
                    assert!(!value.contains("%09") && !value.contains("%5C"), "{value:?}");
                }
            }
            if depth < 5 {
                for t in TOKENS {
                    stack.push((format!("{value}{t}"), depth + 1));
                }
            }
        }
        assert!(accepted > 1000, "{accepted}");
    }
}
