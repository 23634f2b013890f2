//! A real browser (Debian's chromium, driven by npm playwright-core in tests/support/browser)
//! signs in through the gateway: what a browser enforces and an HTTP client does not (cookie
//! size limits) is tested where it applies.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::authenv::*;

fn support_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/browser")
}

/// Runs `login.mjs` on `url` as `user` and returns its JSON result.
async fn browser_login(url: String, user: &str) -> serde_json::Value {
    assert!(
        Path::new("/usr/bin/chromium").exists() && support_dir().join("node_modules").is_dir(),
        "run .ci/install-deps (Debian chromium and npm ci in gateway/tests/support/browser) before the tests"
    );
    let password = format!("{user}-pw");
    let user = user.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(support_dir().join("login.mjs"))
            .args([
                url.as_str(),
                user.as_str(),
                password.as_str(),
                "MAP *.example.com 127.0.0.1",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4000_character_deep_link_completes_a_login_in_chromium() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let deep = format!("/deep/{}?q=1", "d".repeat(4000));
    let result = browser_login(env.url("app1.example.com", &deep), "alice").await;
    assert_eq!(result["status"], 200, "{result}\n{}", env.gw.logs());
    let url = reqwest::Url::parse(result["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/", "the over-long deep link falls back to /");
    assert!(
        result["body"].as_str().unwrap().contains("alice@example.com"),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deep_link_within_the_cap_survives_a_login_in_chromium() {
    let env = AuthEnv::start("", serde_json::json!({})).await;
    let deep = format!("/deep/{}?q=1", "k".repeat(1500));
    let result = browser_login(env.url("app1.example.com", &deep), "alice").await;
    assert_eq!(result["status"], 200, "{result}");
    let url = reqwest::Url::parse(result["url"].as_str().unwrap()).unwrap();
    assert_eq!(format!("{}?{}", url.path(), url.query().unwrap()), deep);
}
