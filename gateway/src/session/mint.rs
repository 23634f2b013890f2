//! `authgate session mint`: creates a session in the configured store and prints its cookie,
//! for load tests and debugging. A local command only: it needs the cookie keys and the
//! store's credentials from the environment, exactly like the gateway; nothing on the network
//! can mint a session.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::policy::Identity;
use crate::metrics::Metrics;
use crate::session::{now, open_store, Session, Ticket};

/// Who the minted session belongs to.
#[derive(Debug, Clone)]
pub struct MintRequest {
    /// Provider name (chooses the cookie).
    pub provider: String,
    /// Email (verified).
    pub email: String,
    /// Subject; defaults to the email's local part.
    pub subject: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Lifetime.
    pub ttl: Duration,
}

/// `authgate session revoke`: ends every session of `user` in the configured store, which must
/// be shared (Redis): every replica drops its cached copies at once. Returns how many ended.
pub async fn revoke(config_path: &Path, user: &crate::session::UserKey) -> Result<usize, String> {
    let (config, store, _) = open(config_path)?;
    if config.gateway.sessions.store == crate::config::schema::StoreKind::Memory {
        return Err(
            "sessions.store is memory: the sessions live inside the gateway process; \
                    use /oauth2/sign_out?everywhere=1 there, or a shared Redis store"
                .into(),
        );
    }
    store.revoke_user(user).await.map_err(|e| e.to_string())
}

/// A configuration, the session store it names, and the metrics the store reports to.
type Opened = (crate::config::Config, Arc<dyn crate::session::Store>, Arc<Metrics>);

/// The configuration at `config_path` and the session store it names.
fn open(config_path: &Path) -> Result<Opened, String> {
    let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
    let config = crate::config::load(config_path).map_err(|e| e.to_string())?;
    let (store, _) = open_store(
        &config.gateway.sessions,
        &crate::config::base_dir(config_path),
        &metrics,
    )
    .map_err(|list| {
        list.into_iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok((config, store, metrics))
}

/// Creates `count` sessions and returns `name=value` of each cookie.
pub async fn mint(config_path: &Path, req: &MintRequest, count: usize) -> Result<Vec<String>, String> {
    let (config, store, metrics) = open(config_path)?;
    let snapshot = crate::state::Snapshot::build(config, None, &metrics).map_err(|e| e.to_string())?;
    let auth = snapshot
        .auth
        .as_ref()
        .ok_or("the configuration has no cookie section")?;
    if !auth.providers.contains_key(&req.provider) {
        return Err(format!("unknown provider {:?}", req.provider));
    }
    let name = format!("{}_{}", auth.cookie.name, req.provider);
    let mut cookies = Vec::with_capacity(count);
    for _ in 0..count {
        cookies.push(mint_one(store.as_ref(), &auth.cookie.keyring, &name, req).await?);
    }
    Ok(cookies)
}

async fn mint_one(
    store: &dyn crate::session::Store,
    keyring: &crate::session::seal::Keyring,
    name: &str,
    req: &MintRequest,
) -> Result<String, String> {
    let t = now();
    let subject = req
        .subject
        .clone()
        .unwrap_or_else(|| req.email.split('@').next().unwrap_or("user").to_owned());
    let identity = Identity {
        subject: subject.as_str().into(),
        email: Some(req.email.as_str().into()),
        email_verified: true,
        preferred_username: Some(subject.into()),
        groups: req.groups.iter().map(|g| g.as_str().into()).collect(),
        ..Identity::default()
    };
    let session = Session::without_tokens(&req.provider, identity, t, t + req.ttl.as_secs());
    let ticket = Ticket::new().map_err(|e| e.to_string())?;
    store
        .save(&ticket, Arc::new(session))
        .await
        .map_err(|e| e.to_string())?;
    let value = ticket.to_cookie(keyring, name).map_err(|e| e.to_string())?;
    Ok(format!("{name}={value}"))
}
