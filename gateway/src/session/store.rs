//! Where sessions live: the [`Store`] interface and the in-memory store (the embedded
//! default for a single gateway instance).

use std::sync::Arc;

use async_trait::async_trait;

use super::{now, Session, Ticket};

/// A store could not answer; requests that need it get a clear 503 (or, during a refresh,
/// keep the session they have).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backing service is unreachable or failing.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// Whose sessions to end ([`Store::revoke_user`]): a user, or one session at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserKey {
    /// The user with this subject at this provider.
    Subject {
        /// Provider name.
        provider: String,
        /// The provider's `sub`.
        subject: String,
    },
    /// Every user with this email address (any provider; compared case-insensitively).
    Email(String),
    /// Every gateway session begun in this session at the provider (the ID token's `sid`, as
    /// OpenID Connect back- and front-channel logout name it).
    ProviderSession {
        /// Provider name.
        provider: String,
        /// The provider's `sid`.
        sid: String,
    },
}

impl UserKey {
    /// The index keys a session of `session` is listed under: its subject and its email.
    pub fn of(session: &Session) -> Vec<UserKey> {
        let mut keys = vec![UserKey::Subject {
            provider: session.provider.to_string(),
            subject: session.identity.subject.to_string(),
        }];
        keys.extend(session.identity.email.as_deref().map(|e| UserKey::Email(e.to_owned())));
        keys.extend(session.sid.as_deref().map(|sid| UserKey::ProviderSession {
            provider: session.provider.to_string(),
            sid: sid.to_owned(),
        }));
        keys
    }

    /// True when `session` belongs to this user.
    pub fn matches(&self, session: &Session) -> bool {
        match self {
            UserKey::Subject { provider, subject } => {
                *session.provider == **provider && *session.identity.subject == **subject
            }
            UserKey::Email(email) => session
                .identity
                .email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email)),
            UserKey::ProviderSession { provider, sid } => {
                *session.provider == **provider && session.sid.as_deref() == Some(sid.as_str())
            }
        }
    }

    /// A digest naming the user in a store's index (no personal data in key names).
    pub fn digest_hex(&self) -> String {
        let text = match self {
            UserKey::Subject { provider, subject } => format!("sub\0{provider}\0{subject}"),
            UserKey::Email(email) => format!("email\0{}", email.to_ascii_lowercase()),
            UserKey::ProviderSession { provider, sid } => format!("sid\0{provider}\0{sid}"),
        };
        sha256_hex(&text)
    }
}

/// The SHA-256 of `text` in lower-case hex: how stores name keys derived from outside data.
pub(crate) fn sha256_hex(text: &str) -> String {
    openssl::sha::sha256(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The owner's proof of a refresh lock: only the holder of the token releases it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken(pub String);

/// Keeps sessions by ticket. Implementations must be cheap to call on every request.
#[async_trait]
pub trait Store: Send + Sync {
    /// The session of `ticket`, if it exists and has not expired (a cached copy may answer).
    async fn load(&self, ticket: &Ticket) -> Result<Option<Arc<Session>>, StoreError>;
    /// The session as the backing store holds it now, past any cache (a refresh reads this: another
    /// replica may have refreshed it). Unlike dropping the cached copy, a failure leaves the
    /// cache as it was.
    async fn load_fresh(&self, ticket: &Ticket) -> Result<Option<Arc<Session>>, StoreError> {
        self.load(ticket).await
    }
    /// Creates or replaces the session of `ticket`; it expires at `session.expires_at`.
    async fn save(&self, ticket: &Ticket, session: Arc<Session>) -> Result<(), StoreError>;
    /// Compare-and-set: stores `session` only when the stored record still exists and has
    /// version `expected`; `session.version` must be `expected + 1`. `Ok(false)`: the record
    /// was deleted (sign-out) or replaced meanwhile, and nothing was written.
    async fn replace(&self, ticket: &Ticket, expected: u64, session: Arc<Session>) -> Result<bool, StoreError>;
    /// Deletes the session of `ticket` (sign-out), everywhere it may be cached.
    async fn delete(&self, ticket: &Ticket) -> Result<(), StoreError>;
    /// Ends every session of `user`, on every replica ("sign out everywhere", `authgate
    /// session revoke`); returns how many were ended.
    async fn revoke_user(&self, user: &UserKey) -> Result<usize, StoreError>;
    /// As [`Store::revoke_user`], unless `token_id` (a logout token's `jti`) was used before:
    /// `Ok(None)` then, and nothing is ended. The check and the revocation are one atomic step
    /// across replicas: a replayed token ends nothing, and a revocation that fails leaves the
    /// id unused, so the provider's retry is still accepted. Ids are remembered for
    /// [`ONE_TIME_TOKEN_MEMORY`].
    async fn revoke_user_once(&self, user: &UserKey, token_id: &str) -> Result<Option<usize>, StoreError>;
    /// True when the store can serve requests (for `/ready`).
    async fn ready(&self) -> bool;
    /// Takes a short lock on the session across replicas (refresh): `Some(token)` for the new
    /// owner, `None` when another holder has it.
    async fn lock(&self, _ticket: &Ticket, _ttl: std::time::Duration) -> Result<Option<LockToken>, StoreError> {
        Ok(Some(LockToken(String::new())))
    }
    /// Releases [`Store::lock`] when `token` still owns it (compare-and-delete): a lock that
    /// expired and was taken by another replica is left alone.
    async fn unlock(&self, _ticket: &Ticket, _token: &LockToken) -> Result<(), StoreError> {
        Ok(())
    }
}

/// How long [`Store::revoke_user_once`] remembers a token id: longer than any token it accepts
/// lives (logout tokens are refused once issued more than a few minutes ago).
pub const ONE_TIME_TOKEN_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// Expires each session at its own `expires_at`.
struct SessionExpiry;

impl moka::Expiry<[u8; 16], Arc<Session>> for SessionExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 16],
        value: &Arc<Session>,
        _created_at: std::time::Instant,
    ) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(value.expires_at.saturating_sub(now())))
    }

    fn expire_after_update(
        &self,
        key: &[u8; 16],
        value: &Arc<Session>,
        updated_at: std::time::Instant,
        _duration_until_expiry: Option<std::time::Duration>,
    ) -> Option<std::time::Duration> {
        self.expire_after_create(key, value, updated_at)
    }
}

