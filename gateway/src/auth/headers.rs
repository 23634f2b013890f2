//! Identity headers: what clients may never send, and what the gateway tells the upstream.
//!
//! Names are compared after lower-casing and turning `_` into `-`, so `X_Auth_Request_User`
//! and `x-auth-request-user` are the same header (some servers treat them alike).

use pingora::http::RequestHeader;

use super::policy::Identity;

/// Headers the gateway alone may set; client-sent copies are removed on every route.
const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
];

/// True when `name` is an identity header in any spelling (no allocation: this runs for
/// every header of every request).
pub fn is_identity_header(name: &str) -> bool {
    let name = name.trim().as_bytes();
    let same = |prefix: &[u8]| {
        name.len() >= prefix.len()
            && name.iter().zip(prefix).all(|(a, b)| {
                let a = a.to_ascii_lowercase();
                a == *b || (a == b'_' && *b == b'-')
            })
    };
    if name.first().is_none_or(|c| !c.eq_ignore_ascii_case(&b'x')) {
        return false;
    }
    same(b"x-auth-request-")
        || IDENTITY_HEADERS
            .iter()
            .any(|h| name.len() == h.len() && same(h.as_bytes()))
}

/// Removes every client-sent identity header, tokens naming them in `Connection`, and the
/// gateway's own cookies (names starting with `cookie_prefix`). When `strip_authorization`
/// the client's `Authorization` goes too (the gateway sets its own).
pub fn strip(req: &mut RequestHeader, cookie_prefix: Option<&str>, strip_authorization: bool) {
    let doomed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| is_identity_header(k.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
    if strip_authorization {
        req.remove_header(&http::header::AUTHORIZATION);
    }
    if let Some(conn) = req.headers.get(http::header::CONNECTION).and_then(|v| v.to_str().ok()) {
        if conn.split(',').any(is_identity_header) {
            let kept: Vec<&str> = conn
                .split(',')
                .map(str::trim)
                .filter(|t| !is_identity_header(t))
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

/// What to tell the upstream about the signed-in user.
pub struct Injection<'a> {
    /// The user.
    pub identity: &'a Identity,
    /// `X-Auth-Request-Access-Token`, when `pass_access_token`.
    pub access_token: Option<&'a str>,
    /// `Authorization: Bearer <id token>`, when `set_authorization_header`.
    pub id_token: Option<&'a str>,
}

/// Sets the identity headers, oauth2-proxy's names. Values that are not valid header values
/// (a claim with a newline) are left out rather than failing the request.
pub fn inject(req: &mut RequestHeader, what: &Injection<'_>) {
    let id = what.identity;
    let user = id.user();
    let mut set = |name: &'static str, value: &str| {
        if !value.is_empty() {
            let _ = req.insert_header(name, value);
        }
    };
    set("x-auth-request-user", user);
    set("x-forwarded-user", user);
    if let Some(email) = &id.email {
        set("x-auth-request-email", email);
        set("x-forwarded-email", email);
    }
    if let Some(name) = &id.preferred_username {
        set("x-auth-request-preferred-username", name);
    }
    if !id.groups.is_empty() {
        set("x-auth-request-groups", &id.groups.join(","));
    }
    if let Some(token) = what.access_token {
        set("x-auth-request-access-token", token);
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
    fn recognises_identity_headers_in_any_spelling() {
        for name in [
            "X-Auth-Request-User",
            "x_auth_request_email",
            "X-FORWARDED-EMAIL",
            "x-forwarded_user",
            " x-forwarded-groups",
        ] {
            assert!(is_identity_header(name), "{name}");
        }
        for name in [
            "x-forwarded-for",
            "x-forwarded-host",
            "x-auth",
            "x-forwarded-users",
            "authorization",
            "",
            "x",
        ] {
            assert!(!is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn injects_oauth2_proxy_headers() {
        let id = Identity {
            subject: "alice-sub".into(),
            email: Some("alice@example.com".into()),
            email_verified: true,
            preferred_username: Some("alice".into()),
            groups: vec!["admins".into(), "dev".into()],
            ..Identity::default()
        };
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        inject(
            &mut req,
            &Injection {
                identity: &id,
                access_token: Some("at"),
                id_token: Some("idt"),
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
            },
        );
        assert!(req.headers.get("x-auth-request-email").is_none());
        assert!(req.headers.get("x-evil").is_none());
    }
}
