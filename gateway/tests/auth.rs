//! Per-app OAuth2/OIDC policy against a real OpenID provider (npm `oidc-provider`) over real
//! TLS: the login flow, policy, 302/401/403, SSO, sign-out, refresh, bearer JWTs, and the
//! attacks in the security history (spoofed headers, open redirects, tampered cookies and
//! states, skip-auth bypasses).
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use common::authenv::*;
use common::idp::{browse, browser, walk_until, Idp};
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn full_login_gives_the_upstream_identity_headers_and_nothing_spoofed() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let (browser, echo) = env.login("app1.example.com", "alice").await;
    assert_eq!(header(&echo, "x-auth-request-user"), Some("alice"));
    assert_eq!(header(&echo, "x-auth-request-email"), Some("alice@example.com"));
    assert_eq!(header(&echo, "x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(header(&echo, "x-forwarded-user"), Some("alice"));
    assert_eq!(header(&echo, "x-auth-request-preferred-username"), Some("alice"));
    assert_eq!(header(&echo, "x-auth-request-groups"), Some("admins,dev"));
    assert!(header(&echo, "x-auth-request-access-token").is_some_and(|t| !t.is_empty()));
    assert!(header(&echo, "authorization").is_some_and(|t| t.starts_with("Bearer ey")));
    assert!(
        echo["headers"]
            .get("cookie")
            .is_none_or(|c| !c.to_string().contains("_authgate")),
        "own cookies never reach the upstream: {echo}"
    );

    // Spoofed identity headers, in every spelling, are replaced or removed.
    let r = browser
        .get(env.url("app1.example.com", "/again"))
        .header("X-Auth-Request-Email", "mallory@evil.com")
        .header("X_Auth_Request_User", "mallory")
        .header("X-Forwarded-Groups", "admins")
        .header("X-Auth-Request-Groups", "root")
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        echo["headers"]["x-auth-request-email"],
        serde_json::json!(["alice@example.com"])
    );
    assert_eq!(echo["headers"]["x-auth-request-user"], serde_json::json!(["alice"]));
    assert_eq!(
        echo["headers"]["x-auth-request-groups"],
        serde_json::json!(["admins,dev"])
    );
    // pass_user_headers (on by default) sets the real groups in place of the spoofed ones.
    assert_eq!(echo["headers"]["x-forwarded-groups"], serde_json::json!(["admins,dev"]));
    assert!(echo["headers"].get("x_auth_request_user").is_none());

    // On a public app too.
    let r = browser
        .get(env.url("public.example.com", "/"))
        .header("X-Auth-Request-User", "mallory")
        .send()
        .await
        .unwrap();
    let echo: serde_json::Value = r.json().await.unwrap();
    assert!(echo["headers"].get("x-auth-request-user").is_none(), "{echo}");

    // userinfo never exposes tokens.
    let info: serde_json::Value = browser
        .get(env.url("app1.example.com", "/oauth2/userinfo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["groups"], serde_json::json!(["admins", "dev"]));
    assert!(!info.to_string().contains("ey"), "no token in userinfo: {info}");
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_allows_and_refuses_per_app() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    // bob: example.com but not in admins.
    let (bob, _) = env.login("app1.example.com", "bob").await;
    let r = bob.get(env.url("admin.example.com", "/")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("does not allow your account"));
    let r = bob
        .get(env.url("admin.example.com", "/"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // alice: in admins.
    let (alice, echo) = env.login("admin.example.com", "alice").await;
    assert_eq!(header(&echo, "x-auth-request-user"), Some("alice"));
    assert_eq!(
        alice
            .get(env.url("app1.example.com", "/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // eve: verified email, wrong domain.
    let b = env.browser();
    let (resp, _) = browse(&b, &env.url("app1.example.com", "/"), "eve", "eve-pw").await;
    assert_eq!(resp.status(), 403);
    // uma: in admins, email not verified: the email rule of app1 refuses, the group-only admin allows.
    let b = env.browser();
    let (resp, _) = browse(&b, &env.url("app1.example.com", "/"), "uma", "uma-pw").await;
    assert_eq!(resp.status(), 403);
    assert!(
        env.gw
            .metric("authgate_auth_decisions_total{app=\"app1\",outcome=\"forbidden\"}")
            .await
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_out_requests_get_302_401_or_pass_by_route() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let b = env.browser();
    let r = b.get(env.url("app1.example.com", "/private")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/", env.idp.issuer)), "{location}");
    assert!(
        location.contains("code_challenge_method=S256") && location.contains("nonce=") && location.contains("state=")
    );
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("_authgate_login_")
            && cookie.contains("HttpOnly")
            && cookie.contains("Secure")
            && cookie.contains("SameSite=Lax")
    );

    for (path, accept, status) in [("/api/items", None, 401), ("/private", Some("application/json"), 401)] {
        let mut req = b.get(env.url("app1.example.com", path));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    let r = b
        .get(env.url("app1.example.com", "/x"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        b.get(env.url("app1.example.com", "/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        b.post(env.url("app1.example.com", "/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        302,
        "GET-only skip rule"
    );
    assert_eq!(
        b.get(env.url("app1.example.com", "/public/a"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // forward-auth endpoint never redirects.
    assert_eq!(
        b.get(env.url("app1.example.com", "/oauth2/auth"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // With skip_provider_button (the default), /oauth2/sign_in goes straight to the provider
    // (the page itself: tests/auth_options.rs).
    let r = b
        .get(env.url("app1.example.com", "/oauth2/sign_in?rd=/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"].to_str().unwrap().starts_with(&env.idp.issuer));
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_auth_routes_match_the_normalised_path_only() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let tls = |path: &str| {
        let mut s = tls_connect(&env.ca, env.gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
        let resp = raw_exchange(
            &mut s,
            format!("GET {path} HTTP/1.1\r\nHost: app1.example.com\r\n\r\n").as_bytes(),
        );
        resp.split(' ').nth(1).unwrap_or("closed").to_owned()
    };
    // Attempts to reach a protected path through a public-looking one are protected.
    for path in [
        "/public/../private",
        "/public/%2e%2e/private",
        "/public/x/../../private",
        "/healthz/../private",
    ] {
        assert_eq!(tls(path), "302", "{path} must require login");
    }
    // Forms whose meaning depends on the upstream are refused outright (tests/paths.rs).
    for path in ["/public%2f..%2fprivate", "/public/..;/private"] {
        assert_eq!(tls(path), "400", "{path} must be refused");
    }
    // Spellings of a public path stay public; the query never counts.
    for path in ["//public/x", "/%70ublic/x", "/public/./x", "/private?/public/"] {
        let expected = if path.starts_with("/private") { "302" } else { "200" };
        assert_eq!(tls(path), expected, "{path}");
    }
    assert_eq!(tls("//api/x"), "401", "API routes are normalised the same way");
    assert_eq!(tls("/%zz"), "400");
    // A client-supplied X-Forwarded-Uri never decides anything.
    let mut s = tls_connect(&env.ca, env.gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
    let resp = raw_exchange(&mut s, b"GET /private HTTP/1.1\r\nHost: app1.example.com\r\nX-Forwarded-Uri: /public/x\r\nX-Original-URL: /public/x\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 302"), "{resp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_sign_in_serves_every_app_on_the_provider() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let (browser, _) = env.login("app1.example.com", "alice").await;
    let r = browser
        .get(env.url("admin.example.com", "/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "SSO: no second login");
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(header(&echo, "x-auth-request-email"), Some("alice@example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_ends_the_session_and_the_old_cookie_stays_dead() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let (browser, _) = env.login("app1.example.com", "alice").await;
    let stolen = browser
        .cookie(&env.url("app1.example.com", "/"), "_authgate_corp")
        .unwrap();
    assert!(stolen.starts_with("v1."), "{stolen}");
    assert!(!stolen.contains("alice"), "the cookie reveals nothing");
    let r = browser
        .get(env.url("app1.example.com", "/oauth2/sign_out?rd=//evil.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/", "an unsafe rd falls back to /");
    let cleared: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("_authgate_corp=;") && c.contains("Max-Age=0") && c.contains("Domain=example.com")),
        "{cleared:?}"
    );
    assert_eq!(
        browser
            .get(env.url("app1.example.com", "/p"))
            .send()
            .await
            .unwrap()
            .status(),
        302
    );
    // Replaying the old cookie on a fresh client does not bring the session back.
    let fresh = env.browser();
    let r = fresh
        .get(env.url("admin.example.com", "/p"))
        .header("cookie", format!("_authgate_corp={stolen}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_truncated_and_foreign_cookies_are_signed_out_never_500() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let (browser, _) = env.login("app1.example.com", "alice").await;
    let good = browser
        .cookie(&env.url("app1.example.com", "/"), "_authgate_corp")
        .unwrap();
    let mut flipped = good.clone().into_bytes();
    let i = flipped.len() - 3;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    // A cookie sealed with another key: same format, foreign keyring.
    let foreign = {
        let other =
            authgate::session::seal::Keyring::parse(&base64::engine::general_purpose::STANDARD.encode([9u8; 32]))
                .unwrap();
        authgate::session::Ticket::new()
            .unwrap()
            .to_cookie(&other, "_authgate_corp")
            .unwrap()
    };
    for value in [
        flipped.as_str(),
        &good[..good.len() / 2],
        foreign.as_str(),
        "garbage",
        "v1.",
        "",
        "v1.%%%%",
    ] {
        let fresh = env.browser();
        let r = fresh
            .get(env.url("app1.example.com", "/x"))
            .header("cookie", format!("_authgate_corp={value}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "cookie {value:?}");
        let r = fresh
            .get(env.url("app1.example.com", "/api/x"))
            .header("cookie", format!("_authgate_corp={value}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "cookie {value:?}");
    }
    // The genuine cookie still works from anywhere (it is a bearer credential until sign-out).
    let fresh = env.browser();
    let r = fresh
        .get(env.url("app1.example.com", "/x"))
        .header("cookie", format!("_authgate_corp={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn callback_state_is_bound_to_the_browser_and_single_use() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let b = env.browser();
    // Walk the login by hand up to the callback URL.
    let callback = walk_until(&b, &env.url("app1.example.com", "/private"), "alice", "alice-pw", |u| {
        u.path() == "/oauth2/callback"
    })
    .await
    .to_string();
    // A different browser (no login cookie) cannot use this code: no session is minted.
    let other = env.browser();
    let r = other.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .headers()
        .get_all("set-cookie")
        .iter()
        .all(|c| !c.to_str().unwrap().starts_with("_authgate_corp=")));
    // A tampered state does not match the login cookie.
    let tampered = callback.replace("state=", "state=x");
    assert_eq!(b.get(&tampered).send().await.unwrap().status(), 400);
    // The real one works once...
    let r = b.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 302, "{}", env.gw.logs());
    assert_eq!(r.headers()["location"], "/private");
    // ...and a replay is refused (login cookie cleared, code already used).
    assert_eq!(b.get(&callback).send().await.unwrap().status(), 400);
    // A provider error is shown as a failed login, not reflected.
    let r = b
        .get(env.url(
            "app1.example.com",
            "/oauth2/callback?error=<script>alert(1)</script>&state=x",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(!r.text().await.unwrap().contains("<script>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_after_login_never_leave_the_allowed_domains() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    for (rd, expected) in [
        ("//evil.com", "/"),
        ("/\\evil.com", "/"),
        ("https://example.com.evil.com/", "/"),
        ("https://evil.com", "/"),
        ("javascript:alert(1)", "/"),
        ("https://app1.example.com@evil.com/", "/"),
        ("/%09/evil.com", "/"),
        ("/%2F%2Fevil.com", "/"),
        ("/ok?x=1", "/ok?x=1"),
    ] {
        let b = env.browser();
        let start: String = format!(
            "{}?{}",
            env.url("app1.example.com", "/oauth2/start"),
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("rd", rd)
                .finish()
        );
        let (resp, visited) = browse(&b, &start, "alice", "alice-pw").await;
        let landed = visited.last().unwrap();
        let want = env.url("app1.example.com", expected);
        assert_eq!(landed, &want, "rd {rd:?} (final status {})", resp.status());
    }
    // Hosts under the cookie domain are allowed.
    let b = env.browser();
    let rd = env.url("admin.example.com", "/welcome");
    let start: String = format!(
        "{}?{}",
        env.url("app1.example.com", "/oauth2/start"),
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", &rd)
            .finish()
    );
    let (_, visited) = browse(&b, &start, "alice", "alice-pw").await;
    assert_eq!(visited.last().unwrap(), &rd);
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_jwts_from_the_provider_are_verified() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let (_, echo) = env.login("app1.example.com", "alice").await;
    let id_token = header(&echo, "authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    let api = |token: String| {
        let client = client(&env.ca, &env.gw, &["app1.example.com"]);
        let url = env.url("app1.example.com", "/api/me");
        async move { client.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let r = api(id_token.clone()).await;
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(header(&echo, "x-auth-request-email"), Some("alice@example.com"));
    // A broken signature, a truncated token, and an unsigned one are refused with 401.
    let mut parts: Vec<String> = id_token.split('.').map(str::to_owned).collect();
    let sig = parts[2].clone();
    parts[2] = format!(
        "{}{}",
        &sig[..sig.len() - 4],
        if sig.ends_with("AAAA") { "BBBB" } else { "AAAA" }
    );
    let header_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    for bad in [
        parts.join("."),
        id_token[..id_token.len() / 2].to_owned(),
        format!("{header_b64}.{}.", parts[1]),
        "not-a-jwt".to_owned(),
    ] {
        let r = api(bad.clone()).await;
        assert_eq!(r.status(), 401, "{bad}");
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn access_tokens_are_refreshed_before_they_expire_without_a_new_login() {
    // Access tokens live 2 s: once it has expired, the next request refreshes it.
    let env = AuthEnv::start("", serde_json::json!({ "access_token": 2 })).await;
    let (browser, first) = env.login("app1.example.com", "alice").await;
    // The token ages into its refresh window (a clock wait, not a readiness wait).
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    let first_token = header(&first, "x-auth-request-access-token").unwrap().to_owned();
    let r = browser.get(env.url("app1.example.com", "/again")).send().await.unwrap();
    assert_eq!(r.status(), 200, "refreshed in place, no login: {}", env.gw.logs());
    let echo: serde_json::Value = r.json().await.unwrap();
    let second_token = header(&echo, "x-auth-request-access-token").unwrap();
    assert_ne!(second_token, first_token, "a new access token");
    assert!(
        env.gw
            .metric("authgate_session_refreshes_total{provider=\"corp\",result=\"refreshed\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_the_provider_refuses_ends_the_session_cleanly() {
    let env = AuthEnv::start("", serde_json::json!({ "access_token": 2 })).await;
    let (browser, _) = env.login("app1.example.com", "alice").await;
    // End the session at the provider (RP-less logout in the provider's own UI): its refresh
    // tokens die with it.
    env.idp.sign_out(&browser).await;
    // The token ages into its refresh window (a clock wait, not a readiness wait).
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    // The next request needs a refresh, the provider refuses it: signed out, sent to login.
    let r = browser.get(env.url("app1.example.com", "/after")).send().await.unwrap();
    assert_eq!(r.status(), 302, "{}", env.gw.logs());
    assert!(r.headers()["location"].to_str().unwrap().starts_with(&env.idp.issuer));
    let r = browser.get(env.url("app1.example.com", "/api/x")).send().await.unwrap();
    assert_eq!(r.status(), 401, "the session is gone, not retried in a loop");
    assert_eq!(
        env.gw
            .metric("authgate_session_refreshes_total{provider=\"corp\",result=\"refused\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_and_foreign_audience_bearer_tokens_are_refused() {
    // ID tokens live 2 s here.
    let env = AuthEnv::start("", serde_json::json!({ "id_token": 2 })).await;
    let (_, echo) = env.login("app1.example.com", "alice").await;
    let token = header(&echo, "authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    let client = client(&env.ca, &env.gw, &["app1.example.com"]);
    let url = env.url("app1.example.com", "/api/me");
    assert_eq!(client.get(&url).bearer_auth(&token).send().await.unwrap().status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await; // let the token expire
    let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401, "expired");

    // A token the provider issued to another client (audience) is not for us.
    let other_gw_origin = AuthEnv::origin(&env.config, "app1.example.com");
    let second = second_provider_token(&env, &other_gw_origin).await;
    assert_eq!(
        client.get(&url).bearer_auth(second).send().await.unwrap().status(),
        401,
        "a token issued to another client by another provider"
    );
}

/// An ID token for client `other` of a second provider instance with the same users.
async fn second_provider_token(env: &AuthEnv, origin: &str) -> String {
    let idp = Idp::start(
        &env.ca,
        "other",
        "other-secret",
        &[origin.to_owned()],
        serde_json::json!({}),
    );
    id_token_from(&idp, &env.ca, env.gw.https, origin, "other", "other-secret").await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_apps_on_two_providers_keep_separate_identities_and_github_policy_applies() {
    let env = AuthEnv::start_with("", serde_json::json!({}), |ca, config| {
        let origins = ["code.example.com", "infra.example.com"].map(|h| AuthEnv::origin(config, h));
        let github = Idp::start_script(
            ca,
            "github.mjs",
            serde_json::json!({
                "public_host": "localhost",
                "clients": [{ "client_id": "gh-client", "client_secret": "gh-secret",
                              "redirect_uris": origins.iter().map(|o| format!("{o}/oauth2/callback")).collect::<Vec<_>>() }],
                "users": [{ "login": "octocat", "password": "octo-pw", "id": 583231, "name": "The Octocat",
                            "emails": [{ "email": "octocat@example.com", "primary": true, "verified": true }],
                            "orgs": ["acme"], "teams": [{ "org": "acme", "slug": "platform" }] }],
            }),
        );
        Extra {
            providers: format!(
                "  gh: {{ type: github, client_id: gh-client, client_secret_env: GH_SECRET, login_url: \"{0}\", api_url: \"{0}/api/v3\", ca_file: ca.pem }}\n",
                github.issuer
            ),
            apps: vec![
                ("code".into(), "code.example.com".into(), "auth: { provider: gh, github_org: [acme] }\n".into()),
                ("infra".into(), "infra.example.com".into(), "auth: { provider: gh, github_team: [acme/sre] }\n".into()),
            ],
            env: vec![("GH_SECRET".into(), "gh-secret".into())],
            idp: Some(github),
            ..Extra::default()
        }
    })
    .await;
    let b = env.browser();
    let (resp, visited) = browse(&b, &env.url("app1.example.com", "/a"), "alice", "alice-pw").await;
    assert_eq!(resp.status(), 200, "{visited:?}");
    let (resp, visited) = browse(&b, &env.url("code.example.com", "/b"), "octocat", "octo-pw").await;
    assert_eq!(resp.status(), 200, "{visited:?}\n{}", env.gw.logs());
    let echo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(header(&echo, "x-auth-request-user"), Some("583231"));
    assert_eq!(header(&echo, "x-auth-request-preferred-username"), Some("octocat"));
    assert_eq!(header(&echo, "x-auth-request-email"), Some("octocat@example.com"));
    // Both sessions live side by side, each under its own cookie.
    let cookies = (
        b.cookie(&env.url("app1.example.com", "/"), "_authgate_corp"),
        b.cookie(&env.url("code.example.com", "/"), "_authgate_gh"),
    );
    assert!(cookies.0.is_some() && cookies.1.is_some(), "{cookies:?}");
    let r = b.get(env.url("app1.example.com", "/c")).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "corp session untouched: {:?} {}",
        r.headers(),
        env.gw.logs()
    );
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        header(&echo, "x-auth-request-email"),
        Some("alice@example.com"),
        "corp identity untouched"
    );
    // The GitHub team rule refuses octocat (platform, not sre) on infra, with the same session.
    assert_eq!(
        b.get(env.url("infra.example.com", "/")).send().await.unwrap().status(),
        403
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_provider_signing_key_is_fetched_when_a_token_names_it() {
    let keys_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let start_rotating = |ca: &TestCa, origins: &[String], keys: &std::path::Path| {
        let mut config = Idp::config("rot-client", "rot-secret", origins, serde_json::json!({}));
        config["listen"] = format!("127.0.0.1:{port}").into();
        config["keys_file"] = keys.to_str().unwrap().into();
        Idp::start_script(ca, "server.mjs", config)
    };
    let k1 = keys_dir.path().join("k1.json");
    Idp::generate_keys(&k1);
    let mut origin = String::new();
    let mut env = AuthEnv::start_with("", serde_json::json!({}), |ca, config| {
        origin = AuthEnv::origin(config, "rot.example.com");
        let idp = start_rotating(ca, std::slice::from_ref(&origin), &k1);
        Extra {
            providers: format!(
                "  rot: {{ type: oidc, issuer_url: \"{}\", client_id: rot-client, client_secret_env: ROT_SECRET, ca_file: ca.pem }}\n",
                idp.issuer
            ),
            apps: vec![("rot".into(), "rot.example.com".into(), "auth: { provider: rot, email_domains: [example.com] }\n".into())],
            env: vec![("ROT_SECRET".into(), "rot-secret".into())],
            idp: Some(idp),
            ..Extra::default()
        }
    })
    .await;
    let login = |env: &AuthEnv| {
        let b = browser(&env.ca, env.gw.https, &["rot.example.com"]);
        let url = env.url("rot.example.com", "/k");
        async move { browse(&b, &url, "alice", "alice-pw").await.0.status() }
    };
    assert_eq!(login(&env).await, 200, "{}", env.gw.logs());
    // The provider rotates its signing key (restarted with a new JWKS on the same address).
    drop(env.extra_idp.take());
    let k2 = keys_dir.path().join("k2.json");
    Idp::generate_keys(&k2);
    env.extra_idp = Some(start_rotating(&env.ca, std::slice::from_ref(&origin), &k2));
    // The next ID token names a key the gateway has not seen: it fetches the JWKS again.
    assert_eq!(login(&env).await, 200, "{}", env.gw.logs());
    assert!(
        env.gw
            .logs()
            .contains("provider metadata loaded provider=rot refresh_keys=true"),
        "{}",
        env.gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_everywhere_ends_every_session_of_the_user_in_the_memory_store() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let (alice1, _) = env.login("app1.example.com", "alice").await;
    let (alice2, _) = env.login("app1.example.com", "alice").await;
    let (bob, _) = env.login("app1.example.com", "bob").await;
    let url = env.url("app1.example.com", "/x");
    let status = |b: &common::idp::Browser| {
        let req = b.get(&url).header("accept", "application/json").send();
        async move { req.await.unwrap().status().as_u16() }
    };
    assert_eq!((status(&alice2).await, status(&bob).await), (200, 200));
    // A plain sign-out ends only that session.
    let r = alice1
        .get(env.url("app1.example.com", "/oauth2/sign_out"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        status(&alice2).await,
        200,
        "another session of the user survives a plain sign-out"
    );
    let (alice3, _) = env.login("app1.example.com", "alice").await;
    let r = alice3
        .get(env.url("app1.example.com", "/oauth2/sign_out?everywhere=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(status(&alice2).await, 401, "every session of alice ended");
    assert_eq!(status(&bob).await, 200, "bob's untouched");
    // The command line refuses a store it cannot reach.
    let out = std::process::Command::new(binary())
        .args(["session", "revoke", "-c"])
        .arg(env.config.main_file())
        .args(["--sub", "bob", "--provider", "corp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sessions.store is memory"));
}
