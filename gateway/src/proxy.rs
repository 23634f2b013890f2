//! The Pingora `ProxyHttp` implementation: thin glue that runs, for each request,
//! request checks → routing → upstream selection → forwarding headers → access log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::auth::flow::{self, Decision, Granted};
use crate::auth::outcome::Outcome;
use crate::auth::{endpoints, headers};
use crate::client::Client;
use crate::metrics::app::UpstreamError;
use crate::pages::{send_page, Page, Reply};
use crate::request::Rejection;
use crate::state::{App, Class, Dispatched, RouteId, Snapshot, State, Unrouted};
use crate::target::Target;
use crate::tls::TlsConnInfo;
use crate::trace_context::{RequestTrace, ResponseRequestIdBuilder};

mod observe;
mod spans;

/// The HTTPS gateway service.
pub struct Gateway {
    state: Arc<State>,
}

impl Gateway {
    /// A gateway serving the snapshots of `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

/// Per-request context: everything resolved along the way.
pub struct RequestCtx {
    started: Instant,
    snapshot: Option<Arc<Snapshot>>,
    app: Option<Arc<App>>,
    /// Which of the app's routes serves the request (its path prefix).
    route: RouteId,
    host: Option<String>,
    forwarded_host: Option<String>,
    tried: Vec<SocketAddr>,
    upstream_started: Option<Instant>,
    granted: Option<Granted>,
    /// The canonical target, once the app (and so the path mode) is known.
    target: Option<Target>,
    /// The client, as far as trusted proxies vouch for it.
    client: Option<Client>,
    // Observability (see `observe`).
    trace: Option<RequestTrace>,
    auth: Option<Outcome>,
    upstream_elapsed: Option<Duration>,
    /// OpenTelemetry spans, when tracing is on.
    spans: Option<spans::RequestSpans>,
}

impl RequestCtx {
    fn app_name(&self) -> &str {
        self.app.as_ref().map_or("-", |a| a.name.as_str())
    }
}

fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

/// The client behind the connection, believing `X-Forwarded-For` only from trusted proxies.
fn resolve_client(session: &Session, settings: &crate::state::Settings) -> Client {
    let forwarded_for = session
        .req_header()
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    Client::resolve(client_ip(session), forwarded_for, &settings.trusted_proxies)
}

impl Gateway {
    /// Serves the host's `/oauth2/*` endpoints with the app's endpoint policy, or runs the
    /// route's policy on the request as `class` says; `Ok(true)` when a response was written.
    async fn authenticate(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        routed: &Dispatched,
        class: Class,
        settings: &crate::auth::AuthSettings,
    ) -> Result<bool> {
        let api = match class {
            Class::Jwks => return Ok(false),
            Class::Unprotected | Class::Skipped => {
                observe::skipped(ctx);
                return Ok(false);
            }
            Class::Ambiguous => return self.reject(session, Rejection::AmbiguousPath).await,
            Class::Api => true,
            Class::Protected => false,
            Class::Endpoint => false,
        };
        let app = &routed.app;
        let (Some(endpoints_auth), Some(route_auth)) =
            (app.endpoint_auth(), routed.route_auth().or(app.endpoint_auth()))
        else {
            return Ok(false);
        };
        let origin = format!(
            "https://{}",
            ctx.forwarded_host.as_deref().unwrap_or_default().to_ascii_lowercase()
        );
        let client = ctx.client.as_ref().and_then(|c| c.addr);
        if class == Class::Endpoint {
            // Owned: the back-channel logout reads the request body (a mutable session).
            let header = session.req_header();
            let path = routed.target.path(header).to_owned();
            let return_to = routed.target.path_and_query(header).into_owned();
            let req = self.auth_request(settings, endpoints_auth, routed, &origin, &return_to, client);
            if let Some(reply) = spans::in_child(ctx, "auth", endpoints::handle(session, &req, &path)).await {
                reply.send(session).await?;
                return Ok(true);
            }
            return Ok(false);
        }
        let return_to = routed.target.path_and_query(session.req_header());
        let req = self.auth_request(settings, route_auth, routed, &origin, &return_to, client);
        let decided = spans::in_child(ctx, "auth", flow::decide(session, &req, api)).await?;
        observe::decided(session, ctx, &decided);
        match decided.decision {
            Decision::Pass(granted) => {
                ctx.granted = granted;
                Ok(false)
            }
            Decision::Answer(reply) => {
                reply.send(session).await?;
                Ok(true)
            }
        }
    }

