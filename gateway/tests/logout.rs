//! Logout that reaches every replica, driven by the real OpenID provider (npm `oidc-provider`):
//! OpenID Connect Back-Channel Logout (the provider POSTs a signed logout token to
//! `/oauth2/backchannel_logout` when the user signs out there) and Front-Channel Logout
//! (`/oauth2/frontchannel_logout?iss=&sid=`), over Redis + Sentinel with two gateways, and with
//! the memory store of a single gateway.
#![allow(clippy::unwrap_used)]

mod common;

use common::authenv::*;
use common::idp::browse;
use common::redis::RedisTopology;

const APP: &str = "app1.example.com";

async fn two_gateways(redis: &RedisTopology) -> AuthEnv {
    let main = redis.sessions_yaml("60s");
    let env = redis.gateway_env();
    AuthEnv::start_with("", serde_json::json!({}), move |_, _| Extra {
        main,
        env,
        second_gateway: true,
        backchannel_logout: true,
        ..Extra::default()
    })
    .await
}

async fn post_logout_token(client: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let (status, _, body) = post_logout_token_versioned(client, url, token).await;
    (status, body)
}

async fn post_logout_token_versioned(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> (u16, reqwest::Version, String) {
    let r = client.post(url).form(&[("logout_token", token)]).send().await.unwrap();
    (r.status().as_u16(), r.version(), r.text().await.unwrap())
}

/// A client speaking HTTP/1.1 only to the first gateway's app1.
fn http1_client(env: &AuthEnv) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&env.ca.cert_pem()).unwrap())
        .tls_built_in_root_certs(false)
        .http1_only()
        .resolve(APP, env.gw.https)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_out_at_the_provider_ends_that_session_on_both_gateways_within_a_second() {
    let redis = RedisTopology::start(2);
    let env = two_gateways(&redis).await;
    // Alice signs in twice (two browsers: two sessions at the provider), Bob once.
    let (alice_1, echo) = env.login(APP, "alice").await;
    let (alice_2, _) = env.login(APP, "alice").await;
    let (bob, _) = env.login(APP, "bob").await;
    assert!(
        id_token_claim(&echo, "sid").is_some(),
        "the ID token names the provider session"
    );
    let cookies = [
        env.session_cookie(&alice_1),
        env.session_cookie(&alice_2),
        env.session_cookie(&bob),
    ];
    let (on_a, on_b, b) = (env.url(APP, "/x"), env.url_b(APP, "/x"), env.browser_b());
    for cookie in &cookies {
        // Cached on both replicas (60 s cache): only the invalidation can end it in time.
        assert_eq!(status_with_cookie(&env.browser(), &on_a, cookie).await, 200);
        assert_eq!(status_with_cookie(&b, &on_b, cookie).await, 200);
    }

    // Alice signs out in the provider's own UI with her first browser: the provider POSTs a
    // logout token to gateway A (it waits for the answer before confirming the sign-out).
    env.idp.sign_out(&alice_1).await;
    let stats = env.idp.stats(&env.ca).await;
    assert_eq!(stats["backchannel_ok"], 1, "{stats}\n{}", env.idp.logs());
    wait_for_status(&b, &on_b, &cookies[0], 401).await;
    wait_for_status(&env.browser(), &on_a, &cookies[0], 401).await;
    // Her other provider session and Bob are untouched: the token named one `sid`.
    assert_eq!(status_with_cookie(&b, &on_b, &cookies[1]).await, 200);
    assert_eq!(status_with_cookie(&env.browser(), &on_a, &cookies[2]).await, 200);
    assert_eq!(
        env.gw
            .metric("authgate_logouts_total{channel=\"backchannel\",provider=\"corp\",result=\"ok\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_token_is_single_use_across_replicas_and_forgeries_end_nothing() {
    let redis = RedisTopology::start(2);
    let env = two_gateways(&redis).await;
    let (alice, echo) = env.login(APP, "alice").await;
    let cookie = env.session_cookie(&alice);
    let sid = id_token_claim(&echo, "sid").unwrap();
    let (on_a, endpoint_a) = (env.url(APP, "/x"), env.url(APP, "/oauth2/backchannel_logout"));
    let (b, endpoint_b) = (env.browser_b(), env.url_b(APP, "/oauth2/backchannel_logout"));
    let token = env.idp.logout_token(&env.ca, "alice", &sid).await;

    // Forgeries and malformed requests: refused, the session lives on.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let payload_swapped = {
        let parts: Vec<&str> = token.split('.').collect();
        let other = env.idp.logout_token(&env.ca, "bob", "another-sid").await;
        format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2])
    };
    for bad in [forged.as_str(), payload_swapped.as_str(), "not-a-jwt", ""] {
        let (status, body) = post_logout_token(&env.browser(), &endpoint_a, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("invalid_request"), "{body}");
    }
    let get = env.browser().get(&endpoint_a).send().await.unwrap();
    assert_eq!(get.status(), 405);
    let json = env
        .browser()
        .post(&endpoint_a)
        .json(&serde_json::json!({ "logout_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415, "form-encoded only");
    let huge = "x".repeat(64 * 1024);
    let (status, _) = post_logout_token(&env.browser(), &endpoint_a, &huge).await;
    assert_eq!(status, 413);
    assert_eq!(status_with_cookie(&env.browser(), &on_a, &cookie).await, 200);

    // The real token, through B (over HTTP/2): the session ends on A too.
    let (status, version, body) = post_logout_token_versioned(&b, &endpoint_b, &token).await;
    assert_eq!(status, 200, "{body}\n{}", env.gw_b.as_ref().unwrap().logs());
    assert_eq!(version, reqwest::Version::HTTP_2);
    wait_for_status(&env.browser(), &on_a, &cookie, 401).await;
    // Replayed to the other replica: refused (the jti is claimed in Redis), even after Alice
    // signed in again in the same provider session (her browser still holds it).
    let (r, visited) = browse(&alice, &env.url(APP, "/private"), "alice", "alice-pw").await;
    assert_eq!(r.status(), 200, "{visited:?}");
    let echo: serde_json::Value = r.json().await.unwrap();
    let new_cookie = env.session_cookie(&alice);
    assert_ne!(new_cookie, cookie);
    assert_eq!(
        id_token_claim(&echo, "sid"),
        Some(sid.clone()),
        "the same provider session"
    );
    // Over HTTP/1.1 this time.
    let (status, version, body) = post_logout_token_versioned(&http1_client(&env), &endpoint_a, &token).await;
    assert_eq!((status, version), (400, reqwest::Version::HTTP_11), "{body}");
    assert!(body.contains("already used"), "{body}");
    assert_eq!(status_with_cookie(&env.browser(), &on_a, &new_cookie).await, 200);
    assert_eq!(
        env.gw
            .metric("authgate_logouts_total{channel=\"backchannel\",provider=\"corp\",result=\"replayed\"}")
            .await,
        1.0
    );
    // Front-channel logout is off unless the provider enables it.
    let front = format!("/oauth2/frontchannel_logout?iss={}&sid={sid}", env.idp.issuer);
    let r = env.browser().get(env.url(APP, &front)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(status_with_cookie(&env.browser(), &on_a, &new_cookie).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_store_ends_provider_sessions_by_back_and_front_channel() {
    let env = AuthEnv::start_with("", serde_json::json!({}), |_, _| Extra {
        backchannel_logout: true,
        corp_extra: ", frontchannel_logout: true".into(),
        main: "rate_limits: { window: 1h, bearer_failures: 3 }\n".into(),
        ..Extra::default()
    })
    .await;
    let on_app = env.url(APP, "/x");
    let endpoint = env.url(APP, "/oauth2/backchannel_logout");

    // Back-channel: the provider's own POST at sign-out, then a replay of a token.
    let (alice, _) = env.login(APP, "alice").await;
    let cookie = env.session_cookie(&alice);
    env.idp.sign_out(&alice).await;
    assert_eq!(env.idp.stats(&env.ca).await["backchannel_ok"], 1, "{}", env.idp.logs());
    assert_eq!(status_with_cookie(&env.browser(), &on_app, &cookie).await, 401);
    let (bob, echo) = env.login(APP, "bob").await;
    let bob_cookie = env.session_cookie(&bob);
    let bob_sid = id_token_claim(&echo, "sid").unwrap();
    let token = env.idp.logout_token(&env.ca, "bob", &bob_sid).await;
    assert_eq!(post_logout_token(&env.browser(), &endpoint, &token).await.0, 200);
    assert_eq!(status_with_cookie(&env.browser(), &on_app, &bob_cookie).await, 401);
    assert_eq!(
        post_logout_token(&env.browser(), &endpoint, &token).await.0,
        400,
        "replayed"
    );

    // Front-channel: the provider's logout page loads the URL with its issuer and the sid.
    let (again, echo) = env.login(APP, "alice").await;
    let cookie = env.session_cookie(&again);
    let sid = id_token_claim(&echo, "sid").unwrap();
    let front = |iss: &str, sid: &str| {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("iss", iss)
            .append_pair("sid", sid)
            .finish();
        env.url(APP, &format!("/oauth2/frontchannel_logout?{query}"))
    };
    for (iss, sid, why) in [
        ("https://evil.example.com", sid.as_str(), "another issuer"),
        (env.idp.issuer.as_str(), "", "no sid"),
    ] {
        let r = env.browser().get(front(iss, sid)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{why}");
    }
    assert_eq!(status_with_cookie(&env.browser(), &on_app, &cookie).await, 200);
    let r = env.browser().get(front(&env.idp.issuer, &sid)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-frame-options").is_none(), "the provider frames it");
    assert_eq!(status_with_cookie(&env.browser(), &on_app, &cookie).await, 401);
    assert_eq!(
        env.gw
            .metric("authgate_logouts_total{channel=\"frontchannel\",provider=\"corp\",result=\"ok\"}")
            .await,
        1.0
    );

    // Tokens failing verification count towards `bearer_failures` (3 here): then 429 without
    // verifying, even for a good token from that address.
    for _ in 0..3 {
        assert_eq!(post_logout_token(&env.browser(), &endpoint, "forged").await.0, 400);
    }
    let fresh = env.idp.logout_token(&env.ca, "bob", "any-sid").await;
    assert_eq!(post_logout_token(&env.browser(), &endpoint, &fresh).await.0, 429);
}
