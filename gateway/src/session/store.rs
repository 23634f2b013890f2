//! Where sessions live: the [`Store`] interface and the in-memory store (the embedded
//! default for a single gateway instance).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{now, Session, Ticket};

/// A store could not answer; requests that need it get a clear 503.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backing service is unreachable or failing.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// Keeps sessions by ticket. Implementations must be cheap to call on every request.
#[async_trait]
pub trait Store: Send + Sync {
    /// The session of `ticket`, if it exists and has not expired.
    async fn load(&self, ticket: &Ticket) -> Result<Option<Arc<Session>>, StoreError>;
    /// Creates or replaces the session of `ticket`; it expires at `session.expires_at`.
    async fn save(&self, ticket: &Ticket, session: Arc<Session>) -> Result<(), StoreError>;
    /// Deletes the session of `ticket` (sign-out), everywhere it may be cached.
    async fn delete(&self, ticket: &Ticket) -> Result<(), StoreError>;
    /// True when the store can serve requests (for `/ready`).
    async fn ready(&self) -> bool;
    /// Takes a short lock on the session (refresh); `false` when another holder has it.
    async fn lock(&self, _ticket: &Ticket, _ttl: std::time::Duration) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Releases [`Store::lock`].
    async fn unlock(&self, _ticket: &Ticket) -> Result<(), StoreError> {
        Ok(())
    }
    /// Drops any cached copy of the session, so the next load reads the backing store.
    async fn forget_cached(&self, _ticket: &Ticket) {}
}

/// Sessions in this process's memory: fast, lost on restart, not shared between replicas.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<[u8; 16], Arc<Session>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of sessions held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |m| m.len())
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn load(&self, ticket: &Ticket) -> Result<Option<Arc<Session>>, StoreError> {
        let mut map = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned lock".into()))?;
        match map.get(&ticket.id) {
            Some(s) if s.is_expired(now()) => {
                map.remove(&ticket.id);
                Ok(None)
            }
            Some(s) => Ok(Some(s.clone())),
            None => Ok(None),
        }
    }

    async fn save(&self, ticket: &Ticket, session: Arc<Session>) -> Result<(), StoreError> {
        let mut map = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned lock".into()))?;
        // Sweep expired sessions now and then, so abandoned ones do not pile up.
        if map.len() >= 1024 && map.len().is_power_of_two() {
            let t = now();
            map.retain(|_, s| !s.is_expired(t));
        }
        map.insert(ticket.id, session);
        Ok(())
    }

    async fn delete(&self, ticket: &Ticket) -> Result<(), StoreError> {
        let mut map = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Unavailable("poisoned lock".into()))?;
        map.remove(&ticket.id);
        Ok(())
    }

    async fn ready(&self) -> bool {
        true
    }
}
