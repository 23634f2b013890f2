//! Checks every request passes before routing: size limits, a well-formed target and a
//! usable Host. Pure functions over the request header, so they are tested without sockets.

use pingora::http::RequestHeader;

use crate::pages::Page;
use crate::routing::{normalize_host, HostError};
use crate::state::Settings;

/// Why a request is refused before routing; maps to an error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 414.
    UriTooLong,
    /// 431.
    HeadersTooLarge,
    /// 400: invalid percent-encoding or a target that is not a path.
    BadTarget,
    /// 400: Host missing, repeated or malformed.
    BadHost,
}

impl Rejection {
    /// The page to answer with.
    pub fn page(self) -> Page {
        match self {
            Self::UriTooLong => Page::URI_TOO_LONG,
            Self::HeadersTooLarge => Page::HEADERS_TOO_LARGE,
            Self::BadTarget => Page::BAD_REQUEST,
            Self::BadHost => Page::BAD_HOST,
        }
    }

    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::BadTarget => "bad_target",
            Self::BadHost => "bad_host",
        }
    }
}

/// Checks limits and the target, and returns the normalised host and the raw Host value.
pub fn inspect<'a>(
    req: &'a RequestHeader,
    settings: &Settings,
) -> Result<(std::borrow::Cow<'a, str>, &'a str), Rejection> {
    let target = req.raw_path();
    if target.len() > settings.max_uri_bytes {
        return Err(Rejection::UriTooLong);
    }
    let header_bytes: usize = req.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > settings.max_header_bytes {
        return Err(Rejection::HeadersTooLarge);
    }
    // Origin form only ("/path?query"); "*" (OPTIONS) and absolute forms are not routed.
    let origin_form = target.first() == Some(&b'/');
    let asterisk = req.method == http::Method::OPTIONS && target == b"*";
    if !origin_form && !asterisk && req.uri.authority().is_none() {
        return Err(Rejection::BadTarget);
    }
    if !valid_percent_encoding(target) {
        return Err(Rejection::BadTarget);
    }
    let raw_host = raw_host(req).map_err(|_| Rejection::BadHost)?;
    let host = normalize_host(raw_host).map_err(|_| Rejection::BadHost)?;
    Ok((host, raw_host))
}

/// The Host of a request: the `Host` header (exactly one), or the authority of an HTTP/2
/// request or an absolute-form target.
pub fn raw_host(req: &RequestHeader) -> Result<&str, HostError> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.to_str().map_err(|_| HostError::Malformed),
        (Some(_), Some(_)) => Err(HostError::Malformed),
        (None, _) => req.uri.authority().map(|a| a.as_str()).ok_or(HostError::Missing),
    }
}

/// True when every `%` is followed by two hex digits.
pub fn valid_percent_encoding(target: &[u8]) -> bool {
    let mut i = 0;
    while i < target.len() {
        if target[i] == b'%' {
            match (target.get(i + 1), target.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::Listen;

    fn settings() -> Settings {
        Settings {
            listen: Listen {
                https: "127.0.0.1:8443".into(),
                http: None,
                admin: None,
            },
            redirect_https_port: 8443,
            max_header_bytes: 4096,
            max_uri_bytes: 1024,
            keepalive_timeout: std::time::Duration::from_secs(60),
        }
    }

    fn req(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn accepts_normal_requests() {
        let r = req("/a%20b?x=1", &[("Host", "App1.Example.com:8443")]);
        let (host, raw) = inspect(&r, &settings()).unwrap();
        assert_eq!(host, "app1.example.com");
        assert_eq!(raw, "App1.Example.com:8443");
    }

    #[test]
    fn rejects_what_it_must() {
        let s = settings();
        assert_eq!(inspect(&req("/", &[]), &s).unwrap_err(), Rejection::BadHost);
        assert_eq!(
            inspect(&req("/", &[("Host", "a b")]), &s).unwrap_err(),
            Rejection::BadHost
        );
        assert_eq!(
            inspect(&req("/", &[("Host", "a.com"), ("Host", "b.com")]), &s).unwrap_err(),
            Rejection::BadHost
        );
        assert_eq!(
            inspect(&req("/%zz", &[("Host", "a.com")]), &s).unwrap_err(),
            Rejection::BadTarget
        );
        assert_eq!(
            inspect(&req("/%4", &[("Host", "a.com")]), &s).unwrap_err(),
            Rejection::BadTarget
        );
        let long = format!("/{}", "a".repeat(2000));
        assert_eq!(
            inspect(&req(&long, &[("Host", "a.com")]), &s).unwrap_err(),
            Rejection::UriTooLong
        );
        let big = "v".repeat(5000);
        assert_eq!(
            inspect(&req("/", &[("Host", "a.com"), ("X-Big", &big)]), &s).unwrap_err(),
            Rejection::HeadersTooLarge
        );
    }

    #[test]
    fn percent_encoding() {
        assert!(valid_percent_encoding(b"/a%2Fb%2f"));
        assert!(!valid_percent_encoding(b"/a%"));
        assert!(!valid_percent_encoding(b"/a%g0"));
    }
}
