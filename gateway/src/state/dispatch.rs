//! The routing decision of one request, from its head alone (no session, no network): which
//! app and route serve it, its canonical target, and how the route's policy classes it. The
//! gateway makes this decision for every request ([`crate::proxy`]) and `authgate explain`
//! reports it ([`crate::explain`]): one code path, so the two cannot disagree.

use std::sync::Arc;

use pingora::http::RequestHeader;

use super::{App, RouteId, Snapshot};
use crate::auth::identity_jwt::JWKS_PATH;
use crate::auth::{endpoints, AppAuth, RouteClass};
use crate::request::{inspect, Rejection};
use crate::target::Target;

/// A request routed to an app.
#[derive(Debug)]
pub struct Dispatched {
    /// The app serving the Host.
    pub app: Arc<App>,
    /// The normalised host.
    pub host: String,
    /// The Host value as the client sent it (forwarded upstream).
    pub raw_host: String,
    /// The canonical target.
    pub target: Target,
    /// The app's route chosen by the canonical path.
    pub route: RouteId,
    /// The path is the gateway's JWK set and the gateway signs identity assertions.
    pub jwks: bool,
}

/// Why a request was not routed.
#[derive(Debug)]
pub enum Unrouted {
    /// Refused before or while routing (400, 414, 431).
    Refused(Rejection),
    /// No app serves this (normalised) host: 404.
    UnknownHost(String),
    /// Known host, but its path cannot be judged ([`Rejection::BadPath`],
    /// [`Rejection::AmbiguousPath`]): the app is known for logs and metrics.
    BadPath(Arc<App>, String, String, Rejection),
}

/// How a routed request is handled before any session or token is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The gateway's JWK set ([`JWKS_PATH`]), served on every host when it signs assertions.
    Jwks,
    /// One of the gateway's `/oauth2/*` endpoints on a host with a policy.
    Endpoint,
    /// Proxied without authentication: the route has no policy.
    Unprotected,
    /// Proxied without authentication: a `skip_auth_routes` rule of the route's policy.
    Skipped,
    /// Needs a user; answered 401 rather than a login redirect (`api_routes`).
    Api,
    /// Needs a user; a browser is sent to sign in.
    Protected,
    /// The path and the path without matrix parameters get different verdicts: 400.
    Ambiguous,
}

impl Snapshot {
    /// Routes a request head: limits, Host, app, canonical target, path route.
    pub fn dispatch(&self, header: &RequestHeader) -> Result<Dispatched, Unrouted> {
        let (host, raw_host) = inspect(header, &self.settings).map_err(Unrouted::Refused)?;
        let Some(app) = self.routes.lookup(&host).cloned() else {
            return Err(Unrouted::UnknownHost(host.into_owned()));
        };
        let (host, raw_host) = (host.into_owned(), raw_host.to_owned());
        let target = match Target::of(header, app.path_mode) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(app = %app.name, error = %e, "request path refused");
                return Err(Unrouted::BadPath(app, host, raw_host, Rejection::BadPath));
            }
        };
        let Ok(route) = app.select_route(target.path(header), target.stripped_path()) else {
            return Err(Unrouted::BadPath(app, host, raw_host, Rejection::AmbiguousPath));
        };
        let jwks = self.identity_jwt.is_some() && target.path(header) == JWKS_PATH;
        Ok(Dispatched {
            app,
            host,
            raw_host,
            target,
            route,
            jwks,
        })
    }
}

impl Dispatched {
    /// The policy of the chosen route, if it has one.
    pub fn route_auth(&self) -> Option<&Arc<AppAuth>> {
        self.app.route(self.route).auth.as_ref()
    }

    /// How the request is handled before any session or token is looked at.
    pub fn class(&self, header: &RequestHeader) -> Class {
        if self.jwks {
            return Class::Jwks;
        }
        let path = self.target.path(header);
        if self.app.endpoint_auth().is_some() && endpoints::is_endpoint(path) {
            return Class::Endpoint;
        }
        let Some(auth) = self.route_auth() else {
            return Class::Unprotected;
        };
        match auth.classify(&header.method, path, self.target.stripped_path()) {
            Some(RouteClass::Public) => Class::Skipped,
            Some(RouteClass::Api) => Class::Api,
            Some(RouteClass::Protected) => Class::Protected,
            None => Class::Ambiguous,
        }
    }
}
