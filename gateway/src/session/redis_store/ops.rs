//! The [`Store`] operations of [`RedisStore`], and the record format.
//!
//! A record is `AG2` ‖ the version as 16 hex digits ‖ the session sealed with the ticket's key.
//! The version is in clear so that a Lua script can compare it (Redis never sees the session);
//! a record without the `AG2` header (written before versions existed) reads as version 0.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Op, RedisStore};
use crate::session::seal::{open_raw, seal_raw};
use crate::session::store::{sha256_hex, LockToken, Store, StoreError, UserKey, ONE_TIME_TOKEN_MEMORY};
use crate::session::{now, Session, Ticket};

const RECORD_MAGIC: &[u8; 3] = b"AG2";
const RECORD_HEADER: usize = 3 + 16;

/// Replaces the record only when it exists and holds version `ARGV[1]` (16 hex digits).
const REPLACE_SCRIPT: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local v = '0000000000000000'
if string.sub(cur, 1, 3) == 'AG2' then v = string.sub(cur, 4, 19) end
if v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
";

/// Ends every session listed in the user index `KEYS[1]`: deletes each record `ARGV[1]..id`,
/// publishes each id on `ARGV[2]` (every replica drops its cached copy), deletes the index, and
/// returns how many records existed. With `KEYS[2]` (a one-time token's key), first claims it
/// for `ARGV[3]` seconds, and returns -1 without ending anything when it was claimed before.
const REVOKE_SCRIPT: &str = r"
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then return -1 end
local ids = redis.call('SMEMBERS', KEYS[1])
local n = 0
for _, id in ipairs(ids) do
  n = n + redis.call('DEL', ARGV[1] .. id)
  redis.call('PUBLISH', ARGV[2], id)
end
redis.call('DEL', KEYS[1])
return n
";

/// Deletes the lock only when it still holds the caller's token.
const UNLOCK_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

fn version_hex(version: u64) -> String {
    format!("{version:016x}")
}

/// `(version, sealed session)` of a stored record.
pub(super) fn split_record(record: &[u8]) -> (u64, &[u8]) {
    if record.len() >= RECORD_HEADER && record.starts_with(RECORD_MAGIC) {
        let version = std::str::from_utf8(&record[3..RECORD_HEADER])
            .ok()
            .and_then(|h| u64::from_str_radix(h, 16).ok());
        if let Some(v) = version {
            return (v, &record[RECORD_HEADER..]);
        }
    }
    (0, record)
}

fn lock_key(store: &RedisStore, ticket: &Ticket) -> String {
    format!("{}lk:{}", store.prefix, ticket.id_hex())
}

#[derive(Debug)]
pub(super) enum LoadError {
    Missing,
    Store(StoreError),
}

impl RedisStore {
    /// The stored record of `ticket` as `(key, value, expiry in ms)`.
    fn record(&self, ticket: &Ticket, session: &Session) -> Result<(String, Vec<u8>, u64), StoreError> {
        let plain = serde_json::to_vec(session).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let sealed =
            seal_raw(&ticket.key, &Self::aad(ticket), &plain).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut value = Vec::with_capacity(RECORD_HEADER + sealed.len());
        value.extend_from_slice(RECORD_MAGIC);
        value.extend_from_slice(version_hex(session.version).as_bytes());
        value.extend_from_slice(&sealed);
        Ok((self.key(ticket), value, session.expires_at * 1000))
    }

    /// Reads and opens the record of `ticket` from Redis (no cache).
    async fn fetch(&self, ticket: &Ticket) -> Result<Arc<Session>, LoadError> {
        let key = self.key(ticket);
        let record: Option<Vec<u8>> = self
            .run("get", |mut c| {
                let key = key.clone();
                async move { redis::cmd("GET").arg(&key).query_async(&mut c).await }
            })
            .await
            .map_err(LoadError::Store)?;
        let record = record.ok_or(LoadError::Missing)?;
        let (version, sealed) = split_record(&record);
        let plain = open_raw(&ticket.key, &Self::aad(ticket), sealed).ok_or(LoadError::Missing)?;
        let mut session: Session = serde_json::from_slice(&plain).map_err(|_| LoadError::Missing)?;
        session.version = version;
        Ok(Arc::new(session))
    }

