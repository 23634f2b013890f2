//! Sessions: what a signed-in user is, how the browser holds on to it, and where it is kept.
//!
//! The browser holds a **ticket cookie**: a random session id and a per-session key, sealed
//! with the gateway keyring ([`seal::Keyring`]). The session itself lives in a [`Store`],
//! addressed by the id; a store that leaves the process (Redis) keeps only the session sealed
//! with the per-session key, so neither a store dump nor a cookie alone reveals anything.

pub mod locks;
pub mod mint;
pub mod redis_store;
pub mod seal;
pub mod store;
pub mod traced;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::auth::policy::Identity;
pub use store::{LockToken, MemoryStore, Store, StoreError, UserKey, ONE_TIME_TOKEN_MEMORY};

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A signed-in user. Kept behind an `Arc` in the session caches for the session's life, so
/// its strings are `Box<str>` (as in [`Identity`]): 232 bytes instead of 320, which with the
/// `Arc`'s counts is one allocation of 256 bytes instead of 384. The JSON is unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The provider that authenticated the user.
    pub provider: Box<str>,
    /// Who the user is.
    pub identity: Identity,
    /// OAuth2 access token.
    pub access_token: Option<Box<str>>,
    /// When the access token expires (Unix seconds), if known.
    pub access_expires_at: Option<u64>,
    /// OAuth2 refresh token.
    pub refresh_token: Option<Box<str>>,
    /// The raw ID token (for `Authorization` upstream and logout hints).
    pub id_token: Option<Box<str>>,
    /// The provider's session id (the ID token's `sid`): back- and front-channel logout end
    /// the gateway sessions of a provider session by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Box<str>>,
    /// Sign-in time.
    pub created_at: u64,
    /// Last refresh (or sign-in) time.
    pub refreshed_at: u64,
    /// Absolute end of the session.
    pub expires_at: u64,
    /// Version of the stored record, raised by every refresh: a refresh replaces the record only
    /// when the version it read is still the stored one (compare-and-set), so a sign-out or
    /// another replica's refresh in the meantime is never undone. Sessions stored before this
    /// field existed read as version 0.
    #[serde(default)]
    pub version: u64,
}

/// The largest refresh margin: tokens are refreshed at most this long before they expire.
pub const REFRESH_MARGIN_MAX: u64 = 30;

impl Session {
    /// A session without provider tokens: `identity` signed in with `provider` at `created_at`,
    /// until `expires_at` (sessions minted by `authgate session mint`, and tests).
    pub fn without_tokens(provider: &str, identity: Identity, created_at: u64, expires_at: u64) -> Session {
        Session {
            provider: provider.into(),
            identity,
            access_token: None,
            access_expires_at: None,
            refresh_token: None,
            id_token: None,
            sid: None,
            created_at,
            refreshed_at: created_at,
            expires_at,
            version: 0,
        }
    }

    /// True when the session is past its absolute lifetime.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    /// How long before the access token expires it is refreshed: [`REFRESH_MARGIN_MAX`], but at
    /// most a quarter of the token's lifetime (a 30-second token is refreshed 7 seconds before
    /// it expires, not on every request).
    pub fn refresh_margin(&self) -> u64 {
        self.access_expires_at.map_or(REFRESH_MARGIN_MAX, |exp| {
            (exp.saturating_sub(self.refreshed_at) / 4).min(REFRESH_MARGIN_MAX)
        })
    }

    /// True when the tokens should be refreshed: the refresh interval elapsed, or the access
    /// token expires within [`Session::refresh_margin`]. Never within a margin window (at least
    /// one second) of the last refresh, whatever the provider's token lifetimes.
    pub fn needs_refresh(&self, now: u64, refresh_after: u64) -> bool {
        let margin = self.refresh_margin();
        if now < self.refreshed_at.saturating_add(margin.max(1)) {
            return false;
        }
        let interval_elapsed = now >= self.refreshed_at.saturating_add(refresh_after);
        let token_expiring = self.access_expires_at.is_some_and(|t| now.saturating_add(margin) >= t);
        interval_elapsed || token_expiring
    }

    /// True while the access token can still be used (or the session has none that expires):
    /// a refresh that cannot complete then serves the session as it is.
    pub fn token_valid(&self, now: u64) -> bool {
        !self.is_expired(now) && self.access_expires_at.is_none_or(|t| now < t)
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
    if section.cache.max_entries == 0 {
        return Err(vec![("sessions.cache.max_entries".into(), "must be at least 1".into())]);
    }
    match section.store {
        StoreKind::Memory => Ok((std::sync::Arc::new(MemoryStore::new(section.cache.max_entries)), None)),
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

    /// A record as the gateway wrote it when sessions held `String`s and `Vec`s: it reads into
    /// the boxed fields and writes back byte for byte (sessions already in Redis stay valid,
    /// and replicas of either version read each other's records).
    #[test]
    fn records_written_with_strings_and_vecs_read_and_write_the_same() {
        let old = concat!(
            r#"{"provider":"corp","identity":{"subject":"alice","email":"alice@example.com","#,
            r#""email_verified":true,"preferred_username":"alice","groups":["admins","dev"],"#,
            r#""github_orgs":[],"github_teams":["org/team"]},"access_token":"at","#,
            r#""access_expires_at":1700000300,"refresh_token":null,"id_token":"a.b.c","#,
            r#""sid":"s1","created_at":1700000000,"refreshed_at":1700000000,"expires_at":1700043200,"#,
            r#""version":3}"#
        );
        let s: Session = serde_json::from_str(old).unwrap();
        assert_eq!(&*s.identity.groups, [Box::from("admins"), Box::from("dev")]);
        assert_eq!(&*s.identity.github_teams[0], "org/team");
        assert_eq!(s.sid.as_deref(), Some("s1"));
        assert_eq!(serde_json::to_string(&s).unwrap(), old);
        let without_sid: Session = serde_json::from_str(&old.replace(r#""sid":"s1","#, "")).unwrap();
        assert_eq!(without_sid.sid, None);
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
            sid: None,
            created_at: 0,
            refreshed_at: 0,
            expires_at: 5000,
            version: 0,
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

    fn thirty_second_token(refreshed_at: u64) -> Session {
        Session {
            provider: "p".into(),
            identity: Identity::default(),
            access_token: Some("a".into()),
            access_expires_at: Some(refreshed_at + 30),
            refresh_token: Some("r".into()),
            id_token: None,
            sid: None,
            created_at: 0,
            refreshed_at,
            expires_at: 100_000,
            version: 0,
        }
    }

    #[test]
    fn a_short_token_is_refreshed_a_quarter_of_its_lifetime_before_expiry_not_on_every_request() {
        let s = thirty_second_token(1000);
        assert_eq!(s.refresh_margin(), 7);
        for t in 1000..1023 {
            assert!(!s.needs_refresh(t, 3600), "not due at +{}", t - 1000);
        }
        assert!(s.needs_refresh(1023, 3600));
        assert!(s.token_valid(1029));
        assert!(!s.token_valid(1030));
        let long = Session {
            access_expires_at: Some(1000 + 3600),
            ..thirty_second_token(1000)
        };
        assert_eq!(long.refresh_margin(), REFRESH_MARGIN_MAX);
    }

    #[test]
    fn a_session_is_refreshed_at_most_once_per_margin_window() {
        // A 2-second token (margin 0) and a 1-second refresh interval: still not on every request.
        let s = Session {
            access_expires_at: Some(1002),
            ..thirty_second_token(1000)
        };
        assert!(!s.needs_refresh(1000, 1));
        assert!(s.needs_refresh(1001, 1));
    }
}
