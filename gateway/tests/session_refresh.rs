//! Sessions under short tokens, outages and races (issue 8 §3), with the real OpenID provider
//! issuing short-lived access tokens and real Redis + Sentinel: token calls per refresh window
//! on two replicas, a master kill while a refresh is due, a provider outage before and after
//! the token expires, a sign-out while a refresh is in flight, and the store's compare-and-set
//! and owner-only lock release.
//!
//! Some waits here are on the clock on purpose: a token has to age into its refresh window.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::authenv::*;
use common::redis::RedisTopology;

const REFRESHED: &str = "authgate_session_refreshes_total{provider=\"corp\",result=\"refreshed\"}";

/// A gateway (two with `second`) on Redis, the provider issuing `access_token_ttl`-second tokens.
async fn start_redis(redis: &RedisTopology, access_token_ttl: u64, second: bool) -> AuthEnv {
    let main = redis.sessions_yaml("60s");
    let env = redis.gateway_env();
    AuthEnv::start_with(
        "",
        serde_json::json!({ "access_token": access_token_ttl }),
        move |_, _| Extra {
            main,
            env,
            second_gateway: second,
            ..Extra::default()
        },
    )
    .await
}

/// Waits until `at` on the clock (a token ageing into its refresh window).
async fn until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_second_tokens_are_refreshed_once_per_window_across_two_replicas() {
    let redis = RedisTopology::start(1);
    let env = start_redis(&redis, 30, true).await;
    let (a, _) = env.login("app1.example.com", "alice").await;
    let logged_in = Instant::now();
    let cookie = env.session_cookie(&a);
    let b = env.browser_b();
    let (calls_at_login, refreshes_at_login) = env.idp.token_stats(&env.ca).await;
    assert_eq!(refreshes_at_login, 0);
    // Requests on both replicas, 4 at a time, until the provider has seen one refresh and for
    // 3 seconds after it.
    let mut sent = 0;
    let mut refreshed_at: Option<Instant> = None;
    while refreshed_at.is_none_or(|t| t.elapsed() < Duration::from_secs(3)) {
        assert!(logged_in.elapsed() < Duration::from_secs(45), "no refresh within 45 s");
        let mut batch = Vec::new();
        for i in 0..4 {
            let (client, url) = if i % 2 == 0 {
                (a.client.clone(), env.url("app1.example.com", "/r"))
            } else {
                (b.client.clone(), env.url_b("app1.example.com", "/r"))
            };
            let cookie = cookie.clone();
            batch.push(tokio::spawn(
                async move { get_with_cookie(&client, &url, &cookie).await },
            ));
        }
        for r in batch {
            let (status, body) = r.await.unwrap();
            assert_eq!(status, 200, "{body}");
            sent += 1;
        }
        if refreshed_at.is_none() && env.idp.token_stats(&env.ca).await.1 > 0 {
            refreshed_at = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (calls, refreshes) = env.idp.token_stats(&env.ca).await;
    assert_eq!(
        (calls - calls_at_login, refreshes),
        (1, 1),
        "{sent} requests on two replicas over one refresh window: one token call"
    );
    let when = refreshed_at.unwrap().duration_since(logged_in);
    assert!(
        when >= Duration::from_secs(20),
        "refreshed {when:?} after login: the margin is at most a quarter of 30 s"
    );
    let total = env.gw.metric(REFRESHED).await + env.gw_b.as_ref().unwrap().metric(REFRESHED).await;
    assert_eq!(total, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_master_while_thirty_second_tokens_are_due_fails_no_cached_request() {
    let redis = Arc::new(RedisTopology::start(2));
    let env = start_redis(&redis, 30, false).await;
    let (a, _) = env.login("app1.example.com", "alice").await;
    let logged_in = Instant::now();
    let url = env.url("app1.example.com", "/loop");
    let client = a.client.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let looper = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // The refresh falls due 22-23 s after the sign-in: the master dies just before.
    until(logged_in + Duration::from_millis(21_500)).await;
    let r = redis.clone();
    tokio::task::spawn_blocking(move || {
        let old = r.kill_master();
        r.wait_new_master(&old);
    })
    .await
    .unwrap();
    // Keep going until the session has been refreshed on the new master.
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.gw.metric(REFRESHED).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "never refreshed after the failover: {}",
            env.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    looper.await.unwrap();
    let kept = env
        .gw
        .metric("authgate_session_refreshes_total{provider=\"corp\",result=\"store_unavailable\"}")
        .await;
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "cached requests failed ({} succeeded; {kept} refreshes deferred by the outage)",
        ok.load(Ordering::Relaxed)
    );
    assert!(ok.load(Ordering::Relaxed) > 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_out_during_a_refresh_stays_signed_out() {
    let redis = RedisTopology::start(1);
    // 8-second tokens: the refresh falls due 6 s after the sign-in.
    let env = start_redis(&redis, 8, false).await;
    let (a, _) = env.login("app1.example.com", "alice").await;
    let logged_in = Instant::now();
    let cookie = env.session_cookie(&a);
    let url = env.url("app1.example.com", "/api/during");
    until(logged_in + Duration::from_millis(6_500)).await;
    env.idp.set_fault(&env.ca, "token_delay_ms", 3000).await;
    let (calls_before, _) = env.idp.token_stats(&env.ca).await;
    let refreshing = {
        let (client, url, cookie) = (a.client.clone(), url.clone(), cookie.clone());
        tokio::spawn(async move { get_with_cookie(&client, &url, &cookie).await })
    };
    // The refresh has reached the provider (which holds it for 3 s): sign out now.
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.idp.token_stats(&env.ca).await.0 == calls_before {
        assert!(Instant::now() < deadline, "the refresh never reached the provider");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = env
        .browser()
        .get(env.url("app1.example.com", "/oauth2/sign_out"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 302);
    let (status, body) = refreshing.await.unwrap();
    assert_eq!(status, 401, "the request whose refresh lost to the sign-out: {body}");
    env.idp.set_fault(&env.ca, "token_delay_ms", 0).await;
    let (status, _) = get_with_cookie(&a.client, &url, &cookie).await;
    assert_eq!(status, 401, "still signed out after the refresh finished");
    assert_eq!(
        env.gw
            .metric("authgate_session_refreshes_total{provider=\"corp\",result=\"signed_out\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_outage_serves_valid_tokens_and_answers_503_once_they_expire() {
    // Memory store; 12-second tokens: refresh due after 9 s, expired after 12 s.
    let env = AuthEnv::start("", serde_json::json!({ "access_token": 12 })).await;
    let (a, _) = env.login("app1.example.com", "alice").await;
    let logged_in = Instant::now();
    let cookie = env.session_cookie(&a);
    let url = env.url("app1.example.com", "/api/outage");
    env.idp.set_fault(&env.ca, "token_status", 503).await;
    until(logged_in + Duration::from_millis(10_200)).await;
    let (status, body) = get_with_cookie(&a.client, &url, &cookie).await;
    assert_eq!(status, 200, "refresh due, provider down, token still valid: {body}");
    assert!(
        env.gw
            .metric("authgate_session_refreshes_total{provider=\"corp\",result=\"unavailable\"}")
            .await
            >= 1.0
    );
    until(logged_in + Duration::from_millis(13_500)).await;
    let (status, body) = get_with_cookie(&a.client, &url, &cookie).await;
    assert_eq!(status, 503, "token expired and cannot be refreshed: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "identity_provider_unavailable", "{json}");
    // The provider is back: the same session refreshes and is served again.
    env.idp.set_fault(&env.ca, "token_status", 0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = get_with_cookie(&a.client, &url, &cookie).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status {status} after the provider came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Redis store of the crate, on the harness's Sentinel topology.
fn redis_store(redis: &RedisTopology) -> Arc<authgate::session::redis_store::RedisStore> {
    use authgate::config::schema::{CacheSpec, RedisSpec, RedisTimeouts, SentinelSpec};
    let spec = RedisSpec {
        sentinel: Some(SentinelSpec {
            master: redis.master_name().to_owned(),
            addresses: redis.sentinel_addrs(),
            username_env: None,
            password_env: None,
        }),
        url: None,
        username_env: None,
        password_env: None,
        key_prefix: "authgate:".to_owned(),
        timeouts: RedisTimeouts::default(),
        tls: None,
    };
    let settings = authgate::session::redis_store::RedisSettings {
        spec,
        username: Some(redis.username().to_owned()),
        password: Some(redis.password().to_owned()),
        sentinel_username: None,
        sentinel_password: None,
        cache: CacheSpec::default(),
        tls_ca: None,
    };
    let metrics = Arc::new(authgate::metrics::Metrics::new().unwrap());
    let store = authgate::session::redis_store::RedisStore::new(settings, metrics).unwrap();
    store.start();
    store
}

fn session(version: u64) -> Arc<authgate::session::Session> {
    let t = authgate::session::now();
    Arc::new(authgate::session::Session {
        provider: "corp".into(),
        identity: Default::default(),
        access_token: Some("at".into()),
        access_expires_at: Some(t + 30),
        refresh_token: Some("rt".into()),
        id_token: None,
        sid: None,
        created_at: t,
        refreshed_at: t,
        expires_at: t + 3600,
        version,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_replace_is_a_compare_and_set_and_the_lock_is_released_only_by_its_owner() {
    use authgate::session::{LockToken, Store, Ticket};
    let redis = RedisTopology::start(1);
    let store = redis_store(&redis);
    let ticket = Ticket::new().unwrap();
    store.save(&ticket, session(0)).await.unwrap();

    // Compare-and-set on the version.
    assert!(!store.replace(&ticket, 3, session(4)).await.unwrap(), "wrong version");
    assert!(store.replace(&ticket, 0, session(1)).await.unwrap());
    assert_eq!(store.load_fresh(&ticket).await.unwrap().unwrap().version, 1);
    assert!(!store.replace(&ticket, 0, session(1)).await.unwrap(), "stale version");
    store.delete(&ticket).await.unwrap();
    assert!(!store.replace(&ticket, 1, session(2)).await.unwrap(), "signed out");
    assert!(
        store.load_fresh(&ticket).await.unwrap().is_none(),
        "a sign-out is never undone"
    );

    // Compare-and-delete of the refresh lock.
    let ttl = Duration::from_secs(10);
    let owner = store.lock(&ticket, ttl).await.unwrap().expect("free lock");
    assert!(store.lock(&ticket, ttl).await.unwrap().is_none(), "held");
    store.unlock(&ticket, &LockToken("not-the-owner".into())).await.unwrap();
    assert!(
        store.lock(&ticket, ttl).await.unwrap().is_none(),
        "a stranger cannot release it"
    );
    store.unlock(&ticket, &owner).await.unwrap();
    let next = store.lock(&ticket, ttl).await.unwrap();
    assert!(
        next.is_some_and(|t| t != owner),
        "released by its owner, taken with a new token"
    );
}