    /// Counts a write that `WAIT` saw reach no replica.
    fn count_unreplicated(&self, op: &str, acked: i64) {
        if acked < 1 {
            self.metrics.redis_errors.with_label_values(&[op, "unreplicated"]).inc();
        }
    }

    async fn remember(&self, ticket: &Ticket, key: String, value: Vec<u8>, expires_at_ms: u64, session: Arc<Session>) {
        self.journal(
            key,
            Op::Set {
                blob: value,
                expires_at_ms,
            },
        );
        self.revoked.invalidate(&ticket.id);
        self.cache.insert(ticket.id, session);
    }

    /// Runs [`REVOKE_SCRIPT`] for `user`, guarded by the one-time token key `guard` when
    /// given: `None` when that token was used before.
    async fn revoke(&self, user: &UserKey, guard: Option<String>) -> Result<Option<usize>, StoreError> {
        let index = self.user_index(user);
        let records = format!("{}s:", self.prefix);
        let channel = self.channel.clone();
        let remember = ONE_TIME_TOKEN_MEMORY.as_secs();
        let n: i64 = self
            .run("revoke", |mut c| {
                let (index, records, channel, guard) = (index.clone(), records.clone(), channel.clone(), guard.clone());
                async move {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(REVOKE_SCRIPT)
                        .arg(if guard.is_some() { 2 } else { 1 })
                        .arg(&index);
                    if let Some(guard) = &guard {
                        cmd.arg(guard);
                    }
                    cmd.arg(&records).arg(&channel).arg(remember).query_async(&mut c).await
                }
            })
            .await?;
        if n < 0 {
            return Ok(None);
        }
        self.metrics.invalidations.with_label_values(&["sent"]).inc();
        Ok(Some(usize::try_from(n).unwrap_or(0)))
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn load(&self, ticket: &Ticket) -> Result<Option<Arc<Session>>, StoreError> {
        if self.revoked.get(&ticket.id).is_none() {
            if let Some(s) = self.cache.get(&ticket.id) {
                self.metrics.session_cache.with_label_values(&["hit"]).inc();
                return Ok(Some(s));
            }
        }
        self.metrics.session_cache.with_label_values(&["miss"]).inc();
        // Concurrent misses for one session make one Redis call.
        let loaded = self.cache.get_or_load(&ticket.id, self.fetch(ticket)).await;
        match loaded {
            Ok(s) if s.is_expired(now()) => Ok(None),
            Ok(s) => {
                self.revoked.invalidate(&ticket.id);
                Ok(Some(s))
            }
            Err(LoadError::Missing) => Ok(None),
            Err(LoadError::Store(err)) => Err(err),
        }
    }

    async fn load_fresh(&self, ticket: &Ticket) -> Result<Option<Arc<Session>>, StoreError> {
        match self.fetch(ticket).await {
            Ok(s) if s.is_expired(now()) => Ok(None),
            Ok(s) => {
                self.cache.insert(ticket.id, s.clone());
                Ok(Some(s))
            }
            Err(LoadError::Missing) => {
                self.cache.invalidate(&ticket.id);
                Ok(None)
            }
            Err(LoadError::Store(e)) => Err(e),
        }
    }

    async fn save(&self, ticket: &Ticket, session: Arc<Session>) -> Result<(), StoreError> {
        let (key, value, expires_at_ms) = self.record(ticket, &session)?;
        let wait_ms = self.command_timeout.as_millis() as u64;
        let index: Vec<String> = UserKey::of(&session).iter().map(|u| self.user_index(u)).collect();
        let id = ticket.id_hex();
        let ttl = session.expires_at.saturating_sub(now()).max(1);
        let acked: (i64,) = self
            .run("save", |mut c| {
                let (key, value, index, id) = (key.clone(), value.clone(), index.clone(), id.clone());
                async move {
                    let mut pipe = redis::pipe();
                    pipe.cmd("SET")
                        .arg(&key)
                        .arg(value.as_slice())
                        .arg("PXAT")
                        .arg(expires_at_ms)
                        .ignore();
                    // The user's index lives as long as their longest session.
                    for idx in &index {
                        pipe.cmd("SADD").arg(idx).arg(&id).ignore();
                        pipe.cmd("EXPIRE").arg(idx).arg(ttl).arg("NX").ignore();
                        pipe.cmd("EXPIRE").arg(idx).arg(ttl).arg("GT").ignore();
                    }
                    pipe.cmd("WAIT").arg(1).arg(wait_ms).query_async(&mut c).await
                }
            })
            .await?;
        self.count_unreplicated("save", acked.0);
        self.remember(ticket, key, value, expires_at_ms, session).await;
        Ok(())
    }

    async fn replace(&self, ticket: &Ticket, expected: u64, session: Arc<Session>) -> Result<bool, StoreError> {
        let (key, value, expires_at_ms) = self.record(ticket, &session)?;
        let wait_ms = self.command_timeout.as_millis() as u64;
        let expected = version_hex(expected);
        let (replaced, acked): (i64, i64) = self
            .run("replace", |mut c| {
                let (key, value, expected) = (key.clone(), value.clone(), expected.clone());
                async move {
                    redis::pipe()
                        .cmd("EVAL")
                        .arg(REPLACE_SCRIPT)
                        .arg(1)
                        .arg(&key)
                        .arg(&expected)
                        .arg(value.as_slice())
                        .arg(expires_at_ms)
                        .cmd("WAIT")
                        .arg(1)
                        .arg(wait_ms)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        if replaced != 1 {
            // Signed out or refreshed elsewhere: drop what this replica may still cache.
            self.cache.invalidate(&ticket.id);
            return Ok(false);
        }
        self.count_unreplicated("replace", acked);
        self.remember(ticket, key, value, expires_at_ms, session).await;
        Ok(true)
    }

    async fn delete(&self, ticket: &Ticket) -> Result<(), StoreError> {
        let key = self.key(ticket);
        let channel = self.channel.clone();
        let id = ticket.id_hex();
        self.run("delete", |mut c| {
            let (key, channel, id) = (key.clone(), channel.clone(), id.clone());
            async move {
                redis::pipe()
                    .cmd("DEL")
                    .arg(&key)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&id)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await?;
        self.metrics.invalidations.with_label_values(&["sent"]).inc();
        self.journal(key, Op::Del);
        self.revoked.insert(ticket.id, ());
        self.cache.invalidate(&ticket.id);
        Ok(())
    }

    async fn revoke_user(&self, user: &UserKey) -> Result<usize, StoreError> {
        Ok(self.revoke(user, None).await?.unwrap_or(0))
    }

    async fn revoke_user_once(&self, user: &UserKey, token_id: &str) -> Result<Option<usize>, StoreError> {
        let guard = format!("{}t:{}", self.prefix, sha256_hex(token_id));
        self.revoke(user, Some(guard)).await
    }

    async fn lock(&self, ticket: &Ticket, ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        let key = lock_key(self, ticket);
        let token = crate::session::seal::random_token(16).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let ms = ttl.as_millis() as u64;
        let set: Option<String> = self
            .run("lock", |mut c| {
                let (key, token) = (key.clone(), token.clone());
                async move {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(ms)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        Ok(set.map(|_| LockToken(token)))
    }

    async fn unlock(&self, ticket: &Ticket, token: &LockToken) -> Result<(), StoreError> {
        let key = lock_key(self, ticket);
        self.run("unlock", |mut c| {
            let (key, token) = (key.clone(), token.0.clone());
            async move {
                redis::cmd("EVAL")
                    .arg(UNLOCK_SCRIPT)
                    .arg(1)
                    .arg(&key)
                    .arg(&token)
                    .query_async::<i64>(&mut c)
                    .await
            }
        })
        .await
        .map(|_| ())
    }

    async fn ready(&self) -> bool {
        self.run("ping", |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_version_and_legacy_records_read_as_version_zero() {
        let mut record = b"AG2".to_vec();
        record.extend_from_slice(version_hex(42).as_bytes());
        record.extend_from_slice(b"sealed");
        assert_eq!(split_record(&record), (42, &b"sealed"[..]));
        assert_eq!(split_record(b"\x01\x02legacy"), (0, &b"\x01\x02legacy"[..]));
        assert_eq!(split_record(b"AG2zz"), (0, &b"AG2zz"[..]));
    }
}
