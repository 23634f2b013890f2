//! `authgate health` against the real gateway: the probe a container HEALTHCHECK runs.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{app_yaml, binary, Env, Upstream};

fn health(url: &str) -> std::process::Output {
    Command::new(binary())
        .args(["health", "--timeout", "2s", "--url", url])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_passes_on_a_ready_gateway_and_fails_once_it_is_gone() {
    let up = Upstream::start("u1").await;
    let mut env = Env::start(&[("app1", app_yaml("app1.example.com", &[up.addr], ""))], "").await;
    let url = format!("http://{}/ready", env.gw.admin);

    let out = health(&url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("200 ") && stdout.contains("config_generation"),
        "{stdout}"
    );

    // A path the admin listener does not serve is a failure (404), not a pass.
    let out = health(&format!("http://{}/nope", env.gw.admin));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 404"));

    env.gw.child.kill().unwrap();
    env.gw.child.wait().unwrap();
    let started = Instant::now();
    let out = health(&url);
    assert!(!out.status.success(), "a stopped gateway must fail the probe");
    assert!(started.elapsed() < Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("authgate health: http://127.0.0.1:"), "{stderr}");
}
