//! Path routes within one host (issue 10 §2): `routes: [{path_prefix, upstreams, auth}]`,
//! longest whole-segment prefix on the canonical path, each route with its own pool and,
//! optionally, its own policy (`auth: null` for a public route), over HTTP/1.1 and HTTP/2,
//! in both directions (public→private and private→public), against upstreams that record
//! what they receive.

#![allow(clippy::unwrap_used)]

mod common;

use common::authenv::{header, AuthEnv, Extra};
use common::{app_yaml, h2c, raw_exchange, tls_connect, Env, Upstream};

/// What the gateway must do with a request: ask for a login, answer 401 (API), refuse it
/// (400), or proxy it to the named upstream with exactly this path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Login,
    Unauthorized,
    Refused,
    Forbidden,
    Proxied(&'static str, &'static str),
}
use Expect::*;

/// code.example.com: the app admits group `admins`; `/public` is public; `/docs/` admits any
/// example.com user; `/api` (own upstream) is an API for example.com users; `/api/v2/open`
/// (same upstream) is public.
fn code_app(api: std::net::SocketAddr) -> String {
    format!(
        "auth: {{ provider: corp, email_domains: [\"*\"], allowed_groups: [admins] }}\n\
         routes:\n\
         \x20 - path_prefix: /public\n\
         \x20   auth: null\n\
         \x20 - path_prefix: /docs/\n\
         \x20   auth: {{ provider: corp, email_domains: [example.com] }}\n\
         \x20 - path_prefix: /api\n\
         \x20   upstreams: [\"{api}\"]\n\
         \x20   auth: {{ provider: corp, email_domains: [example.com], api_routes: [\"^/\"] }}\n\
         \x20 - path_prefix: /api/v2/open\n\
         \x20   upstreams: [\"{api}\"]\n\
         \x20   auth: null\n"
    )
}

/// infra.example.com: a public app whose `/admin` route alone needs group `admins` (the
/// host's `/oauth2/` endpoints then belong to that route's policy).
const INFRA_APP: &str = "routes:\n  - path_prefix: /admin\n    auth: { provider: corp, email_domains: [\"*\"], allowed_groups: [admins] }\n";

async fn env() -> (AuthEnv, Upstream) {
    let api = Upstream::start("api").await;
    let api_addr = api.addr;
    let env = AuthEnv::start_with("", serde_json::json!({}), move |_, _| Extra {
        apps: vec![
            ("code".into(), "code.example.com".into(), code_app(api_addr)),
            ("infra".into(), "infra.example.com".into(), INFRA_APP.into()),
        ],
        ..Extra::default()
    })
    .await;
    (env, api)
}

