//! The per-request decision for an app with an `auth` block: pass (with an identity to
//! inject), or answer (login redirect, 401, 403, 503) — never a 500 and never a login loop.

use std::sync::Arc;

use openidconnect::PkceCodeChallenge;
use pingora::proxy::Session as HttpSession;
use pingora::Result;
use serde::{Deserialize, Serialize};

use super::policy::{Decision as PolicyDecision, Identity};
use super::provider::ProviderError;
use super::{AppAuth, AuthSettings};
use crate::pages::{wants_json, Page, Reply};
use crate::session::seal::random_token;
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
    /// The app's name (metrics).
    pub app: &'a str,
    /// `https://host[:port]` the browser used.
    pub origin: &'a str,
    /// The app's normalised host (redirect checks).
    pub host: &'a str,
    /// The canonical path and query of the request: where a login started here returns.
    pub return_to: &'a str,
}

/// The login state kept in a short-lived sealed cookie between `/oauth2/start` and the callback.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginState {
    /// Anti-CSRF state echoed by the provider.
    pub state: String,
    /// OIDC nonce, checked in the ID token.
    pub nonce: String,
    /// PKCE verifier.
    pub verifier: String,
    /// Where to go after login (already validated).
    pub rd: String,
    /// Expiry (Unix seconds).
    pub exp: u64,
}

/// Login cookies live ten minutes.
pub const LOGIN_TTL: u64 = 600;

/// The name of the login cookie for `state`: one per login in flight, so two tabs don't clash.
pub fn login_cookie_name(settings: &AuthSettings, state: &str) -> String {
    let tag: String = state.chars().take(8).collect();
    format!("{}_login_{tag}", settings.cookie.name)
}

/// Additional data bound into a login cookie: the provider and the origin it was started on.
pub fn login_aad(provider: &str, origin: &str) -> Vec<u8> {
    format!("authgate/login/v1|{provider}|{origin}").into_bytes()
}

/// A `Set-Cookie` value with the gateway's attributes.
pub fn set_cookie(name: &str, value: &str, domain: Option<&str>, path: &str, max_age: u64) -> String {
    let domain = domain.map(|d| format!("; Domain={d}")).unwrap_or_default();
    format!("{name}={value}; Path={path}; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax{domain}")
}

/// Every value of cookie `name` in the request (a host-only and a domain cookie may both be sent).
pub fn cookie_values<'s>(session: &'s HttpSession, name: &str) -> Vec<&'s str> {
    session
        .req_header()
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .collect()
}

/// The ticket of the request's session cookie, if one opens.
pub fn ticket(session: &HttpSession, req: &Request<'_>) -> Option<Ticket> {
    let keyring = &req.settings.cookie.keyring;
    cookie_values(session, &req.auth.cookie_name)
        .into_iter()
        .find_map(|v| Ticket::from_cookie(keyring, &req.auth.cookie_name, v))
}

/// A 302 to the provider with a fresh login cookie; `rd` must already be validated.
pub async fn start_login(req: &Request<'_>, rd: &str, json: bool) -> Reply {
    let settings = req.settings;
    let provider = &req.auth.provider;
    let (state, nonce) = match (random_token(24), random_token(24)) {
        (Ok(s), Ok(n)) => (s, n),
        _ => return Reply::page(Page::INTERNAL, json),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let login = LoginState {
        state: state.clone(),
        nonce: nonce.clone(),
        verifier: verifier.secret().clone(),
        rd: rd.to_owned(),
        exp: now() + LOGIN_TTL,
    };
    let sealed = serde_json::to_vec(&login).ok().and_then(|plain| {
        settings
            .cookie
            .keyring
            .seal(&login_aad(&provider.name, req.origin), &plain)
            .ok()
    });
    let Some(sealed) = sealed else {
        return Reply::page(Page::INTERNAL, json);
    };
    let redirect_uri = format!("{}/oauth2/callback", req.origin);
    match provider.authorize_url(&redirect_uri, &state, &nonce, challenge).await {
        Ok(url) => {
            let cookie = set_cookie(
                &login_cookie_name(settings, &state),
                &sealed,
                None,
                "/oauth2/callback",
                LOGIN_TTL,
            );
            Reply::redirect(url).header("set-cookie", cookie)
        }
        Err(e) => {
            tracing::warn!(provider = %provider.name, error = %e, "cannot start a login");
            Reply::page(Page::IDP_UNAVAILABLE, json)
        }
    }
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
    if current.is_expired(t) || current.provider != req.auth.provider.name {
        return Ok(None);
    }
    if !current.needs_refresh(t, req.settings.cookie.refresh.as_secs()) {
        return Ok(Some((ticket, current)));
    }
    super::refresh::refresh(req, ticket, current).await
}

/// Decides what to do with a request to a protected (not skipped) route. `api` asks for API
/// answers (401 rather than a login redirect): an `api_routes` match, or `/oauth2/auth`.
pub async fn decide(session: &HttpSession, req: &Request<'_>, api: bool) -> Result<Decision> {
    let auth = req.auth;
    let json = api || wants_json(session);
    let metrics = &req.state.metrics;
    let count = |outcome: &str| metrics.auth_decisions.with_label_values(&[req.app, outcome]).inc();

    if auth.skip_jwt_bearer_tokens {
        if let Some(token) = bearer_token(session) {
            return Ok(match auth.provider.verify_bearer(token).await {
                Ok(identity) => match auth.policy.check(&identity) {
                    PolicyDecision::Allow => {
                        count("bearer");
                        Decision::Pass(Some(Granted::Bearer {
                            identity,
                            token: token.to_owned(),
                        }))
                    }
                    PolicyDecision::Deny(why) => {
                        count("forbidden");
                        tracing::info!(app = req.app, reason = %why, "bearer token refused by policy");
                        Decision::Answer(Reply::page(Page::FORBIDDEN, true))
                    }
                },
                Err(ProviderError::Unavailable(e)) => {
                    count("idp_unavailable");
                    tracing::warn!(error = %e, "cannot verify a bearer token");
                    Decision::Answer(Reply::page(Page::IDP_UNAVAILABLE, true))
                }
                Err(ProviderError::Refused(e)) => {
                    count("unauthorized");
                    tracing::debug!(error = %e, "bearer token rejected");
                    Decision::Answer(
                        Reply::page(Page::UNAUTHORIZED, true)
                            .header("www-authenticate", "Bearer error=\"invalid_token\""),
                    )
                }
            });
        }
    }

    match current_session(session, req).await {
        Ok(Some((_, s))) => Ok(match auth.policy.check(&s.identity) {
            PolicyDecision::Allow => {
                count("allowed");
                Decision::Pass(Some(Granted::Session(s)))
            }
            PolicyDecision::Deny(why) => {
                count("forbidden");
                tracing::info!(app = req.app, user = %s.identity.user(), reason = %why, "refused by policy");
                Decision::Answer(Reply::page(Page::FORBIDDEN, json))
            }
        }),
        Ok(None) if json => {
            count("unauthorized");
            Ok(Decision::Answer(Reply::page(Page::UNAUTHORIZED, true)))
        }
        Ok(None) => {
            count("redirect");
            let rd = super::redirect::safe_redirect(req.return_to, req.host, None, false);
            Ok(Decision::Answer(start_login(req, &rd, false).await))
        }
        Err(page) => {
            count(if page == Page::STORE_UNAVAILABLE {
                "store_unavailable"
            } else {
                "idp_unavailable"
            });
            Ok(Decision::Answer(Reply::page(page, json)))
        }
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
