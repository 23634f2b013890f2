//! Ending sessions: `/oauth2/sign_out` (this browser, or `?everywhere=1` every session of the
//! user), and the provider telling the gateway that a session ended there —
//! `/oauth2/backchannel_logout` (OpenID Connect Back-Channel Logout 1.0, a signed logout token
//! POSTed server to server) and `/oauth2/frontchannel_logout` (Front-Channel Logout 1.0, the
//! provider's page loading the URL with `iss` and `sid` in the browser).
//!
//! Every path ends sessions through [`crate::session::Store::revoke_user`], which reaches every
//! replica (the store's invalidation channel) within a second.

use pingora::proxy::Session as HttpSession;

use super::endpoints::{query_param, rd};
use super::flow::{self, Request};
use super::limits::Limit;
use super::provider::ProviderError;
use crate::pages::{wants_json, Page, Reply};
use crate::session::{Session, UserKey};

/// The largest back-channel logout request body read (a logout token is a few hundred bytes).
const MAX_LOGOUT_BODY: usize = 16 * 1024;

/// A larger body is still read (and dropped) up to this size before the 413, so the client
/// sees the answer; beyond it the connection is closed unread.
const MAX_DRAINED_BODY: usize = 1024 * 1024;

/// Counts one logout outcome in `authgate_logouts_total{provider,channel,result}`.
fn count(req: &Request<'_>, channel: &str, result: &str) {
    req.state
        .metrics
        .logouts
        .with_label_values(&[req.auth.provider.name.as_str(), channel, result])
        .inc();
}

/// `/oauth2/sign_out`: ends this browser's session (every session of the user with
/// `?everywhere=1`), clears the cookie, and sends the browser to the provider's end-session
/// endpoint when configured, else to `rd`.
pub async fn sign_out(session: &HttpSession, req: &Request<'_>) -> Reply {
    let rd = rd(session, req);
    let everywhere = query_param(session, "everywhere").is_some_and(|v| v == "1" || v == "true");
    let mut id_token = None;
    if let Some(ticket) = flow::ticket(session, req) {
        if let Ok(Some(s)) = req.state.sessions.load(&ticket).await {
            id_token = s.id_token.clone();
            if everywhere {
                if let Some(reply) = sign_out_everywhere(session, req, &s).await {
                    return reply;
                }
            }
        }
        if let Err(e) = req.state.sessions.delete(&ticket).await {
            tracing::warn!(error = %e, "cannot delete a session at sign-out");
            count(req, "sign_out", "store_unavailable");
            return super::page::error(req.settings, Page::STORE_UNAVAILABLE, wants_json(session));
        }
        count(req, "sign_out", "ok");
    }
    let name = &req.auth.cookie_name;
    let cookie = &req.settings.cookie;
    let clear_domain = cookie.set_cookie(name, "", req.auth.cookie_domain.as_deref(), "/", 0);
    let clear_host = cookie.set_cookie(name, "", None, "/", 0);
    let absolute = if rd.starts_with('/') {
        format!("{}{rd}", req.origin)
    } else {
        rd.clone()
    };
    let target = req
        .auth
        .provider
        .end_session_url(id_token.as_deref(), &absolute)
        .await
        .unwrap_or(rd);
    Reply::redirect(target)
        .header("set-cookie", clear_domain)
        .header("set-cookie", clear_host)
}

/// Ends every session of the signed-in user, on every replica (`?everywhere=1`); `Some` with
/// an error page when the store cannot.
async fn sign_out_everywhere(session: &HttpSession, req: &Request<'_>, s: &Session) -> Option<Reply> {
    let user = UserKey::Subject {
        provider: s.provider.to_string(),
        subject: s.identity.subject.to_string(),
    };
    match req.state.sessions.revoke_user(&user).await {
        Ok(n) => {
            tracing::info!(provider = %s.provider, user = %s.identity.user(), sessions = n, "signed out everywhere");
            count(req, "everywhere", "ok");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot sign a user out everywhere");
            count(req, "everywhere", "store_unavailable");
            Some(super::page::error(
                req.settings,
                Page::STORE_UNAVAILABLE,
                wants_json(session),
            ))
        }
    }
}

/// A back-channel logout answer: 200 empty, or an OAuth-style JSON error (§2.8).
fn backchannel_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        &serde_json::json!({ "error": error, "error_description": description }),
    )
}

