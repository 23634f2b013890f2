//! Responses the gateway writes itself: error pages (HTML for browsers, JSON for APIs).
//!
//! Pages never echo request data, so they cannot reflect attacker-controlled markup.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// A status the gateway answers itself, with the words shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// HTTP status.
    pub status: u16,
    /// Short machine-readable code for JSON clients.
    pub code: &'static str,
    /// One sentence for people: what happened and what to do.
    pub message: &'static str,
}

impl Page {
    /// 400: the request could not be understood.
    pub const BAD_REQUEST: Page = Page {
        status: 400,
        code: "bad_request",
        message: "The request is malformed.",
    };
    /// 400: no usable Host header.
    pub const BAD_HOST: Page = Page {
        status: 400,
        code: "bad_host",
        message: "The request has a missing or malformed Host header.",
    };
    /// 404: no app for this host.
    pub const UNKNOWN_HOST: Page = Page {
        status: 404,
        code: "unknown_host",
        message: "No application is configured for this host name.",
    };
    /// 404: a gateway endpoint that is not enabled.
    pub const NOT_FOUND: Page = Page {
        status: 404,
        code: "not_found",
        message: "There is nothing at this address.",
    };
    /// 414: request target too long.
    pub const URI_TOO_LONG: Page = Page {
        status: 414,
        code: "uri_too_long",
        message: "The request URI is too long.",
    };
    /// 421: the TLS server name and the Host header point at different certificates.
    pub const MISDIRECTED: Page = Page {
        status: 421,
        code: "misdirected_request",
        message: "This connection was opened for another host name; open a new connection for this host.",
    };
    /// 431: header block too large.
    pub const HEADERS_TOO_LARGE: Page = Page {
        status: 431,
        code: "request_header_fields_too_large",
        message: "The request headers are too large.",
    };
    /// 502: no backend could be reached.
    pub const BAD_GATEWAY: Page = Page {
        status: 502,
        code: "bad_gateway",
        message: "The application is unavailable: no healthy backend could be reached. Try again shortly.",
    };
    /// 504: the backend did not answer in time.
    pub const GATEWAY_TIMEOUT: Page = Page {
        status: 504,
        code: "gateway_timeout",
        message: "The application did not answer in time. Try again shortly.",
    };
    /// 401: sign-in required (API clients).
    pub const UNAUTHORIZED: Page = Page {
        status: 401,
        code: "unauthorized",
        message: "Sign-in required: send a valid session cookie or bearer token.",
    };
    /// 403: signed in, but the app's policy refuses this user.
    pub const FORBIDDEN: Page = Page {
        status: 403,
        code: "forbidden",
        message: "You are signed in, but this application does not allow your account. Ask its owners for access, or sign out and use another account.",
    };
    /// 400: the login could not be completed (missing or stale login state, refused code).
    pub const LOGIN_FAILED: Page = Page {
        status: 400,
        code: "login_failed",
        message: "The sign-in could not be completed (it expired, was already used, or was refused). Go back to the application and sign in again.",
    };
    /// 503: the session store cannot be reached.
    pub const STORE_UNAVAILABLE: Page = Page {
        status: 503,
        code: "session_store_unavailable",
        message: "Sign-in is temporarily unavailable. Try again in a moment.",
    };
    /// 503: the identity provider cannot be reached.
    pub const IDP_UNAVAILABLE: Page = Page {
        status: 503,
        code: "identity_provider_unavailable",
        message: "The identity provider cannot be reached. Try again in a moment.",
    };
    /// 429: too many logins or failed bearer tokens from one client address.
    pub const TOO_MANY_REQUESTS: Page = Page {
        status: 429,
        code: "too_many_requests",
        message: "Too many requests from your address. Try again in a moment.",
    };
    /// 500: a bug in the gateway.
    pub const INTERNAL: Page = Page {
        status: 500,
        code: "internal_error",
        message: "The gateway failed to handle this request.",
    };

