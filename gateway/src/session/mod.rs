//! Sessions: what a signed-in user is, how the browser holds on to it, and where it is kept.
//!
//! The browser holds a **ticket cookie**: a random session id and a per-session key, sealed
//! with the gateway keyring ([`seal::Keyring`]). The session itself lives in a [`Store`],
//! addressed by the id; a store that leaves the process (Redis) keeps only the session sealed
//! with the per-session key, so neither a store dump nor a cookie alone reveals anything.

pub mod mint;
pub mod redis_store;
pub mod seal;
pub mod store;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::auth::policy::Identity;
pub use store::{MemoryStore, Store, StoreError};

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A signed-in user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The provider that authenticated the user.
    pub provider: String,
    /// Who the user is.
    pub identity: Identity,
    /// OAuth2 access token.
    pub access_token: Option<String>,
    /// When the access token expires (Unix seconds), if known.
    pub access_expires_at: Option<u64>,
    /// OAuth2 refresh token.
    pub refresh_token: Option<String>,
    /// The raw ID token (for `Authorization` upstream and logout hints).
    pub id_token: Option<String>,
    /// Sign-in time.
    pub created_at: u64,
    /// Last refresh (or sign-in) time.
    pub refreshed_at: u64,
    /// Absolute end of the session.
    pub expires_at: u64,
}

impl Session {
    /// True when the session is past its absolute lifetime.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    /// True when the tokens should be refreshed: the refresh interval elapsed, or the access
    /// token expires within 30 seconds.
    pub fn needs_refresh(&self, now: u64, refresh_after: u64) -> bool {
        let interval_elapsed = now >= self.refreshed_at.saturating_add(refresh_after);
        let token_expiring = self.access_expires_at.is_some_and(|t| now + 30 >= t);
        interval_elapsed || token_expiring
    }
}

/// The pair a ticket cookie carries: the session id and the session's own key.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Random session id: the store key.
    pub id: [u8; 16],
    /// Random per-session key: seals the stored session.
    pub key: [u8; 32],
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket(..)")
    }
}

impl Ticket {
    /// A fresh random ticket.
    pub fn new() -> Result<Ticket, seal::SealError> {
        let key = seal::random_key()?;
        let id_src = seal::random_key()?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&id_src[..16]);
        Ok(Ticket { id, key })
    }

    /// The cookie value: the ticket sealed with the keyring, bound to the cookie's name.
    pub fn to_cookie(&self, keyring: &seal::Keyring, cookie_name: &str) -> Result<String, seal::SealError> {
        let mut raw = [0u8; 48];
        raw[..16].copy_from_slice(&self.id);
        raw[16..].copy_from_slice(&self.key);
        keyring.seal(&aad(cookie_name), &raw)
    }

    /// Opens a ticket cookie; `None` for anything tampered, truncated or foreign.
    pub fn from_cookie(keyring: &seal::Keyring, cookie_name: &str, value: &str) -> Option<Ticket> {
        let raw = keyring.open(&aad(cookie_name), value)?;
        if raw.len() != 48 {
            return None;
        }
        let mut id = [0u8; 16];
        let mut key = [0u8; 32];
        id.copy_from_slice(&raw[..16]);
        key.copy_from_slice(&raw[16..]);
        Some(Ticket { id, key })
    }

    /// The session id as lower-case hex (for store keys).
    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A session store and, when it is Redis, the handle whose background tasks must be started.
pub type OpenedStore = (
    std::sync::Arc<dyn Store>,
    Option<std::sync::Arc<redis_store::RedisStore>>,
);

