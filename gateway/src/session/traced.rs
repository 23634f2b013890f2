//! The session store seen through OpenTelemetry: each call of a traced request is a
//! `session_store.<operation>` span. Only installed when tracing is on, so an untraced
//! gateway calls its store directly.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::store::{LockToken, Store, StoreError, UserKey};
use super::{Session, Ticket};
use crate::telemetry;

/// A [`Store`] that opens a span around every call made inside a traced request.
pub struct TracedStore(Arc<dyn Store>);

impl TracedStore {
    /// `inner`, traced.
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(TracedStore(inner))
    }
}

/// Runs `call` in span `name`, marking it failed on a store error.
async fn traced<T>(
    name: &'static str,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let mut span = telemetry::child(name);
    let result = call.await;
    if let Err(e) = &result {
        telemetry::fail(&mut span, e);
    }
    result
}

#[async_trait]
impl Store for TracedStore {
    async fn load(&self, ticket: &Ticket) -> Result<Option<Arc<Session>>, StoreError> {
        traced("session_store.load", self.0.load(ticket)).await
    }

    async fn load_fresh(&self, ticket: &Ticket) -> Result<Option<Arc<Session>>, StoreError> {
        traced("session_store.load_fresh", self.0.load_fresh(ticket)).await
    }

    async fn save(&self, ticket: &Ticket, session: Arc<Session>) -> Result<(), StoreError> {
        traced("session_store.save", self.0.save(ticket, session)).await
    }

    async fn replace(&self, ticket: &Ticket, expected: u64, session: Arc<Session>) -> Result<bool, StoreError> {
        traced("session_store.replace", self.0.replace(ticket, expected, session)).await
    }

    async fn delete(&self, ticket: &Ticket) -> Result<(), StoreError> {
        traced("session_store.delete", self.0.delete(ticket)).await
    }

    async fn revoke_user(&self, user: &UserKey) -> Result<usize, StoreError> {
        traced("session_store.revoke_user", self.0.revoke_user(user)).await
    }

    async fn revoke_user_once(&self, user: &UserKey, token_id: &str) -> Result<Option<usize>, StoreError> {
        traced(
            "session_store.revoke_user_once",
            self.0.revoke_user_once(user, token_id),
        )
        .await
    }

    async fn ready(&self) -> bool {
        self.0.ready().await
    }

    async fn lock(&self, ticket: &Ticket, ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        traced("session_store.lock", self.0.lock(ticket, ttl)).await
    }

    async fn unlock(&self, ticket: &Ticket, token: &LockToken) -> Result<(), StoreError> {
        traced("session_store.unlock", self.0.unlock(ticket, token)).await
    }
}