/// One request over HTTP/1.1: (status, body).
fn h1(env: &AuthEnv, host: &str, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut s = tls_connect(&env.ca, env.gw.https, Some(host), &["http/1.1"]).unwrap();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let resp = raw_exchange(
        &mut s,
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\n{cookie}X-Forwarded-User: mallory\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let status = resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

/// One request over HTTP/2: (status, body).
async fn h2(env: &AuthEnv, host: &str, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut headers = vec![("x-forwarded-user", "mallory")];
    headers.extend(cookie.map(|c| ("cookie", c)));
    let r = h2c::get(&env.ca, env.gw.https, host, path, &headers).await;
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn check(what: &str, got: &(u16, String), want: Expect) -> serde_json::Value {
    let echo: serde_json::Value = serde_json::from_str(&got.1).unwrap_or_default();
    match want {
        Login => assert_eq!(got.0, 302, "{what}: {got:?}"),
        Unauthorized => assert_eq!(got.0, 401, "{what}: {got:?}"),
        Refused => assert_eq!(got.0, 400, "{what}: {got:?}"),
        Forbidden => assert_eq!(got.0, 403, "{what}: {got:?}"),
        Proxied(name, path) => {
            assert_eq!(
                (got.0, echo["name"].as_str(), echo["path"].as_str()),
                (200, Some(name), Some(path)),
                "{what}: {got:?}"
            );
            assert_ne!(
                header(&echo, "x-forwarded-user"),
                Some("mallory"),
                "{what}: a client-sent identity header never passes"
            );
        }
    }
    echo
}

/// Both protocols, where HTTP/2 can carry the path.
async fn check_both(env: &AuthEnv, host: &str, path: &str, cookie: Option<&str>, want: Expect) -> serde_json::Value {
    let echo = check(&format!("h1 {host}{path}"), &h1(env, host, path, cookie), want);
    if http::Uri::try_from(format!("https://{host}{path}")).is_ok() {
        check(&format!("h2 {host}{path}"), &h2(env, host, path, cookie).await, want);
    }
    echo
}

const SIGNED_OUT: &[(&str, Expect)] = &[
    ("/", Login),
    ("/public", Proxied("echo", "/public")),
    ("/public/x", Proxied("echo", "/public/x")),
    ("/publicx", Login),
    ("/docs/a", Login),
    ("/docs", Login),
    ("/api/x", Unauthorized),
    ("/apix", Login),
    ("/api/v2/open/x", Proxied("api", "/api/v2/open/x")),
    ("/api/v2/openx", Unauthorized),
    // Private → public: the upstream receives the canonical path the route was chosen by.
    ("/docs/../public/x", Proxied("echo", "/public/x")),
    ("/api/%2e%2e/public/x", Proxied("echo", "/public/x")),
    ("/%70ublic/x", Proxied("echo", "/public/x")),
    ("/api/x\\..\\v2\\open\\y", Proxied("api", "/api/v2/open/y")),
    ("//public//x", Proxied("echo", "/public/x")),
    // Public → private.
    ("/public/../docs/a", Login),
    ("/public/%2e%2e/api/x", Unauthorized),
    ("/api/v2/open/../../x", Unauthorized),
    ("/public/..%2fdocs", Refused),
    // A matrix parameter that would choose another route for a servlet upstream.
    ("/public;x/y", Refused),
    ("/api/v2/open;x/y", Refused),
    ("/docs;x/a", Refused),
];

#[tokio::test(flavor = "multi_thread")]
async fn each_route_has_its_own_policy_and_upstream_in_both_directions() {
    let (env, _api) = env().await;
    let host = "code.example.com";
    for &(path, want) in SIGNED_OUT {
        check_both(&env, host, path, None, want).await;
    }
    // The host's sign-in endpoints are the gateway's, whatever the routes say (with
    // skip_provider_button, the default, /oauth2/sign_in goes straight to the provider).
    let (status, body) = h1(&env, host, "/oauth2/sign_in", None);
    assert_eq!(status, 302, "{body}");

    // bob: example.com, not in admins.
    let cookie = env.login_cookie("bob").await;
    let bob_cases: &[(&str, Expect)] = &[
        ("/", Forbidden),
        ("/public/../x", Forbidden),
        ("/docs/a", Proxied("echo", "/docs/a")),
        ("/api/x", Proxied("api", "/api/x")),
        ("/public/%2e%2e/api/x", Proxied("api", "/api/x")),
    ];
    for &(path, want) in bob_cases {
        let echo = check_both(&env, host, path, Some(&cookie), want).await;
        if matches!(want, Proxied(..)) {
            assert_eq!(header(&echo, "x-forwarded-user"), Some("bob"), "{path}: {echo}");
        }
    }
    // A public route gets no identity, even from a signed-in user.
    let echo = check_both(&env, host, "/public/x", Some(&cookie), Proxied("echo", "/public/x")).await;
    assert_eq!(header(&echo, "x-forwarded-user"), None, "{echo}");

    // alice: in admins.
    let cookie = env.login_cookie("alice").await;
    let echo = check_both(&env, host, "/anything", Some(&cookie), Proxied("echo", "/anything")).await;
    assert_eq!(header(&echo, "x-forwarded-user"), Some("alice"));

    assert!(
        env.gw
            .metric("authgate_rejected_requests_total{reason=\"ambiguous_path\"}")
            .await
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_can_protect_part_of_a_public_app() {
    let (env, _api) = env().await;
    let host = "infra.example.com";
    check_both(&env, host, "/", None, Proxied("echo", "/")).await;
    check_both(
        &env,
        host,
        "/x/../administrator",
        None,
        Proxied("echo", "/administrator"),
    )
    .await;
    check_both(&env, host, "/admin", None, Login).await;
    check_both(&env, host, "/x/../admin/y", None, Login).await;
    check_both(&env, host, "/%61dmin/y", None, Login).await;
    // The route's policy serves the host's sign-in endpoints: a login starts here.
    let (status, body) = h1(&env, host, "/oauth2/start?rd=/admin", None);
    assert_eq!(status, 302, "{body}");

    let bob_cookie = env.login_cookie("bob").await;
    check_both(&env, host, "/admin/y", Some(&bob_cookie), Forbidden).await;
    let echo = check_both(&env, host, "/y", Some(&bob_cookie), Proxied("echo", "/y")).await;
    assert_eq!(header(&echo, "x-forwarded-user"), None, "public part: no identity");

    let alice_cookie = env.login_cookie("alice").await;
    let echo = check_both(&env, host, "/admin/y", Some(&alice_cookie), Proxied("echo", "/admin/y")).await;
    assert_eq!(header(&echo, "x-forwarded-user"), Some("alice"));
}

/// A public app whose `/api` route has its own two backends with a fast health check.
fn pool_app(default: std::net::SocketAddr, api: &[std::net::SocketAddr], extra_route: &str) -> String {
    let list: Vec<String> = api.iter().map(|a| format!("\"{a}\"")).collect();
    app_yaml(
        "shop.example.com",
        &[default],
        &format!(
            "routes:\n  - path_prefix: /api/\n    upstreams: [{}]\n    health_check: {{ path: /healthz, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1 }}\n{extra_route}",
            list.join(", ")
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_pool_is_balanced_health_checked_and_reloaded_on_its_own() {
    let web = Upstream::start("web").await;
    let api1 = Upstream::start("api1").await;
    let api2 = Upstream::start("api2").await;
    let env = Env::start(&[("shop", pool_app(web.addr, &[api1.addr, api2.addr], ""))], "").await;
    let host = "shop.example.com";
    let (s, body) = env.get_json(host, "/cart").await;
    assert_eq!((s, body["name"].as_str()), (200, Some("web")));
    // Round robin over the route's own backends.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let (s, body) = env.get_json(host, "/api/items").await;
        assert_eq!(s, 200);
        seen.insert(body["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        ["api1", "api2"].map(String::from).into(),
        "both route backends serve"
    );
    // Its health check takes a failing backend out; the app's own pool is unaffected.
    let backend = |a: std::net::SocketAddr| format!("authgate_backend_healthy{{app=\"shop\",backend=\"{a}\"}}");
    env.gw.wait_metric(&backend(api2.addr), 1.0).await;
    reqwest::get(format!("http://{}/__health/off", api2.addr))
        .await
        .unwrap();
    env.gw.wait_metric(&backend(api2.addr), 0.0).await;
    assert_eq!(
        env.gw.metric(&backend(web.addr)).await,
        1.0,
        "the app's own pool is unaffected"
    );
    for _ in 0..6 {
        let (s, body) = env.get_json(host, "/api/items").await;
        assert_eq!((s, body["name"].as_str()), (200, Some("api1")));
    }
    // A reload adds a route without a restart.
    let generation = env.gw.generation().await;
    env.config.write_app(
        "shop",
        &pool_app(
            web.addr,
            &[api1.addr, api2.addr],
            &format!("  - path_prefix: /api/v2\n    upstreams: [\"{}\"]\n", api2.addr),
        ),
    );
    env.gw.wait_generation(generation + 1).await;
    let (s, body) = env.get_json(host, "/api/v2/x").await;
    assert_eq!((s, body["name"].as_str()), (200, Some("api2")));
    let (s, body) = env.get_json(host, "/api/v3").await;
    assert_eq!((s, body["name"].as_str()), (200, Some("api1")));
}