/// `/oauth2/backchannel_logout`: the provider POSTs `logout_token=<JWT>`; once verified
/// ([`super::provider::Provider::verify_logout_token`]) and never seen before (its `jti`, on
/// every replica), every session of its `sid` at this provider ends — or, when it names only a
/// `sub`, every session of that user at this provider.
pub async fn backchannel(session: &mut HttpSession, req: &Request<'_>) -> Reply {
    let provider = &req.auth.provider;
    if session.req_header().method != http::Method::POST {
        return backchannel_error(405, "invalid_request", "POST a logout_token").header("allow", "POST");
    }
    // Tokens that fail verification count towards the client's `bearer_failures` limit: each
    // costs a signature check.
    let limits = &req.settings.rate_limits;
    if let Some(retry) = req
        .state
        .rate_limiter
        .exceeded(limits, Limit::BearerFailure, req.client)
    {
        count(req, "backchannel", "rate_limited");
        return flow::too_many(req, Limit::BearerFailure, retry, true);
    }
    let token = match logout_token_of(session).await {
        Ok(token) => token,
        Err(reply) => {
            count(req, "backchannel", "invalid");
            return reply;
        }
    };
    let claims = match provider.verify_logout_token(&token).await {
        Ok(claims) => claims,
        Err(ProviderError::Refused(e)) => {
            tracing::info!(provider = %provider.name, error = %e, "back-channel logout refused");
            let _ = req.state.rate_limiter.hit(limits, Limit::BearerFailure, req.client);
            count(req, "backchannel", "invalid");
            return backchannel_error(400, "invalid_request", &e);
        }
        Err(ProviderError::Unavailable(e)) => {
            tracing::warn!(provider = %provider.name, error = %e, "cannot verify a logout token: provider unavailable");
            count(req, "backchannel", "idp_unavailable");
            return backchannel_error(503, "temporarily_unavailable", "cannot reach the provider's keys");
        }
    };
    let user = match (&claims.sid, &claims.sub) {
        (Some(sid), _) => UserKey::ProviderSession {
            provider: provider.name.clone(),
            sid: sid.clone(),
        },
        (None, Some(sub)) => UserKey::Subject {
            provider: provider.name.clone(),
            subject: sub.clone(),
        },
        (None, None) => return backchannel_error(400, "invalid_request", "names neither sub nor sid"),
    };
    let once = format!("logout\0{}\0{}", provider.name, claims.jti);
    match req.state.sessions.revoke_user_once(&user, &once).await {
        Ok(Some(n)) => {
            tracing::info!(provider = %provider.name, sessions = n, by_sid = claims.sid.is_some(), "back-channel logout");
            count(req, "backchannel", "ok");
            Reply::new(200, "text/plain", "")
        }
        Ok(None) => {
            tracing::info!(provider = %provider.name, "back-channel logout token replayed");
            count(req, "backchannel", "replayed");
            backchannel_error(400, "invalid_request", "logout token already used (jti)")
        }
        Err(e) => {
            tracing::warn!(provider = %provider.name, error = %e, "cannot end sessions at back-channel logout");
            count(req, "backchannel", "store_unavailable");
            backchannel_error(503, "temporarily_unavailable", "session store unavailable")
        }
    }
}

/// The `logout_token` of a form-encoded POST body, or the error to answer.
async fn logout_token_of(session: &mut HttpSession) -> Result<String, Reply> {
    let form = session
        .get_header(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form {
        return Err(backchannel_error(
            415,
            "invalid_request",
            "send application/x-www-form-urlencoded",
        ));
    }
    let (mut body, mut seen) = (Vec::new(), 0usize);
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                seen += chunk.len();
                if seen <= MAX_LOGOUT_BODY {
                    body.extend_from_slice(&chunk);
                } else if seen > MAX_DRAINED_BODY {
                    // Not read to its end: close, the client may get a reset.
                    return Err(backchannel_error(413, "invalid_request", "request body too large").close());
                }
            }
            Ok(None) => break,
            Err(_) => return Err(backchannel_error(400, "invalid_request", "unreadable request body").close()),
        }
    }
    if seen > MAX_LOGOUT_BODY {
        // Read to its end (so the client reads this answer rather than a reset), then closed.
        return Err(backchannel_error(413, "invalid_request", "request body too large").close());
    }
    url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| backchannel_error(400, "invalid_request", "no logout_token"))
}

/// `/oauth2/frontchannel_logout?iss=<issuer>&sid=<sid>`: the provider's logout page loads this
/// URL (in an iframe) for each relying party; every session of that `sid` at this provider ends.
/// `iss` must be the provider's issuer. Answers an empty page the provider may frame; 404 unless
/// the provider has `frontchannel_logout: true`.
pub async fn frontchannel(session: &HttpSession, req: &Request<'_>) -> Reply {
    let provider = &req.auth.provider;
    let Some(own_issuer) = provider.frontchannel_issuer() else {
        return super::page::error(req.settings, Page::NOT_FOUND, wants_json(session));
    };
    let (Some(iss), Some(sid)) = (query_param(session, "iss"), query_param(session, "sid")) else {
        count(req, "frontchannel", "invalid");
        return super::page::error(req.settings, Page::BAD_REQUEST, wants_json(session));
    };
    if !super::extra_issuers::same_issuer(&iss, own_issuer) || sid.is_empty() {
        count(req, "frontchannel", "invalid");
        return super::page::error(req.settings, Page::BAD_REQUEST, wants_json(session));
    }
    let user = UserKey::ProviderSession {
        provider: provider.name.clone(),
        sid,
    };
    match req.state.sessions.revoke_user(&user).await {
        Ok(n) => {
            tracing::info!(provider = %provider.name, sessions = n, "front-channel logout");
            count(req, "frontchannel", "ok");
            Reply::new(
                200,
                "text/html; charset=utf-8",
                "<!DOCTYPE html><title>Signed out</title>\n",
            )
        }
        Err(e) => {
            tracing::warn!(provider = %provider.name, error = %e, "cannot end sessions at front-channel logout");
            count(req, "frontchannel", "store_unavailable");
            super::page::error(req.settings, Page::STORE_UNAVAILABLE, wants_json(session))
        }
    }
}
