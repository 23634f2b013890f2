//! Refreshing a session's tokens: once per session across all replicas, never undoing a
//! sign-out, and never failing a request whose access token is still valid.
//!
//! - In this process, concurrent requests of one session wait on an RAII lock
//!   ([`crate::session::locks`]); across replicas, a Redis lock owned by a random token.
//! - Whoever gets both locks reads the record past the cache; when it was refreshed
//!   meanwhile (its version moved) that result is served, otherwise the provider is asked and
//!   the record is replaced by compare-and-set on its version: a sign-out (the record is gone)
//!   or a newer version wins, and the refreshed tokens are dropped.
//! - When the store or the provider cannot complete the refresh and the access token is still
//!   valid, the current session is served (logged, counted in
//!   `authgate_session_refreshes_total`), and the session is not tried again in this process
//!   for [`crate::session::locks::RETRY_AFTER`]. Only an expired token that cannot be
//!   refreshed answers 503.

use std::sync::Arc;
use std::time::Duration;

use super::flow::Request;
use super::provider::{ProviderError, SignIn};
use crate::pages::Page;
use crate::session::{now, Session, Ticket};

/// A loaded session, or `None` when signed out.
pub type Loaded = Option<(Ticket, Arc<Session>)>;

/// How long the cross-replica refresh lock lives if its owner never releases it.
const LOCK_TTL: Duration = Duration::from_secs(10);

/// What kept a refresh from completing.
#[derive(Debug, Clone, Copy)]
enum Blocked {
    Store,
    Provider,
}

impl Blocked {
    fn kept_label(self) -> &'static str {
        match self {
            Blocked::Store => "store_unavailable",
            Blocked::Provider => "unavailable",
        }
    }

    fn page(self) -> Page {
        match self {
            Blocked::Store => Page::STORE_UNAVAILABLE,
            Blocked::Provider => Page::IDP_UNAVAILABLE,
        }
    }
}

fn count(req: &Request<'_>, result: &str) {
    req.state
        .metrics
        .session_refreshes
        .with_label_values(&[req.auth.provider.name.as_str(), result])
        .inc();
}

/// A refresh that cannot complete: the current session while its access token is valid,
/// else 503.
fn keep(
    req: &Request<'_>,
    ticket: &Ticket,
    current: Arc<Session>,
    blocked: Blocked,
    reason: &str,
) -> Result<Loaded, Page> {
    req.state.refresh_locks.defer(&ticket.id);
    let provider = req.auth.provider.name.as_str();
    if current.token_valid(now()) {
        tracing::warn!(
            provider,
            reason,
            "refresh could not complete; serving the current session"
        );
        count(req, blocked.kept_label());
        Ok(Some((ticket.clone(), current)))
    } else {
        tracing::warn!(
            provider,
            reason,
            "refresh could not complete and the access token has expired"
        );
        count(req, "expired_unavailable");
        Err(blocked.page())
    }
}

/// Refreshes the session of `ticket`, which `stale` (as loaded, maybe from a cache) says is due.
pub async fn refresh(req: &Request<'_>, ticket: Ticket, stale: Arc<Session>) -> Result<Loaded, Page> {
    let state = req.state;
    if state.refresh_locks.deferred(&ticket.id) && stale.token_valid(now()) {
        return Ok(Some((ticket, stale)));
    }
    let _local = state.refresh_locks.acquire(&ticket.id).await;
    let store = &state.sessions;
    // Read past this replica's cache: another request or replica may have refreshed it already.
    let latest = match store.load_fresh(&ticket).await {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => return keep(req, &ticket, stale, Blocked::Store, &e.to_string()),
    };
    if latest.version != stale.version || !latest.needs_refresh(now(), req.settings.cookie.refresh.as_secs()) {
        return Ok(Some((ticket, latest)));
    }
    let token = match store.lock(&ticket, LOCK_TTL).await {
        Ok(Some(token)) => token,
        Ok(None) => return wait_for_refresh(req, ticket, latest).await,
        Err(e) => return keep(req, &ticket, latest, Blocked::Store, &e.to_string()),
    };
    let result = refresh_locked(req, &ticket, latest).await;
    if let Err(e) = store.unlock(&ticket, &token).await {
        tracing::debug!(error = %e, "cannot release a refresh lock; it expires by itself");
    }
    result
}

async fn refresh_locked(req: &Request<'_>, ticket: &Ticket, latest: Arc<Session>) -> Result<Loaded, Page> {
    let provider = &req.auth.provider;
    match provider.refresh(&latest).await {
        Ok(fresh) => store_refreshed(req, ticket, latest, fresh).await,
        Err(ProviderError::Refused(reason)) => {
            // The provider ended the session (revoked refresh token, user disabled): sign out.
            tracing::info!(provider = %provider.name, reason, "refresh refused; session ended");
            count(req, "refused");
            let _ = req.state.sessions.delete(ticket).await;
            Ok(None)
        }
        Err(ProviderError::Unavailable(reason)) => keep(req, ticket, latest, Blocked::Provider, &reason),
    }
}

/// Stores the refreshed session by compare-and-set on the version that was refreshed.
async fn store_refreshed(
    req: &Request<'_>,
    ticket: &Ticket,
    latest: Arc<Session>,
    fresh: SignIn,
) -> Result<Loaded, Page> {
    let store = &req.state.sessions;
    let renewed = Arc::new(Session {
        identity: fresh.identity,
        access_token: fresh.access_token.or_else(|| latest.access_token.clone()),
        access_expires_at: fresh.access_expires_at,
        refresh_token: fresh.refresh_token,
        id_token: fresh.id_token.or_else(|| latest.id_token.clone()),
        refreshed_at: now(),
        version: latest.version + 1,
        ..(*latest).clone()
    });
    match store.replace(ticket, latest.version, renewed.clone()).await {
        Ok(true) => {
            count(req, "refreshed");
            Ok(Some((ticket.clone(), renewed)))
        }
        // Signed out (or replaced) while the provider answered: that wins, never undone.
        Ok(false) => match store.load_fresh(ticket).await {
            Ok(Some(current)) => {
                count(req, "superseded");
                Ok(Some((ticket.clone(), current)))
            }
            Ok(None) => {
                tracing::info!(provider = %req.auth.provider.name, "signed out during a refresh; staying signed out");
                count(req, "signed_out");
                Ok(None)
            }
            Err(e) => keep(req, ticket, latest, Blocked::Store, &e.to_string()),
        },
        Err(e) => keep(req, ticket, latest, Blocked::Store, &e.to_string()),
    }
}

/// Another replica is refreshing this session: wait (briefly) for its result, else keep the
/// session as it is.
async fn wait_for_refresh(req: &Request<'_>, ticket: Ticket, latest: Arc<Session>) -> Result<Loaded, Page> {
    let store = &req.state.sessions;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match store.load_fresh(&ticket).await {
            Ok(Some(s)) if s.version != latest.version => return Ok(Some((ticket, s))),
            Ok(Some(_)) => {}
            Ok(None) => return Ok(None),
            Err(e) => return keep(req, &ticket, latest, Blocked::Store, &e.to_string()),
        }
    }
    keep(
        req,
        &ticket,
        latest,
        Blocked::Provider,
        "another replica's refresh did not finish",
    )
}
