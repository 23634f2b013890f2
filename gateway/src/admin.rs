//! The small HTTP services beside the gateway: the admin listener (`/ping`, `/ready`,
//! `/metrics`) and the plain-HTTP listener (308 to HTTPS, plus `/ping`).

use std::sync::Arc;

use async_trait::async_trait;
use http::{header, HeaderValue, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::request::raw_host;
use crate::routing::normalize_host;
use crate::state::State;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    let length = body.len();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    resp
}

/// The admin listener: liveness, readiness and Prometheus metrics.
pub struct Admin {
    state: Arc<State>,
}

/// Every app's upstreams whose names do not resolve now, as `{app, file, field, message}`.
fn unresolved(snapshot: &crate::state::Snapshot) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for app in snapshot.routes.values() {
        for (field, pool) in app.pools() {
            for u in pool.unresolved().iter() {
                out.push(serde_json::json!({
                    "app": app.name,
                    "file": app.file.display().to_string(),
                    "field": format!("{field}upstreams[{}]", u.index),
                    "message": u.message,
                }));
            }
        }
    }
    out
}

impl Admin {
    /// Admin endpoints over `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

impl Admin {
    /// Asks the session store whether it answers and publishes `authgate_session_store_up`.
    async fn probe_store(&self) -> bool {
        let up = self.state.sessions.ready().await;
        self.state.metrics.session_store_up.set(i64::from(up));
        up
    }

    /// Readiness means "this replica can serve": it runs (so its listeners are bound: they are
    /// bound before any service starts, or the process exits) and serves a configuration. The
    /// session store's state and rejected app files are reported in the body, never as a 503:
    /// a Redis outage must not take every replica out of the load balancer at once.
    async fn ready(&self) -> Response<Vec<u8>> {
        let snapshot = self.state.snapshot();
        let store_up = self.probe_store().await;
        let list = |errors: &[crate::config::ConfigError]| -> Vec<serde_json::Value> {
            errors
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "file": e.file.display().to_string(),
                        "field": e.field,
                        "message": e.message,
                    })
                })
                .collect()
        };
        let body = serde_json::json!({
            "status": "ready",
            "config_generation": snapshot.generation,
            "apps": snapshot.routes.len(),
            "session_store": if store_up { "up" } else { "down" },
            "rejected_files": list(&snapshot.rejected),
            "unresolved_upstreams": unresolved(&snapshot),
        });
        respond(StatusCode::OK, "application/json", body.to_string())
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/ping" => respond(StatusCode::OK, "text/plain", "OK\n"),
            "/ready" => self.ready().await,
            crate::auth::identity_jwt::JWKS_PATH => match &self.state.snapshot().identity_jwt {
                Some(signer) => respond(StatusCode::OK, "application/json", signer.jwks().to_string()),
                None => respond(StatusCode::NOT_FOUND, "text/plain", "no identity_jwt section\n"),
            },
            "/metrics" => {
                self.state.refresh_backend_gauges();
                self.probe_store().await;
                respond(StatusCode::OK, "text/plain; version=0.0.4", self.state.metrics.render())
            }
            _ => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /ping, /ready or /metrics\n",
            ),
        }
    }
}

/// The plain-HTTP listener: every request is sent to HTTPS with a 308, keeping host, path
/// and query; `/ping` answers for load-balancer probes.
pub struct HttpsRedirect {
    state: Arc<State>,
}

impl HttpsRedirect {
    /// A redirector using the HTTPS port of `state`'s current snapshot.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// The HTTPS URL for a plain-HTTP request, or `None` when its Host is unusable.
pub fn https_location(raw_host_value: &str, target: &str, https_port: u16) -> Option<String> {
    let host = normalize_host(raw_host_value).ok()?;
    let target = if target.starts_with('/') { target } else { "/" };
    Some(if https_port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{https_port}{target}")
    })
}

#[async_trait]
impl ServeHttp for HttpsRedirect {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.uri.path() == "/ping" {
            return respond(StatusCode::OK, "text/plain", "OK\n");
        }
        let port = self.state.snapshot().settings.redirect_https_port;
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let location = raw_host(req)
            .ok()
            .and_then(|h| https_location(h, target, port))
            .and_then(|l| HeaderValue::from_str(&l).ok());
        match location {
            Some(location) => {
                let mut resp = respond(StatusCode::PERMANENT_REDIRECT, "text/plain", "Redirecting to HTTPS\n");
                resp.headers_mut().insert(header::LOCATION, location);
                resp
            }
            None => respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "missing or malformed Host header\n",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_keeps_host_path_and_query_and_port() {
        assert_eq!(
            https_location("App1.example.com:8080", "/a/b?x=1", 8443).unwrap(),
            "https://app1.example.com:8443/a/b?x=1"
        );
        assert_eq!(
            https_location("app1.example.com", "/", 443).unwrap(),
            "https://app1.example.com/"
        );
        assert_eq!(
            https_location("app1.example.com", "*", 443).unwrap(),
            "https://app1.example.com/"
        );
        assert!(https_location("evil.com/x", "/", 443).is_none());
        assert!(https_location("", "/", 443).is_none());
    }
}
