//! Headers an app may trust: what clients may never send, and what the gateway tells the
//! upstream.
//!
//! Two families belong to the gateway alone, and client-sent copies are removed on every
//! route (public ones too) before the gateway sets its own:
//! - identity headers (`X-Auth-Request-*`, `X-Forwarded-User`, `-Email`, `-Groups`, ...);
//! - forwarding and rewrite headers that frameworks honour to rebuild the URL, scheme, port,
//!   client address or method (`X-Original-URL`, `X-Rewrite-URL`, `X-Forwarded-Uri`,
//!   `-Prefix`, `-Port`, `-Server`, `-Scheme`, `-Ssl`, `Forwarded`, `X-HTTP-Method-Override`,
//!   `True-Client-IP`, ...). A client that could set them would make `GET /public/x` serve
//!   `/admin`, or a `GET` rule admit a `DELETE`.
//!
//! Names are compared after lower-casing and turning `_` into `-`, so `X_Auth_Request_User`
//! and `x-auth-request-user` are the same header (some servers treat them alike).

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::OrErr;

use super::policy::Identity;
use crate::client::Client;

/// Headers the gateway alone may set (besides the `x-auth-request-` family).
const GATEWAY_HEADERS: &[&str] = &[
    // Identity.
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    // Forwarding: the gateway sets the first five itself.
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    "forwarded",
    "x-forwarded-uri",
    "x-forwarded-prefix",
    "x-forwarded-path",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-protocol",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    // Rewrites of the URL or method.
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-original-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// True when `name` is a header only the gateway may set, in any spelling (no allocation:
/// this runs for every header of every request).
pub fn is_gateway_header(name: &str) -> bool {
    let name = name.trim().as_bytes();
    let same = |prefix: &[u8]| {
        name.len() >= prefix.len()
            && name.iter().zip(prefix).all(|(a, b)| {
                let a = a.to_ascii_lowercase();
                a == *b || (a == b'_' && *b == b'-')
            })
    };
    if !matches!(name.first().map(u8::to_ascii_lowercase), Some(b'x' | b'f' | b't')) {
        return false;
    }
    same(b"x-auth-request-")
        || GATEWAY_HEADERS
            .iter()
            .any(|h| name.len() == h.len() && same(h.as_bytes()))
}

/// Removes every client-sent gateway header, tokens naming them in `Connection`, and the
/// gateway's own cookies (names starting with `cookie_prefix`). When `strip_authorization`
/// the client's `Authorization` goes too (the gateway sets its own).
pub fn strip(req: &mut RequestHeader, cookie_prefix: Option<&str>, strip_authorization: bool) {
    let doomed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| is_gateway_header(k.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
    if strip_authorization {
        req.remove_header(&http::header::AUTHORIZATION);
    }
    if let Some(conn) = req.headers.get(http::header::CONNECTION).and_then(|v| v.to_str().ok()) {
        if conn.split(',').any(is_gateway_header) {
            let kept: Vec<&str> = conn
                .split(',')
                .map(str::trim)
                .filter(|t| !is_gateway_header(t))
                .collect();
            let kept = kept.join(", ");
            if kept.is_empty() || req.insert_header(http::header::CONNECTION, kept).is_err() {
                req.remove_header(&http::header::CONNECTION);
            }
        }
    }
    if let Some(prefix) = cookie_prefix {
        strip_cookies(req, prefix);
    }
}

/// Removes the cookies whose name starts with `prefix` from every `Cookie` header.
fn strip_cookies(req: &mut RequestHeader, prefix: &str) {
    let mentions_prefix = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .any(|v| v.as_bytes().windows(prefix.len()).any(|w| w == prefix.as_bytes()));
    if !mentions_prefix {
        return;
    }
    let values: Vec<String> = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let kept: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.split('=').next().unwrap_or("").trim().starts_with(prefix))
        .collect();
    req.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        let _ = req.insert_header(http::header::COOKIE, kept.join("; "));
    }
}

/// Removes from an upstream response every `Set-Cookie` for a cookie whose name starts with
/// `prefix` (the gateway's session and login cookies, whatever their `Domain`): one app must
/// not fix another tenant's session or login state. Returns how many were removed.
pub fn drop_gateway_cookies(resp: &mut ResponseHeader, prefix: &str) -> usize {
    let ours = |v: &http::HeaderValue| {
        let name = v.as_bytes().split(|&b| b == b'=').next().unwrap_or_default();
        name.trim_ascii().starts_with(prefix.as_bytes())
    };
    let all = resp.headers.get_all(http::header::SET_COOKIE);
    let dropped = all.iter().filter(|v| ours(v)).count();
    if dropped == 0 {
        return 0;
    }
    let kept: Vec<http::HeaderValue> = all.iter().filter(|v| !ours(v)).cloned().collect();
    resp.remove_header(&http::header::SET_COOKIE);
    for v in kept {
        let _ = resp.append_header(http::header::SET_COOKIE, v);
    }
    dropped
}

