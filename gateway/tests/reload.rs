//! Hot reload over real sockets, with clients sending requests throughout: apps added,
//! removed and changed, certificates rotated, broken files rejected, Kubernetes-style symlink
//! swaps, SIGHUP, and `authgate check`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::certs::write_atomic;
use common::load::Load;
use common::*;

fn serial_of(env: &Env, sni: &str) -> Vec<u8> {
    let s = tls_connect(&env.ca, env.gw.https, Some(sni), &[]).unwrap();
    peer_cert(&s).serial_number().to_bn().unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_backends_and_certificates_change_under_load_with_zero_failed_requests() {
    let (u1, u2) = (Upstream::start("u1").await, Upstream::start("u2").await);
    let env = Env::start(&[("app1", app_yaml("app1.example.com", &[u1.addr], ""))], "").await;
    let gw = &env.gw;
    let load = Load::start(&env.ca, env.gw.https, "app1.example.com");
    let failures = "authgate_config_reloads_total{result=\"failure\"}";

    // Add an app.
    env.config
        .write_app("app2", &app_yaml("app2.example.com", &[u2.addr], ""));
    gw.wait_generation(2).await;
    let (s, body) = env.get_json("app2.example.com", "/").await;
    assert_eq!((s, body["name"].as_str()), (200, Some("u2")));

    // Change app1's backends: new requests go to u2.
    env.config
        .write_app("app1", &app_yaml("app1.example.com", &[u2.addr], ""));
    gw.wait_generation(3).await;
    let (_, body) = env.get_json("app1.example.com", "/").await;
    assert_eq!(body["name"], "u2");

    // Remove an app.
    env.config.remove_app("app2");
    gw.wait_generation(4).await;
    assert_eq!(env.get_json("app2.example.com", "/").await.0, 404);

    // Rotate the certificate: new handshakes get the new one.
    let before = serial_of(&env, "app1.example.com");
    let (crt, key) = env.ca.issue(&["*.example.com", "example.com"]);
    write_atomic(&env.config.path().join("wildcard.key.new"), &key);
    write_atomic(&env.config.path().join("wildcard.crt.new"), &crt);
    std::fs::rename(
        env.config.path().join("wildcard.key.new"),
        env.config.path().join("wildcard.key"),
    )
    .unwrap();
    std::fs::rename(
        env.config.path().join("wildcard.crt.new"),
        env.config.path().join("wildcard.crt"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while serial_of(&env, "app1.example.com") == before {
        assert!(
            std::time::Instant::now() < deadline,
            "certificate never rotated: {}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // A broken app file is rejected alone (tests/isolation.rs has the details): app1 serves on.
    let partial = "authgate_config_reloads_total{result=\"partial\"}";
    let partial_before = gw.metric(partial).await;
    env.config.write_app("broken", "host: [unclosed\n");
    gw.wait_metric(partial, partial_before + 1.0).await;
    assert_eq!(env.get_json("app1.example.com", "/").await.0, 200);
    let logs = gw.logs();
    assert!(
        logs.contains("broken.yaml") && logs.contains("app file rejected"),
        "{logs}"
    );
    env.config.remove_app("broken");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gw.ready().await["rejected_files"].as_array().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "broken.yaml still reported: {}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // An app that claims another app's host is rejected; the app serving it keeps it.
    let partial_before = gw.metric(partial).await;
    env.config
        .write_app("clash", &app_yaml("app1.example.com", &[u1.addr], ""));
    gw.wait_metric(partial, partial_before + 1.0).await;
    assert!(gw.logs().contains("is already served by"));
    assert_eq!(env.get_json("app1.example.com", "/").await.1["name"], "u2");
    env.config.remove_app("clash");
    let generation = gw.generation().await;
    env.config
        .write_app("app3", &app_yaml("app3.example.com", &[u1.addr], ""));
    gw.wait_generation(generation + 1).await;
    assert_eq!(gw.metric(failures).await, 0.0, "no reload was rejected whole");

    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0, "requests failed during reloads: {}", gw.logs());
    assert!(ok > 20, "the load loop ran ({ok} requests)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_health_state_of_unchanged_pools() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let hc = "health_check: { path: /healthz, interval: 100ms, healthy_threshold: 1, unhealthy_threshold: 1 }\n";
    let env = Env::start(&[("app", app_yaml("app.example.com", &[a.addr, b.addr], hc))], "").await;
    let series = format!("authgate_backend_healthy{{app=\"app\",backend=\"{}\"}}", b.addr);
    reqwest::Client::new()
        .get(format!("http://{}/__health/off", b.addr))
        .send()
        .await
        .unwrap();
    env.gw.wait_metric(&series, 0.0).await;
    // Stop b's health checks from ever succeeding again by stopping it: state must come from memory.
    b.stop();
    env.config
        .write_app("other", &app_yaml("other.example.com", &[a.addr], ""));
    env.gw.wait_generation(2).await;
    assert_eq!(
        env.gw.metric(&series).await,
        0.0,
        "the reused pool still knows b is down"
    );
    // A rebuilt pool starts fresh.
    env.config.write_app(
        "app",
        &app_yaml(
            "app.example.com",
            &[a.addr, b.addr],
            "health_check: { path: /healthz, interval: 1h }\n",
        ),
    );
    env.gw.wait_generation(3).await;
    assert_eq!(env.gw.metric(&series).await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_files_do_not_swap_and_sighup_forces_a_reload() {
    let a = Upstream::start("a").await;
    let env = Env::start(&[("app", app_yaml("app.example.com", &[a.addr], ""))], "").await;
    // Rewriting identical content triggers a reload attempt that changes nothing. A write
    // that lands before the watcher is up is absorbed by the start-up catch-up reload (not
    // counted when it changes nothing), so rewrite until one is seen by the watcher.
    let unchanged = "authgate_config_reloads_total{result=\"unchanged\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let seen = loop {
        env.config.write_app("app", &app_yaml("app.example.com", &[a.addr], ""));
        let poll_until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let mut seen = env.gw.metric(unchanged).await;
        while seen < 1.0 && std::time::Instant::now() < poll_until {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            seen = env.gw.metric(unchanged).await;
        }
        if seen >= 1.0 {
            break seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no unchanged reload was counted: {}",
            env.gw.logs()
        );
    };
    assert_eq!(env.gw.generation().await, 1);
    // Files that are not configuration (here the gateway's own log) trigger nothing.
    std::fs::write(env.config.path().join("notes.txt"), "x").unwrap();
    std::fs::write(env.config.path().join("apps.d/README"), "x").unwrap();
    env.gw.signal("HUP");
    env.gw.wait_generation(2).await;
    assert_eq!(env.gw.metric(unchanged).await, seen, "only the HUP reloaded");
    assert_eq!(env.get_json("app.example.com", "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_style_symlink_swap_is_picked_up() {
    // The layout of a mounted ConfigMap: apps.d/app.yaml -> ..data/app.yaml, ..data -> ..v1
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let env = Env::start(&[], "").await;
    let apps = env.config.path().join("apps.d");
    let v1 = apps.join("..v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("app.yaml"), app_yaml("app.example.com", &[a.addr], "")).unwrap();
    std::os::unix::fs::symlink("..v1", apps.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/app.yaml", apps.join("app.yaml")).unwrap();
    env.gw.wait_generation(2).await;
    assert_eq!(env.get_json("app.example.com", "/").await.1["name"], "a");

    let v2 = apps.join("..v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("app.yaml"), app_yaml("app.example.com", &[b.addr], "")).unwrap();
    std::os::unix::fs::symlink("..v2", apps.join("..data_tmp")).unwrap();
    std::fs::rename(apps.join("..data_tmp"), apps.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();
    env.gw.wait_generation(3).await;
    assert_eq!(env.get_json("app.example.com", "/").await.1["name"], "b");
}

#[test]
fn check_accepts_a_good_config_and_names_file_and_field_of_every_error() {
    let ca = TestCa::new();
    let config = ConfigDir::new();
    let (crt, key) = ca.write_leaf(config.path(), "c", &["*.example.com"]);
    let (_, other_key) = ca.write_leaf(config.path(), "other", &["x.example.com"]);
    config.write_main(&[(&crt, &key)], "");
    config.write_app("a", "host: a.example.com\nupstreams: [\"127.0.0.1:9001\"]\n");
    let run = || {
        std::process::Command::new(binary())
            .arg("check")
            .arg("-c")
            .arg(config.main_file())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK (1 apps, 1 certificates)"));

    config.write_main(&[(&crt, &other_key), ("missing.crt", &key)], "listen_typo: 1\n");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("gateway.yaml: listen_typo: unknown field"), "{stderr}");

    config.write_main(&[(&crt, &other_key), ("missing.crt", &key)], "");
    config.write_app("b", "host: a.example.com\nupstreams: [\"127.0.0.1:9001\"]\n");
    config.write_app(
        "c",
        "host: c.example.com\nupstreams: [\"127.0.0.1\", \"ftp://x:1\"]\nhealth_check: { interval: soon }\n",
    );
    config.write_app(
        "d",
        "host: \"https://d.example.com\"\nupstreams: [\"127.0.0.1:1\"]\nload_balancing: random\n",
    );
    config.write_app(
        "e",
        "host: e.example.com\nupstreams: [\"127.0.0.1:1\"]\nupstream_tls: { ca_file: nope.pem }\n",
    );
    config.write_app(
        "f",
        "host: f.example.com\nupstreams: [\"127.0.0.1:1\", \"127.0.0.1\"]\n",
    );
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    for expected in [
        "gateway.yaml: tls.certificates[0].key_file: ",
        "does not match the certificate",
        "gateway.yaml: tls.certificates[1].cert_file: cannot read",
        "b.yaml: host: a.example.com is already served by",
        "c.yaml: health_check.interval: invalid duration",
        "d.yaml: load_balancing: unknown variant `random`",
        "e.yaml: upstream_tls.ca_file: cannot read",
        "f.yaml: upstreams[1]: \"127.0.0.1\" has no port",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn run_refuses_to_start_on_a_broken_config() {
    let config = ConfigDir::new();
    config.write_main(&[], "");
    let out = std::process::Command::new(binary())
        .arg("run")
        .arg("-c")
        .arg(config.main_file())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tls.certificates: at least one certificate is required"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relative_config_path_reloads_on_file_changes_too() {
    let a = Upstream::start("a").await;
    let ca = TestCa::new();
    let config = ConfigDir::new();
    let (crt, key) = ca.write_leaf(config.path(), "c", &["*.example.com"]);
    config.write_main(&[(&crt, &key)], "");
    config.write_app("app", &app_yaml("app.example.com", &[a.addr], ""));
    let log = std::fs::File::create(config.path().join("relative.log")).unwrap();
    let child = std::process::Command::new(binary())
        .args(["run", "-c", "gateway.yaml"])
        .current_dir(config.path())
        .stdout(std::fs::File::create(config.path().join("relative.out")).unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut gw = Gateway {
        child,
        https: config.https,
        http: config.http,
        admin: config.admin,
        log: config.path().join("relative.log"),
        out: config.path().join("relative.out"),
    };
    gw.wait_ready().await;
    config.write_app("other", &app_yaml("other.example.com", &[a.addr], ""));
    gw.wait_generation(2).await;
}
