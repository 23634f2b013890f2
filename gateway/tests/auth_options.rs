//! The oauth2-proxy options of issue 10 §2 against the real OpenID provider, each in both
//! directions: `authenticated_emails_file` (and its hot reload), `whitelist_domains`, cookie
//! `samesite`/`secure`, a per-app `cookie_domain`, `skip_provider_button`, `display_name`, page
//! templates and the 403 page's sign-out link, `pass_user_headers`, `set_xauthrequest`,
//! `prefer_email_to_user`, and `extra_jwt_issuers`.
#![allow(clippy::unwrap_used)]

mod common;

use common::authenv::*;
use common::idp::{browse, browser, walk_until, Browser, Idp};
use common::*;

/// Signs `user` in through app1 (whose callback the provider knows); the session cookie is
/// for `.example.com`, so every app under it on provider `corp` sees it.
async fn signed_in(env: &AuthEnv, user: &str, hosts: &[&str]) -> Browser {
    let mut all = vec!["app1.example.com"];
    all.extend_from_slice(hosts);
    let b = browser(&env.ca, env.gw.https, &all);
    let (resp, visited) = browse(&b, &env.url("app1.example.com", "/in"), user, &format!("{user}-pw")).await;
    assert_eq!(resp.status(), 200, "{visited:?}\n{}", env.gw.logs());
    b
}

async fn status(b: &Browser, url: String) -> u16 {
    b.get(url).send().await.unwrap().status().as_u16()
}

