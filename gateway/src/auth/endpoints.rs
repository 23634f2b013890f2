//! The `/oauth2/*` endpoints served on every protected app's host: `start`, `callback`,
//! `sign_in`, `userinfo`, `auth` (for nginx `auth_request` / forward-auth), and the logout
//! endpoints of [`super::logout`]: `sign_out`, `backchannel_logout`, `frontchannel_logout`.

use std::sync::Arc;

use pingora::proxy::Session as HttpSession;

use super::flow::{self, cookie_values, Decision, Request};
use super::limits::Limit;
use super::login::{self, login_aad, login_cookie_name, open_login, LoginState, LOGIN_COOKIE_PATH};
use super::policy::{Decision as PolicyDecision, Identity};
use super::provider::ProviderError;
use super::redirect::safe_redirect_within;
use crate::pages::{wants_json, Page, Reply};
use crate::session::{now, Session, Ticket};

/// The first value of query parameter `name`, decoded.
pub(super) fn query_param(session: &HttpSession, name: &str) -> Option<String> {
    let query = session.req_header().uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The request's `rd` parameter when it may be redirected to, else `/`.
pub(super) fn rd(session: &HttpSession, req: &Request<'_>) -> String {
    let raw = query_param(session, "rd").unwrap_or_else(|| "/".to_owned());
    checked_rd(req, &raw)
}

/// `raw` when it may be redirected to: a local path, the app's host, a host under
/// `cookie.domain` or the app's cookie domain, or one `whitelist_domains` admits; else `/`.
fn checked_rd(req: &Request<'_>, raw: &str) -> String {
    safe_redirect_within(
        raw,
        req.host,
        req.settings.cookie.domain.as_deref(),
        &req.auth.redirect_domains,
        false,
    )
}

/// `/oauth2/start` (and `/oauth2/sign_in` with `skip_provider_button`): rate-limited, then a
/// redirect to the provider.
async fn start(session: &HttpSession, req: &Request<'_>, json: bool) -> Reply {
    if let Some(reply) = flow::rate_limited(req, Limit::Start, json) {
        return reply;
    }
    let rd = rd(session, req);
    let reply = login::start_login(session, req, &rd, json).await;
    if reply.status() == Page::IDP_UNAVAILABLE.status {
        req.state
            .metrics
            .logins
            .with_label_values(&[req.auth.provider.name.as_str(), "idp_unavailable"])
            .inc();
    }
    reply
}

/// True for the paths the gateway answers itself on a host with a policy.
pub fn is_endpoint(path: &str) -> bool {
    matches!(
        path,
        "/oauth2/start"
            | "/oauth2/callback"
            | "/oauth2/sign_in"
            | "/oauth2/sign_out"
            | "/oauth2/backchannel_logout"
            | "/oauth2/frontchannel_logout"
            | "/oauth2/userinfo"
            | "/oauth2/auth"
    )
}

/// Answers a request under `/oauth2/`; `None` when the path is not one of ours (proxied).
pub async fn handle(session: &mut HttpSession, req: &Request<'_>, path: &str) -> Option<Reply> {
    let json = wants_json(session);
    Some(match path {
        "/oauth2/start" => start(session, req, json).await,
        "/oauth2/callback" => match flow::rate_limited(req, Limit::Callback, json) {
            Some(reply) => reply,
            None => callback(session, req).await,
        },
        "/oauth2/sign_in" if req.auth.spec.skip_provider_button => start(session, req, json).await,
        "/oauth2/sign_in" => super::page::sign_in(req, &rd(session, req), 200),
        "/oauth2/sign_out" => super::logout::sign_out(session, req).await,
        "/oauth2/backchannel_logout" => super::logout::backchannel(session, req).await,
        "/oauth2/frontchannel_logout" => super::logout::frontchannel(session, req).await,
        "/oauth2/userinfo" => match flow::current_session(session, req).await {
            Ok(Some((_, s))) => {
                let id = &s.identity;
                Reply::json(
                    200,
                    &serde_json::json!({
                        "user": id.user(),
                        "email": id.email,
                        "preferred_username": id.preferred_username,
                        "groups": id.groups,
                    }),
                )
            }
            Ok(None) => Reply::page(Page::UNAUTHORIZED, true),
            Err(page) => Reply::page(page, true),
        },
        "/oauth2/auth" => forward_auth(session, req).await,
        _ => return None,
    })
}

async fn callback(session: &HttpSession, req: &Request<'_>) -> Reply {
    let metrics = &req.state.metrics;
    let provider = &req.auth.provider;
    let fail = |result: &str| {
        metrics
            .logins
            .with_label_values(&[provider.name.as_str(), result])
            .inc();
        super::page::error(req.settings, Page::LOGIN_FAILED, false)
    };
    if let Some(error) = query_param(session, "error") {
        tracing::info!(provider = %provider.name, error = %error.chars().take(64).collect::<String>(), "provider returned an error to the callback");
        return fail("provider_error");
    }
    let (Some(state), Some(code)) = (query_param(session, "state"), query_param(session, "code")) else {
        return fail("bad_request");
    };
    let cookie_name = login_cookie_name(req.settings, &state);
    let keyring = &req.settings.cookie.keyring;
    let aad = login_aad(&provider.name, req.origin);
    let login: Option<LoginState> = cookie_values(session, &cookie_name)
        .into_iter()
        .filter_map(|v| open_login(keyring, &aad, v))
        .find(|l| l.state == state && l.exp > now());
    let Some(login) = login else {
        return fail("bad_state");
    };
    let clear_login = req
        .settings
        .cookie
        .set_login_cookie(&cookie_name, "", LOGIN_COOKIE_PATH, 0);
    let redirect_uri = format!("{}/oauth2/callback", req.origin);
    let signed_in = match provider
        .sign_in(&code, &redirect_uri, &login.verifier, &login.nonce)
        .await
    {
        Ok(s) => s,
        Err(ProviderError::Refused(e)) => {
            tracing::info!(provider = %provider.name, error = %e, "login refused");
            return fail("refused").header("set-cookie", clear_login);
        }
        Err(ProviderError::Unavailable(e)) => {
            tracing::warn!(provider = %provider.name, error = %e, "provider unavailable during login");
            metrics
                .logins
                .with_label_values(&[provider.name.as_str(), "idp_unavailable"])
                .inc();
            return super::page::error(req.settings, Page::IDP_UNAVAILABLE, false);
        }
    };
    let t = now();
    let expire = session_lifetime(req, &signed_in.identity);
    let new_session = Session {
        provider: provider.name.as_str().into(),
        identity: signed_in.identity,
        access_token: signed_in.access_token,
        access_expires_at: signed_in.access_expires_at,
        refresh_token: signed_in.refresh_token,
        id_token: signed_in.id_token,
        sid: signed_in.sid,
        created_at: t,
        refreshed_at: t,
        expires_at: t + expire,
        version: 0,
    };
    let Ok(ticket) = Ticket::new() else {
        return super::page::error(req.settings, Page::INTERNAL, false);
    };
    if let Err(e) = req.state.sessions.save(&ticket, Arc::new(new_session)).await {
        tracing::warn!(error = %e, "cannot store a new session");
        metrics
            .logins
            .with_label_values(&[provider.name.as_str(), "store_unavailable"])
            .inc();
        return super::page::error(req.settings, Page::STORE_UNAVAILABLE, false);
    }
    let Ok(value) = ticket.to_cookie(keyring, &req.auth.cookie_name) else {
        return super::page::error(req.settings, Page::INTERNAL, false);
    };
    metrics
        .logins
        .with_label_values(&[provider.name.as_str(), "success"])
        .inc();
    let rd = checked_rd(req, &login.rd);
    Reply::redirect(rd)
        .header(
            "set-cookie",
            req.settings.cookie.set_cookie(
                &req.auth.cookie_name,
                &value,
                req.auth.cookie_domain.as_deref(),
                "/",
                expire,
            ),
        )
        .header("set-cookie", clear_login)
}

/// How long a new session lives: `cookie.expire`, or [`UNADMITTED_SESSION_TTL`] when no app
/// of the provider admits the user (a session that opens nothing must not linger for days).
/// The snapshot is loaded here once more: a callback is rare, and any snapshot will do.
fn session_lifetime(req: &Request<'_>, identity: &Identity) -> u64 {
    let provider = &req.auth.provider;
    let snapshot = req.state.snapshot();
    let admitted = snapshot
        .routes
        .values()
        .flat_map(|app| app.all_routes())
        .any(|(_, route)| {
            route
                .auth
                .as_ref()
                .is_some_and(|a| a.provider.name == provider.name && a.policy.check(identity) == PolicyDecision::Allow)
        });
    if admitted {
        req.settings.cookie.expire.as_secs()
    } else {
        tracing::info!(provider = %provider.name, user = %identity.user(), "no app admits this user; short session");
        UNADMITTED_SESSION_TTL.min(req.settings.cookie.expire.as_secs())
    }
}

/// The lifetime of a session that no app's policy admits at sign-in.
pub const UNADMITTED_SESSION_TTL: u64 = 300;

async fn forward_auth(session: &HttpSession, req: &Request<'_>) -> Reply {
    match flow::decide(session, req, true).await {
        Ok(flow::Decided {
            decision: Decision::Pass(Some(granted)),
            ..
        }) => {
            let reply = Reply::new(202, "text/plain", "");
            if req.auth.spec.set_xauthrequest {
                x_auth_request(reply, req, &granted)
            } else {
                reply
            }
        }
        Ok(flow::Decided {
            decision: Decision::Pass(None),
            ..
        }) => Reply::new(202, "text/plain", ""),
        Ok(flow::Decided {
            decision: Decision::Answer(reply),
            ..
        }) => reply,
        Err(_) => Reply::page(Page::INTERNAL, true),
    }
}

/// The `X-Auth-Request-*` response headers of `set_xauthrequest` (the access token too with
/// `pass_access_token`), as oauth2-proxy sets them for nginx `auth_request_set`. Values that
/// are not valid header values are left out.
fn x_auth_request(mut reply: Reply, req: &Request<'_>, granted: &flow::Granted) -> Reply {
    let id = granted.identity();
    let groups = id.groups.join(",");
    let token = granted.access_token().filter(|_| req.auth.pass_access_token);
    for (name, value) in [
        ("x-auth-request-user", Some(id.user())),
        ("x-auth-request-email", id.email.as_deref()),
        ("x-auth-request-preferred-username", id.preferred_username.as_deref()),
        ("x-auth-request-groups", Some(groups.as_str()).filter(|g| !g.is_empty())),
        ("x-auth-request-access-token", token),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty() && http::HeaderValue::from_str(v).is_ok()) {
            reply = reply.header(name, v.to_owned());
        }
    }
    reply
}
