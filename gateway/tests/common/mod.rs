//! Test harness: a dev CA and certificates made in memory, echo upstreams, the real
//! `authgate` binary started on free loopback ports, and clients that verify against the CA.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod authenv;
pub mod certs;
pub mod h2c;
pub mod idp;
pub mod load;
pub mod redis;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::echo::Echo;
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};
use openssl::x509::X509;

pub use certs::TestCa;

/// Waits (bounded, 15 s) until `ready()` holds.
pub async fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready() {
        assert!(Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Where test listeners live: below the kernel's ephemeral range (32768–60999 by default), so
/// that no outgoing connection of a parallel test can take a port between this check and the
/// gateway's bind (a port from `bind(0)` is an ephemeral one, and was seen taken that way), and
/// above the load-test scripts' default `PORT_BASE`s (17000–21000 and their offsets).
const TEST_PORTS: std::ops::Range<u32> = 26_000..32_700;

/// A free TCP port on loopback, never handed out twice in this process.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    // Test binaries of one `cargo test` start at different places (one at a time, but a
    // gateway of the last one may still be closing).
    let offset = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = TEST_PORTS.start + (offset + n) % span;
        let port = u16::try_from(port).expect("test ports are u16");
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}

/// A running echo upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    pub echo: Arc<Echo>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = Echo::new(name);
        let task = tokio::spawn(echo.clone().serve(listener));
        Upstream { addr, echo, task }
    }

    /// Stops accepting (the port then refuses connections).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Extra fields for the flow-style `listen:` and `server:` blocks of the main file, each
/// starting with `, ` (e.g. `, trusted_proxies: [127.0.0.0/8]`).
#[derive(Default, Clone)]
pub struct Blocks {
    pub listen: String,
    pub server: String,
}

/// A configuration directory: `gateway.yaml` plus `apps.d/`.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl ConfigDir {
    pub fn new() -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("apps.d")).unwrap();
        let port = |_| SocketAddr::from(([127, 0, 0, 1], free_port()));
        ConfigDir {
            https: port(0),
            http: port(1),
            admin: port(2),
            dir,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn main_file(&self) -> PathBuf {
        self.path().join("gateway.yaml")
    }

    /// Writes `gateway.yaml` with the listeners, the given certificate files and `extra` YAML.
    pub fn write_main(&self, certs: &[(&str, &str)], extra: &str) {
        self.write_main_with(certs, &Blocks::default(), extra);
    }

    /// As [`ConfigDir::write_main`], with extra fields inside the `listen:` and `server:` blocks.
    pub fn write_main_with(&self, certs: &[(&str, &str)], blocks: &Blocks, extra: &str) {
        let mut yaml = format!(
            "listen: {{ https: \"{}\", http: \"{}\", admin: \"{}\"{} }}\ntls:\n  certificates:\n",
            self.https, self.http, self.admin, blocks.listen
        );
        for (c, k) in certs {
            yaml.push_str(&format!("    - {{ cert_file: {c}, key_file: {k} }}\n"));
        }
        yaml.push_str(&format!(
            "apps_dir: apps.d\nserver: {{ threads: 1, grace_period: 0s, shutdown_timeout: 1s{} }}\n",
            blocks.server
        ));
        yaml.push_str(extra);
        self.write("gateway.yaml", &yaml);
    }

    /// Writes a file atomically (write + rename), as editors and config management do.
    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path().join(rel);
        let tmp = path.with_extension("tmp~");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    pub fn write_app(&self, name: &str, content: &str) {
        self.write(&format!("apps.d/{name}.yaml"), content);
    }

    pub fn remove_app(&self, name: &str) {
        std::fs::remove_file(self.path().join(format!("apps.d/{name}.yaml"))).unwrap();
    }
}

/// A running `authgate run` process, killed on drop.
pub struct Gateway {
    pub child: Child,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
    /// Standard output: the access and audit logs.
    pub out: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_authgate")
}

impl Gateway {
    /// Starts the gateway on `config` and waits until `/ready` answers.
    pub async fn start(config: &ConfigDir) -> Gateway {
        Self::start_with_env(config, &[]).await
    }

    /// Starts the gateway with extra environment variables (secrets).
    pub async fn start_with_env(config: &ConfigDir, env: &[(&str, &str)]) -> Gateway {
        Self::start_file(&config.main_file(), config.https, config.http, config.admin, env).await
    }

