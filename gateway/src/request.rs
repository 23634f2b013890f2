//! Checks every request passes before routing: size limits, a target in a form the gateway
//! serves, and one usable Host. Pure functions over the request header, so they are tested
//! without sockets. The path itself is read once, after routing, by [`crate::target`].

use pingora::http::RequestHeader;

use crate::pages::Page;
use crate::routing::{normalize_host, HostError};
use crate::state::Settings;
use crate::target::absolute_authority;

/// Why a request is refused before routing; maps to an error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 414.
    UriTooLong,
    /// 431.
    HeadersTooLarge,
    /// 400: a target that is not a path (origin form, absolute form, or `*` for OPTIONS).
    BadTarget,
    /// 400: a path the canonical form cannot carry (see [`crate::target`]).
    BadPath,
    /// 400: a path whose rule verdict depends on how the upstream reads `;` parameters.
    AmbiguousPath,
    /// 400: Host missing, repeated or malformed.
    BadHost,
    /// 400: more than one `Authorization` header (which one would the upstream believe?).
    DuplicateAuthorization,
}

impl Rejection {
    /// The page to answer with.
    pub fn page(self) -> Page {
        match self {
            Self::UriTooLong => Page::URI_TOO_LONG,
            Self::HeadersTooLarge => Page::HEADERS_TOO_LARGE,
            Self::BadTarget | Self::BadPath | Self::AmbiguousPath | Self::DuplicateAuthorization => Page::BAD_REQUEST,
            Self::BadHost => Page::BAD_HOST,
        }
    }

    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::BadTarget => "bad_target",
            Self::BadPath => "bad_path",
            Self::AmbiguousPath => "ambiguous_path",
            Self::BadHost => "bad_host",
            Self::DuplicateAuthorization => "duplicate_authorization",
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
    // Origin form, absolute form naming the same host as Host (RFC 9112 §3.2.2), or `*`.
    let origin_form = target.first() == Some(&b'/');
    let asterisk = req.method == http::Method::OPTIONS && target == b"*";
    if !origin_form && !asterisk && absolute_authority(target).is_none() {
        return Err(Rejection::BadTarget);
    }
    if req.headers.get_all(http::header::AUTHORIZATION).iter().nth(1).is_some() {
        return Err(Rejection::DuplicateAuthorization);
    }
    let raw_host = raw_host(req).map_err(|_| Rejection::BadHost)?;
    let host = normalize_host(raw_host).map_err(|_| Rejection::BadHost)?;
    Ok((host, raw_host))
}

/// The Host of a request: the `Host` header (exactly one), or the authority of an HTTP/2
/// request or an absolute-form target. When both are present they must name the same host,
/// or routing and the upstream could disagree about which app was asked for.
pub fn raw_host(req: &RequestHeader) -> Result<&str, HostError> {
    let authority = match req.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => absolute_authority(req.raw_path())
            .map(|a| std::str::from_utf8(a).map_err(|_| HostError::Malformed))
            .transpose()?,
    };
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let header = match (hosts.next(), hosts.next()) {
        (Some(h), None) => Some(h.to_str().map_err(|_| HostError::Malformed)?),
        (Some(_), Some(_)) => return Err(HostError::Malformed),
        (None, _) => None,
    };
    match (header, authority) {
        (Some(h), Some(a)) if normalize_host(h)? != normalize_host(a)? => Err(HostError::Malformed),
        (Some(h), _) => Ok(h),
        (None, Some(a)) => Ok(a),
        (None, None) => Err(HostError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            max_header_bytes: 4096,
            max_uri_bytes: 1024,
            ..Settings::with_defaults("127.0.0.1:8443")
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
            inspect(&req("*", &[("Host", "a.com")]), &s).unwrap_err(),
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
    fn a_second_authorization_header_is_refused_on_every_route() {
        let r = req(
            "/",
            &[
                ("Host", "a.com"),
                ("Authorization", "Bearer a"),
                ("Authorization", "Bearer b"),
            ],
        );
        assert_eq!(inspect(&r, &settings()).unwrap_err(), Rejection::DuplicateAuthorization);
        let one = req("/", &[("Host", "a.com"), ("Authorization", "Bearer a")]);
        assert!(inspect(&one, &settings()).is_ok());
    }

    #[test]
    fn absolute_form_must_name_the_host() {
        let s = settings();
        let same = req(
            "https://App1.example.com:8443/x?y",
            &[("Host", "app1.example.com:8443")],
        );
        assert_eq!(inspect(&same, &s).unwrap().0, "app1.example.com");
        let no_header = req("http://app1.example.com/x", &[]);
        assert_eq!(inspect(&no_header, &s).unwrap().0, "app1.example.com");
        let other = req("https://admin.example.com/x", &[("Host", "app1.example.com")]);
        assert_eq!(inspect(&other, &s).unwrap_err(), Rejection::BadHost);
        let options = RequestHeader::build("OPTIONS", b"*", None).unwrap();
        let mut options = options;
        options.append_header("Host", "a.com").unwrap();
        assert_eq!(inspect(&options, &s).unwrap().0, "a.com");
    }

    #[test]
    fn authority_and_host_must_agree() {
        let s = settings();
        let mut h2 = RequestHeader::build("GET", b"/x", None).unwrap();
        h2.set_uri("https://app1.example.com/x".parse().unwrap());
        h2.append_header("Host", "admin.example.com").unwrap();
        assert_eq!(inspect(&h2, &s).unwrap_err(), Rejection::BadHost);
        h2.insert_header("Host", "APP1.example.com").unwrap();
        assert_eq!(inspect(&h2, &s).unwrap().0, "app1.example.com");
    }
}