    /// The page for a status the proxy reports from an error.
    pub fn for_status(status: u16) -> Page {
        match status {
            400 => Self::BAD_REQUEST,
            401 => Self::UNAUTHORIZED,
            403 => Self::FORBIDDEN,
            503 => Self::IDP_UNAVAILABLE,
            404 => Self::UNKNOWN_HOST,
            414 => Self::URI_TOO_LONG,
            421 => Self::MISDIRECTED,
            431 => Self::HEADERS_TOO_LARGE,
            502 => Self::BAD_GATEWAY,
            504 => Self::GATEWAY_TIMEOUT,
            _ => Self::INTERNAL,
        }
    }

    /// The body and its content type, JSON when the client prefers it.
    pub fn render(&self, json: bool) -> (Bytes, &'static str) {
        if json {
            let body = serde_json::json!({ "error": self.code, "message": self.message }).to_string();
            (Bytes::from(body), "application/json")
        } else {
            (Bytes::from(self.html(None)), "text/html; charset=utf-8")
        }
    }

    /// The status's reason phrase (`Forbidden`).
    pub fn title(&self) -> &'static str {
        http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error")
    }

    /// The built-in HTML page, with a link `(href, text)` under the message when given (both
    /// are the gateway's own constants, never request data).
    pub fn html(&self, link: Option<(&str, &str)>) -> String {
        let link = link
            .map(|(href, text)| format!("<p><a href=\"{href}\">{text}</a></p>"))
            .unwrap_or_default();
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{status} {reason}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;color:#222}}\
             small{{color:#777}}</style></head><body><h1>{status} {reason}</h1><p>{message}</p>{link}\
             <small>authgate</small></body></html>",
            status = self.status,
            reason = self.title(),
            message = self.message,
        )
    }
}

/// True when the client asked for JSON (an API client or an XHR).
pub fn wants_json(session: &Session) -> bool {
    let accept_json = session
        .get_header(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json") && !v.contains("text/html"));
    let xhr = session
        .get_header("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    accept_json || xhr
}

/// A complete response the gateway writes itself.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    content_type: &'static str,
    body: Bytes,
    headers: Vec<(&'static str, String)>,
    close: bool,
}

impl Reply {
    /// A response with a body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
            close: false,
        }
    }

    /// An error page, JSON when `json`.
    pub fn page(page: Page, json: bool) -> Reply {
        let (body, content_type) = page.render(json);
        Reply::new(page.status, content_type, body)
    }

    /// A 302 to `location`.
    pub fn redirect(location: impl Into<String>) -> Reply {
        Reply::new(302, "text/plain", "").header("location", location)
    }

    /// JSON with `status`.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json", value.to_string())
    }

    /// Adds a header (repeatable, e.g. several `set-cookie`).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// Closes the connection after the response.
    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Writes the response.
    pub async fn send(self, session: &mut Session) -> Result<()> {
        let mut resp = ResponseHeader::build(self.status, Some(4 + self.headers.len()))?;
        resp.insert_header(http::header::CONTENT_TYPE, self.content_type)?;
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        resp.insert_header(http::header::CONTENT_LENGTH, self.body.len())?;
        for (name, value) in self.headers {
            resp.append_header(name, value)?;
        }
        if self.close {
            session.set_keepalive(None);
            resp.insert_header(http::header::CONNECTION, "close")?;
        }
        let head_only = session.req_header().method == http::Method::HEAD || self.body.is_empty();
        session.write_response_header(Box::new(resp), head_only).await?;
        if !head_only {
            session.write_response_body(Some(self.body), true).await?;
        }
        Ok(())
    }
}

/// Writes `page` as a complete response. `close` ends the connection after it.
pub async fn send_page(session: &mut Session, page: Page, close: bool) -> Result<()> {
    let reply = Reply::page(page, wants_json(session));
    let reply = if close { reply.close() } else { reply };
    reply.send(session).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_html_and_json() {
        let (html, ct) = Page::UNKNOWN_HOST.render(false);
        assert_eq!(ct, "text/html; charset=utf-8");
        assert!(std::str::from_utf8(&html).unwrap().contains("404 Not Found"));
        let (json, ct) = Page::GATEWAY_TIMEOUT.render(true);
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["error"], "gateway_timeout");
    }
}
