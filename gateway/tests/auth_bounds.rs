//! Bounded by construction, and bearer tokens an attacker cannot forge (issue 8 §2, §4), over
//! TLS with the real OpenID provider: per-client-address rate limits answering 429 with
//! `Retry-After`, short sessions for users no app admits, at most a few pending login cookies,
//! HS256 tokens signed with the client secret refused, and several `Authorization` headers
//! refused.
#![allow(clippy::unwrap_used)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::authenv::*;
use common::idp::walk_until;

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// A client like `env.browser()` whose connections come from `source` (another loopback address).
fn client_from(env: &AuthEnv, source: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&env.ca.cert_pem()).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source)
        .resolve("app1.example.com", env.gw.https)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_and_failed_bearer_tokens_are_rate_limited_per_client_address() {
    let env = AuthEnv::start_with("", serde_json::json!({}), |_, _| Extra {
        main: "rate_limits: { window: 1m, oauth2_start: 5, oauth2_callback: 3, bearer_failures: 4 }\n".to_owned(),
        ..Extra::default()
    })
    .await;
    let a = client_from(&env, "127.0.0.1".parse().unwrap());
    let start = env.url("app1.example.com", "/oauth2/start?rd=/x");
    for i in 0..5 {
        assert_eq!(a.get(&start).send().await.unwrap().status(), 302, "start {i}");
    }
    let r = a.get(&start).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another client address is not affected.
    let other = client_from(&env, "127.0.0.2".parse().unwrap());
    assert_eq!(other.get(&start).send().await.unwrap().status(), 302);

    let callback = env.url("app1.example.com", "/oauth2/callback?code=x&state=y");
    for _ in 0..3 {
        assert_eq!(a.get(&callback).send().await.unwrap().status(), 400);
    }
    assert_eq!(a.get(&callback).send().await.unwrap().status(), 429);

    // Bearer failures: four bad tokens are checked, then the address is refused unverified.
    let api = env.url("app1.example.com", "/api/x");
    for _ in 0..4 {
        assert_eq!(a.get(&api).bearer_auth("a.b.c").send().await.unwrap().status(), 401);
    }
    let r = a.get(&api).bearer_auth("a.b.c").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(other.get(&api).bearer_auth("a.b.c").send().await.unwrap().status(), 401);
    assert_eq!(
        env.gw
            .metric("authgate_rate_limited_total{limit=\"oauth2_start\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_limits_let_a_busy_nat_log_in() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let a = client_from(&env, "127.0.0.1".parse().unwrap());
    let start = env.url("app1.example.com", "/oauth2/start?rd=/x");
    for i in 0..300 {
        assert_eq!(a.get(&start).send().await.unwrap().status(), 302, "start {i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_no_app_admits_gets_a_short_session_and_others_the_full_one() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    for (user, max_age) in [("eve", "Max-Age=300;"), ("alice", "Max-Age=7200;")] {
        let b = env.browser();
        let callback = walk_until(
            &b,
            &env.url("app1.example.com", "/private"),
            user,
            &format!("{user}-pw"),
            |u| u.path() == "/oauth2/callback",
        )
        .await;
        let r = b.get(callback).send().await.unwrap();
        assert_eq!(r.status(), 302, "{}", env.gw.logs());
        let session = set_cookies(&r)
            .into_iter()
            .find(|c| c.starts_with("_authgate_corp=v1."))
            .unwrap();
        assert!(session.contains(max_age), "{user}: {session}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_holds_at_most_four_pending_logins_and_the_newest_completes() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let b = env.browser();
    for i in 0..7 {
        let r = b
            .get(env.url("app1.example.com", &format!("/tab/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
    let pending = {
        use reqwest::cookie::CookieStore;
        let url = env.url("app1.example.com", "/oauth2/callback").parse().unwrap();
        let header = b.jar.cookies(&url).unwrap();
        header
            .to_str()
            .unwrap()
            .split("; ")
            .filter(|c| c.starts_with("_authgate_login_"))
            .count()
    };
    assert_eq!(pending, 4, "older login cookies were replaced");
    let (r, visited) = common::idp::browse(&b, &env.url("app1.example.com", "/tab/last"), "alice", "alice-pw").await;
    assert_eq!(r.status(), 200, "{visited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_redirect_is_capped_and_the_login_still_completes() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let b = env.browser();
    let deep = format!("/deep/{}", "d".repeat(4000));
    let (r, visited) = common::idp::browse(&b, &env.url("app1.example.com", &deep), "alice", "alice-pw").await;
    assert_eq!(r.status(), 200, "{visited:?}");
    assert_eq!(
        r.url().path(),
        "/",
        "a deep link longer than the cap lands on /: {visited:?}"
    );
    // One within the cap is kept.
    let b = env.browser();
    let kept = format!("/deep/{}", "k".repeat(1000));
    let (r, _) = common::idp::browse(&b, &env.url("app1.example.com", &kept), "alice", "alice-pw").await;
    assert_eq!(r.url().path(), kept);
}

/// `header.claims.signature` with HS256 under `key`.
fn hs256(claims: &serde_json::Value, key: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let pkey = openssl::pkey::PKey::hmac(key).unwrap();
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
    signer.update(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signer.sign_to_vec().unwrap()))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hs256_token_signed_with_the_client_secret_is_refused() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let client = env.browser();
    // The provider advertises HS256, so a verifier that trusts its metadata would accept it.
    let discovery: serde_json::Value = client
        .get(format!("{}/.well-known/openid-configuration", env.idp.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let advertised = discovery["id_token_signing_alg_values_supported"].as_array().unwrap();
    assert!(advertised.iter().any(|a| a == "HS256"), "{advertised:?}");
    let now = authgate::session::now();
    let forged = hs256(
        &serde_json::json!({
            "iss": env.idp.issuer, "aud": "gateway", "sub": "mallory", "iat": now, "exp": now + 600,
            "email": "mallory@example.com", "email_verified": true, "groups": ["admins"],
        }),
        CLIENT_SECRET.as_bytes(),
    );
    let r = client
        .get(env.url("app1.example.com", "/api/x"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_two_authorization_headers_is_refused() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let port = env.gw.https.port();
    let request = format!(
        "GET /api/x HTTP/1.1\r\nHost: app1.example.com:{port}\r\nAuthorization: Bearer a.b.c\r\n\
         Authorization: Basic YWxpY2U6YWxpY2UtcHc=\r\nConnection: close\r\n\r\n"
    );
    let mut s = common::tls_connect(&env.ca, env.gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
    let resp = common::raw_exchange(&mut s, request.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    // One header is fine (and verified).
    let request = format!(
        "GET /api/x HTTP/1.1\r\nHost: app1.example.com:{port}\r\nAuthorization: Bearer a.b.c\r\nConnection: close\r\n\r\n"
    );
    let mut s = common::tls_connect(&env.ca, env.gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
    let resp = common::raw_exchange(&mut s, request.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
}
