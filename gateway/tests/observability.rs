//! Observability over real sockets: request ids and W3C trace context (to the upstream and
//! back to the client), the JSON access and audit logs on standard output, and metrics
//! present from the start.
#![allow(clippy::unwrap_used)]

mod common;

use common::authenv::{self, header, AuthEnv, Extra};
use common::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A gateway logging JSON, with app1 (public) in front of an echo upstream.
async fn json_env(upstream: &Upstream) -> Env {
    json_env_with(upstream, &Blocks::default()).await
}

/// As [`json_env`], with extra fields in the main file's `listen:` and `server:` blocks.
async fn json_env_with(upstream: &Upstream, blocks: &Blocks) -> Env {
    let ca = TestCa::new();
    let config = ConfigDir::new();
    let (crt, key) = ca.write_leaf(config.path(), "wildcard", &["*.example.com"]);
    config.write_main_with(&[(&crt, &key)], blocks, "");
    config.write_app("app1", &app_yaml("app1.example.com", &[upstream.addr], ""));
    let gw = Gateway::start_with_env(&config, &[("AUTHGATE_LOG_FORMAT", "json")]).await;
    Env { ca, config, gw }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_generated_sent_upstream_returned_and_logged() {
    let up = Upstream::start("echo").await;
    let env = json_env(&up).await;
    let client = env.client(&["app1.example.com", "nowhere.example.com"]);
    // An untrusted client's own X-Request-Id is not believed.
    let r = client
        .get(env.gw.url("app1.example.com", "/a/b?secret=1"))
        .header("x-request-id", "chosen-by-the-client")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(is_hex(&id, 32), "{id}");
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(header(&echo, "x-request-id"), Some(id.as_str()), "{echo}");
    assert_eq!(echo["headers"]["x-request-id"].as_array().unwrap().len(), 1);

    // The access log line of that request, with both latencies and the upstream.
    let line = env
        .gw
        .wait_log_line("authgate::access", |v| v["request_id"] == id.as_str())
        .await;
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["app"], "app1");
    assert_eq!(line["host"], "app1.example.com");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/a/b", "no query string: {line}");
    assert_eq!(line["status"], 200);
    assert_eq!(line["upstream"], up.addr.to_string());
    assert_eq!(line["client"], "127.0.0.1");
    assert!(line["duration_ms"].as_f64().unwrap() >= line["upstream_ms"].as_f64().unwrap());
    assert_eq!(line["user"], serde_json::Value::Null);
    assert_eq!(line["auth"], serde_json::Value::Null);
    assert!(is_hex(line["trace_id"].as_str().unwrap(), 32), "{line}");

    // Answers the gateway writes itself carry an id too.
    let r = client.get(env.gw.url("nowhere.example.com", "/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let other = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(is_hex(&other, 32) && other != id);
    let line = env
        .gw
        .wait_log_line("authgate::access", |v| v["request_id"] == other.as_str())
        .await;
    assert_eq!((line["status"].as_u64(), line["app"].as_str()), (Some(404), Some("-")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxys_request_id_is_kept() {
    let up = Upstream::start("echo").await;
    let blocks = Blocks {
        server: ", trusted_proxies: [127.0.0.0/8]".into(),
        ..Default::default()
    };
    let env = json_env_with(&up, &blocks).await;
    let client = env.client(&["app1.example.com"]);
    let send = |ids: &'static [&'static str]| {
        let mut req = client.get(env.gw.url("app1.example.com", "/"));
        for id in ids {
            req = req.header("x-request-id", *id);
        }
        req.send()
    };
    // The load balancer's id is the request's id: upstream, in the response and in the log.
    let r = send(&["lb-7f3a.0001"]).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "lb-7f3a.0001");
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(header(&echo, "x-request-id"), Some("lb-7f3a.0001"), "{echo}");
    assert_eq!(echo["headers"]["x-request-id"].as_array().unwrap().len(), 1);
    env.gw
        .wait_log_line("authgate::access", |v| v["request_id"] == "lb-7f3a.0001")
        .await;
    // Even from a trusted peer, an id that is not one visible-ASCII token, or two ids, are
    // replaced by a generated one.
    for ids in [&["has space"][..], &["a", "b"][..]] {
        let r = send(ids).await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(is_hex(&id, 32), "{ids:?}: {id}");
        let echo: serde_json::Value = r.json().await.unwrap();
        assert_eq!(header(&echo, "x-request-id"), Some(id.as_str()), "{echo}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn traceparent_continues_a_trace_with_a_new_span_or_starts_one() {
    let up = Upstream::start("echo").await;
    let env = json_env(&up).await;
    let client = env.client(&["app1.example.com"]);
    let get = |traceparent: &'static str| {
        client
            .get(env.gw.url("app1.example.com", "/"))
            .header("traceparent", traceparent)
            .header("tracestate", "congo=t61rcWkgMzE")
            .send()
    };

    let echo: serde_json::Value = get(PARENT).await.unwrap().json().await.unwrap();
    let tp = header(&echo, "traceparent").unwrap().to_owned();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE_ID, "01"),
        "same trace: {tp}"
    );
    assert!(
        is_hex(parts[2], 16) && parts[2] != "00f067aa0ba902b7",
        "a new span id: {tp}"
    );
    assert_eq!(header(&echo, "tracestate"), Some("congo=t61rcWkgMzE"));
    env.gw
        .wait_log_line("authgate::access", |v| {
            v["trace_id"] == TRACE_ID && v["span_id"] == parts[2]
        })
        .await;

    // Malformed (upper-case hex): a new trace, and the orphan tracestate is dropped.
    let echo: serde_json::Value = get("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tp = header(&echo, "traceparent").unwrap();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert!(is_hex(parts[1], 32) && !parts[1].eq_ignore_ascii_case(TRACE_ID), "{tp}");
    assert!(is_hex(parts[2], 16), "{tp}");
    assert_eq!(header(&echo, "tracestate"), None, "{echo}");
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_exist_at_zero_from_the_start() {
    let up = Upstream::start("echo").await;
    let env = json_env(&up).await;
    let text = env.gw.metrics().await;
    for series in [
        "authgate_config_reloads_total{result=\"failure\"} 0",
        "authgate_config_reloads_total{result=\"success\"} 0",
        "authgate_rejected_requests_total{reason=\"bad_host\"} 0",
        "authgate_upstream_errors_total{app=\"app1\",kind=\"connect\"} 0",
        "authgate_upstream_errors_total{app=\"app1\",kind=\"no_healthy_backend\"} 0",
        "authgate_backend_health_changes_total{to=\"down\"} 0",
        "authgate_access_log_dropped_total 0",
        "authgate_build_info{version=\"",
        "process_open_fds ",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    // The end-to-end histogram appears with the first request.
    let (status, _) = env.get_json("app1.example.com", "/").await;
    assert_eq!(status, 200);
    env.gw
        .wait_metric("authgate_request_duration_seconds_count{app=\"app1\"}", 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_and_audit_logs_name_the_user_as_log_identity_says() {
    let env = AuthEnv::start_with("", serde_json::json!({}), |_, _| Extra {
        main: "log: { identity: email }\n".to_owned(),
        env: vec![("AUTHGATE_LOG_FORMAT".to_owned(), "json".to_owned())],
        ..Extra::default()
    })
    .await;
    let (browser, _) = env.login("app1.example.com", "bob").await;
    let r = browser.get(env.url("app1.example.com", "/mine")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let line = env
        .gw
        .wait_log_line("authgate::access", |v| v["request_id"] == id.as_str())
        .await;
    assert_eq!(line["user"], "bob@example.com", "{line}");
    assert_eq!(line["auth"], "allowed");
    let audit = env
        .gw
        .wait_log_line("authgate::audit", |v| v["request_id"] == id.as_str())
        .await;
    assert_eq!(audit["user"], "bob@example.com");
    assert_eq!(audit["app"], "app1");
    assert_eq!(audit["outcome"], "allowed");
    assert_eq!(audit["rule"], "policy");
    assert_eq!(audit["provider"], "corp");

    // bob is not in admins: refused, and the audit log says who and by which rule.
    let r = browser.get(env.url("admin.example.com", "/")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let audit = env
        .gw
        .wait_log_line("authgate::audit", |v| v["request_id"] == id.as_str())
        .await;
    assert_eq!(
        (
            audit["user"].as_str(),
            audit["outcome"].as_str(),
            audit["rule"].as_str()
        ),
        (Some("bob@example.com"), Some("forbidden"), Some("allowed_groups")),
        "{audit}"
    );
    // A signed-out API request: no user.
    let r = env
        .browser()
        .get(env.url("app1.example.com", "/api/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let audit = env
        .gw
        .wait_log_line("authgate::audit", |v| v["request_id"] == id.as_str())
        .await;
    assert_eq!(audit["user"], serde_json::Value::Null);
    assert_eq!(
        (audit["outcome"].as_str(), audit["rule"].as_str()),
        (Some("unauthorized"), Some("no_session"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_outage_at_sign_in_is_counted_as_an_outage_not_a_redirect() {
    let up = Upstream::start("echo").await;
    let ca = TestCa::new();
    let config = ConfigDir::new();
    let (crt, key) = ca.write_leaf(config.path(), "wildcard", &["*.example.com"]);
    // The provider's port has nothing listening: its metadata can never be fetched.
    let dead = free_port();
    config.write_main(
        &[(&crt, &key)],
        &format!(
            "cookie: {{ secrets_env: {} }}\nproviders:\n  corp: {{ type: oidc, issuer_url: \"https://127.0.0.1:{dead}\", \
             client_id: gateway, client_secret_env: CORP_SECRET }}\n",
            authenv::COOKIE_SECRET
        ),
    );
    config.write_app(
        "app1",
        &app_yaml(
            "app1.example.com",
            &[up.addr],
            "auth: { provider: corp, email_domains: [\"*\"] }\n",
        ),
    );
    let key = authenv::cookie_key();
    let gw = Gateway::start_with_env(
        &config,
        &[
            (authenv::COOKIE_SECRET, key.as_str()),
            ("CORP_SECRET", "s"),
            ("AUTHGATE_LOG_FORMAT", "json"),
        ],
    )
    .await;
    let env = Env { ca, config, gw };
    let decisions = |outcome: &str| format!("authgate_auth_decisions_total{{app=\"app1\",outcome=\"{outcome}\"}}");
    assert_eq!(env.gw.metric(&decisions("idp_unavailable")).await, 0.0);
    let r = env
        .client(&["app1.example.com"])
        .get(env.gw.url("app1.example.com", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    env.gw.wait_metric(&decisions("idp_unavailable"), 1.0).await;
    assert_eq!(env.gw.metric(&decisions("redirect")).await, 0.0);
    let audit = env
        .gw
        .wait_log_line("authgate::audit", |v| v["request_id"] == id.as_str())
        .await;
    assert_eq!(
        (audit["outcome"].as_str(), audit["rule"].as_str()),
        (Some("idp_unavailable"), Some("provider"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn per_app_series_start_at_zero_and_leave_with_their_app() {
    let up = Upstream::start("echo").await;
    let named = format!("localhost:{}", up.addr.port());
    let env = Env::start(
        &[
            ("app1", app_yaml("app1.example.com", &[up.addr], "")),
            ("app2", format!("host: app2.example.com\nupstreams: [\"{named}\"]\n")),
        ],
        "",
    )
    .await;
    let file = |app: &str| {
        env.config
            .path()
            .join(format!("apps.d/{app}.yaml"))
            .display()
            .to_string()
    };
    let text = env.gw.metrics().await;
    for series in [
        format!(
            "authgate_config_file_rejected{{app=\"app1\",file=\"{}\"}} 0",
            file("app1")
        ),
        format!(
            "authgate_config_file_rejected{{app=\"app2\",file=\"{}\"}} 0",
            file("app2")
        ),
        format!("authgate_upstream_resolution_failures_total{{upstream=\"{named}\"}} 0"),
        "authgate_session_store_up 1".to_owned(),
    ] {
        assert!(text.contains(&series), "{series} missing:\n{text}");
    }
    for app in ["app1", "app2"] {
        assert_eq!(env.get_json(&format!("{app}.example.com"), "/").await.0, 200);
        env.gw
            .wait_metric(
                &format!("authgate_request_duration_seconds_count{{app=\"{app}\"}}"),
                1.0,
            )
            .await;
    }

    // Deleting app2 takes its series (and its upstream name's) out; app1 keeps its own.
    env.config.remove_app("app2");
    env.gw.wait_generation(2).await;
    let text = env.gw.metrics().await;
    assert!(!text.contains("app=\"app2\""), "ghost series of app2:\n{text}");
    assert!(!text.contains(&named), "ghost upstream series:\n{text}");
    for series in [
        "authgate_requests_total{app=\"app1\",status=\"200\"} 1",
        "authgate_request_duration_seconds_count{app=\"app1\"} 1",
        "authgate_upstream_errors_total{app=\"app1\",kind=\"connect\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
}