fn with_rd(base: String, rd: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", rd)
        .finish();
    format!("{base}?{query}")
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn authenticated_emails_file_admits_listed_users_and_follows_edits() {
    let env = AuthEnv::start_with("", serde_json::json!({}), |_, config| {
        config.write("apps.d/emails.txt", "bob@example.com\n");
        Extra {
            apps: vec![(
                "list".into(),
                "list.example.com".into(),
                "auth: { provider: corp, authenticated_emails_file: emails.txt }\n".into(),
            )],
            ..Extra::default()
        }
    })
    .await;
    let alice = signed_in(&env, "alice", &["list.example.com"]).await;
    let bob = signed_in(&env, "bob", &["list.example.com"]).await;
    let url = || env.url("list.example.com", "/x");
    let refused = alice.get(url()).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("href=\"/oauth2/sign_out\""),
        "403 offers sign-out: {page}"
    );
    assert_eq!(status(&bob, url()).await, 200);

    // Editing the file (case-insensitive, blanks trimmed) reloads it.
    let generation = env.gw.generation().await;
    env.config.write("apps.d/emails.txt", "  ALICE@example.com\n\n");
    env.gw.wait_generation(generation + 1).await;
    assert_eq!(status(&alice, url()).await, 200, "{}", env.gw.logs());
    assert_eq!(status(&bob, url()).await, 403);

    // A missing file rejects that app file alone, which keeps its last good version.
    std::fs::remove_file(env.config.path().join("apps.d/emails.txt")).unwrap();
    env.gw
        .wait_metric("authgate_config_reloads_total{result=\"partial\"}", 1.0)
        .await;
    let logs = env.gw.logs();
    assert!(
        logs.contains("list.yaml") && logs.contains("auth.authenticated_emails_file") && logs.contains("emails.txt"),
        "{logs}"
    );
    assert_eq!(status(&alice, url()).await, 200);
    assert_eq!(status(&bob, env.url("app1.example.com", "/still")).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn whitelist_domains_extend_where_rd_may_lead_and_nothing_else() {
    let env = AuthEnv::start_with("", serde_json::json!({}), |_, _| Extra {
        apps: vec![(
            "app1".into(),
            "app1.example.com".into(),
            "auth: { provider: corp, email_domains: [example.com],\n  \
             whitelist_domains: [\".other.test\", \"partner.example.org:8443\", \"exact.example.net\"] }\n"
                .into(),
        )],
        ..Extra::default()
    })
    .await;
    let b = browser(&env.ca, env.gw.https, &["app1.example.com"]);
    let sign_out = env.url("app1.example.com", "/oauth2/sign_out");
    let landing = |rd: &str| {
        let req = b.get(with_rd(sign_out.clone(), rd));
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 302);
            r.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    for ok in [
        "https://other.test/x",
        "https://a.b.other.test/x?y#z",
        "https://A.Other.Test./x",
        "https://partner.example.org:8443/",
        "https://exact.example.net/p",
        "https://admin.example.com/",
    ] {
        assert_eq!(landing(ok).await, ok);
    }
    for bad in [
        "https://evilother.test/",
        "https://other.test.evil.com/",
        "https://evil.com/.other.test",
        "https://evil.com?.other.test",
        "https://a.other.test@evil.com/",
        "https://evil.com@a.other.test/",
        "https://a.other.test\\@evil.com/",
        "https://a.other.test%2F@evil.com/",
        "https://a%2Eother.test/",
        "//a.other.test/",
        "/\\a.other.test/",
        "/%2F%2Fa.other.test/",
        "http://a.other.test/",
        "https://a.other.test:8443/",
        "https://partner.example.org/",
        "https://partner.example.org:9443/",
        "https://x.partner.example.org:8443/",
        "https://sub.exact.example.net/",
        "https://exact.example.net:443/",
    ] {
        assert_eq!(landing(bad).await, "/", "{bad:?}");
    }
    // Through a real login: the callback honours the whitelist, and refuses a lookalike.
    let target = "https://a.other.test/welcome";
    let start = with_rd(env.url("app1.example.com", "/oauth2/start"), target);
    let stop = walk_until(&b, &start, "alice", "alice-pw", |u| {
        u.host_str() != Some("localhost") && u.host_str() != Some("app1.example.com")
    })
    .await;
    assert_eq!(stop.as_str(), target);
    let b = browser(&env.ca, env.gw.https, &["app1.example.com"]);
    let start = with_rd(env.url("app1.example.com", "/oauth2/start"), "https://evilother.test/");
    let (_, visited) = browse(&b, &start, "alice", "alice-pw").await;
    assert_eq!(visited.last().unwrap(), &env.url("app1.example.com", "/"));
    // A bare top-level domain is refused by check.
    env.config.write_app(
        "wide",
        "host: wide.example.com\nupstreams: [\"127.0.0.1:1\"]\nauth: { provider: corp, email_domains: [\"*\"], whitelist_domains: [\".test\"] }\n",
    );
    env.gw
        .wait_metric("authgate_config_reloads_total{result=\"partial\"}", 1.0)
        .await;
    assert!(env.gw.logs().contains("auth.whitelist_domains[0]"), "{}", env.gw.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_samesite_and_secure_follow_the_configuration() {
    // strict: the session cookie is Strict, the login cookie Lax (the provider's redirect back
    // is cross-site and would never carry a Strict cookie).
    let env = AuthEnv::start(", samesite: strict", serde_json::json!({})).await;
    let b = browser(&env.ca, env.gw.https, &["app1.example.com"]);
    let start = env.url("app1.example.com", "/oauth2/start?rd=/x");
    let login = set_cookies(&b.get(&start).send().await.unwrap());
    assert!(
        login
            .iter()
            .any(|c| c.starts_with("_authgate_login_") && c.ends_with("; Secure; HttpOnly; SameSite=Lax")),
        "{login:?}"
    );
    let callback = walk_until(&b, &start, "alice", "alice-pw", |u| u.path() == "/oauth2/callback").await;
    let session = set_cookies(&b.get(callback).send().await.unwrap());
    let cookie = session.iter().find(|c| c.starts_with("_authgate_corp=")).unwrap();
    assert!(
        cookie.contains("; Secure; HttpOnly; SameSite=Strict; Domain=example.com"),
        "{cookie}"
    );
    drop(env);

    // "" and secure: false: neither attribute.
    let env = AuthEnv::start(", samesite: \"\", secure: false", serde_json::json!({})).await;
    let b = browser(&env.ca, env.gw.https, &["app1.example.com"]);
    let login = set_cookies(
        &b.get(env.url("app1.example.com", "/oauth2/start"))
            .send()
            .await
            .unwrap(),
    );
    let cookie = login.iter().find(|c| c.starts_with("_authgate_login_")).unwrap();
    assert!(!cookie.contains("Secure") && !cookie.contains("SameSite"), "{cookie}");

    // none without Secure is refused, naming the field; a bad value names it too.
    let main = std::fs::read_to_string(env.config.main_file()).unwrap();
    for (edit, expected) in [
        (
            "samesite: none, secure: false",
            "cookie.samesite: \"none\" needs cookie.secure: true",
        ),
        (
            "samesite: loose, secure: false",
            "cookie.samesite: \"loose\" is not one of",
        ),
    ] {
        std::fs::write(
            env.config.main_file(),
            main.replace("samesite: \"\", secure: false", edit),
        )
        .unwrap();
        let out = std::process::Command::new(binary())
            .args(["check", "--offline", "-c"])
            .arg(env.config.main_file())
            .env(COOKIE_SECRET, cookie_key())
            .env("CORP_SECRET", CLIENT_SECRET)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_outside_cookie_domain_gets_its_own_cookie_domain() {
    let policy = "provider: corp, email_domains: [example.com]";
    let env = AuthEnv::start_with("", serde_json::json!({}), |_, _| Extra {
        apps: vec![
            (
                "other".into(),
                OTHER_HOST.into(),
                format!("auth: {{ {policy}, cookie_domain: .other.test }}\n"),
            ),
            (
                "other-b".into(),
                "b.other.test".into(),
                format!("auth: {{ {policy}, cookie_domain: other.test }}\n"),
            ),
            ("lone".into(), "c.other.test".into(), format!("auth: {{ {policy} }}\n")),
            (
                "team".into(),
                "team.example.com".into(),
                format!("auth: {{ {policy}, cookie_domain: \"\" }}\n"),
            ),
        ],
        ..Extra::default()
    })
    .await;
    let hosts = [
        OTHER_HOST,
        "b.other.test",
        "c.other.test",
        "app1.example.com",
        "team.example.com",
    ];
    let b = browser(&env.ca, env.gw.https, &hosts);
    let (resp, visited) = browse(&b, &env.url(OTHER_HOST, "/p"), "alice", "alice-pw").await;
    assert_eq!(resp.status(), 200, "{visited:?}\n{}", env.gw.logs());
    // One sign-in on app.other.test serves b.other.test (same cookie domain) ...
    assert_eq!(status(&b, env.url("b.other.test", "/")).await, 200);
    // ... and any host under .other.test (the browser sends it there), but not an app outside it.
    assert_eq!(status(&b, env.url("c.other.test", "/")).await, 200);
    assert_eq!(status(&b, env.url("app1.example.com", "/")).await, 302);
    // Host-only: sign-out clears no Domain cookie.
    let cleared = set_cookies(
        &b.get(env.url("team.example.com", "/oauth2/sign_out"))
            .send()
            .await
            .unwrap(),
    );
    assert!(cleared.iter().all(|c| !c.contains("Domain=")), "{cleared:?}");
    let cleared = set_cookies(&b.get(env.url("b.other.test", "/oauth2/sign_out")).send().await.unwrap());
    assert!(cleared.iter().any(|c| c.contains("Domain=other.test")), "{cleared:?}");

    // A domain that does not cover the app's host is refused, for that app alone.
    env.config.write_app(
        "bad",
        &app_yaml(
            "x.example.com",
            &[env.upstream.addr],
            &format!("auth: {{ {policy}, cookie_domain: .other.test }}\n"),
        ),
    );
    env.gw
        .wait_metric("authgate_config_reloads_total{result=\"partial\"}", 1.0)
        .await;
    let logs = env.gw.logs();
    assert!(
        logs.contains("auth.cookie_domain") && logs.contains("does not cover"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_pages_show_the_display_name_and_templates_and_skip_provider_button_decides() {
    let env = AuthEnv::start_with("", serde_json::json!({}), |_, config| {
        std::fs::create_dir(config.path().join("tpl")).unwrap();
        config.write(
            "tpl/sign_in.html",
            "<h1>Welcome to {{provider}}</h1><a href=\"{{start_url}}\">go</a><i>{{ rd }}</i>",
        );
        config.write(
            "tpl/error.html",
            "<p>{{status}} {{title}}: {{message}}</p><a id=out href=\"{{sign_out_url}}\">out</a>",
        );
        Extra {
            // Never contacted: the sign-in page needs no discovery.
            providers: "  corp2: { type: oidc, issuer_url: \"https://127.0.0.1:9/\", client_id: gateway, \
                        client_secret_env: CORP_SECRET, display_name: \"R&D <SSO>\" }\n"
                .into(),
            apps: vec![(
                "button".into(),
                "button.example.com".into(),
                "auth: { provider: corp2, email_domains: [example.com], skip_provider_button: false }\n".into(),
            )],
            main: "templates_dir: tpl\n".into(),
            ..Extra::default()
        }
    })
    .await;
    let b = signed_in(&env, "bob", &["button.example.com", "admin.example.com"]).await;
    // skip_provider_button: false: a signed-out browser gets the sign-in page (403, as
    // oauth2-proxy), and /oauth2/sign_in shows it too; values are HTML-escaped.
    let anon = browser(&env.ca, env.gw.https, &["button.example.com"]);
    let r = anon
        .get(env.url("button.example.com", "/deep?q=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>Welcome to R&amp;D &lt;SSO&gt;</h1>"), "{page}");
    assert!(page.contains("href=\"/oauth2/start?rd=%2Fdeep%3Fq%3D1\""), "{page}");
    let r = anon
        .get(with_rd(env.url("button.example.com", "/oauth2/sign_in"), "/a\"<b>"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<i>/a&quot;&lt;b&gt;</i>"));
    // The default (skip_provider_button: true): straight to the provider, /oauth2/sign_in too.
    let app1 = browser(&env.ca, env.gw.https, &["app1.example.com"]);
    for path in ["/x", "/oauth2/sign_in?rd=/x"] {
        let r = app1.get(env.url("app1.example.com", path)).send().await.unwrap();
        assert_eq!(r.status(), 302, "{path}");
        let location = r.headers()["location"].to_str().unwrap();
        assert!(location.starts_with(&env.idp.issuer), "{path}: {location}");
    }
    // error.html: bob is refused by admin (group admins), with a working sign-out link.
    let r = b.get(env.url("admin.example.com", "/")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.starts_with("<p>403 Forbidden: You are signed in, but"), "{page}");
    assert!(page.contains("href=\"/oauth2/sign_out\""), "{page}");
    let r = b
        .get(env.url("admin.example.com", "/oauth2/sign_out"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(status(&b, env.url("admin.example.com", "/")).await, 302, "signed out");
    // error.html serves every HTML error page of an app with auth: a login towards a provider
    // that cannot be reached (503), an endpoint that is off (404).
    let r = anon
        .get(env.url("button.example.com", "/oauth2/start?rd=/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let page = r.text().await.unwrap();
    assert!(page.starts_with("<p>503 "), "{page}");
    let r = app1
        .get(env.url("app1.example.com", "/oauth2/frontchannel_logout?iss=x&sid=y"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().starts_with("<p>404 "));

    // A template with an unknown placeholder rejects the change, naming the field.
    env.config.write("tpl/error.html", "{{nope}}");
    env.gw
        .wait_metric("authgate_config_reloads_total{result=\"failure\"}", 1.0)
        .await;
    let logs = env.gw.logs();
    assert!(
        logs.contains("templates_dir") && logs.contains("unknown placeholder {{nope}}"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_headers_and_x_auth_request_follow_their_options() {
    let env = AuthEnv::start_with("", serde_json::json!({}), |_, _| Extra {
        apps: vec![
            (
                "plain".into(),
                "plain.example.com".into(),
                "auth: { provider: corp, email_domains: [example.com], pass_user_headers: false, set_xauthrequest: false }\n"
                    .into(),
            ),
            (
                "mail".into(),
                "mail.example.com".into(),
                "auth: { provider: corp, email_domains: [example.com], prefer_email_to_user: true, pass_access_token: true }\n"
                    .into(),
            ),
        ],
        ..Extra::default()
    })
    .await;
    let b = signed_in(&env, "alice", &["plain.example.com", "mail.example.com"]).await;
    let echo = |host: &'static str| {
        let req = b.get(env.url(host, "/e")).header("X-Forwarded-User", "mallory");
        async move { req.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let auth = |host: &'static str| {
        let req = b.get(env.url(host, "/oauth2/auth"));
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 202);
            r.headers().clone()
        }
    };
    // pass_user_headers: false: no X-Forwarded-* identity (and a client's copy is removed).
    let plain = echo("plain.example.com").await;
    assert_eq!(header(&plain, "x-auth-request-user"), Some("alice"));
    for h in [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
    ] {
        assert_eq!(header(&plain, h), None, "{h}: {plain}");
    }
    // set_xauthrequest: false: /oauth2/auth answers 202 without identity headers.
    let h = auth("plain.example.com").await;
    assert!(h.get("x-auth-request-user").is_none(), "{h:?}");

    // prefer_email_to_user: X-Forwarded-User is the email, and no X-Forwarded-Email.
    let mail = echo("mail.example.com").await;
    assert_eq!(header(&mail, "x-forwarded-user"), Some("alice@example.com"));
    assert_eq!(header(&mail, "x-forwarded-email"), None);
    assert_eq!(header(&mail, "x-forwarded-groups"), Some("admins,dev"));
    assert_eq!(header(&mail, "x-forwarded-preferred-username"), Some("alice"));
    assert!(header(&mail, "x-forwarded-access-token").is_some_and(|t| !t.is_empty()));
    assert_eq!(header(&mail, "x-auth-request-user"), Some("alice"));
    // set_xauthrequest (default), with pass_access_token: the token too.
    let h = auth("mail.example.com").await;
    assert_eq!(h["x-auth-request-user"], "alice");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert_eq!(h["x-auth-request-groups"], "admins,dev");
    assert_eq!(h["x-auth-request-preferred-username"], "alice");
    assert!(!h["x-auth-request-access-token"].is_empty());
    // Defaults elsewhere: X-Forwarded-User is the user id, with X-Forwarded-Email.
    let r = b.get(env.url("app1.example.com", "/d")).send().await.unwrap();
    let app1: serde_json::Value = r.json().await.unwrap();
    assert_eq!(header(&app1, "x-forwarded-user"), Some("alice"));
    assert_eq!(header(&app1, "x-forwarded-email"), Some("alice@example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_from_an_extra_issuer_are_verified_for_its_audience() {
    let mut api_origin = String::new();
    let mut env = AuthEnv::start_with("", serde_json::json!({}), |ca, config| {
        api_origin = AuthEnv::origin(config, "api.example.com");
        let other = Idp::start(
            ca,
            "other",
            "other-secret",
            std::slice::from_ref(&api_origin),
            serde_json::json!({}),
        );
        Extra {
            idp: Some(other),
            ..Extra::default()
        }
    })
    .await;
    let other = env.extra_idp.take().unwrap();
    // Provider corpx: corp's issuer and client, plus the other provider's tokens for
    // audience `other`; corpy accepts that issuer for another audience only.
    let main = std::fs::read_to_string(env.config.main_file()).unwrap();
    let provider = |name: &str, audience: &str| {
        format!(
            "  {name}: {{ type: oidc, issuer_url: \"{}\", client_id: gateway, client_secret_env: CORP_SECRET, ca_file: ca.pem,\n\
             \x20    extra_jwt_issuers: [\"{}={audience}\"] }}\n",
            env.idp.issuer, other.issuer
        )
    };
    let main = main.replacen(
        "providers:\n",
        &format!(
            "providers:\n{}{}",
            provider("corpx", "other"),
            provider("corpy", "someone-else")
        ),
        1,
    );
    for (name, p) in [("api", "corpx"), ("api2", "corpy")] {
        env.config.write_app(
            name,
            &app_yaml(
                &format!("{name}.example.com"),
                &[env.upstream.addr],
                &format!("auth: {{ provider: {p}, email_domains: [example.com], skip_jwt_bearer_tokens: true, api_routes: [\"^/\"] }}\n"),
            ),
        );
    }
    let generation = env.gw.generation().await;
    env.config.write("gateway.yaml", &main);
    env.gw.wait_generation(generation + 1).await;

    let token = id_token_from(&other, &env.ca, env.gw.https, &api_origin, "other", "other-secret").await;
    let c = client(
        &env.ca,
        &env.gw,
        &["api.example.com", "api2.example.com", "app1.example.com"],
    );
    let call = |host: &str| c.get(env.url(host, "/api/me")).bearer_auth(&token).send();
    let r = call("api.example.com").await.unwrap();
    assert_eq!(r.status(), 200, "{}", env.gw.logs());
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(header(&echo, "x-auth-request-email"), Some("alice@example.com"));
    assert_eq!(call("api2.example.com").await.unwrap().status(), 401, "wrong audience");
    assert_eq!(
        call("app1.example.com").await.unwrap().status(),
        401,
        "corp has no extra issuer"
    );
    // The provider's own ID tokens still pass on corpx.
    let (_, echo) = env.login("app1.example.com", "alice").await;
    let own = header(&echo, "authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    let r = c
        .get(env.url("api.example.com", "/api/me"))
        .bearer_auth(own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.extra_idp = Some(other);
}