/// The forwarding headers the gateway vouches for.
pub struct Forwarding<'a> {
    /// The client; `X-Forwarded-For` and `X-Real-IP` are left out when unknown.
    pub client: Option<&'a Client>,
    /// The Host the client asked for, as sent.
    pub host: Option<&'a str>,
    /// The port the client connected to (`public_https_port`, else the listener's).
    pub port: u16,
}

/// Inserts `value` under `name`, a lower-case header name known at compile time, parsed
/// without a copy (`insert_header_parsed` of the patched pingora-http,
/// patches/pingora-http/PATCH.md): no parse and no copy of the name per request.
fn insert_static(req: &mut RequestHeader, name: &'static str, value: http::HeaderValue) {
    req.insert_header_parsed(http::HeaderName::from_static(name), name, value);
}

/// Sets `X-Forwarded-For` (the trusted chain and the peer), `X-Real-IP` (the client),
/// `X-Forwarded-Proto`, `-Host` and `-Port`. Call after [`strip`], which removed every
/// client-sent spelling of them.
pub fn set_forwarding(req: &mut RequestHeader, what: &Forwarding<'_>) -> pingora::Result<()> {
    let value =
        |v: &str| http::HeaderValue::from_str(v).or_err(pingora::ErrorType::InvalidHTTPHeader, "invalid header value");
    if let Some(client) = what.client {
        if let Some(chain) = &client.forwarded_for {
            insert_static(req, "x-forwarded-for", value(chain)?);
        }
        if let Some(addr) = client.addr {
            insert_static(req, "x-real-ip", value(&addr.to_string())?);
        }
    }
    insert_static(req, "x-forwarded-proto", value("https")?);
    if let Some(host) = what.host {
        insert_static(req, "x-forwarded-host", value(host)?);
    }
    insert_static(req, "x-forwarded-port", value(itoa::Buffer::new().format(what.port))?);
    Ok(())
}

/// What to tell the upstream about the signed-in user.
pub struct Injection<'a> {
    /// The user.
    pub identity: &'a Identity,
    /// `X-Auth-Request-Access-Token`, when `pass_access_token`.
    pub access_token: Option<&'a str>,
    /// `Authorization: Bearer <id token>`, when `set_authorization_header`.
    pub id_token: Option<&'a str>,
    /// `pass_user_headers`: the `X-Forwarded-User`, `-Email`, `-Groups` and
    /// `-Preferred-Username` family.
    pub user_headers: bool,
    /// `prefer_email_to_user`: `X-Forwarded-User` carries the email (when there is one), and
    /// `X-Forwarded-Email` is not sent, as in oauth2-proxy.
    pub prefer_email: bool,
}