    /// What the auth layer needs to know about a request.
    fn auth_request<'a>(
        &'a self,
        settings: &'a crate::auth::AuthSettings,
        auth: &'a crate::auth::AppAuth,
        routed: &'a Dispatched,
        origin: &'a str,
        return_to: &'a str,
        client: Option<std::net::IpAddr>,
    ) -> flow::Request<'a> {
        flow::Request {
            state: &self.state,
            settings,
            auth,
            app: &routed.app.name,
            metrics: &routed.app.metrics,
            origin,
            host: &routed.host,
            return_to,
            client,
        }
    }

    async fn reject(&self, session: &mut Session, rejection: Rejection) -> Result<bool> {
        self.state
            .metrics
            .rejected_requests
            .with_label_values(&[rejection.reason()])
            .inc();
        let close = !matches!(rejection, Rejection::BadHost);
        send_page(session, rejection.page(), close).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            app: None,
            route: None,
            host: None,
            forwarded_host: None,
            tried: Vec::new(),
            upstream_started: None,
            granted: None,
            target: None,
            client: None,
            trace: None,
            auth: None,
            upstream_elapsed: None,
            spans: None,
        }
    }

    fn init_downstream_modules(&self, modules: &mut pingora::modules::http::HttpModules) {
        // Pingora's default (a disabled compression module), and X-Request-Id on every response.
        modules.add_module(pingora::modules::http::compression::ResponseCompressionBuilder::enable(
            0,
        ));
        modules.add_module(Box::new(ResponseRequestIdBuilder));
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // RFC 9112 §9.3.2: requests a client pipelines are answered one after another, in
        // order, instead of closing the connection after the first.
        session.as_downstream_mut().set_pipelining_enabled(true);
        let snapshot = self.state.snapshot();
        let settings = &snapshot.settings;
        session.set_keepalive(Some(settings.keepalive_timeout.as_secs()));
        ctx.client = Some(resolve_client(session, settings));
        observe::begin(session, ctx);
        let routed = match snapshot.dispatch(session.req_header()) {
            Ok(routed) => routed,
            Err(Unrouted::Refused(rejection)) => return self.reject(session, rejection).await,
            Err(Unrouted::UnknownHost(host)) => {
                self.state
                    .metrics
                    .rejected_requests
                    .with_label_values(&["unknown_host"])
                    .inc();
                ctx.host = Some(host);
                send_page(session, Page::UNKNOWN_HOST, false).await?;
                return Ok(true);
            }
            Err(Unrouted::BadPath(app, host, raw_host, rejection)) => {
                ctx.app = Some(app);
                ctx.host = Some(host);
                ctx.forwarded_host = Some(raw_host);
                ctx.snapshot = Some(snapshot);
                return self.reject(session, rejection).await;
            }
        };
        if misdirected(session, &snapshot, &routed.host) {
            self.state
                .metrics
                .rejected_requests
                .with_label_values(&["misdirected"])
                .inc();
            ctx.host = Some(routed.host);
            send_page(session, Page::MISDIRECTED, true).await?;
            return Ok(true);
        }
        ctx.app = Some(routed.app.clone());
        ctx.host = Some(routed.host.clone());
        ctx.forwarded_host = Some(routed.raw_host.clone());
        ctx.route = routed.route;
        ctx.snapshot = Some(snapshot.clone());
        let class = routed.class(session.req_header());
        spans::route(ctx, class);
        if let (Class::Jwks, Some(signer)) = (class, &snapshot.identity_jwt) {
            Reply::json(200, signer.jwks()).send(session).await?;
            return Ok(true);
        }
        let answered = match &snapshot.auth {
            Some(settings) if routed.app.endpoint_auth().is_some() => {
                self.authenticate(session, ctx, &routed, class, settings).await
            }
            _ => Ok(false),
        };
        ctx.target = Some(routed.target);
        answered
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let app = ctx
            .app
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no app chosen"))?;
        let key = match ctx.client.as_ref().and_then(|c| c.addr) {
            Some(std::net::IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
            Some(std::net::IpAddr::V6(v6)) => v6.octets(),
            None => [0; 16],
        };
        let route = app.route(ctx.route);
        let Some(target) = route.pool.select(&key, &ctx.tried) else {
            app.metrics.upstream_error(UpstreamError::NoHealthyBackend);
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                format!("app {}: no healthy backend", app.name),
            ));
        };
        ctx.tried.push(target.spec.addr);
        let mut peer = target.peer.clone();
        let t = &route.timeouts;
        peer.options.connection_timeout = Some(t.connect.0);
        peer.options.total_connection_timeout = Some(t.connect.0);
        peer.options.write_timeout = Some(t.write.0);
        peer.options.idle_timeout = Some(t.idle.0);
        // An upgraded connection (WebSocket) may stay quiet for long: no read timeout.
        peer.options.read_timeout = if session.is_upgrade_req() { None } else { Some(t.read.0) };
        ctx.upstream_started = Some(Instant::now());
        spans::upstream_chosen(ctx);
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        spans::upstream_connected(ctx, reused);
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(app) = &ctx.app {
            app.metrics.upstream_error(UpstreamError::Connect);
        }
        // Retry a failed connect once, on another backend (upstream_peer skips tried ones).
        e.set_retry(ctx.tried.len() < 2);
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Room for the forwarding and trace headers (and the identity ones) in one growth.
        upstream.reserve(if ctx.granted.is_some() { 14 } else { 8 });
        if let Some(target) = &ctx.target {
            target.apply(upstream)?;
        }
        let cookie_prefix = ctx
            .snapshot
            .as_ref()
            .and_then(|s| s.auth.as_ref())
            .map(|a| a.cookie.name.as_str());
        let app_auth = ctx.app.as_ref().and_then(|a| a.route(ctx.route).auth.as_ref());
        let own_authorization = app_auth.is_some_and(|a| a.set_authorization_header);
        headers::strip(upstream, cookie_prefix, own_authorization);
        let forwarding = headers::Forwarding {
            client: ctx.client.as_ref(),
            host: ctx.forwarded_host.as_deref(),
            port: ctx.snapshot.as_ref().map_or(443, |s| s.settings.redirect_https_port),
        };
        headers::set_forwarding(upstream, &forwarding)?;
        if let (Some(granted), Some(auth)) = (&ctx.granted, app_auth) {
            let injection = headers::Injection {
                identity: granted.identity(),
                access_token: granted.access_token().filter(|_| auth.pass_access_token),
                id_token: granted.id_token().filter(|_| auth.set_authorization_header),
                user_headers: auth.spec.pass_user_headers,
                prefer_email: auth.spec.prefer_email_to_user,
            };
            headers::inject(upstream, &injection);
        }
        identity_assertion(ctx, upstream)?;
        observe::upstream_headers(ctx, upstream)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let cookie_prefix = ctx
            .snapshot
            .as_ref()
            .and_then(|s| s.auth.as_ref())
            .map(|a| a.cookie.name.as_str());
        if let (Some(prefix), Some(app)) = (cookie_prefix, &ctx.app) {
            let dropped = headers::drop_gateway_cookies(resp, prefix);
            if dropped > 0 {
                tracing::warn!(app = %app.name, dropped, "upstream tried to set the gateway's own cookies; removed");
                app.metrics.upstream_cookies_dropped(dropped);
            }
        }
        observe::upstream_responded(ctx, resp.status.as_u16());
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let status = error_status(e);
        if status == 504 {
            if let Some(app) = &ctx.app {
                app.metrics.upstream_error(UpstreamError::Timeout);
            }
        }
        if status > 0 && session.response_written().is_none() {
            if let Err(write_error) = send_page(session, Page::for_status(status), true).await {
                tracing::debug!(error = %write_error, "cannot send the error page");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        observe::finish(&self.state, session, e, ctx);
    }
}

