//! The path a rule judges is the path the upstream gets (issue 8 §1), and the headers an app
//! may trust (§2): every path form in both directions (public→private and private→public),
//! over HTTP/1.1 and HTTP/2, against an upstream that records what it received.
//!
//! app1: `skip_auth_routes: ["GET=^/healthz$", "^/public/"]`, `api_routes: ["^/api/"]`.

#![allow(clippy::unwrap_used)]

mod common;

use common::authenv::{header, AuthEnv};
use common::{app_yaml, h2c, raw_exchange, tls_connect, Blocks, Env, Upstream};

/// What the gateway must do with a path: refuse it, ask for a login, or proxy it and send
/// exactly this path upstream.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Refused,
    Login,
    Proxied(&'static str),
}
use Expect::*;

/// Climbing out of a protected prefix into a public one: the canonical form is public, and
/// that (not the raw `/private/...`) is what the upstream receives.
const PRIVATE_TO_PUBLIC: &[(&str, Expect)] = &[
    ("/private/..;/public/x", Refused),
    ("/private;/../public/x", Proxied("/public/x")),
    ("/private/../public/x", Proxied("/public/x")),
    ("/private/%2e%2e/public/x", Proxied("/public/x")),
    ("/private/%2E./public/x", Proxied("/public/x")),
    ("/private/x%2f..%2f..%2fpublic/y", Refused),
    ("/private/x\\..\\..\\public/y", Proxied("/public/y")),
    ("/private/x%5c..%5c..%5cpublic/y", Refused),
    ("/%70ublic/x", Proxied("/public/x")),
    ("//public//x", Proxied("/public/x")),
    ("/public/x?q=/../../private", Proxied("/public/x?q=/../../private")),
    ("/public/a%20b", Proxied("/public/a%20b")),
];

/// The mirror images: a public-looking path that resolves under a protected prefix needs a
/// login.
const PUBLIC_TO_PRIVATE: &[(&str, Expect)] = &[
    ("/public/..;/private/x", Refused),
    ("/public;/../private/x", Login),
    ("/public/../private/x", Login),
    ("/public/%2e%2e/private/x", Login),
    ("/public/x%2f..%2f..%2fprivate/y", Refused),
    ("/public/x\\..\\..\\private/y", Login),
    ("/public/x%5c..%5c..%5cprivate/y", Refused),
    ("/%70rivate/x", Login),
    ("/private?/public/", Login),
    ("/healthz/../private", Login),
    // Matrix parameters that would change the verdict for a servlet upstream.
    ("/public;x/y", Refused),
    ("/public/x%00", Refused),
];

/// The same protected forms with a session: proxied, with the canonical path upstream.
const PRIVATE_SIGNED_IN: &[(&str, &str)] = &[
    ("/public;/../private/x", "/private/x"),
    ("/public/../private/x", "/private/x"),
    ("/public/%2e%2e/private/x", "/private/x"),
    ("/public/x\\..\\..\\private/y", "/private/y"),
    ("/%70rivate/x", "/private/x"),
    ("/private/a;b=c/d", "/private/a;b=c/d"),
    ("/private/caf%c3%a9", "/private/caf%C3%A9"),
];

/// One request over HTTP/1.1: (status, upstream path if proxied).
fn h1(env: &AuthEnv, path: &str, cookie: Option<&str>) -> (u16, Option<String>) {
    let mut s = tls_connect(&env.ca, env.gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let resp = raw_exchange(
        &mut s,
        format!("GET {path} HTTP/1.1\r\nHost: app1.example.com\r\n{cookie}Connection: close\r\n\r\n").as_bytes(),
    );
    let status = resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, upstream_path(body))
}

/// One request over HTTP/2: (status, upstream path if proxied).
async fn h2(env: &AuthEnv, path: &str, cookie: Option<&str>) -> (u16, Option<String>) {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    let r = h2c::get(&env.ca, env.gw.https, "app1.example.com", path, &headers).await;
    (r.status, upstream_path(&String::from_utf8_lossy(&r.body)))
}

fn upstream_path(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["path"].as_str().map(str::to_owned))
}

