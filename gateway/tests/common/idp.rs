//! The real OpenID provider (npm `oidc-provider`, see tests/support/idp) started on loopback,
//! and a browser-like client that drives its login form.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TestCa;

pub fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/idp")
}

/// A running provider, killed on drop.
pub struct Idp {
    child: Child,
    pub issuer: String,
    pub dir: tempfile::TempDir,
}

impl Idp {
    /// Starts `script` (server.mjs or github.mjs) with `config` (cert paths are filled in).
    pub fn start_script(ca: &TestCa, script: &str, mut config: serde_json::Value) -> Idp {
        assert!(
            support_dir().join("node_modules").is_dir(),
            "run .ci/install-deps (npm ci in gateway/tests/support/idp) before the tests"
        );
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = ca.write_leaf(dir.path(), "idp", &["localhost", "127.0.0.1"]);
        if config.get("listen").is_none() {
            config["listen"] = "127.0.0.1:0".into();
        }
        config["tls"] = serde_json::json!({ "cert_file": dir.path().join(crt), "key_file": dir.path().join(key) });
        let path = dir.path().join("idp.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("idp.log")).unwrap();
        let mut child = Command::new("node")
            .arg(support_dir().join(script))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let issuer = line.trim().strip_prefix("READY ").unwrap_or_else(|| {
            panic!(
                "{script} did not start: {}",
                std::fs::read_to_string(dir.path().join("idp.log")).unwrap_or_default()
            )
        });
        Idp {
            issuer: issuer.to_owned(),
            child,
            dir,
        }
    }

    /// Writes a JWKS with one fresh signing key (the provider's `genkeys.mjs`) to `path`.
    pub fn generate_keys(path: &Path) {
        let status = Command::new("node")
            .arg(support_dir().join("genkeys.mjs"))
            .arg(path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The standard test users and one client, as provider configuration.
    pub fn config(client_id: &str, secret: &str, origins: &[String], ttl: serde_json::Value) -> serde_json::Value {
        let redirect_uris: Vec<String> = origins.iter().map(|o| format!("{o}/oauth2/callback")).collect();
        let logout_uris: Vec<String> = origins.iter().map(|o| format!("{o}/")).collect();
        serde_json::json!({
            "issuer_host": "localhost",
            "clients": [{ "client_id": client_id, "client_secret": secret, "redirect_uris": redirect_uris, "post_logout_redirect_uris": logout_uris }],
            "users": [
                { "sub": "alice", "password": "alice-pw", "email": "alice@example.com", "email_verified": true,
                  "name": "Alice", "preferred_username": "alice", "groups": ["admins", "dev"] },
                { "sub": "bob", "password": "bob-pw", "email": "bob@example.com", "email_verified": true,
                  "name": "Bob", "preferred_username": "bob", "groups": ["dev"] },
                { "sub": "eve", "password": "eve-pw", "email": "eve@evil.com", "email_verified": true,
                  "name": "Eve", "preferred_username": "eve", "groups": [] },
                { "sub": "uma", "password": "uma-pw", "email": "uma@example.com", "email_verified": false,
                  "name": "Uma", "preferred_username": "uma", "groups": ["admins"] }
            ],
            "ttl": ttl,
            // Advertised like many real providers do; tokens are signed with RS256.
            "id_token_signing_algs": ["RS256", "ES256", "HS256"],
        })
    }

    /// Registers `logout_uri` as the first client's back-channel logout URI (with `sid` in ID
    /// and logout tokens), and lets the provider reach it on loopback trusting `ca_file`.
    pub fn enable_backchannel_logout(config: &mut serde_json::Value, logout_uri: &str, ca_file: &Path) {
        let client = &mut config["clients"][0];
        client["backchannel_logout_uri"] = logout_uri.into();
        client["backchannel_logout_session_required"] = true.into();
        config["outbound"] = serde_json::json!({ "ca_file": ca_file, "connect_host": "127.0.0.1" });
    }

    /// The OpenID provider with one client whose callbacks are on `origins`.
    pub fn start(ca: &TestCa, client_id: &str, secret: &str, origins: &[String], ttl: serde_json::Value) -> Idp {
        Self::start_script(ca, "server.mjs", Self::config(client_id, secret, origins, ttl))
    }

    fn hooks_client(ca: &TestCa) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca.cert_pem()).unwrap())
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// The provider's counters (`GET /__stats`): `token_calls`, `refresh_grants`,
    /// `backchannel_ok`, `backchannel_errors`.
    pub async fn stats(&self, ca: &TestCa) -> serde_json::Value {
        Self::hooks_client(ca)
            .get(format!("{}/__stats", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `(token endpoint calls, successful refresh grants)` so far.
    pub async fn token_stats(&self, ca: &TestCa) -> (u64, u64) {
        let v = self.stats(ca).await;
        (
            v["token_calls"].as_u64().unwrap(),
            v["refresh_grants"].as_u64().unwrap(),
        )
    }

    /// A logout token for client `gateway` naming `sub` and `sid`, signed by the provider as
    /// its own back-channel logout signs them (`POST /__logout_token`).
    pub async fn logout_token(&self, ca: &TestCa, sub: &str, sid: &str) -> String {
        let r = Self::hooks_client(ca)
            .post(format!("{}/__logout_token", self.issuer))
            .query(&[("client_id", "gateway"), ("sub", sub), ("sid", sid)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// Signs `browser` out at the provider, as its own logout page does (the RP-less
    /// `/session/end`, confirmed with the page's xsrf token).
    pub async fn sign_out(&self, browser: &Browser) {
        let page = browser
            .get(format!("{}/session/end", self.issuer))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let attribute = |marker: &str| {
            page.split(marker)
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap()
                .to_owned()
        };
        let action = reqwest::Url::parse(&self.issuer)
            .unwrap()
            .join(&attribute("action=\""))
            .unwrap();
        let xsrf = attribute("name=\"xsrf\" value=\"");
        let r = browser
            .post(action)
            .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_redirection() || r.status().is_success(), "{}", r.status());
    }

    /// Sets token endpoint faults (`token_status`, `token_delay_ms`; 0 clears).
    pub async fn set_fault(&self, ca: &TestCa, name: &str, value: u64) {
        let r = Self::hooks_client(ca)
            .post(format!("{}/__control?{name}={value}", self.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idp.log")).unwrap_or_default()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser: keeps cookies (readable through `jar`), trusts the test CA, sends app hosts to
/// the gateway, and does not follow redirects by itself (the tests look at each hop).
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl std::ops::Deref for Browser {
    type Target = reqwest::Client;
    fn deref(&self) -> &reqwest::Client {
        &self.client
    }
}

impl Browser {
    /// The value of cookie `name` the browser would send to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let header = self.jar.cookies(&url.parse().unwrap())?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_owned))
    }
}

pub fn browser(ca: &TestCa, gateway: std::net::SocketAddr, hosts: &[&str]) -> Browser {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca.cert_pem()).unwrap())
        .tls_built_in_root_certs(false)
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20));
    for h in hosts {
        b = b.resolve(h, gateway);
    }
    Browser {
        client: b.build().unwrap(),
        jar,
    }
}

/// Posts the provider's login form found in `resp` (a page at `page_url`) as `user`.
async fn submit_login_form(
    client: &reqwest::Client,
    resp: reqwest::Response,
    user: &str,
    password: &str,
) -> (reqwest::Response, String) {
    let page_url = resp.url().clone();
    let body = resp.text().await.unwrap();
    let action = body
        .split("action=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let next = page_url.join(&action).unwrap().to_string();
    let resp = client
        .post(&next)
        .form(&[("login", user), ("password", password)])
        .send()
        .await
        .unwrap();
    (resp, next)
}

fn is_login_form(resp: &reqwest::Response) -> bool {
    resp.status() == 200
        && resp
            .headers()
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap_or("").starts_with("text/html"))
        && !resp.url().host_str().unwrap_or("").ends_with("example.com")
}

/// Follows redirects from `url`, filling the provider's login form with `user`/`password`
/// when it appears; returns the first response that is not a redirect, and the URLs visited.
pub async fn browse(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    password: &str,
) -> (reqwest::Response, Vec<String>) {
    let mut visited = vec![url.to_owned()];
    let mut resp = client.get(url).send().await.unwrap();
    for _ in 0..20 {
        if resp.status().is_redirection() {
            let location = resp.headers()["location"].to_str().unwrap().to_owned();
            let next = resp.url().join(&location).unwrap().to_string();
            visited.push(next.clone());
            resp = client.get(&next).send().await.unwrap();
        } else if is_login_form(&resp) {
            let (next_resp, posted) = submit_login_form(client, resp, user, password).await;
            visited.push(posted);
            resp = next_resp;
        } else {
            return (resp, visited);
        }
    }
    panic!("redirect loop: {visited:?}");
}

/// Like [`browse`], but stops before following a redirect to a URL for which `stop` holds
/// (such as the gateway's callback) and returns that URL unvisited.
pub async fn walk_until(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    password: &str,
    stop: impl Fn(&reqwest::Url) -> bool,
) -> reqwest::Url {
    let mut resp = client.get(url).send().await.unwrap();
    for _ in 0..20 {
        if resp.status().is_redirection() {
            let next = resp.url().join(resp.headers()["location"].to_str().unwrap()).unwrap();
            if stop(&next) {
                return next;
            }
            resp = client.get(next).send().await.unwrap();
        } else if is_login_form(&resp) {
            resp = submit_login_form(client, resp, user, password).await.0;
        } else {
            panic!(
                "the login ended at {} with {} before reaching the stop",
                resp.url(),
                resp.status()
            );
        }
    }
    panic!("redirect loop from {url}");
}