/// Replaces any client-sent identity assertion of the app with the gateway's own, signed for
/// the admitted user (none for anonymous requests).
fn identity_assertion(ctx: &RequestCtx, upstream: &mut RequestHeader) -> Result<()> {
    let Some(assertion) = ctx.app.as_ref().and_then(|a| a.identity_jwt.as_ref()) else {
        return Ok(());
    };
    upstream.remove_header(&assertion.header);
    let signer = ctx.snapshot.as_ref().and_then(|s| s.identity_jwt.as_ref());
    if let (Some(granted), Some(signer)) = (&ctx.granted, signer) {
        if let Some(jwt) = signer.assertion(granted.identity(), assertion) {
            upstream.insert_header(assertion.header.clone(), &*jwt)?;
        }
    }
    Ok(())
}

/// Status for a failed proxy attempt: timeouts are 504, other upstream failures 502.
fn error_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// True when the connection's TLS server name was answered with a certificate that does
/// not cover the requested host: a client must not reach one tenant through another's
/// connection (domain fronting). Coalesced HTTP/2 connections under one wildcard pass.
fn misdirected(session: &Session, snapshot: &Snapshot, host: &str) -> bool {
    let Some(info) = session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|s| s.extension.get::<TlsConnInfo>())
    else {
        return false;
    };
    let Some(sni) = info.sni.as_deref() else { return false };
    if sni == host {
        return false;
    }
    match snapshot.certs.select(Some(sni)) {
        Some((served, _)) => !served.covers(host),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    //! Hooks driven without sockets: a request written into an in-memory stream, parsed by a
    //! real Pingora `Session`, passed through the hooks; responses read back from the stream.
    use super::*;
    use crate::state::test_support;
    use pingora::upstreams::peer::Peer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn session_for(request: &str) -> (Session, tokio::io::DuplexStream) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut client = client;
        client.write_all(request.as_bytes()).await.unwrap();
        let mut session = Session::new_h1(Box::new(server));
        assert!(session.read_request().await.unwrap());
        (session, client)
    }

    async fn response_head(client: &mut tokio::io::DuplexStream) -> String {
        let mut buf = vec![0u8; 4096];
        let n = client.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn gateway() -> (Gateway, tempfile::TempDir) {
        let (state, dir) = test_support::state(&[
            ("app1", "host: app1.example.com\nupstreams: [\"127.0.0.1:9001\"]\n"),
            (
                "wild",
                "host: \"*.preview.example.com\"\nupstreams: [\"127.0.0.1:9002\"]\n",
            ),
        ]);
        (Gateway::new(state), dir)
    }

    #[tokio::test]
    async fn request_filter_routes_known_hosts() {
        let (gw, _dir) = gateway();
        let (mut session, _client) = session_for("GET /x HTTP/1.1\r\nHost: App1.example.com:8443\r\n\r\n").await;
        let mut ctx = gw.new_ctx();
        assert!(
            !gw.request_filter(&mut session, &mut ctx).await.unwrap(),
            "not answered: proxied"
        );
        assert_eq!(ctx.app_name(), "app1");
        assert_eq!(ctx.forwarded_host.as_deref(), Some("App1.example.com:8443"));
        let peer = gw.upstream_peer(&mut session, &mut ctx).await.unwrap();
        assert_eq!(peer.address().to_string(), "127.0.0.1:9001");
        assert_eq!(ctx.tried, ["127.0.0.1:9001".parse::<SocketAddr>().unwrap()]);
        // The only backend was tried: a retry finds none and answers 502.
        let err = gw.upstream_peer(&mut session, &mut ctx).await.unwrap_err();
        assert_eq!(error_status(&err), 502);
    }

    #[tokio::test]
    async fn request_filter_answers_unknown_and_malformed_hosts() {
        let (gw, _dir) = gateway();
        for (request, status) in [
            ("GET / HTTP/1.1\r\nHost: nobody.example.com\r\n\r\n", "404"),
            ("GET / HTTP/1.1\r\nHost: bad host\r\n\r\n", "400"),
            ("GET / HTTP/1.0\r\n\r\n", "400"),
        ] {
            let (mut session, mut client) = session_for(request).await;
            let mut ctx = gw.new_ctx();
            assert!(
                gw.request_filter(&mut session, &mut ctx).await.unwrap(),
                "{request:?} is answered"
            );
            let head = response_head(&mut client).await;
            assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{request:?}: {head}");
            assert!(ctx.app.is_none());
        }
    }

    #[tokio::test]
    async fn paths_the_canonical_form_cannot_carry_are_refused() {
        let (gw, _dir) = gateway();
        for path in ["/%G0", "/a%2Fb", "/a/..;/b", "/a%00"] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: app1.example.com\r\n\r\n");
            let (mut session, mut client) = session_for(&request).await;
            let mut ctx = gw.new_ctx();
            assert!(
                gw.request_filter(&mut session, &mut ctx).await.unwrap(),
                "{path} is answered"
            );
            let head = response_head(&mut client).await;
            assert!(head.starts_with("HTTP/1.1 400"), "{path}: {head}");
        }
    }

    #[tokio::test]
    async fn the_upstream_receives_the_canonical_target() {
        let (gw, _dir) = gateway();
        for (raw, sent) in [
            ("/x/../%70ublic/a%20b?q=/../%2F", "/public/a%20b?q=/../%2F"),
            ("http://app1.example.com/a/./b", "/a/b"),
            ("/plain?x", "/plain?x"),
        ] {
            let request = format!("GET {raw} HTTP/1.1\r\nHost: app1.example.com\r\n\r\n");
            let (mut session, _client) = session_for(&request).await;
            let mut ctx = gw.new_ctx();
            assert!(!gw.request_filter(&mut session, &mut ctx).await.unwrap());
            let mut upstream = session.req_header().clone();
            gw.upstream_request_filter(&mut session, &mut upstream, &mut ctx)
                .await
                .unwrap();
            assert_eq!(upstream.raw_path(), sent.as_bytes(), "{raw}");
        }
    }

    #[tokio::test]
    async fn upstream_request_filter_sets_forwarding_headers() {
        let (gw, _dir) = gateway();
        let (mut session, _client) =
            session_for("GET / HTTP/1.1\r\nHost: a.preview.example.com\r\nX-Forwarded-Proto: http\r\nForwarded: for=1.2.3.4\r\n\r\n")
                .await;
        let mut ctx = gw.new_ctx();
        assert!(!gw.request_filter(&mut session, &mut ctx).await.unwrap());
        assert_eq!(ctx.app_name(), "wild");
        let mut upstream = session.req_header().clone();
        gw.upstream_request_filter(&mut session, &mut upstream, &mut ctx)
            .await
            .unwrap();
        assert_eq!(upstream.headers["x-forwarded-proto"], "https");
        assert_eq!(upstream.headers["x-forwarded-host"], "a.preview.example.com");
        assert!(upstream.headers.get("forwarded").is_none());
        // An in-memory stream has no client address: nothing client-supplied survives.
        assert!(upstream.headers.get("x-forwarded-for").is_none());
    }

    #[test]
    fn errors_map_to_502_504_and_400() {
        let up = |t| Error::new(t).into_up();
        assert_eq!(error_status(&up(ErrorType::ReadTimedout)), 504);
        assert_eq!(error_status(&up(ErrorType::ConnectTimedout)), 504);
        assert_eq!(error_status(&up(ErrorType::ConnectRefused)), 502);
        assert_eq!(error_status(&Error::new(ErrorType::HTTPStatus(431))), 431);
        assert_eq!(error_status(&Error::new(ErrorType::InvalidHTTPHeader).into_down()), 400);
        assert_eq!(error_status(&Error::new(ErrorType::ConnectionClosed).into_down()), 0);
    }
}
