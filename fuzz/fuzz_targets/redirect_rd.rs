//! The `rd` validator (`authgate::auth::redirect::safe_redirect`).
//!
//! The input is four lines: the app host, the cookie domain (empty line: none), `1` to allow
//! `http://` (anything else: not), then the `rd` value (the rest, newlines included).
//!
//! The result is `rd` itself or `/`. When it is `rd`, a browser following it stays on a host
//! the gateway vouches for, as judged by an independent URL parser (the WHATWG one of the `url`
//! crate, which reads `\`, tabs and newlines as browsers do):
//! - a relative `rd` starts with one `/` not followed by `/` or `\`, and resolved against
//!   `https://<app host>/` it stays on the app host, also after one more percent-decoding;
//! - an absolute `rd` is `https://` (or `http://` when allowed), has no userinfo, and its host
//!   is the app host, or the cookie domain or a subdomain of it (a cookie domain of one label
//!   counts as none).
#![no_main]

use authgate::auth::redirect::{safe_redirect, MAX_REDIRECT_LEN};
use libfuzzer_sys::fuzz_target;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(4, '\n');
    let (Some(app_host), Some(domain), Some(http), Some(rd)) = (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return;
    };
    let cookie_domain = (!domain.is_empty()).then_some(domain);
    let allow_http = http == "1";
    let out = safe_redirect(rd, app_host, cookie_domain, allow_http);
    if out == "/" {
        return;
    }
    assert_eq!(out, rd, "the result is rd itself or /");
    assert!(rd.len() <= MAX_REDIRECT_LEN);
    assert!(rd.bytes().all(|b| b.is_ascii_graphic()) && !rd.contains('\\'), "{rd:?}");
    if rd.starts_with('/') {
        relative(rd, app_host);
    } else {
        absolute(rd, app_host, cookie_domain, allow_http);
    }
});

/// The app's host as configured: port and one trailing dot dropped, lower-cased.
fn plain_host(app_host: &str) -> String {
    let host = match app_host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => app_host,
    };
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn relative(rd: &str, app_host: &str) {
    let second = rd.as_bytes().get(1).copied();
    assert!(second != Some(b'/') && second != Some(b'\\'), "{rd:?}");
    let decoded = decode(rd).expect("an accepted path has valid escapes");
    let second = decoded.get(1).copied();
    assert!(
        second != Some(b'/') && second != Some(b'\\'),
        "{rd:?} decodes to {decoded:?}"
    );
    assert!(!decoded.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\'), "{rd:?}");
    // A browser resolving it (once or after one more decoding) stays on the app's host.
    let host = plain_host(app_host);
    let Ok(base) = Url::parse(&format!("https://{host}/")) else {
        return;
    };
    let Some(base_host) = base.host_str().map(str::to_owned) else {
        return;
    };
    let joined = base.join(rd).expect("a path resolves against the app's URL");
    assert_eq!(joined.host_str(), Some(base_host.as_str()), "{rd:?} leaves {host}");
    if let Ok(decoded) = std::str::from_utf8(&decoded) {
        if let Ok(joined) = base.join(decoded) {
            assert_eq!(
                joined.host_str(),
                Some(base_host.as_str()),
                "{rd:?} decoded leaves {host}"
            );
        }
    }
}

fn absolute(rd: &str, app_host: &str, cookie_domain: Option<&str>, allow_http: bool) {
    let (scheme, rest) = rd.split_once("://").expect("an accepted URL has a scheme");
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {}
        "http" => assert!(allow_http, "{rd:?} is http"),
        other => panic!("{rd:?} has scheme {other}"),
    }
    // The authority as written: no userinfo, escapes or brackets.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    assert!(!authority.contains(['@', '%', '[', ']']), "{rd:?}");
    let written = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase();
    // The host a browser would use. A name the WHATWG parser refuses (bad punycode) is never
    // followed; one it reads as an IPv4 address (numeric last label) is judged as written.
    let host = match Url::parse(rd) {
        Ok(url) => {
            assert!(
                url.username().is_empty() && url.password().is_none(),
                "{rd:?} has userinfo"
            );
            match url.host() {
                Some(url::Host::Domain(d)) => d.to_owned(),
                _ => written,
            }
        }
        Err(_) => written,
    };
    let host = host.strip_suffix('.').unwrap_or(&host);
    let app = plain_host(app_host);
    if !app.is_empty() && host == app {
        return;
    }
    let domain = cookie_domain
        .map(|d| d.strip_prefix('.').unwrap_or(d))
        .map(|d| d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase())
        .filter(|d| d.contains('.'));
    let Some(domain) = domain else {
        panic!("{rd:?}: host {host} is not the app host {app} and there is no cookie domain");
    };
    assert!(
        host == domain || host.ends_with(&format!(".{domain}")),
        "{rd:?}: host {host} is neither {app} nor within {domain}"
    );
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn decode(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            out.push(hex(*s.get(i + 1)?)? * 16 + hex(*s.get(i + 2)?)?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}