/// Sessions in this process's memory: fast, lost on restart, not shared between replicas.
/// Bounded (`sessions.cache.max_entries`): beyond it the least used sessions are evicted, and
/// each session leaves at its own expiry. A concurrent cache, no global lock.
pub struct MemoryStore {
    sessions: moka::sync::Cache<[u8; 16], Arc<Session>>,
    /// Token ids seen by [`Store::revoke_user_once`].
    used_tokens: moka::sync::Cache<String, ()>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store holding at most `max_entries` sessions.
    pub fn new(max_entries: u64) -> Self {
        Self {
            sessions: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(SessionExpiry)
                .build(),
            used_tokens: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ONE_TIME_TOKEN_MEMORY)
                .build(),
        }
    }

    /// Number of sessions held (after pending evictions are applied).
    pub fn len(&self) -> usize {
        self.sessions.run_pending_tasks();
        usize::try_from(self.sessions.entry_count()).unwrap_or(usize::MAX)
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn load(&self, ticket: &Ticket) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self.sessions.get(&ticket.id).filter(|s| !s.is_expired(now())))
    }

    async fn save(&self, ticket: &Ticket, session: Arc<Session>) -> Result<(), StoreError> {
        self.sessions.insert(ticket.id, session);
        Ok(())
    }

    async fn replace(&self, ticket: &Ticket, expected: u64, session: Arc<Session>) -> Result<bool, StoreError> {
        use moka::ops::compute::Op;
        let result = self
            .sessions
            .entry(ticket.id)
            .and_compute_with(|current| match current {
                Some(entry) if entry.value().version == expected => Op::Put(session),
                _ => Op::Nop,
            });
        Ok(matches!(result, moka::ops::compute::CompResult::ReplacedWith(_)))
    }

    async fn delete(&self, ticket: &Ticket) -> Result<(), StoreError> {
        self.sessions.invalidate(&ticket.id);
        Ok(())
    }

    async fn revoke_user(&self, user: &UserKey) -> Result<usize, StoreError> {
        // A scan: revocations are rare, and the store is bounded.
        let ids: Vec<[u8; 16]> = self
            .sessions
            .iter()
            .filter(|(_, s)| user.matches(s))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.sessions.invalidate(id);
        }
        Ok(ids.len())
    }

    async fn revoke_user_once(&self, user: &UserKey, token_id: &str) -> Result<Option<usize>, StoreError> {
        // The entry API inserts atomically: of two concurrent uses, one is fresh.
        if !self.used_tokens.entry(token_id.to_owned()).or_insert(()).is_fresh() {
            return Ok(None);
        }
        self.revoke_user(user).await.map(Some)
    }

    async fn ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::Identity;

    fn session(version: u64) -> Arc<Session> {
        let t = now();
        Arc::new(Session {
            version,
            ..Session::without_tokens("p", Identity::default(), t, t + 3600)
        })
    }

    #[tokio::test]
    async fn replace_is_a_compare_and_set_that_never_undoes_a_sign_out() {
        let store = MemoryStore::new(100);
        let ticket = Ticket::new().unwrap();
        store.save(&ticket, session(0)).await.unwrap();
        assert!(!store.replace(&ticket, 5, session(6)).await.unwrap(), "wrong version");
        assert!(store.replace(&ticket, 0, session(1)).await.unwrap());
        assert_eq!(store.load(&ticket).await.unwrap().unwrap().version, 1);
        assert!(!store.replace(&ticket, 0, session(1)).await.unwrap(), "stale version");
        store.delete(&ticket).await.unwrap();
        assert!(!store.replace(&ticket, 1, session(2)).await.unwrap(), "signed out");
        assert!(store.load(&ticket).await.unwrap().is_none(), "still signed out");
    }

    #[tokio::test]
    async fn revoking_a_user_ends_their_sessions_only() {
        let store = MemoryStore::new(100);
        let with = |subject: &str, email: &str| {
            Arc::new(Session {
                identity: Identity {
                    subject: subject.into(),
                    email: Some(email.into()),
                    ..Identity::default()
                },
                ..(*session(0)).clone()
            })
        };
        let (a1, a2, b) = (Ticket::new().unwrap(), Ticket::new().unwrap(), Ticket::new().unwrap());
        store.save(&a1, with("alice", "alice@example.com")).await.unwrap();
        store.save(&a2, with("alice", "alice@example.com")).await.unwrap();
        store.save(&b, with("bob", "bob@example.com")).await.unwrap();
        let alice = UserKey::Subject {
            provider: "p".into(),
            subject: "alice".into(),
        };
        assert_eq!(store.revoke_user(&alice).await.unwrap(), 2);
        assert!(store.load(&a2).await.unwrap().is_none());
        assert!(store.load(&b).await.unwrap().is_some());
        let other_provider = UserKey::Subject {
            provider: "q".into(),
            subject: "bob".into(),
        };
        assert_eq!(store.revoke_user(&other_provider).await.unwrap(), 0);
        assert_eq!(
            store
                .revoke_user(&UserKey::Email("BOB@example.com".into()))
                .await
                .unwrap(),
            1
        );
        assert!(store.load(&b).await.unwrap().is_none());
        assert_ne!(
            alice.digest_hex(),
            UserKey::Email("alice@example.com".into()).digest_hex()
        );
    }

    #[tokio::test]
    async fn a_provider_session_ends_once_per_logout_token() {
        let store = MemoryStore::new(100);
        let with_sid = |sid: &str| {
            Arc::new(Session {
                sid: Some(sid.into()),
                ..(*session(0)).clone()
            })
        };
        let (a, b) = (Ticket::new().unwrap(), Ticket::new().unwrap());
        store.save(&a, with_sid("s1")).await.unwrap();
        store.save(&b, with_sid("s2")).await.unwrap();
        let s1 = UserKey::ProviderSession {
            provider: "p".into(),
            sid: "s1".into(),
        };
        assert_eq!(store.revoke_user_once(&s1, "jti-1").await.unwrap(), Some(1));
        assert!(store.load(&a).await.unwrap().is_none());
        assert!(store.load(&b).await.unwrap().is_some(), "another provider session");
        // The same token again ends nothing, even a session begun since.
        store.save(&a, with_sid("s1")).await.unwrap();
        assert_eq!(store.revoke_user_once(&s1, "jti-1").await.unwrap(), None);
        assert!(store.load(&a).await.unwrap().is_some());
        assert_eq!(store.revoke_user_once(&s1, "jti-2").await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn the_memory_store_is_bounded_and_evicts() {
        let store = MemoryStore::new(50);
        for _ in 0..500 {
            store.save(&Ticket::new().unwrap(), session(0)).await.unwrap();
        }
        assert!(store.len() <= 50, "{} sessions held", store.len());
    }

    #[tokio::test]
    async fn a_session_leaves_the_memory_store_at_its_expiry() {
        let store = MemoryStore::new(10);
        let ticket = Ticket::new().unwrap();
        let expired = Session {
            expires_at: now().saturating_sub(1),
            ..(*session(0)).clone()
        };
        store.save(&ticket, Arc::new(expired)).await.unwrap();
        assert!(store.load(&ticket).await.unwrap().is_none());
    }
}
