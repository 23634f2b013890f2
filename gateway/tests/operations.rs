//! Production operations over real sockets: failures stay local (listeners that cannot bind,
//! a broken tenant file, an upstream name that does not resolve) and binary upgrades that do
//! not drop a request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::write_atomic;
use common::load::Load;
use common::*;

/// Runs `authgate run` on `config` and returns its exit code and stderr, failing the test if
/// it has not exited within `limit`.
fn run_expecting_exit(config: &ConfigDir, limit: Duration) -> (Option<i32>, String) {
    let log = config.path().join("exit.log");
    let mut child = Command::new(binary())
        .args(["run", "-c"])
        .arg(config.main_file())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), std::fs::read_to_string(&log).unwrap());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {limit:?}: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check(config: &ConfigDir, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .args(["check", "-c"])
        .arg(config.main_file())
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn config_with_cert() -> (TestCa, ConfigDir) {
    let ca = TestCa::new();
    let config = ConfigDir::new();
    let (crt, key) = ca.write_leaf(config.path(), "wildcard", &["*.example.com"]);
    config.write_main(&[(&crt, &key)], "");
    (ca, config)
}

#[test]
fn a_listener_in_use_stops_the_process_with_the_address_and_check_bind_finds_it() {
    let (_ca, config) = config_with_cert();
    assert_eq!(check(&config, &["--bind"]).0, Some(0));
    let squatter = TcpListener::bind(config.https).unwrap();
    let (code, stderr) = run_expecting_exit(&config, Duration::from_secs(5));
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!("cannot listen on {} (listen.https)", config.https);
    assert!(stderr.contains(&expected), "{stderr}");
    // The admin port, bound only after the HTTPS one failed, answers nothing.
    assert!(std::net::TcpStream::connect(config.admin).is_err());

    let (code, text) = check(&config, &["--bind"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&expected), "{text}");
    assert_eq!(check(&config, &[]).0, Some(0), "without --bind nothing is bound");
    drop(squatter);
}

#[test]
fn an_address_not_on_this_host_stops_the_process_with_the_address() {
    let (_ca, config) = config_with_cert();
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to this host.
    let main = std::fs::read_to_string(config.main_file()).unwrap();
    let admin = config.admin.to_string();
    config.write("gateway.yaml", &main.replace(&admin, "192.0.2.1:9090"));
    let (code, stderr) = run_expecting_exit(&config, Duration::from_secs(5));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot listen on 192.0.2.1:9090 (listen.admin)"),
        "{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(config.https).is_err(),
        "nothing keeps serving"
    );
    let (code, text) = check(&config, &["--bind"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("192.0.2.1:9090"), "{text}");
}

fn serial_of(ca: &TestCa, gw: &Gateway, sni: &str) -> Vec<u8> {
    let s = tls_connect(ca, gw.https, Some(sni), &[]).unwrap();
    peer_cert(&s).serial_number().to_bn().unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_app_file_is_rejected_alone_and_every_other_change_applies() {
    let (u1, u2) = (Upstream::start("u1").await, Upstream::start("u2").await);
    let env = Env::start(
        &[
            ("app1", app_yaml("app1.example.com", &[u1.addr], "")),
            ("app2", app_yaml("app2.example.com", &[u1.addr], "")),
        ],
        "",
    )
    .await;
    let gw = &env.gw;
    let cert_before = serial_of(&env.ca, gw, "app1.example.com");
    let generation = gw.generation().await;

    // In one go: app2 breaks (while pointing at u2), a new app3 is broken, a new app4 is fine,
    // app1 moves to u2, and the certificate is renewed.
    env.config.write_app(
        "app2",
        &app_yaml("app2.example.com", &[u2.addr], "health_check: { interval: 1ms }\n"),
    );
    env.config.write_app("app3", "host: app3.example.com\nupstreams: [\n");
    env.config
        .write_app("app4", &app_yaml("app4.example.com", &[u2.addr], ""));
    env.config
        .write_app("app1", &app_yaml("app1.example.com", &[u2.addr], ""));
    let (crt, key) = env.ca.issue(&["*.example.com", "example.com"]);
    write_atomic(&env.config.path().join("wildcard.key"), &key);
    write_atomic(&env.config.path().join("wildcard.crt"), &crt);

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let settled = env.get_json("app4.example.com", "/").await.0 == 200
            && env.get_json("app1.example.com", "/").await.1["name"] == "u2"
            && serial_of(&env.ca, gw, "app1.example.com") != cert_before;
        if settled {
            break;
        }
        assert!(Instant::now() < deadline, "changes never applied: {}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.generation().await > generation);
    // app2 keeps its last good version (u1); app3, new and broken, stays absent.
    assert_eq!(env.get_json("app2.example.com", "/").await.1["name"], "u1");
    assert_eq!(env.get_json("app3.example.com", "/").await.0, 404);

    // Visible per file: /ready, a metric with the app label, a log with file and field.
    let ready = gw.ready().await;
    let rejected = ready["rejected_files"].as_array().unwrap();
    let entry = |stem: &str| {
        rejected
            .iter()
            .find(|e| e["file"].as_str().unwrap().ends_with(&format!("{stem}.yaml")))
            .unwrap_or_else(|| panic!("{stem} not in {ready}"))
            .clone()
    };
    assert_eq!(entry("app2")["field"], "health_check.interval");
    entry("app3");
    assert_eq!(rejected.len(), 2, "{ready}");
    let app2_file = env.config.path().join("apps.d/app2.yaml");
    let series = format!(
        "authgate_config_file_rejected{{app=\"app2\",file=\"{}\"}}",
        app2_file.display()
    );
    assert_eq!(gw.metric(&series).await, 1.0);
    assert!(gw.metric("authgate_config_reloads_total{result=\"partial\"}").await >= 1.0);
    let logs = gw.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("app2.yaml") && l.contains("health_check.interval")),
        "{logs}"
    );
    // `authgate check` still fails on any error.
    let (code, text) = check(&env.config, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("app2.yaml: health_check.interval"), "{text}");

    // Fixing app2 applies it and clears its error.
    env.config
        .write_app("app2", &app_yaml("app2.example.com", &[u2.addr], ""));
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.get_json("app2.example.com", "/").await.1["name"] != "u2" {
        assert!(Instant::now() < deadline, "the fix never applied: {}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.metric(&series).await, 0.0);

    // A broken main file still rejects the whole reload.
    let failures = "authgate_config_reloads_total{result=\"failure\"}";
    let failed_before = gw.metric(failures).await;
    let generation = gw.generation().await;
    let main = std::fs::read_to_string(env.config.main_file()).unwrap();
    env.config.write("gateway.yaml", &format!("{main}bogus_field: 1\n"));
    env.config
        .write_app("app5", &app_yaml("app5.example.com", &[u2.addr], ""));
    gw.wait_metric(failures, failed_before + 1.0).await;
    assert_eq!(gw.generation().await, generation);
    assert_eq!(env.get_json("app5.example.com", "/").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_host_clash_the_app_already_serving_keeps_the_host() {
    let (u1, u2) = (Upstream::start("u1").await, Upstream::start("u2").await);
    // "zz" sorts after "aa": without the rule, the newcomer "aa" would win by file order.
    let env = Env::start(&[("zz", app_yaml("shared.example.com", &[u1.addr], ""))], "").await;
    env.config
        .write_app("aa", &app_yaml("shared.example.com", &[u2.addr], ""));
    env.gw
        .wait_metric("authgate_config_reloads_total{result=\"partial\"}", 1.0)
        .await;
    assert_eq!(env.get_json("shared.example.com", "/").await.1["name"], "u1");
    let ready = env.gw.ready().await;
    let rejected = ready["rejected_files"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{ready}");
    assert!(rejected[0]["file"].as_str().unwrap().ends_with("aa.yaml"));
    assert!(rejected[0]["message"].as_str().unwrap().contains("zz.yaml"));
    // Once the owner lets go of the host, the newcomer gets it.
    env.config.remove_app("zz");
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.get_json("shared.example.com", "/").await.1["name"] != "u2" {
        assert!(Instant::now() < deadline, "{}", env.gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Unix datagram socket standing in for systemd's `NOTIFY_SOCKET`.
struct Notify {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl Notify {
    fn new(dir: &std::path::Path) -> Notify {
        let path = dir.join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Notify { socket, path }
    }

    /// The next `MAINPID` announced with `READY=1`.
    fn ready_pid(&self) -> u32 {
        let mut buf = [0u8; 512];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("no readiness notification within 30 s");
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.lines().any(|l| l == "READY=1"), "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix("MAINPID="))
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn wait_gone(pid: u32, logs: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} never exited: {}", logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(pid: u32, signal: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// Kills a process this test started (directly or through an upgrade) if the test fails.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
}

/// Waits (bounded) until `n` more requests have succeeded.
async fn wait_requests(load: &Load, n: u64, logs: &dyn Fn() -> String) {
    let target = load.ok() + n;
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.ok() < target {
        assert!(Instant::now() < deadline, "requests stalled: {}", logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_upgrades_under_load_fail_no_request_and_refuse_no_connection() {
    let upstream = Upstream::start("u1").await;
    let (ca, config) = config_with_cert();
    let socket = config.path().join("upgrade.sock");
    let main = std::fs::read_to_string(config.main_file()).unwrap();
    let main = main.replace(
        "server: { threads: 1, grace_period: 0s, shutdown_timeout: 1s }",
        &format!(
            "server: {{ threads: 1, grace_period: 2s, shutdown_timeout: 2s, upgrade_socket: \"{}\" }}",
            socket.display()
        ),
    );
    config.write("gateway.yaml", &main);
    config.write_app("app1", &app_yaml("app1.example.com", &[upstream.addr], ""));
    let notify = Notify::new(config.path());
    let log = config.path().join("gateway.log");
    let spawn = |upgrade: bool| {
        let mut cmd = Command::new(binary());
        cmd.args(["run", "-c"]).arg(config.main_file());
        if upgrade {
            cmd.arg("--upgrade");
        }
        cmd.env("NOTIFY_SOCKET", &notify.path)
            .env("AUTHGATE_LOG", "info,pingora_core=warn,pingora_proxy=warn")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut first = spawn(false);
    let _first_guard = KillOnDrop(first.id());
    let first_pid = notify.ready_pid();
    assert_eq!(first_pid, first.id());
    let load = Load::start(&ca, config.https, "app1.example.com");
    wait_requests(&load, 20, &logs).await;

    // Upgrade 1, by hand: start the new binary with --upgrade, then SIGQUIT the old one.
    let mut second = spawn(true);
    let _second_guard = KillOnDrop(second.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs().contains("waiting for the listening sockets") {
        assert!(Instant::now() < deadline, "{}", logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(first_pid, "QUIT");
    let second_pid = notify.ready_pid();
    assert_eq!(second_pid, second.id());
    let status = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the old process drained and exited cleanly: {status}");
    wait_requests(&load, 20, &logs).await;

    // Upgrade 2, as the systemd unit does it: SIGUSR2 makes the process start its successor.
    kill(second_pid, "USR2");
    let third_pid = notify.ready_pid();
    let _third_guard = KillOnDrop(third_pid);
    assert_ne!(third_pid, second_pid);
    let status = tokio::task::spawn_blocking(move || second.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    wait_requests(&load, 20, &logs).await;

    let (ok, failed) = load.finish().await;
    let admin = reqwest::get(format!("http://{}/ready", config.admin)).await.unwrap();
    assert_eq!(admin.status(), 200);
    kill(third_pid, "TERM");
    wait_gone(third_pid, &logs);
    assert_eq!(failed, 0, "failed requests during the upgrades: {}", logs());
    assert!(ok >= 60, "{ok} requests");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_name_that_does_not_resolve_affects_only_its_app() {
    let u1 = Upstream::start("u1").await;
    let (ca, config) = config_with_cert();
    let main = std::fs::read_to_string(config.main_file()).unwrap();
    config.write(
        "gateway.yaml",
        &main.replace("shutdown_timeout: 1s }", "shutdown_timeout: 1s, resolve_interval: 1s }"),
    );
    config.write_app("app1", &app_yaml("app1.example.com", &[u1.addr], ""));
    // `.invalid` never resolves (RFC 6761): no DNS server is asked for a real answer.
    config.write_app(
        "dns",
        "host: dns.example.com\nupstreams: [\"unresolvable.invalid:80\"]\n",
    );
    config.write_app(
        "mixed",
        &format!(
            "host: mixed.example.com\nupstreams: [\"unresolvable.invalid:80\", \"{}\"]\n",
            u1.addr
        ),
    );
    let gw = Gateway::start(&config).await;
    let env = Env { ca, config, gw };
    assert_eq!(env.get_json("app1.example.com", "/").await.0, 200);
    assert_eq!(env.get_json("mixed.example.com", "/").await.0, 200);
    assert_eq!(env.get_json("dns.example.com", "/").await.0, 502);
    let ready = env.gw.ready().await;
    let unresolved = ready["unresolved_upstreams"].as_array().unwrap();
    assert!(
        unresolved
            .iter()
            .any(|u| u["app"] == "dns" && u["field"] == "upstreams[0]"),
        "{ready}"
    );
    // Looked up again every resolve_interval, without a reload.
    let series = "authgate_upstream_resolution_failures_total{upstream=\"unresolvable.invalid:80\"}";
    let deadline = Instant::now() + Duration::from_secs(15);
    while env.gw.metric(series).await < 2.0 {
        assert!(Instant::now() < deadline, "never looked up again: {}", env.gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.gw.generation().await, 1, "without a reload");
    assert!(env.gw.logs().contains("unresolvable.invalid"));

    // `check` fails on it (naming file and field); `check --offline` does no DNS.
    let (code, text) = check(&env.config, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("dns.yaml: upstreams[0]"), "{text}");
    let (code, text) = check(&env.config, &["--offline"]);
    assert_eq!(code, Some(0), "{text}");
}