/// Sets the identity headers, oauth2-proxy's names. Values that are not valid header values
/// (a claim with a newline) are left out rather than failing the request.
pub fn inject(req: &mut RequestHeader, what: &Injection<'_>) {
    let id = what.identity;
    let user = id.user();
    let groups = (!id.groups.is_empty()).then(|| id.groups.join(","));
    let mut set = |name: &'static str, value: &str| {
        if value.is_empty() {
            return;
        }
        if let Ok(value) = http::HeaderValue::from_str(value) {
            insert_static(req, name, value);
        }
    };
    set("x-auth-request-user", user);
    if let Some(email) = &id.email {
        set("x-auth-request-email", email);
    }
    if let Some(name) = &id.preferred_username {
        set("x-auth-request-preferred-username", name);
    }
    if let Some(groups) = &groups {
        set("x-auth-request-groups", groups);
    }
    if what.user_headers {
        match (&id.email, what.prefer_email) {
            (Some(email), true) => set("x-forwarded-user", email),
            (email, prefer) => {
                set("x-forwarded-user", user);
                if let (Some(email), false) = (email, prefer) {
                    set("x-forwarded-email", email);
                }
            }
        }
        if let Some(groups) = &groups {
            set("x-forwarded-groups", groups);
        }
        if let Some(name) = &id.preferred_username {
            set("x-forwarded-preferred-username", name);
        }
    }
    if let Some(token) = what.access_token {
        set("x-auth-request-access-token", token);
        set("x-forwarded-access-token", token);
    }
    if let Some(token) = what.id_token {
        set("authorization", &format!("Bearer {token}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_spelling_and_connection_tricks_and_own_cookies() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in [
            ("X-Auth-Request-User", "mallory"),
            ("x-auth-request-email", "m@evil.com"),
            ("X_Auth_Request_Groups", "admins"),
            ("X-Forwarded-Email", "m@evil.com"),
            ("x_forwarded_user", "mallory"),
            ("X-Auth-Request-Access-Token", "t"),
            ("Connection", "keep-alive, X-Auth-Request-User"),
            ("Cookie", "a=1; _authgate_corp=secret; b=2"),
            ("Cookie", "_authgate_login_x=y"),
            ("Authorization", "Bearer forged"),
            ("X-Other", "kept"),
            ("X-Original-URL", "/admin"),
            ("x_rewrite_url", "/admin"),
            ("X-Forwarded-Uri", "/admin"),
            ("X-Forwarded-Prefix", "/admin"),
            ("X-FORWARDED-PORT", "1"),
            ("X-Forwarded-Server", "evil"),
            ("X_Forwarded_Scheme", "http"),
            ("X-Forwarded-Ssl", "off"),
            ("X-Forwarded_Host", "evil.com"),
            ("Forwarded", "for=1.2.3.4"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("True-Client-IP", "1.2.3.4"),
        ] {
            req.append_header(k.to_string(), v).unwrap();
        }
        strip(&mut req, Some("_authgate"), true);
        let mut names: Vec<String> = req.headers.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["connection", "cookie", "x-other"], "{names:?}");
        assert_eq!(req.headers["connection"], "keep-alive");
        assert_eq!(req.headers["cookie"], "a=1; b=2");
    }

    #[test]
    fn recognises_gateway_headers_in_any_spelling() {
        for name in [
            "X-Auth-Request-User",
            "x_auth_request_email",
            "X-FORWARDED-EMAIL",
            "x-forwarded_user",
            " x-forwarded-groups",
            "x-forwarded-for",
            "X_Forwarded_Host",
            "x-original-url",
            "FORWARDED",
            "true_client_ip",
        ] {
            assert!(is_gateway_header(name), "{name}");
        }
        for name in [
            "x-forwarded-fors",
            "forwarded-for",
            "x-auth",
            "x-request-id",
            "x-forwarded-users",
            "authorization",
            "",
            "x",
        ] {
            assert!(!is_gateway_header(name), "{name}");
        }
    }

    #[test]
    fn drops_set_cookies_for_the_gateways_names_only() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for v in [
            "app=1; Path=/",
            "_authgate_corp=fixated; Domain=example.com; Path=/",
            " _authgate_login_abc=x",
            "other=2",
            "_authgat=3",
        ] {
            resp.append_header("Set-Cookie", v).unwrap();
        }
        assert_eq!(drop_gateway_cookies(&mut resp, "_authgate"), 2);
        let left: Vec<&str> = resp
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, ["app=1; Path=/", "other=2", "_authgat=3"]);
        assert_eq!(drop_gateway_cookies(&mut resp, "_authgate"), 0);
    }

    #[test]
    fn sets_forwarding_headers_it_vouches_for() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let client = Client {
            addr: Some("198.51.100.7".parse().unwrap()),
            forwarded_for: Some("198.51.100.7, 10.0.0.2".into()),
            peer_trusted: true,
        };
        set_forwarding(
            &mut req,
            &Forwarding {
                client: Some(&client),
                host: Some("App1.example.com:8443"),
                port: 8443,
            },
        )
        .unwrap();
        assert_eq!(req.headers["x-forwarded-for"], "198.51.100.7, 10.0.0.2");
        assert_eq!(req.headers["x-real-ip"], "198.51.100.7");
        assert_eq!(req.headers["x-forwarded-proto"], "https");
        assert_eq!(req.headers["x-forwarded-host"], "App1.example.com:8443");
        assert_eq!(req.headers["x-forwarded-port"], "8443");
    }

    #[test]
    fn injects_oauth2_proxy_headers() {
        let id = Identity {
            subject: "alice-sub".into(),
            email: Some("alice@example.com".into()),
            email_verified: true,
            preferred_username: Some("alice".into()),
            groups: vec!["admins".into(), "dev".into()].into(),
            ..Identity::default()
        };
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        inject(
            &mut req,
            &Injection {
                identity: &id,
                access_token: Some("at"),
                id_token: Some("idt"),
                user_headers: true,
                prefer_email: false,
            },
        );
        assert_eq!(req.headers["x-auth-request-user"], "alice-sub");
        assert_eq!(req.headers["x-forwarded-user"], "alice-sub");
        assert_eq!(req.headers["x-auth-request-email"], "alice@example.com");
        assert_eq!(req.headers["x-forwarded-email"], "alice@example.com");
        assert_eq!(req.headers["x-auth-request-preferred-username"], "alice");
        assert_eq!(req.headers["x-auth-request-groups"], "admins,dev");
        assert_eq!(req.headers["x-auth-request-access-token"], "at");
        assert_eq!(req.headers["authorization"], "Bearer idt");
        let bad = Identity {
            email: Some("a@b.com\r\nX-Evil: 1".into()),
            ..id
        };
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        inject(
            &mut req,
            &Injection {
                identity: &bad,
                access_token: None,
                id_token: None,
                user_headers: true,
                prefer_email: false,
            },
        );
        assert!(req.headers.get("x-auth-request-email").is_none());
        assert!(req.headers.get("x-evil").is_none());
    }
}