    /// Starts the gateway on main file `main`, whose listeners are the given addresses.
    pub async fn start_file(
        main: &Path,
        https: SocketAddr,
        http: SocketAddr,
        admin: SocketAddr,
        env: &[(&str, &str)],
    ) -> Gateway {
        let log = main.with_extension("log");
        let out = main.with_extension("out");
        let child = Command::new(binary())
            .args(["run", "-c"])
            .arg(main)
            .envs(env.iter().copied())
            .env("AUTHGATE_LOG", "info,pingora_core=warn,pingora_proxy=warn")
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut gw = Gateway {
            child,
            https,
            http,
            admin,
            log,
            out,
        };
        gw.wait_ready().await;
        gw
    }

    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gateway exited with {status}: {}", self.logs());
            }
            if let Ok(r) = client.get(format!("http://{}/ready", self.admin)).send().await {
                if r.status() == 200 {
                    // The admin service is up; the HTTPS listener starts in the same bootstrap.
                    if TcpStream::connect(self.https).is_ok() {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "gateway not ready: {}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Standard output so far: the access and audit logs.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits (bounded) for a JSON line on standard output (access or audit log, started with
    /// `AUTHGATE_LOG_FORMAT=json`) of `target` for which `pick` holds, and returns it.
    pub async fn wait_log_line(&self, target: &str, pick: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.output();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["target"] == target && pick(v));
            if let Some(v) = found {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no matching {target} line in:\n{text}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `/ready` as JSON.
    pub async fn ready(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/ready", self.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn generation(&self) -> u64 {
        self.ready().await["config_generation"].as_u64().unwrap()
    }

    /// Waits (bounded) until the served configuration generation reaches `n`.
    pub async fn wait_generation(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.generation().await < n {
            assert!(Instant::now() < deadline, "generation {n} never came: {}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one metric line (exact name with labels), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    /// Waits (bounded) until `series` has `value`.
    pub async fn wait_metric(&self, series: &str, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.metrics().await;
            if metric_value(&text, series) == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} never became {value}:\n{text}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https.port())
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// An HTTPS client that trusts only `ca` and resolves `hosts` to the gateway.
pub fn client(ca: &TestCa, gw: &Gateway, hosts: &[&str]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca.cert_pem()).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10));
    for h in hosts {
        b = b.resolve(h, gw.https);
    }
    b.build().unwrap()
}

/// A raw TLS connection, verified against `ca`, with `sni` and ALPN `alpn`.
pub fn tls_connect(
    ca: &TestCa,
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&str],
) -> Result<SslStream<TcpStream>, String> {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.cert_store_mut().add_cert(ca.cert.clone()).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    if !alpn.is_empty() {
        let mut wire = Vec::new();
        for p in alpn {
            wire.push(p.len() as u8);
            wire.extend_from_slice(p.as_bytes());
        }
        b.set_alpn_protos(&wire).unwrap();
    }
    let connector = b.build();
    let mut cfg = connector.configure().unwrap();
    cfg.set_use_server_name_indication(sni.is_some());
    cfg.set_verify_hostname(sni.is_some());
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    cfg.connect(sni.unwrap_or("unused.invalid"), tcp)
        .map_err(|e| e.to_string())
}

/// The leaf certificate the server presented.
pub fn peer_cert(stream: &SslStream<TcpStream>) -> X509 {
    stream.ssl().peer_certificate().unwrap()
}

/// Sends raw bytes on a stream and reads the response until the connection closes or the
/// head and `Content-Length` body arrive; returns the response text.
pub fn raw_exchange<S: Read + Write>(stream: &mut S, request: &[u8]) -> String {
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&out);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len = text[..head_end].lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            });
            if let Some(len) = len {
                if out.len() >= head_end + 4 + len {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An app file for `host` with `upstreams`, and `extra` YAML lines.
pub fn app_yaml(host: &str, upstreams: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    format!("host: \"{host}\"\nupstreams: [{}]\n{extra}", list.join(", "))
}

/// A gateway with a test CA, a `*.example.com` certificate and the given apps.
pub struct Env {
    pub ca: TestCa,
    pub config: ConfigDir,
    pub gw: Gateway,
}

impl Env {
    pub async fn start(apps: &[(&str, String)], extra_main: &str) -> Env {
        Self::start_with(apps, &Blocks::default(), extra_main).await
    }

    /// As [`Env::start`], with extra fields in the `listen:` and `server:` blocks.
    pub async fn start_with(apps: &[(&str, String)], blocks: &Blocks, extra_main: &str) -> Env {
        let ca = TestCa::new();
        let config = ConfigDir::new();
        let (crt, key) = ca.write_leaf(
            config.path(),
            "wildcard",
            &[
                "*.example.com",
                "example.com",
                "*.preview.example.com",
                "*.pr-42.preview.example.com",
            ],
        );
        config.write_main_with(&[(&crt, &key)], blocks, extra_main);
        for (name, yaml) in apps {
            config.write_app(name, yaml);
        }
        let gw = Gateway::start(&config).await;
        Env { ca, config, gw }
    }

    pub fn client(&self, hosts: &[&str]) -> reqwest::Client {
        client(&self.ca, &self.gw, hosts)
    }

    /// GET `path` on `host` and return (status, JSON body or Null).
    pub async fn get_json(&self, host: &str, path: &str) -> (u16, serde_json::Value) {
        let r = self.client(&[host]).get(self.gw.url(host, path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }
}
