//! The per-request decision for an app with an `auth` block: pass (with an identity to
//! inject), or answer (login redirect, 401, 403, 503) — never a 500 and never a login loop.

use std::sync::Arc;

use pingora::proxy::Session as HttpSession;
use pingora::Result;

use super::outcome::{rule, Outcome};
use super::policy::{Decision as PolicyDecision, Identity};
use super::provider::ProviderError;
use super::{AppAuth, AuthSettings};
use crate::pages::{wants_json, Page, Reply};
use crate::session::{now, Session, Ticket};
use crate::state::State;

/// Who the upstream is told about: a session (shared, never copied per request) or a
/// verified bearer token.
#[derive(Debug, Clone)]
pub enum Granted {
    /// A signed-in browser session.
    Session(Arc<Session>),
    /// An API client's bearer ID token.
    Bearer {
        /// The user the token names.
        identity: Arc<Identity>,
        /// The token itself.
        token: String,
    },
}

impl Granted {
    /// The user.
    pub fn identity(&self) -> &Identity {
        match self {
            Self::Session(s) => &s.identity,
            Self::Bearer { identity, .. } => identity,
        }
    }

    /// Access token (for `pass_access_token`).
    pub fn access_token(&self) -> Option<&str> {
        match self {
            Self::Session(s) => s.access_token.as_deref(),
            Self::Bearer { .. } => None,
        }
    }

    /// ID token (for `set_authorization_header`).
    pub fn id_token(&self) -> Option<&str> {
        match self {
            Self::Session(s) => s.id_token.as_deref(),
            Self::Bearer { token, .. } => Some(token),
        }
    }
}

/// A decision with what led to it, for metrics and the access and audit logs.
#[derive(Debug)]
pub struct Decided {
    /// What to do.
    pub decision: Decision,
    /// How it ended.
    pub outcome: Outcome,
    /// The rule behind it ([`super::outcome::rule`]).
    pub rule: &'static str,
    /// The user a policy refused (the audit log's "who"; on a pass it is in the decision).
    pub refused: Option<Granted>,
}

impl Decided {
    fn new(decision: Decision, outcome: Outcome, rule: &'static str) -> Decided {
        Decided {
            decision,
            outcome,
            rule,
            refused: None,
        }
    }
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision {
    /// Proxy it, telling the upstream who the user is (if anyone).
    Pass(Option<Granted>),
    /// Answer it with this response.
    Answer(Reply),
}

/// Everything a decision needs about the request's context.
pub struct Request<'a> {
    /// Shared state (store, metrics).
    pub state: &'a State,
    /// Gateway-wide auth settings of the snapshot.
    pub settings: &'a AuthSettings,
    /// The app's policy.
    pub auth: &'a AppAuth,
    /// The app's name (logs).
    pub app: &'a str,
    /// The app's metric handles.
    pub metrics: &'a crate::metrics::app::AppMetrics,
    /// `https://host[:port]` the browser used.
    pub origin: &'a str,
    /// The app's normalised host (redirect checks).
    pub host: &'a str,
    /// The canonical path and query of the request: where a login started here returns.
    pub return_to: &'a str,
    /// The client's address (rate limits).
    pub client: Option<std::net::IpAddr>,
}

/// Counts `limit` for the request's client; `Some(429 reply)` when it is over the limit.
pub fn rate_limited(req: &Request<'_>, limit: super::limits::Limit, json: bool) -> Option<Reply> {
    let retry = req
        .state
        .rate_limiter
        .hit(&req.settings.rate_limits, limit, req.client)
        .err()?;
    Some(too_many(req, limit, retry, json))
}

/// A 429 with `Retry-After`, counted in `authgate_rate_limited_total`.
pub(super) fn too_many(req: &Request<'_>, limit: super::limits::Limit, retry_after: u64, json: bool) -> Reply {
    req.state.metrics.rate_limited.with_label_values(&[limit.name()]).inc();
    tracing::info!(limit = limit.name(), client = ?req.client, "rate limited");
    super::page::error(req.settings, Page::TOO_MANY_REQUESTS, json).header("retry-after", retry_after.to_string())
}

/// Every `(name, value)` cookie pair of the request, in every `Cookie` header.
pub fn request_cookies(session: &HttpSession) -> impl Iterator<Item = (&str, &str)> {
    session
        .req_header()
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .map(|(k, v)| (k, v.trim()))
}

/// Every value of cookie `name` in the request (a host-only and a domain cookie may both be sent).
pub fn cookie_values<'s>(session: &'s HttpSession, name: &str) -> Vec<&'s str> {
    request_cookies(session)
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .collect()
}

/// The ticket of the request's session cookie, if one opens.
pub fn ticket(session: &HttpSession, req: &Request<'_>) -> Option<Ticket> {
    let keyring = &req.settings.cookie.keyring;
    cookie_values(session, &req.auth.cookie_name)
        .into_iter()
        .find_map(|v| Ticket::from_cookie(keyring, &req.auth.cookie_name, v))
}

/// Loads the request's session, refreshing it when due. `Ok(None)`: signed out.
/// `Err(page)`: the store or provider failed in a way the user must not mistake for sign-out.
pub async fn current_session(
    session: &HttpSession,
    req: &Request<'_>,
) -> std::result::Result<super::refresh::Loaded, Page> {
    let Some(ticket) = ticket(session, req) else {
        return Ok(None);
    };
    let store = &req.state.sessions;
    let loaded = store.load(&ticket).await.map_err(|e| {
        tracing::warn!(error = %e, "session store unavailable");
        Page::STORE_UNAVAILABLE
    })?;
    let Some(current) = loaded else { return Ok(None) };
    let t = now();
    if current.is_expired(t) || *current.provider != *req.auth.provider.name {
        return Ok(None);
    }
    if !current.needs_refresh(t, req.settings.cookie.refresh.as_secs()) {
        return Ok(Some((ticket, current)));
    }
    super::refresh::refresh(req, ticket, current).await
}