fn check(path: &str, proto: &str, got: (u16, Option<String>), want: Expect) {
    match want {
        Refused => assert_eq!(got.0, 400, "{proto} {path}: {got:?}"),
        Login => assert_eq!(got.0, 302, "{proto} {path}: {got:?}"),
        Proxied(p) => assert_eq!(got, (200, Some(p.to_owned())), "{proto} {path}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_and_upstream_see_one_canonical_path_in_both_directions() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    for &(path, want) in PRIVATE_TO_PUBLIC.iter().chain(PUBLIC_TO_PRIVATE) {
        check(path, "h1", h1(&env, path, None), want);
        // HTTP/2 cannot carry every byte a raw HTTP/1.1 target can (the client refuses to
        // build some URIs); every form that it can carry must give the same answer.
        if http::Uri::try_from(format!("https://app1.example.com{path}")).is_ok() {
            check(path, "h2", h2(&env, path, None).await, want);
        }
    }
    let (browser, _) = env.login("app1.example.com", "alice").await;
    let cookie = browser
        .cookie(&env.url("app1.example.com", "/"), "_authgate_corp")
        .expect("session cookie");
    let cookie = format!("_authgate_corp={cookie}");
    for &(path, upstream) in PRIVATE_SIGNED_IN {
        check(path, "h1", h1(&env, path, Some(&cookie)), Proxied(upstream));
        if http::Uri::try_from(format!("https://app1.example.com{path}")).is_ok() {
            check(path, "h2", h2(&env, path, Some(&cookie)).await, Proxied(upstream));
        }
    }
    // A refused path is counted.
    assert!(
        env.gw
            .metric("authgate_rejected_requests_total{reason=\"bad_path\"}")
            .await
            >= 4.0
    );
    assert!(
        env.gw
            .metric("authgate_rejected_requests_total{reason=\"ambiguous_path\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_targets_are_judged_by_their_path_and_host() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let port = env.gw.https.port();
    let send = |target: &str, host: &str| {
        let mut s = tls_connect(&env.ca, env.gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
        raw_exchange(
            &mut s,
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    // RFC 9112 §3.2.2: an absolute-form target naming the Host is served by its path.
    let resp = send(
        &format!("https://app1.example.com:{port}/private/../public/x"),
        &format!("app1.example.com:{port}"),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"path\":\"/public/x\""), "{resp}");
    let resp = send(
        &format!("https://app1.example.com:{port}/public/../private"),
        &format!("app1.example.com:{port}"),
    );
    assert!(resp.starts_with("HTTP/1.1 302"), "{resp}");
    // Host must repeat the target's authority exactly (port included).
    let resp = send(&format!("https://app1.example.com:{port}/public/x"), "app1.example.com");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    // Naming another host than Host stays 400.
    let resp = send("https://admin.example.com/x", "app1.example.com");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_never_sees_client_sent_forwarding_or_rewrite_headers() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let spoofed = [
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X_Forwarded_Uri", "/admin"),
        ("X-Forwarded-Port", "1"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Forwarded-Server", "evil.com"),
        ("X-Forwarded-Scheme", "http"),
        ("x-forwarded_ssl", "off"),
        ("X_Forwarded_Host", "evil.com"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Real-IP", "6.6.6.6"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("True-Client-IP", "6.6.6.6"),
    ];
    for host in ["public.example.com", "app1.example.com"] {
        let path = if host == "public.example.com" {
            "/anything"
        } else {
            "/public/x"
        };
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (k, v) in spoofed {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        let mut s = tls_connect(&env.ca, env.gw.https, Some(host), &["http/1.1"]).unwrap();
        let resp = raw_exchange(&mut s, request.as_bytes());
        let body = resp.split("\r\n\r\n").nth(1).unwrap();
        let echo: serde_json::Value = serde_json::from_str(body).unwrap();
        let names: Vec<&String> = echo["headers"].as_object().unwrap().keys().collect();
        for (k, _) in spoofed {
            let k = k.to_ascii_lowercase();
            let seen: Vec<&&String> = names
                .iter()
                .filter(|n| n.replace('_', "-") == k.replace('_', "-"))
                .collect();
            match k.replace('_', "-").as_str() {
                // Set by the gateway itself, once, with its own value.
                "x-forwarded-port" => assert_eq!(
                    header(&echo, "x-forwarded-port"),
                    Some(env.gw.https.port().to_string().as_str())
                ),
                "x-forwarded-host" => assert_eq!(header(&echo, "x-forwarded-host"), Some(host)),
                "x-forwarded-for" | "x-real-ip" => assert_eq!(header(&echo, &k), Some("127.0.0.1"), "{k}"),
                _ => assert!(seen.is_empty(), "{host}: {k} reached the upstream: {names:?}"),
            }
        }
        assert_eq!(echo["headers"]["x-forwarded-for"].as_array().unwrap().len(), 1);
        assert!(!names.iter().any(|n| n.contains('_')), "{names:?}");
    }
}

/// A public app behind a gateway with extra `listen:` / `server:` fields.
async fn public_env(blocks: Blocks) -> (Env, Upstream) {
    let up = Upstream::start("echo").await;
    let env = Env::start_with(
        &[("public", app_yaml("public.example.com", &[up.addr], ""))],
        &blocks,
        "",
    )
    .await;
    (env, up)
}

fn echo_of(resp: &str) -> serde_json::Value {
    serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_proxies_chain_is_kept_and_read_right_to_left() {
    let blocks = Blocks {
        server: ", trusted_proxies: [127.0.0.0/8, \"10.0.0.0/8\"]".into(),
        ..Default::default()
    };
    let (env, _up) = public_env(blocks).await;
    let mut s = tls_connect(&env.ca, env.gw.https, Some("public.example.com"), &["http/1.1"]).unwrap();
    let resp = raw_exchange(
        &mut s,
        b"GET /x HTTP/1.1\r\nHost: public.example.com\r\nX-Forwarded-For: 6.6.6.6, 198.51.100.7\r\nX-Forwarded-For: 10.1.1.1\r\nConnection: close\r\n\r\n",
    );
    let echo = echo_of(&resp);
    // 10.1.1.1 and the peer are trusted; 198.51.100.7 is the client; 6.6.6.6 is whatever
    // the client wrote, dropped.
    assert_eq!(
        header(&echo, "x-forwarded-for"),
        Some("198.51.100.7, 10.1.1.1, 127.0.0.1")
    );
    assert_eq!(header(&echo, "x-real-ip"), Some("198.51.100.7"));
    // The access log (standard output) names the same client.
    common::wait_for(|| env.gw.output().contains("198.51.100.7")).await;
}

/// Sends a PROXY header, then speaks TLS on the same connection.
fn via_proxy_protocol(env: &Env, header: &[u8]) -> Result<String, String> {
    use std::io::Write;
    let mut tcp = std::net::TcpStream::connect(env.gw.https).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    tcp.write_all(header).unwrap();
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
    b.cert_store_mut().add_cert(env.ca.cert.clone()).unwrap();
    b.set_alpn_protos(b"\x08http/1.1").unwrap();
    let mut tls = b
        .build()
        .connect("public.example.com", tcp)
        .map_err(|e| e.to_string())?;
    Ok(raw_exchange(
        &mut tls,
        b"GET /x HTTP/1.1\r\nHost: public.example.com\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n",
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_from_trusted_peers_names_the_client() {
    let blocks = Blocks {
        listen: ", proxy_protocol: true".into(),
        server: ", trusted_proxies: [127.0.0.1]".into(),
    };
    let (env, _up) = public_env(blocks).await;
    let resp = via_proxy_protocol(&env, b"PROXY TCP4 198.51.100.7 127.0.0.1 56324 443\r\n").unwrap();
    let echo = echo_of(&resp);
    assert_eq!(header(&echo, "x-real-ip"), Some("198.51.100.7"), "{resp}");
    // The client the header names is not a trusted proxy: its X-Forwarded-For is replaced.
    assert_eq!(header(&echo, "x-forwarded-for"), Some("198.51.100.7"));
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[203, 0, 113, 5, 127, 0, 0, 1, 0xdc, 0x04, 0x01, 0xbb]);
    let echo = echo_of(&via_proxy_protocol(&env, &v2).unwrap());
    assert_eq!(header(&echo, "x-real-ip"), Some("203.0.113.5"));
    // A trusted peer may still connect without a header; it is then a trusted proxy like
    // any other, and the X-Forwarded-For it sends is believed.
    let echo = echo_of(&via_proxy_protocol(&env, b"").unwrap());
    assert_eq!(header(&echo, "x-real-ip"), Some("6.6.6.6"));
    assert_eq!(header(&echo, "x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_protocol_from_untrusted_peers_is_never_read() {
    let blocks = Blocks {
        listen: ", proxy_protocol: true".into(),
        server: ", trusted_proxies: [10.0.0.0/8]".into(),
    };
    let (env, _up) = public_env(blocks).await;
    let spoof = via_proxy_protocol(&env, b"PROXY TCP4 198.51.100.7 127.0.0.1 56324 443\r\n");
    assert!(
        spoof.is_err() || !spoof.as_deref().unwrap_or("").contains("198.51.100.7"),
        "{spoof:?}"
    );
    let echo = echo_of(&via_proxy_protocol(&env, b"").unwrap());
    assert_eq!(header(&echo, "x-real-ip"), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_cannot_set_the_gateways_cookies() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    for host in ["public.example.com", "app1.example.com"] {
        let path = if host == "public.example.com" {
            "/x"
        } else {
            "/public/x"
        };
        let mut s = tls_connect(&env.ca, env.gw.https, Some(host), &["http/1.1"]).unwrap();
        let resp = raw_exchange(
            &mut s,
            format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
                 X-Echo-Set-Cookie: _authgate_corp=fixated; Domain=example.com; Path=/\r\n\
                 X-Echo-Set-Cookie: _authgate_login_abcdefgh=x; Path=/oauth2/callback\r\n\
                 X-Echo-Set-Cookie: app_pref=dark; Path=/\r\n\r\n"
            )
            .as_bytes(),
        );
        let head = resp.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(head.contains("set-cookie: app_pref=dark"), "{head}");
        assert!(!head.contains("_authgate"), "{host}: {head}");
    }
    assert_eq!(
        env.gw
            .metric("authgate_upstream_cookies_dropped_total{app=\"public\"}")
            .await,
        2.0
    );
}
