//! The `/oauth2/*` endpoints served on every protected app's host: `start`, `callback`,
//! `sign_in`, `sign_out`, `userinfo`, and `auth` (for nginx `auth_request` / forward-auth).

use std::sync::Arc;

use pingora::proxy::Session as HttpSession;

use super::flow::{self, cookie_values, set_cookie, Decision, Request};
use super::limits::Limit;
use super::login::{self, login_aad, login_cookie_name, open_login, LoginState, LOGIN_COOKIE_PATH};
use super::policy::{Decision as PolicyDecision, Identity};
use super::provider::ProviderError;
use super::redirect::safe_redirect;
use crate::pages::{wants_json, Page, Reply};
use crate::session::{now, Session, Ticket};

fn query_param(session: &HttpSession, name: &str) -> Option<String> {
    let query = session.req_header().uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn rd(session: &HttpSession, req: &Request<'_>) -> String {
    let raw = query_param(session, "rd").unwrap_or_else(|| "/".to_owned());
    safe_redirect(&raw, req.host, req.settings.cookie.domain.as_deref(), false)
}

/// True for the paths the gateway answers itself on a host with a policy.
pub fn is_endpoint(path: &str) -> bool {
    matches!(
        path,
        "/oauth2/start"
            | "/oauth2/callback"
            | "/oauth2/sign_in"
            | "/oauth2/sign_out"
            | "/oauth2/userinfo"
            | "/oauth2/auth"
    )
}

/// Answers a request under `/oauth2/`; `None` when the path is not one of ours (proxied).
pub async fn handle(session: &HttpSession, req: &Request<'_>, path: &str) -> Option<Reply> {
    let json = wants_json(session);
    Some(match path {
        "/oauth2/start" => {
            if let Some(reply) = flow::rate_limited(req, Limit::Start, json) {
                return Some(reply);
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
        "/oauth2/callback" => match flow::rate_limited(req, Limit::Callback, json) {
            Some(reply) => reply,
            None => callback(session, req).await,
        },
        "/oauth2/sign_in" => sign_in_page(session, req),
        "/oauth2/sign_out" => sign_out(session, req).await,
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
        Reply::page(Page::LOGIN_FAILED, false)
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
    let clear_login = set_cookie(&cookie_name, "", None, LOGIN_COOKIE_PATH, 0);
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
            return Reply::page(Page::IDP_UNAVAILABLE, false);
        }
    };
    let t = now();
    let expire = session_lifetime(req, &signed_in.identity);
    let new_session = Session {
        provider: provider.name.clone(),
        identity: signed_in.identity,
        access_token: signed_in.access_token,
        access_expires_at: signed_in.access_expires_at,
        refresh_token: signed_in.refresh_token,
        id_token: signed_in.id_token,
        created_at: t,
        refreshed_at: t,
        expires_at: t + expire,
        version: 0,
    };
    let Ok(ticket) = Ticket::new() else {
        return Reply::page(Page::INTERNAL, false);
    };
    if let Err(e) = req.state.sessions.save(&ticket, Arc::new(new_session)).await {
        tracing::warn!(error = %e, "cannot store a new session");
        metrics
            .logins
            .with_label_values(&[provider.name.as_str(), "store_unavailable"])
            .inc();
        return Reply::page(Page::STORE_UNAVAILABLE, false);
    }
    let Ok(value) = ticket.to_cookie(keyring, &req.auth.cookie_name) else {
        return Reply::page(Page::INTERNAL, false);
    };
    metrics
        .logins
        .with_label_values(&[provider.name.as_str(), "success"])
        .inc();
    let rd = safe_redirect(&login.rd, req.host, req.settings.cookie.domain.as_deref(), false);
    Reply::redirect(rd)
        .header(
            "set-cookie",
            set_cookie(
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

async fn sign_out(session: &HttpSession, req: &Request<'_>) -> Reply {
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
            return Reply::page(Page::STORE_UNAVAILABLE, wants_json(session));
        }
    }
    let name = &req.auth.cookie_name;
    let clear_domain = set_cookie(name, "", req.auth.cookie_domain.as_deref(), "/", 0);
    let clear_host = set_cookie(name, "", None, "/", 0);
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
    let user = crate::session::UserKey::Subject {
        provider: s.provider.clone(),
        subject: s.identity.subject.clone(),
    };
    match req.state.sessions.revoke_user(&user).await {
        Ok(n) => {
            tracing::info!(provider = %s.provider, user = %s.identity.user(), sessions = n, "signed out everywhere");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot sign a user out everywhere");
            Some(Reply::page(Page::STORE_UNAVAILABLE, wants_json(session)))
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn sign_in_page(session: &HttpSession, req: &Request<'_>) -> Reply {
    let rd = rd(session, req);
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", &rd)
        .finish();
    let start = format!("/oauth2/start?{query}");
    let provider = html_escape(&req.auth.provider.name);
    let start = html_escape(&start);
    let body = match &req.settings.sign_in_template {
        Some(t) => t.replace("{{provider}}", &provider).replace("{{start_url}}", &start),
        None => format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:6rem auto;text-align:center;color:#222}}\
             a.button{{display:inline-block;padding:.8rem 1.6rem;border-radius:.4rem;background:#2457d6;color:#fff;text-decoration:none}}\
             small{{color:#777}}</style></head><body><h1>Sign in</h1>\
             <p><a class=\"button\" href=\"{start}\">Sign in with {provider}</a></p><small>authgate</small></body></html>"
        ),
    };
    Reply::new(200, "text/html; charset=utf-8", body)
}

async fn forward_auth(session: &HttpSession, req: &Request<'_>) -> Reply {
    match flow::decide(session, req, true).await {
        Ok(flow::Decided {
            decision: Decision::Pass(Some(granted)),
            ..
        }) => {
            let id = granted.identity();
            let mut reply = Reply::new(202, "text/plain", "").header("x-auth-request-user", id.user().to_owned());
            if let Some(e) = &id.email {
                reply = reply.header("x-auth-request-email", e.clone());
            }
            if let Some(u) = &id.preferred_username {
                reply = reply.header("x-auth-request-preferred-username", u.clone());
            }
            if !id.groups.is_empty() {
                reply = reply.header("x-auth-request-groups", id.groups.join(","));
            }
            reply
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