/// Decides what to do with a request to a protected (not skipped) route. `api` asks for API
/// answers (401 rather than a login redirect): an `api_routes` match, or `/oauth2/auth`.
/// Counts the outcome.
pub async fn decide(session: &HttpSession, req: &Request<'_>, api: bool) -> Result<Decided> {
    let json = api || wants_json(session);
    // A request with several `Authorization` headers never gets here: `request::inspect`
    // refuses it before routing.
    let decided = if let Some(token) = bearer_token(session).filter(|_| req.auth.skip_jwt_bearer_tokens) {
        decide_bearer(req, token).await
    } else {
        decide_session(session, req, json).await
    };
    req.metrics.auth_decision(decided.outcome);
    Ok(decided)
}

/// Verifies a bearer token and applies the app's policy; failures count towards the
/// client's `bearer_failures` limit, and a client over it is answered 429 without verifying.
async fn decide_bearer(req: &Request<'_>, token: &str) -> Decided {
    use super::limits::Limit;
    let limits = &req.settings.rate_limits;
    if let Some(retry) = req
        .state
        .rate_limiter
        .exceeded(limits, Limit::BearerFailure, req.client)
    {
        return Decided::new(
            Decision::Answer(too_many(req, Limit::BearerFailure, retry, true)),
            Outcome::RateLimited,
            rule::RATE_LIMITS,
        );
    }
    match req.auth.provider.verify_bearer(token).await {
        Ok(identity) => match req.auth.policy.check(&identity) {
            PolicyDecision::Allow => Decided::new(
                Decision::Pass(Some(Granted::Bearer {
                    identity,
                    token: token.to_owned(),
                })),
                Outcome::Bearer,
                rule::POLICY,
            ),
            PolicyDecision::Deny(why) => {
                tracing::info!(app = req.app, reason = %why, "bearer token refused by policy");
                Decided {
                    refused: Some(Granted::Bearer {
                        identity,
                        token: String::new(),
                    }),
                    ..Decided::new(
                        Decision::Answer(Reply::page(Page::FORBIDDEN, true)),
                        Outcome::Forbidden,
                        rule::denied(why),
                    )
                }
            }
        },
        Err(ProviderError::Unavailable(e)) => {
            tracing::warn!(error = %e, "cannot verify a bearer token");
            Decided::new(
                Decision::Answer(Reply::page(Page::IDP_UNAVAILABLE, true)),
                Outcome::IdpUnavailable,
                rule::PROVIDER,
            )
        }
        Err(ProviderError::Refused(e)) => {
            tracing::debug!(error = %e, "bearer token rejected");
            let _ = req.state.rate_limiter.hit(limits, Limit::BearerFailure, req.client);
            Decided::new(
                Decision::Answer(
                    Reply::page(Page::UNAUTHORIZED, true).header("www-authenticate", "Bearer error=\"invalid_token\""),
                ),
                Outcome::Unauthorized,
                rule::INVALID_TOKEN,
            )
        }
    }
}

async fn decide_session(session: &HttpSession, req: &Request<'_>, json: bool) -> Decided {
    match current_session(session, req).await {
        Ok(Some((_, s))) => match req.auth.policy.check(&s.identity) {
            PolicyDecision::Allow => Decided::new(
                Decision::Pass(Some(Granted::Session(s))),
                Outcome::Allowed,
                rule::POLICY,
            ),
            PolicyDecision::Deny(why) => {
                tracing::info!(app = req.app, user = %s.identity.user(), reason = %why, "refused by policy");
                Decided {
                    refused: Some(Granted::Session(s)),
                    ..Decided::new(
                        Decision::Answer(super::page::error(req.settings, Page::FORBIDDEN, json)),
                        Outcome::Forbidden,
                        rule::denied(why),
                    )
                }
            }
        },
        Ok(None) if json => Decided::new(
            Decision::Answer(Reply::page(Page::UNAUTHORIZED, true)),
            Outcome::Unauthorized,
            rule::NO_SESSION,
        ),
        Ok(None) => {
            let rd = super::redirect::safe_redirect(req.return_to, req.host, None, false);
            if !req.auth.spec.skip_provider_button {
                // oauth2-proxy's answer without skip_provider_button: the sign-in page, 403.
                let reply = super::page::sign_in(req, &rd, 403);
                return Decided::new(Decision::Answer(reply), Outcome::Redirect, rule::NO_SESSION);
            }
            let reply = super::login::start_login(session, req, &rd, false).await;
            // The provider being down is an outage, not a sign-in.
            if reply.status() == Page::IDP_UNAVAILABLE.status {
                Decided::new(Decision::Answer(reply), Outcome::IdpUnavailable, rule::PROVIDER)
            } else {
                Decided::new(Decision::Answer(reply), Outcome::Redirect, rule::NO_SESSION)
            }
        }
        Err(page) if page == Page::STORE_UNAVAILABLE => Decided::new(
            Decision::Answer(super::page::error(req.settings, page, json)),
            Outcome::StoreUnavailable,
            rule::STORE,
        ),
        Err(page) => Decided::new(
            Decision::Answer(super::page::error(req.settings, page, json)),
            Outcome::IdpUnavailable,
            rule::PROVIDER,
        ),
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer_token(session: &HttpSession) -> Option<&str> {
    let value = session.get_header(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
