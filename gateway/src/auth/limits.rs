//! Per-client-address rate limits on `/oauth2/start`, `/oauth2/callback` and failed bearer
//! tokens: fixed windows counted in a bounded concurrent cache (no global lock), so neither a
//! login flood nor a token-guessing client can make the gateway call the provider or verify
//! signatures without bound.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::schema::RateLimitsSection;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `/oauth2/start`.
    Start,
    /// `/oauth2/callback`.
    Callback,
    /// A bearer token that failed verification.
    BearerFailure,
}

impl Limit {
    /// The metric label and configuration field.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Start => "oauth2_start",
            Limit::Callback => "oauth2_callback",
            Limit::BearerFailure => "bearer_failures",
        }
    }

    fn max(self, spec: &RateLimitsSection) -> u32 {
        match self {
            Limit::Start => spec.oauth2_start,
            Limit::Callback => spec.oauth2_callback,
            Limit::BearerFailure => spec.bearer_failures,
        }
    }
}

#[derive(Debug)]
struct Counter {
    window: AtomicU64,
    count: AtomicU32,
}

/// The counters of every client address (shared by all snapshots: a reload resets nothing).
pub struct RateLimiter {
    counters: moka::sync::Cache<(Limit, [u8; 16]), Arc<Counter>>,
    epoch: Instant,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            counters: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            epoch: Instant::now(),
        }
    }
}

fn key(client: Option<IpAddr>) -> [u8; 16] {
    match client {
        Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
        Some(IpAddr::V6(v6)) => v6.octets(),
        None => [0; 16],
    }
}

impl RateLimiter {
    /// `(current window index, seconds until it ends)`.
    fn window(&self, spec: &RateLimitsSection) -> (u64, u64) {
        let len = spec.window.0.as_millis().max(1) as u64;
        let elapsed = self.epoch.elapsed().as_millis() as u64;
        let index = elapsed / len;
        let left_ms = (index + 1) * len - elapsed;
        (index, left_ms.div_ceil(1000).max(1))
    }

    fn counter(&self, limit: Limit, client: Option<IpAddr>, index: u64) -> Arc<Counter> {
        let counter = self.counters.get_with((limit, key(client)), || {
            Arc::new(Counter {
                window: AtomicU64::new(index),
                count: AtomicU32::new(0),
            })
        });
        let seen = counter.window.load(Ordering::Acquire);
        if seen != index
            && counter
                .window
                .compare_exchange(seen, index, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            counter.count.store(0, Ordering::Release);
        }
        counter
    }

    /// Counts one event of `client`; `Err(retry_after_seconds)` when it is over the limit.
    pub fn hit(&self, spec: &RateLimitsSection, limit: Limit, client: Option<IpAddr>) -> Result<(), u64> {
        if !spec.enabled {
            return Ok(());
        }
        let (index, left) = self.window(spec);
        let counter = self.counter(limit, client, index);
        let count = counter.count.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if count > limit.max(spec) {
            Err(left)
        } else {
            Ok(())
        }
    }

    /// `Some(retry_after_seconds)` when `client` is already over the limit (nothing counted).
    pub fn exceeded(&self, spec: &RateLimitsSection, limit: Limit, client: Option<IpAddr>) -> Option<u64> {
        if !spec.enabled {
            return None;
        }
        let (index, left) = self.window(spec);
        let counter = self.counters.get(&(limit, key(client)))?;
        let current = counter.window.load(Ordering::Acquire) == index;
        (current && counter.count.load(Ordering::Acquire) >= limit.max(spec)).then_some(left)
    }
}

/// Checks `spec` for the configuration: windows of at least a second, limits of at least 1.
/// Errors are `(field, message)` of the main file.
pub fn validate(spec: &RateLimitsSection) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if spec.window.0 < Duration::from_secs(1) {
        errors.push(("rate_limits.window".to_owned(), "must be at least 1s".to_owned()));
    }
    for limit in [Limit::Start, Limit::Callback, Limit::BearerFailure] {
        if limit.max(spec) == 0 {
            errors.push((
                format!("rate_limits.{}", limit.name()),
                "must be at least 1 (set rate_limits.enabled: false to turn limits off)".to_owned(),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::HumanDuration;

    fn spec(max: u32) -> RateLimitsSection {
        RateLimitsSection {
            enabled: true,
            window: HumanDuration(Duration::from_secs(60)),
            oauth2_start: max,
            oauth2_callback: max,
            bearer_failures: max,
        }
    }

    #[test]
    fn counts_per_address_and_per_limit() {
        let limiter = RateLimiter::default();
        let (a, b) = (Some("10.0.0.1".parse().unwrap()), Some("10.0.0.2".parse().unwrap()));
        let s = spec(3);
        for _ in 0..3 {
            assert!(limiter.hit(&s, Limit::Start, a).is_ok());
        }
        let retry = limiter.hit(&s, Limit::Start, a).unwrap_err();
        assert!((1..=60).contains(&retry), "{retry}");
        assert!(limiter.hit(&s, Limit::Start, b).is_ok(), "another address");
        assert!(limiter.hit(&s, Limit::Callback, a).is_ok(), "another limit");
        assert!(limiter.exceeded(&s, Limit::Start, a).is_some());
        assert!(limiter.exceeded(&s, Limit::Start, b).is_none());
        let off = RateLimitsSection { enabled: false, ..s };
        assert!(limiter.hit(&off, Limit::Start, a).is_ok());
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let limiter = RateLimiter::default();
        let s = RateLimitsSection {
            window: HumanDuration(Duration::from_millis(1)),
            ..spec(1)
        };
        let a = Some("10.0.0.1".parse().unwrap());
        assert!(limiter.hit(&s, Limit::Start, a).is_ok());
        std::thread::sleep(Duration::from_millis(3));
        assert!(limiter.hit(&s, Limit::Start, a).is_ok());
    }

    #[test]
    fn limits_must_be_positive() {
        assert!(validate(&RateLimitsSection::default()).is_empty());
        let errors = validate(&spec(0));
        assert_eq!(errors.len(), 3, "{errors:?}");
    }
}