/// The store configured in `sessions:`, and the Redis store when there is one (its background
/// tasks must be started inside a runtime). Errors are `(field, message)` of the main file.
pub fn open_store(
    section: &crate::config::schema::SessionsSection,
    base: &std::path::Path,
    metrics: &std::sync::Arc<crate::metrics::Metrics>,
) -> Result<OpenedStore, Vec<(String, String)>> {
    use crate::config::schema::StoreKind;
    match section.store {
        StoreKind::Memory => Ok((std::sync::Arc::new(MemoryStore::new()), None)),
        StoreKind::Redis => {
            let Some(spec) = &section.redis else {
                return Err(vec![(
                    "sessions.redis".into(),
                    "store: redis needs a redis section (sentinel or url)".into(),
                )]);
            };
            let mut errors = Vec::new();
            let mut env = |field: &str, var: &Option<String>| match var {
                None => None,
                Some(v) => match crate::auth::secret_from_env(v) {
                    Ok(value) => Some(value),
                    Err(e) => {
                        errors.push((format!("sessions.redis.{field}"), e));
                        None
                    }
                },
            };
            let username = env("username_env", &spec.username_env);
            let password = env("password_env", &spec.password_env);
            let sentinel_username = spec
                .sentinel
                .as_ref()
                .and_then(|s| env("sentinel.username_env", &s.username_env));
            let sentinel_password = spec
                .sentinel
                .as_ref()
                .and_then(|s| env("sentinel.password_env", &s.password_env));
            let prefix_ok = !spec.key_prefix.is_empty() && spec.key_prefix.bytes().all(|b| b.is_ascii_graphic());
            if !prefix_ok {
                errors.push((
                    "sessions.redis.key_prefix".into(),
                    "must be printable ASCII without spaces, e.g. \"authgate:{prod}:\"".into(),
                ));
            }
            if section.cache.max_entries == 0 {
                errors.push(("sessions.cache.max_entries".into(), "must be at least 1".into()));
            }
            let tls_ca = match &spec.tls {
                None => None,
                Some(tls) => {
                    // rustls needs a process-wide crypto provider; installing it twice is harmless.
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    match &tls.ca_file {
                        None => Some(None),
                        Some(path) => match std::fs::read(crate::config::resolve(base, path)) {
                            Ok(pem) => Some(Some(pem)),
                            Err(e) => {
                                errors.push((
                                    "sessions.redis.tls.ca_file".into(),
                                    format!("cannot read {}: {e}", path.display()),
                                ));
                                None
                            }
                        },
                    }
                }
            };
            if !errors.is_empty() {
                return Err(errors);
            }
            let settings = redis_store::RedisSettings {
                tls_ca,
                spec: spec.clone(),
                username,
                password,
                sentinel_username,
                sentinel_password,
                cache: section.cache,
            };
            let store = redis_store::RedisStore::new(settings, metrics.clone())
                .map_err(|e| vec![("sessions.redis".into(), e)])?;
            Ok((store.clone(), Some(store)))
        }
    }
}

fn aad(cookie_name: &str) -> Vec<u8> {
    format!("authgate/session/v1|{cookie_name}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> seal::Keyring {
        use base64::Engine;
        seal::Keyring::parse(&base64::engine::general_purpose::STANDARD.encode(seal::random_key().unwrap())).unwrap()
    }

    #[test]
    fn ticket_cookie_round_trips_and_is_bound_to_its_name() {
        let keys = ring();
        let t = Ticket::new().unwrap();
        let cookie = t.to_cookie(&keys, "_authgate_corp").unwrap();
        assert_eq!(Ticket::from_cookie(&keys, "_authgate_corp", &cookie).unwrap(), t);
        assert!(
            Ticket::from_cookie(&keys, "_authgate_gh", &cookie).is_none(),
            "a cookie of another provider does not open"
        );
        assert!(
            Ticket::from_cookie(&ring(), "_authgate_corp", &cookie).is_none(),
            "foreign key"
        );
        assert!(!cookie.contains(&t.id_hex()));
    }

    #[test]
    fn refresh_is_due_after_the_interval_or_before_token_expiry() {
        let s = Session {
            provider: "p".into(),
            identity: Identity::default(),
            access_token: None,
            access_expires_at: Some(1000),
            refresh_token: None,
            id_token: None,
            created_at: 0,
            refreshed_at: 0,
            expires_at: 5000,
        };
        assert!(!s.needs_refresh(100, 3600));
        assert!(s.needs_refresh(980, 3600), "token expiring");
        let s = Session {
            access_expires_at: None,
            ..s
        };
        assert!(!s.needs_refresh(3599, 3600));
        assert!(s.needs_refresh(3600, 3600));
        assert!(s.is_expired(5000));
    }
}
