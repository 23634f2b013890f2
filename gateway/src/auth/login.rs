//! Logins in flight: the sealed login cookie set by `/oauth2/start` (or a protected page) and
//! read back by the callback.
//!
//! Bounded by construction: the stored `rd` is at most [`MAX_STORED_RD`] bytes (a longer one
//! becomes `/`, so the cookie stays under the 4 KiB browsers accept and the login completes),
//! and a browser holds at most [`MAX_PENDING_LOGINS`] login cookies: starting one more expires
//! the oldest. Login cookies have `Path=/` so every login start sees the ones pending (they
//! are stripped from what upstreams receive, like every gateway cookie).

use openidconnect::PkceCodeChallenge;
use pingora::proxy::Session as HttpSession;
use serde::{Deserialize, Serialize};

use super::flow::Request;
use super::AuthSettings;
use crate::pages::{Page, Reply};
use crate::session::now;
use crate::session::seal::{random_token, Keyring};

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
/// The longest `rd` kept in a login cookie; a longer one is replaced by `/`.
pub const MAX_STORED_RD: usize = 2048;
/// The most login cookies a browser holds for one host; the oldest is replaced.
pub const MAX_PENDING_LOGINS: usize = 4;
/// The `Path` of login cookies.
pub const LOGIN_COOKIE_PATH: &str = "/";

/// The name of the login cookie for `state`: one per login in flight, so two tabs don't clash.
pub fn login_cookie_name(settings: &AuthSettings, state: &str) -> String {
    let tag: String = state.chars().take(8).collect();
    format!("{}_login_{tag}", settings.cookie.name)
}

/// Additional data bound into a login cookie: the provider and the origin it was started on.
pub fn login_aad(provider: &str, origin: &str) -> Vec<u8> {
    format!("authgate/login/v1|{provider}|{origin}").into_bytes()
}

/// The `rd` a login cookie stores: `rd`, or `/` when it is longer than [`MAX_STORED_RD`].
pub fn stored_rd(rd: &str) -> &str {
    if rd.len() <= MAX_STORED_RD {
        rd
    } else {
        "/"
    }
}

/// Opens a login cookie value.
pub fn open_login(keyring: &Keyring, aad: &[u8], value: &str) -> Option<LoginState> {
    keyring
        .open(aad, value)
        .and_then(|plain| serde_json::from_slice::<LoginState>(&plain).ok())
}

/// `Set-Cookie` values expiring the oldest pending login cookies, so that with the one about to
/// be set at most [`MAX_PENDING_LOGINS`] remain. Cookies that do not open count as oldest.
fn evict_pending(session: &HttpSession, req: &Request<'_>) -> Vec<String> {
    let prefix = format!("{}_login_", req.settings.cookie.name);
    let aad = login_aad(&req.auth.provider.name, req.origin);
    let keyring = &req.settings.cookie.keyring;
    let mut pending: Vec<(u64, &str)> = super::flow::request_cookies(session)
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(name, value)| (open_login(keyring, &aad, value).map_or(0, |l| l.exp), name))
        .collect();
    let excess = (pending.len() + 1).saturating_sub(MAX_PENDING_LOGINS);
    if excess == 0 {
        return Vec::new();
    }
    pending.sort_unstable();
    pending
        .iter()
        .take(excess)
        .map(|(_, name)| req.settings.cookie.set_login_cookie(name, "", LOGIN_COOKIE_PATH, 0))
        .collect()
}

/// The sealed login cookie value for a new login.
fn seal_login(req: &Request<'_>, login: &LoginState) -> Option<String> {
    let plain = serde_json::to_vec(login).ok()?;
    req.settings
        .cookie
        .keyring
        .seal(&login_aad(&req.auth.provider.name, req.origin), &plain)
        .ok()
}

/// A 302 to the provider with a fresh login cookie; `rd` must already be validated.
pub async fn start_login(session: &HttpSession, req: &Request<'_>, rd: &str, json: bool) -> Reply {
    let provider = &req.auth.provider;
    let (state, nonce) = match (random_token(24), random_token(24)) {
        (Ok(s), Ok(n)) => (s, n),
        _ => return super::page::error(req.settings, Page::INTERNAL, json),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let login = LoginState {
        state: state.clone(),
        nonce: nonce.clone(),
        verifier: verifier.secret().clone(),
        rd: stored_rd(rd).to_owned(),
        exp: now() + LOGIN_TTL,
    };
    let Some(sealed) = seal_login(req, &login) else {
        return super::page::error(req.settings, Page::INTERNAL, json);
    };
    let redirect_uri = format!("{}/oauth2/callback", req.origin);
    match provider.authorize_url(&redirect_uri, &state, &nonce, challenge).await {
        Ok(url) => {
            let name = login_cookie_name(req.settings, &state);
            let mut reply = Reply::redirect(url);
            for expired in evict_pending(session, req) {
                reply = reply.header("set-cookie", expired);
            }
            reply.header(
                "set-cookie",
                req.settings
                    .cookie
                    .set_login_cookie(&name, &sealed, LOGIN_COOKIE_PATH, LOGIN_TTL),
            )
        }
        Err(e) => {
            tracing::warn!(provider = %provider.name, error = %e, "cannot start a login");
            super::page::error(req.settings, Page::IDP_UNAVAILABLE, json)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_rd_is_stored_as_the_root() {
        let deep = format!("/{}", "a".repeat(MAX_STORED_RD));
        assert_eq!(stored_rd(&deep), "/");
        assert_eq!(stored_rd("/x?y=1"), "/x?y=1");
        let edge = format!("/{}", "a".repeat(MAX_STORED_RD - 1));
        assert_eq!(stored_rd(&edge), edge);
    }
}
