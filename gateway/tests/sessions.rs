//! Shared sessions over real Redis + Sentinel (Debian's redis-server and redis-sentinel started
//! by the harness: one master, replicas, three sentinels, an ACL user): two gateways sharing
//! sign-ins, sign-out reaching every replica, the cache making no Redis call, Redis outages,
//! and failovers graceful and brutal.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::authenv::*;
use common::idp::{browse, walk_until};
use common::redis::RedisTopology;
use common::TestCa;

async fn start(redis: &RedisTopology, cache_ttl: &str) -> AuthEnv {
    let main = redis.sessions_yaml(cache_ttl);
    let env = redis.gateway_env();
    AuthEnv::start_with("", serde_json::json!({}), move |_, _| Extra {
        main,
        env,
        second_gateway: true,
        ..Extra::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_share_sign_ins_and_sign_out_reaches_the_other_within_a_second() {
    let redis = RedisTopology::start(2);
    let env = start(&redis, "60s").await;
    let (a, _) = env.login("app1.example.com", "alice").await;
    let cookie = env.session_cookie(&a);
    let b = env.browser_b();
    // Valid on B without logging in there; both gateways now have it cached.
    assert_eq!(
        status_with_cookie(&b, &env.url_b("app1.example.com", "/x"), &cookie).await,
        200,
        "{}",
        env.gw_b.as_ref().unwrap().logs()
    );
    assert_eq!(
        status_with_cookie(&a, &env.url("app1.example.com", "/x"), &cookie).await,
        200
    );
    // Sign out on B: A refuses the cookie within a second, long before its 60 s cache TTL.
    let r = b
        .get(env.url_b("app1.example.com", "/oauth2/sign_out"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let signed_out = Instant::now();
    loop {
        let s = status_with_cookie(&env.browser(), &env.url("app1.example.com", "/x"), &cookie).await;
        if s == 401 {
            break;
        }
        assert_eq!(s, 200);
        assert!(
            signed_out.elapsed() < Duration::from_secs(1),
            "A still accepts the signed-out cookie after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        env.gw
            .metric("authgate_session_invalidations_total{direction=\"received\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_hit_makes_no_redis_command_and_redis_holds_no_plaintext() {
    let redis = RedisTopology::start(1);
    let env = start(&redis, "60s").await;
    let (a, echo) = env.login("app1.example.com", "alice").await;
    let token = header(&echo, "x-auth-request-access-token").unwrap().to_owned();
    let master = redis.master_addr();
    // Nothing readable in Redis: no email, no name, no token.
    let dump = redis.keys_dump(&master);
    assert!(!dump.is_empty());
    for (key, value) in &dump {
        let text = String::from_utf8_lossy(value);
        for secret in ["alice", "example.com", token.as_str()] {
            assert!(
                !key.contains(secret) && !text.contains(secret),
                "{key} reveals {secret}"
            );
        }
    }
    // Warm, then count: cached requests make zero Redis commands.
    assert_eq!(
        a.get(env.url("app1.example.com", "/warm"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    redis.reset_stats(&master);
    for _ in 0..20 {
        assert_eq!(
            a.get(env.url("app1.example.com", "/hot"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        redis.command_count(&master, "get"),
        0,
        "cache hits must not reach Redis"
    );
    assert!(
        env.gw
            .metric("authgate_session_cache_requests_total{result=\"hit\"}")
            .await
            >= 20.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_serves_cached_sessions_answers_503_otherwise_stays_ready_and_recovers() {
    let redis = RedisTopology::start(1);
    let env = start(&redis, "60s").await;
    let (a, _) = env.login("app1.example.com", "alice").await;
    let cookie = env.session_cookie(&a);
    assert_eq!(
        a.get(env.url("app1.example.com", "/warm"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    redis.stop_all_data_nodes();
    // A has the session cached: still served.
    for _ in 0..5 {
        assert_eq!(
            a.get(env.url("app1.example.com", "/cached"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // B has never seen it: a clear 503, not a login loop and not a 500.
    let b = env.browser_b();
    let r = b
        .get(env.url_b("app1.example.com", "/uncached"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "{}", env.gw_b.as_ref().unwrap().logs());
    assert!(r.text().await.unwrap().contains("temporarily unavailable"));
    let r = b
        .get(env.url_b("app1.example.com", "/api/x"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "session_store_unavailable"
    );
    // Both replicas stay ready (a Redis outage must not empty the load balancer); the store's
    // state is in the body and in a metric.
    let gw_b = env.gw_b.as_ref().unwrap();
    for gw in [&env.gw, gw_b] {
        let ready = reqwest::get(format!("http://{}/ready", gw.admin)).await.unwrap();
        assert_eq!(ready.status(), 200, "{}", gw.logs());
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["session_store"], "down", "{body}");
        assert_eq!(gw.metric("authgate_session_store_up").await, 0.0);
    }
    // Redis comes back (empty: no persistence in the harness): service resumes by itself.
    redis.start_all_data_nodes();
    redis.wait_settled();
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw_b.ready().await["session_store"] != "up" {
        assert!(Instant::now() < deadline, "B never saw the store come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gw_b.metric("authgate_session_store_up").await, 1.0);
    let fresh = env.browser_b();
    let (resp, visited) = browse(&fresh, &env.url_b("app1.example.com", "/again"), "alice", "alice-pw").await;
    assert_eq!(resp.status(), 200, "login works again: {visited:?}");
}

/// Logs in on A in a stream: `n` logins at least, while `during` (a failover) runs on another
/// thread and three more after it has finished; a login that meets the failover is retried.
/// Returns the session cookies.
async fn login_stream(env: &AuthEnv, n: usize, during: impl FnOnce() + Send + 'static) -> Vec<String> {
    let mut cookies = Vec::new();
    let mut during = Some(during);
    let mut handle: Option<std::thread::JoinHandle<()>> = None;
    let mut after = 0;
    let mut i = 0;
    while i < n || after < 3 {
        if i == n / 3 {
            if let Some(f) = during.take() {
                handle = Some(std::thread::spawn(f));
            }
        }
        if handle.as_ref().is_some_and(|h| h.is_finished()) {
            after += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let b = env.browser();
            let (resp, _) = browse(
                &b,
                &env.url("app1.example.com", &format!("/login/{i}")),
                "alice",
                "alice-pw",
            )
            .await;
            if resp.status() == 200 {
                cookies.push(env.session_cookie(&b));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "logins never worked again after the failover"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        i += 1;
    }
    if let Some(h) = handle {
        h.join().unwrap();
    }
    cookies
}

async fn all_valid_on_b(env: &AuthEnv, cookies: &[String]) {
    let b = env.browser_b();
    for (i, cookie) in cookies.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = status_with_cookie(&b, &env.url_b("app1.example.com", "/check"), cookie).await;
            if s == 200 {
                break;
            }
            assert_ne!(s, 401, "session {i} was lost in the failover");
            assert!(Instant::now() < deadline, "session {i}: status {s}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_across_a_graceful_failover_are_all_kept() {
    let redis = std::sync::Arc::new(RedisTopology::start(2));
    let env = start(&redis, "60s").await;
    let r = redis.clone();
    let cookies = login_stream(&env, 12, move || {
        r.failover();
    })
    .await;
    assert!(cookies.len() >= 12);
    all_valid_on_b(&env, &cookies).await;
    assert!(
        env.gw.metric("authgate_redis_failovers_total").await >= 1.0,
        "{}",
        env.gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_master_fails_no_cached_request_and_loses_no_session() {
    let redis = std::sync::Arc::new(RedisTopology::start(2));
    let env = start(&redis, "60s").await;
    // Sessions made before the failover, cached on A.
    let (a, _) = env.login("app1.example.com", "alice").await;
    let before = env.session_cookie(&a);
    assert_eq!(
        a.get(env.url("app1.example.com", "/warm"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A steady request loop with the cached session while the master dies.
    let url = env.url("app1.example.com", "/loop");
    let client = a.client.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let looper = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, 0u32);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            match client.get(&url).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    });
    let r = redis.clone();
    let cookies = login_stream(&env, 9, move || {
        let old = r.kill_master();
        r.wait_new_master(&old);
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = looper.await.unwrap();
    assert_eq!(failed, 0, "cached requests failed during the failover ({ok} succeeded)");
    let mut all = vec![before];
    all.extend(cookies);
    all_valid_on_b(&env, &all).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn minted_sessions_and_logins_in_flight_work_on_any_replica() {
    let redis = RedisTopology::start(1);
    let env = start(&redis, "60s").await;
    // `authgate session mint` writes a session into the shared store; both gateways accept it.
    let out = std::process::Command::new(common::binary())
        .args([
            "session",
            "mint",
            "--provider",
            "corp",
            "--email",
            "loadtest@example.com",
            "--groups",
            "admins",
            "--count",
            "2",
            "-c",
        ])
        .arg(env.config.main_file())
        .env(COOKIE_SECRET, cookie_key())
        .env("CORP_SECRET", CLIENT_SECRET)
        .env("TEST_REDIS_USER", redis.username())
        .env("TEST_REDIS_PASSWORD", redis.password())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cookies: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(cookies.len(), 2);
    assert!(cookies[0].starts_with("_authgate_corp=v1."));
    let r = env
        .browser()
        .get(env.url("admin.example.com", "/"))
        .header("cookie", &cookies[0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(header(&echo, "x-auth-request-email"), Some("loadtest@example.com"));
    assert_eq!(
        status_with_cookie(&env.browser_b(), &env.url_b("app1.example.com", "/"), &cookies[1]).await,
        200
    );

    // A login started on A and finished on B: the login state travels in the sealed cookie.
    let b = env.browser();
    let callback = walk_until(
        &b,
        &env.url("app1.example.com", "/started-on-a"),
        "alice",
        "alice-pw",
        |u| u.path() == "/oauth2/callback",
    )
    .await
    .to_string();
    // Same browser cookies, but the balancer sends the callback to B: B's socket, A's origin.
    let jar_cookies = {
        use reqwest::cookie::CookieStore;
        b.jar
            .cookies(&callback.parse().unwrap())
            .map(|h| h.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let gw_b = env.gw_b.as_ref().unwrap();
    let url = reqwest::Url::parse(&callback).unwrap();
    let target = format!("{}?{}", url.path(), url.query().unwrap());
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: app1.example.com:{}\r\nCookie: {jar_cookies}\r\nConnection: close\r\n\r\n",
        env.gw.https.port()
    );
    let mut s = common::tls_connect(&env.ca, gw_b.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
    let resp = common::raw_exchange(&mut s, request.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 302"), "{resp}\n{}", gw_b.logs());
    assert!(resp.to_ascii_lowercase().contains("location: /started-on-a"), "{resp}");
    assert!(resp.contains("_authgate_corp=v1."), "a session cookie was set: {resp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_refreshes_on_two_replicas_make_one_refresh() {
    let redis = RedisTopology::start(1);
    let main = redis.sessions_yaml("60s");
    let vars = redis.gateway_env();
    // Access tokens live 2 s: once it has expired, every request finds it due.
    let env = AuthEnv::start_with("", serde_json::json!({ "access_token": 2 }), move |_, _| Extra {
        main,
        env: vars,
        second_gateway: true,
        ..Extra::default()
    })
    .await;
    let (a, _) = env.login("app1.example.com", "alice").await;
    // The token ages into its refresh window (a clock wait, not a readiness wait).
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let cookie = env.session_cookie(&a);
    let b = env.browser_b();
    let series = "authgate_session_refreshes_total{provider=\"corp\",result=\"refreshed\"}";
    let before = env.gw.metric(series).await + env.gw_b.as_ref().unwrap().metric(series).await;
    let mut requests = Vec::new();
    for i in 0..8 {
        let (client, url) = if i % 2 == 0 {
            (a.client.clone(), env.url("app1.example.com", "/r"))
        } else {
            (b.client.clone(), env.url_b("app1.example.com", "/r"))
        };
        let cookie = cookie.clone();
        requests.push(tokio::spawn(
            async move { status_with_cookie(&client, &url, &cookie).await },
        ));
    }
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    let after = env.gw.metric(series).await + env.gw_b.as_ref().unwrap().metric(series).await;
    assert_eq!(
        after - before,
        1.0,
        "eight concurrent requests on two replicas, one refresh at the provider"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_reach_redis_over_tls_verified_against_a_private_ca() {
    // A standalone Redis that only speaks TLS, with a certificate from the test CA.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (crt, key) = ca.write_leaf(dir.path(), "redis", &["127.0.0.1", "localhost"]);
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    let port = common::free_port();
    let _server = KillOnDrop(
        std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(dir.path().join(&crt))
            .arg("--tls-key-file")
            .arg(dir.path().join(&key))
            .arg("--tls-ca-cert-file")
            .arg(dir.path().join("ca.pem"))
            .args(["--tls-auth-clients", "no", "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server with TLS did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ca_path = dir.path().join("ca.pem");
    let main = format!(
        "sessions:\n  store: redis\n  redis:\n    url: \"rediss://127.0.0.1:{port}/0\"\n    tls: {{ ca_file: \"{}\" }}\n",
        ca_path.display()
    );
    let env = AuthEnv::start_with("", serde_json::json!({}), move |_, _| Extra {
        main,
        ..Extra::default()
    })
    .await;
    let (browser, echo) = env.login("app1.example.com", "alice").await;
    assert_eq!(header(&echo, "x-auth-request-email"), Some("alice@example.com"));
    assert_eq!(
        browser
            .get(env.url("app1.example.com", "/again"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let resolutions = "authgate_redis_master_resolutions_total{result=\"ok\",trigger=\"startup\"}";
    assert!(env.gw.metric(resolutions).await >= 1.0, "{}", env.gw.metrics().await);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until `cookie` gets `want` on `url` (bounded: 1 s, the invalidation promise).
#[tokio::test(flavor = "multi_thread")]
async fn sign_out_everywhere_and_session_revoke_end_a_users_sessions_on_every_replica() {
    let redis = RedisTopology::start(2);
    let env = start(&redis, "60s").await;
    let (alice1, _) = env.login("app1.example.com", "alice").await;
    let (alice2, _) = env.login("app1.example.com", "alice").await;
    let (bob, _) = env.login("app1.example.com", "bob").await;
    let (a1, a2, b) = (
        env.session_cookie(&alice1),
        env.session_cookie(&alice2),
        env.session_cookie(&bob),
    );
    assert_ne!(a1, a2, "two sessions of one user");
    let on_a = env.url("app1.example.com", "/x");
    let on_b = env.url_b("app1.example.com", "/x");
    let browser_b = env.browser_b();
    for cookie in [&a1, &a2, &b] {
        // Cached on both replicas.
        assert_eq!(status_with_cookie(&env.browser(), &on_a, cookie).await, 200);
        assert_eq!(status_with_cookie(&browser_b, &on_b, cookie).await, 200);
    }
    // Alice signs out everywhere through replica B with her first session: her second one
    // ends on replica A too, within a second; Bob's is untouched.
    let r = browser_b
        .get(env.url_b("app1.example.com", "/oauth2/sign_out?everywhere=1"))
        .header("cookie", &a1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    wait_for_status(&env.browser(), &on_a, &a2, 401).await;
    assert_eq!(status_with_cookie(&browser_b, &on_b, &a2).await, 401);
    assert_eq!(status_with_cookie(&env.browser(), &on_a, &b).await, 200);

    // An operator ends Bob's sessions by email from the command line.
    let out = std::process::Command::new(common::binary())
        .args(["session", "revoke", "-c"])
        .arg(env.config.main_file())
        .args(["--email", "BOB@example.com"])
        .env("TEST_REDIS_USER", redis.username())
        .env("TEST_REDIS_PASSWORD", redis.password())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 sessions ended");
    wait_for_status(&env.browser(), &on_a, &b, 401).await;
    assert_eq!(status_with_cookie(&browser_b, &on_b, &b).await, 401);
    // The index holds no personal data in its key names.
    let mut admin = redis.admin_connection(&redis.master_addr());
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("authgate:*").query(&mut admin).unwrap();
    assert!(
        keys.iter().all(|k| !k.contains("alice") && !k.contains("bob")),
        "{keys:?}"
    );
}
