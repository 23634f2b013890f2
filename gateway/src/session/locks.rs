//! The in-process refresh lock: concurrent requests of one session in this process make one
//! refresh; the others wait for it and then read what it stored.
//!
//! [`RefreshLocks::acquire`] returns a guard; dropping it (normal end, early return, or the
//! request's future being cancelled at any `.await`) releases the lock and forgets the
//! session's entry once nobody holds or awaits it, so the map never leaks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Entry = Arc<tokio::sync::Mutex<()>>;

/// After a refresh that could not complete, the session is served as it is for this long
/// before this process tries again (an outage does not queue every request on the store).
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// One lock per session id being refreshed, and the sessions whose refresh is deferred.
#[derive(Debug)]
pub struct RefreshLocks {
    locks: Mutex<HashMap<[u8; 16], Entry>>,
    deferred: moka::sync::Cache<[u8; 16], ()>,
}

impl Default for RefreshLocks {
    fn default() -> Self {
        Self {
            locks: Mutex::default(),
            deferred: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(RETRY_AFTER)
                .build(),
        }
    }
}

/// Holds the refresh lock of one session until dropped.
#[derive(Debug)]
pub struct RefreshGuard<'a> {
    locks: &'a RefreshLocks,
    id: [u8; 16],
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// Forgets the entry of `id` when the only reference left is the map's own. Runs under the
/// map lock, where every new waiter takes its reference, so no waiter can be stranded.
fn forget_if_unused(locks: &RefreshLocks, id: &[u8; 16]) {
    if let Ok(mut map) = locks.locks.lock() {
        if map.get(id).is_some_and(|e| Arc::strong_count(e) == 1) {
            map.remove(id);
        }
    }
}

/// A waiter's reference to an entry; if the waiting future is dropped (request cancelled), the
/// entry is forgotten when unused.
struct Waiter<'a> {
    locks: &'a RefreshLocks,
    id: [u8; 16],
    entry: Option<Entry>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.entry.take().is_some() {
            forget_if_unused(self.locks, &self.id);
        }
    }
}

impl RefreshLocks {
    /// Waits for and takes the refresh lock of session `id`.
    pub async fn acquire(&self, id: &[u8; 16]) -> RefreshGuard<'_> {
        let entry = match self.locks.lock() {
            Ok(mut map) => map.entry(*id).or_default().clone(),
            // A poisoned map: lock nothing shared rather than fail the request.
            Err(_) => Entry::default(),
        };
        let mut waiter = Waiter {
            locks: self,
            id: *id,
            entry: Some(entry.clone()),
        };
        let guard = entry.lock_owned().await;
        // The guard now keeps the entry alive; the waiter's reference is no longer needed.
        waiter.entry = None;
        RefreshGuard {
            locks: self,
            id: *id,
            guard: Some(guard),
        }
    }

    /// Defers the next refresh of session `id` by [`RETRY_AFTER`].
    pub fn defer(&self, id: &[u8; 16]) {
        self.deferred.insert(*id, ());
    }

    /// True while the refresh of session `id` is deferred.
    pub fn deferred(&self, id: &[u8; 16]) -> bool {
        self.deferred.contains_key(id)
    }

    /// Number of sessions with a lock held or awaited.
    pub fn len(&self) -> usize {
        self.locks.lock().map_or(0, |m| m.len())
    }

    /// True when no lock is held or awaited.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for RefreshGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        forget_if_unused(self.locks, &self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_guard_releases_and_forgets_the_lock() {
        let locks = RefreshLocks::default();
        {
            let _g = locks.acquire(&[1; 16]).await;
            assert_eq!(locks.len(), 1);
        }
        assert!(locks.is_empty());
        let _g = locks.acquire(&[1; 16]).await;
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaks_nothing_and_the_next_waiter_gets_the_lock() {
        let locks = Arc::new(RefreshLocks::default());
        let held = locks.acquire(&[2; 16]).await;
        let waiting = locks.acquire(&[2; 16]);
        // Poll once so the waiter is queued, then cancel it as a dropped request would.
        let cancelled = tokio::time::timeout(std::time::Duration::from_millis(10), waiting).await;
        assert!(cancelled.is_err());
        drop(held);
        assert!(locks.is_empty(), "no entry left behind");
        let _again = tokio::time::timeout(std::time::Duration::from_secs(1), locks.acquire(&[2; 16]))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_early_return_under_the_lock_releases_it() {
        async fn early(locks: &RefreshLocks) -> Result<(), ()> {
            let _g = locks.acquire(&[3; 16]).await;
            Err(())?;
            Ok(())
        }
        let locks = RefreshLocks::default();
        assert!(early(&locks).await.is_err());
        assert!(locks.is_empty());
    }
}
