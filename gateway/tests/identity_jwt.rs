//! Signed identity for upstreams (issue 9 §1): an admitted user's request carries an ES256 JWT
//! that an independent library (`jose`, in Node) verifies against the JWK set the gateway
//! publishes on every app host and on the admin listener; client-sent copies never pass;
//! assertions are cached per user and app; a key rotation (prepend a key, restart) keeps old
//! assertions verifiable while new ones use the new key.

#![allow(clippy::unwrap_used)]

mod common;

use common::authenv::{cookie_key, header, AuthEnv, Extra, CLIENT_SECRET, COOKIE_SECRET};
use common::idp::support_dir;
use common::Gateway;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;

const ISSUER: &str = "https://authgate.example.com";
const KEYS_VAR: &str = "AUTHGATE_TEST_JWT_KEYS";

fn p256_pem() -> String {
    let key = EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap();
    String::from_utf8(PKey::from_ec_key(key).unwrap().private_key_to_pem_pkcs8().unwrap()).unwrap()
}

/// `jose`'s verdict on `jwt` against `jwks` for audience `code-app`.
fn verify(jwks: &serde_json::Value, jwt: &str) -> serde_json::Value {
    let out = std::process::Command::new("node")
        .current_dir(support_dir())
        .args(["verify-jwt.mjs", &jwks.to_string(), jwt, ISSUER, "code-app"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

async fn jwks(env: &AuthEnv) -> serde_json::Value {
    let r = env
        .browser()
        .get(env.url("code.example.com", "/.well-known/authgate/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "public, no login");
    let public: serde_json::Value = r.json().await.unwrap();
    let admin: serde_json::Value = reqwest::get(format!("http://{}/.well-known/authgate/jwks.json", env.gw.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public, admin, "the same set on app hosts and the admin listener");
    public
}

/// The assertion code.example.com's upstream received for a request with `cookie`.
async fn assertion(env: &AuthEnv, browser: &common::idp::Browser, path: &str) -> Option<String> {
    let r = browser
        .get(env.url("code.example.com", path))
        .header("X-Authgate-Jwt-Assertion", "forged.by.client")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    header(&echo, "x-authgate-jwt-assertion").map(str::to_owned)
}

fn start(keys: String) -> impl FnOnce(&common::TestCa, &common::ConfigDir) -> Extra {
    move |_, _| Extra {
        main: format!("identity_jwt: {{ issuer: \"{ISSUER}\", keys_env: {KEYS_VAR} }}\n"),
        env: vec![(KEYS_VAR.into(), keys)],
        apps: vec![(
            "code".into(),
            "code.example.com".into(),
            "auth: { provider: corp, email_domains: [example.com] }\n\
             identity_jwt: { audience: code-app, ttl: 60s }\n\
             routes: [{ path_prefix: /public, auth: null }]\n"
                .into(),
        )],
        ..Extra::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstreams_get_a_verifiable_assertion_across_a_key_rotation() {
    let (k1, k2) = (p256_pem(), p256_pem());
    let env = AuthEnv::start_with("", serde_json::json!({}), start(k1.clone())).await;
    let set = jwks(&env).await;
    assert_eq!(set["keys"].as_array().unwrap().len(), 1);
    let k1_kid = set["keys"][0]["kid"].as_str().unwrap().to_owned();

    // Anonymous, on the public route: the client's copy is removed, nothing is added.
    assert_eq!(assertion(&env, &env.browser(), "/public/x").await, None);

    let (alice, _) = env.login("app1.example.com", "alice").await;
    let jwt = assertion(&env, &alice, "/x")
        .await
        .expect("an assertion for a signed-in user");
    assert_ne!(jwt, "forged.by.client");
    let verdict = verify(&set, &jwt);
    assert_eq!(verdict["ok"], true, "{verdict}");
    let claims = &verdict["payload"];
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["admins", "dev"]));
    assert_eq!(verdict["kid"], k1_kid.as_str());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60,
        "ttl"
    );
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        assertion(&env, &alice, "/y").await.as_deref(),
        Some(jwt.as_str()),
        "cached"
    );
    // Tampering is caught by the independent verifier.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    assert_eq!(verify(&set, &parts.join("."))["ok"], false);

    // Rotation: prepend a new key and restart; the old assertion still verifies, new ones use
    // the new key.
    let AuthEnv {
        ca,
        config,
        gw,
        idp,
        upstream,
        ..
    } = env;
    drop(gw);
    let keys = format!("{k2}{k1}");
    let key = cookie_key();
    let gw = Gateway::start_with_env(
        &config,
        &[
            (COOKIE_SECRET, key.as_str()),
            ("CORP_SECRET", CLIENT_SECRET),
            (KEYS_VAR, keys.as_str()),
        ],
    )
    .await;
    let env = AuthEnv {
        ca,
        config,
        gw,
        idp,
        upstream,
        extra_idp: None,
        gw_b: None,
    };
    let rotated = jwks(&env).await;
    assert_eq!(rotated["keys"].as_array().unwrap().len(), 2);
    assert_eq!(
        verify(&rotated, &jwt)["ok"],
        true,
        "an assertion signed before the rotation"
    );
    let (bob, _) = env.login("app1.example.com", "bob").await;
    let new_jwt = assertion(&env, &bob, "/x").await.unwrap();
    let verdict = verify(&rotated, &new_jwt);
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_ne!(verdict["kid"], k1_kid.as_str(), "the prepended key signs");
    assert_eq!(verify(&set, &new_jwt)["ok"], false, "unknown to the old set");
}
