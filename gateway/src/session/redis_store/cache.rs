//! The in-process cache in front of Redis: decoded sessions by id, bounded in entries and in age.
//!
//! A `quick_cache` (sharded, one read lock per lookup, no global lock) rather than moka: a moka
//! entry costs ~310 bytes besides the value (seven allocations: the key behind an `Arc`, the
//! entry, its bookkeeping and one node in each of the access- and write-order lists), a
//! `quick_cache` entry ~80 (the key, the value and its deadline in a slot of the shard's table):
//! 23 MB less for 100,000 cached sessions (docs/performance.md, "Smaller cached sessions"), and
//! a lookup a few times cheaper. The age limit
//! (`sessions.cache.ttl`) is a deadline stored with each entry and checked on every hit; an
//! expired entry is dropped then, or evicted by the bound like any cold entry.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::session::Session;

/// A cached session and the moment it stops being served from the cache.
#[derive(Clone)]
struct Entry {
    session: Arc<Session>,
    until: Instant,
}

/// Decoded sessions by id: at most `max_entries` (approximately: each shard holds its share),
/// each served for at most `ttl` after it was loaded or stored.
pub(super) struct SessionCache {
    entries: quick_cache::sync::Cache<[u8; 16], Entry>,
    ttl: Duration,
}

impl SessionCache {
    /// An empty cache.
    pub(super) fn new(max_entries: u64, ttl: Duration) -> SessionCache {
        let max = usize::try_from(max_entries).unwrap_or(usize::MAX);
        SessionCache {
            entries: quick_cache::sync::Cache::new(max),
            ttl,
        }
    }

    fn entry(&self, session: Arc<Session>) -> Entry {
        Entry {
            session,
            until: Instant::now() + self.ttl,
        }
    }

    /// The cached session `id`, unless it is absent or older than the TTL (then it is dropped).
    pub(super) fn get(&self, id: &[u8; 16]) -> Option<Arc<Session>> {
        let entry = self.entries.get(id)?;
        if Instant::now() < entry.until {
            return Some(entry.session);
        }
        self.entries.remove_if(id, |e| e.until == entry.until);
        None
    }

    /// The cached session `id` (unless older than the TTL), or else the one `load` returns,
    /// which is then cached; concurrent calls for one id wait for the first one's `load` (one
    /// Redis call). An error is not cached.
    pub(super) async fn get_or_load<E>(
        &self,
        id: &[u8; 16],
        load: impl Future<Output = Result<Arc<Session>, E>>,
    ) -> Result<Arc<Session>, E> {
        use quick_cache::sync::{EntryAction, EntryResult};
        let now = Instant::now();
        let guard = match self
            .entries
            .entry_async(id, |_, e| match now < e.until {
                true => EntryAction::Retain(e.session.clone()),
                false => EntryAction::ReplaceWithGuard,
            })
            .await
        {
            EntryResult::Retained(session) => return Ok(session),
            EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => Some(guard),
            // Neither is asked for here; load without caching.
            EntryResult::Removed(..) | EntryResult::Timeout => None,
        };
        let session = load.await?;
        if let Some(guard) = guard {
            let _ = guard.insert(self.entry(session.clone()));
        }
        Ok(session)
    }

    /// Caches `session` as `id` (a new session, or one just refreshed or read from Redis).
    pub(super) fn insert(&self, id: [u8; 16], session: Arc<Session>) {
        self.entries.insert(id, self.entry(session));
    }

    /// Drops `id` (signed out here or elsewhere, or replaced in Redis).
    pub(super) fn invalidate(&self, id: &[u8; 16]) {
        self.entries.remove(id);
    }

    /// Drops every entry (a new master, or invalidation messages possibly missed).
    pub(super) fn invalidate_all(&self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::auth::policy::Identity;

    fn session(subject: &str) -> Arc<Session> {
        let identity = Identity {
            subject: subject.into(),
            ..Identity::default()
        };
        Arc::new(Session::without_tokens("corp", identity, 0, u64::MAX))
    }

    #[test]
    fn serves_until_the_ttl_then_forgets() {
        let cache = SessionCache::new(10, Duration::from_secs(3600));
        cache.insert([1; 16], session("a"));
        assert_eq!(&*cache.get(&[1; 16]).unwrap().identity.subject, "a");
        assert!(cache.get(&[2; 16]).is_none());
        cache.invalidate(&[1; 16]);
        assert!(cache.get(&[1; 16]).is_none());

        let expired = SessionCache::new(10, Duration::ZERO);
        expired.insert([1; 16], session("a"));
        assert!(expired.get(&[1; 16]).is_none(), "an entry past the TTL is a miss");
        assert!(expired.entries.is_empty(), "and is dropped");
    }

    #[tokio::test]
    async fn an_entry_past_the_ttl_is_loaded_again() {
        let cache = SessionCache::new(10, Duration::ZERO);
        cache.insert([1; 16], session("old"));
        let loaded = cache
            .get_or_load(&[1; 16], async { Ok::<_, ()>(session("new")) })
            .await
            .unwrap();
        assert_eq!(&*loaded.identity.subject, "new");
    }

    #[tokio::test]
    async fn loads_once_and_does_not_cache_errors() {
        let cache = SessionCache::new(10, Duration::from_secs(3600));
        let failed = cache
            .get_or_load(&[1; 16], async { Err::<Arc<Session>, _>("down") })
            .await;
        assert_eq!(failed.err(), Some("down"));
        assert!(cache.get(&[1; 16]).is_none());
        let loaded = cache
            .get_or_load(&[1; 16], async { Ok::<_, ()>(session("a")) })
            .await
            .unwrap();
        assert_eq!(&*loaded.identity.subject, "a");
        let again = cache
            .get_or_load(&[1; 16], async { Ok::<_, ()>(session("b")) })
            .await
            .unwrap();
        assert_eq!(&*again.identity.subject, "a", "a cached session is not loaded again");
        cache.invalidate_all();
        assert!(cache.get(&[1; 16]).is_none());
    }
}
