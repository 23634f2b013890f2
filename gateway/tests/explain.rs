//! `authgate explain` answers what the live gateway answers (issue 9 §3): a table of requests —
//! hosts, path forms, routes, public/API/protected classes, signed out and as two users — goes
//! through both the `explain` command (offline, same configuration) and a running gateway with a
//! real OpenID provider, and the two must agree on every status.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::authenv::{AuthEnv, Extra};
use common::{binary, raw_exchange, tls_connect};

/// code.example.com: admins by default, a public route, an API route for example.com users.
const CODE_APP: &str = "auth: { provider: corp, email_domains: [\"*\"], allowed_groups: [admins] }\n\
routes:\n  - { path_prefix: /public, auth: null }\n  - path_prefix: /api\n    auth: { provider: corp, email_domains: [example.com], api_routes: [\"^/\"] }\n";

const CASES: &[(&str, &str)] = &[
    ("app1.example.com", "/"),
    ("app1.example.com", "/private/x?q=1"),
    ("app1.example.com", "/public/x"),
    ("app1.example.com", "/private/../public/x"),
    ("app1.example.com", "/public/../private"),
    ("app1.example.com", "/%70ublic/x"),
    ("app1.example.com", "/private/..;/public/x"),
    ("app1.example.com", "/public;x/y"),
    ("app1.example.com", "/api/items"),
    ("app1.example.com", "/healthz"),
    ("app1.example.com", "/x%2fy"),
    ("admin.example.com", "/"),
    ("admin.example.com", "/settings"),
    ("public.example.com", "/anything/../x"),
    ("code.example.com", "/"),
    ("code.example.com", "/public/x"),
    ("code.example.com", "/publicx"),
    ("code.example.com", "/api/v1"),
    ("code.example.com", "/public/%2e%2e/api/v1"),
    ("code.example.com", "/api;v=1/x"),
    ("nobody.example.com", "/"),
];

/// The live gateway's status for `path` on `host`, with `cookie`.
fn live(env: &AuthEnv, host: &str, path: &str, cookie: Option<&str>) -> u16 {
    let mut s = tls_connect(&env.ca, env.gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let resp = raw_exchange(
        &mut s,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{cookie}Connection: close\r\n\r\n").as_bytes(),
    );
    resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `authgate explain --json` for the same request: (status, admitted, exit code).
fn explain(env: &AuthEnv, host: &str, path: &str, user: Option<(&str, &str)>) -> (u16, bool, i32) {
    let mut cmd = Command::new(binary());
    cmd.arg("explain")
        .arg("-c")
        .arg(env.config.main_file())
        .args(["--json", "--url", &format!("https://{host}{path}")])
        .env_remove("AUTHGATE_TEST_COOKIE_SECRETS")
        .env_remove("CORP_SECRET");
    if let Some((email, groups)) = user {
        cmd.args(["--email", email, "--groups", groups]);
    }
    let out = cmd.output().unwrap();
    let answer: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (
        answer["status"].as_u64().unwrap() as u16,
        answer["admitted"].as_bool().unwrap(),
        out.status.code().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_gives_the_live_gateways_answer_for_every_case() {
    let env = AuthEnv::start_with("", serde_json::json!({}), |_, _| Extra {
        apps: vec![("code".into(), "code.example.com".into(), CODE_APP.into())],
        ..Extra::default()
    })
    .await;
    let users = [
        (None, None),
        (
            Some(("alice@example.com", "admins,dev")),
            Some(env.login_cookie("alice").await),
        ),
        (Some(("bob@example.com", "dev")), Some(env.login_cookie("bob").await)),
    ];
    let mut statuses = std::collections::BTreeSet::new();
    for (user, cookie) in &users {
        for &(host, path) in CASES {
            let live = live(&env, host, path, cookie.as_deref());
            let (status, admitted, code) = explain(&env, host, path, *user);
            assert_eq!(
                status, live,
                "{host}{path} as {user:?}: explain says {status}, the gateway {live}"
            );
            assert_eq!(admitted, live == 200, "{host}{path} as {user:?}");
            assert_eq!(code, if admitted { 0 } else { 1 }, "{host}{path} as {user:?}");
            statuses.insert(live);
        }
    }
    // The table exercises every kind of answer.
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        [200, 302, 400, 401, 403, 404],
        "the table covers every answer"
    );
}
