//! Pools over real sockets: round robin, consistent hashing, health-check ejection and
//! return, connect retry on another backend, 502 and 504.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::*;

async fn names(env: &Env, host: &str, n: usize) -> HashMap<String, usize> {
    let client = env.client(&[host]);
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = client.get(env.gw.url(host, "/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        *counts.entry(body["name"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_spreads_requests_evenly() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let env = Env::start(
        &[(
            "app",
            app_yaml(
                "app.example.com",
                &[a.addr, b.addr, c.addr],
                "load_balancing: round_robin\n",
            ),
        )],
        "",
    )
    .await;
    let counts = names(&env, "app.example.com", 30).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 10), "round robin is exact: {counts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn consistent_hash_keeps_a_client_on_one_backend() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let env = Env::start(
        &[(
            "app",
            app_yaml(
                "app.example.com",
                &[a.addr, b.addr, c.addr],
                "load_balancing: consistent_hash\n",
            ),
        )],
        "",
    )
    .await;
    let counts = names(&env, "app.example.com", 20).await;
    assert_eq!(counts.len(), 1, "one client address sticks to one backend: {counts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unhealthy_backend_is_taken_out_and_comes_back() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let hc = "health_check: { path: /healthz, interval: 100ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }\n";
    let env = Env::start(&[("app", app_yaml("app.example.com", &[a.addr, b.addr], hc))], "").await;
    let series = format!("authgate_backend_healthy{{app=\"app\",backend=\"{}\"}}", b.addr);
    env.gw.wait_metric(&series, 1.0).await;
    let before = b.echo.requests();

    // b starts failing its health check: it is taken out and gets no traffic.
    let direct = reqwest::Client::new();
    direct
        .get(format!("http://{}/__health/off", b.addr))
        .send()
        .await
        .unwrap();
    env.gw.wait_metric(&series, 0.0).await;
    let counts = names(&env, "app.example.com", 10).await;
    assert_eq!(counts.get("a"), Some(&10), "{counts:?}");
    assert!(
        env.gw
            .metric("authgate_backend_health_changes_total{to=\"down\"}")
            .await
            >= 1.0
    );

    // b recovers: it is put back and shares the traffic again.
    direct
        .get(format!("http://{}/__health/on", b.addr))
        .send()
        .await
        .unwrap();
    env.gw.wait_metric(&series, 1.0).await;
    let counts = names(&env, "app.example.com", 10).await;
    assert_eq!(counts.get("b"), Some(&5), "{counts:?}");
    assert!(b.echo.requests() > before, "b was probed");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failure_is_retried_once_on_another_backend() {
    let live = Upstream::start("live").await;
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    // Long health-check interval: only the per-request retry can save these requests.
    let hc = "health_check: { interval: 1h }\n";
    let env = Env::start(&[("app", app_yaml("app.example.com", &[dead, live.addr], hc))], "").await;
    let counts = names(&env, "app.example.com", 10).await;
    assert_eq!(counts.get("live"), Some(&10));
    assert!(
        env.gw
            .metric("authgate_upstream_errors_total{app=\"app\",kind=\"connect\"}")
            .await
            >= 4.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_reachable_backend_is_502_and_a_slow_one_is_504() {
    let slow = Upstream::start("slow").await;
    let dead1 = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dead2 = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let env = Env::start(
        &[
            (
                "down",
                app_yaml("down.example.com", &[dead1, dead2], "health_check: { interval: 1h }\n"),
            ),
            (
                "slow",
                app_yaml("slow.example.com", &[slow.addr], "timeouts: { read: 300ms }\n"),
            ),
        ],
        "",
    )
    .await;
    let client = env.client(&["down.example.com", "slow.example.com"]);
    let r = client.get(env.gw.url("down.example.com", "/")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("no healthy backend could be reached"));
    let r = client
        .get(env.gw.url("slow.example.com", "/__delay/3000"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "gateway_timeout");
    let r = client
        .get(env.gw.url("slow.example.com", "/__delay/10"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a fast answer within the timeout passes");
    assert_eq!(
        env.gw
            .metric("authgate_requests_total{app=\"slow\",status=\"504\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_backend_unhealthy_gives_502() {
    let a = Upstream::start("a").await;
    let hc = "health_check: { path: /healthz, interval: 100ms, healthy_threshold: 1, unhealthy_threshold: 1 }\n";
    let env = Env::start(&[("app", app_yaml("app.example.com", &[a.addr], hc))], "").await;
    reqwest::Client::new()
        .get(format!("http://{}/__health/off", a.addr))
        .send()
        .await
        .unwrap();
    env.gw
        .wait_metric(
            &format!("authgate_backend_healthy{{app=\"app\",backend=\"{}\"}}", a.addr),
            0.0,
        )
        .await;
    let (s, _) = env.get_json("app.example.com", "/").await;
    assert_eq!(s, 502);
    assert!(
        env.gw
            .metric("authgate_upstream_errors_total{app=\"app\",kind=\"no_healthy_backend\"}")
            .await
            >= 1.0
    );
}
