//! A gateway with provider `corp` (a real OpenID provider) and a few apps, for the auth and
//! session tests.
#![allow(dead_code, clippy::unwrap_used)]

use base64::Engine;

use super::idp::{browse, browser, walk_until, Browser, Idp};
use super::*;

pub const COOKIE_SECRET: &str = "AUTHGATE_TEST_COOKIE_SECRETS";
pub const CLIENT_SECRET: &str = "corp-test-secret";
/// A host outside `cookie.domain` whose callback the provider accepts.
pub const OTHER_HOST: &str = "app.other.test";

pub fn cookie_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

pub struct AuthEnv {
    pub ca: TestCa,
    pub config: ConfigDir,
    pub gw: Gateway,
    pub idp: Idp,
    pub upstream: Upstream,
    pub extra_idp: Option<Idp>,
    /// A second gateway on the same configuration (other ports), when asked for.
    pub gw_b: Option<Gateway>,
}

/// More providers (YAML under `providers:`), apps `(file, host, extra YAML)`, environment
/// variables, and a provider process to keep alive.
#[derive(Default)]
pub struct Extra {
    pub providers: String,
    pub apps: Vec<(String, String, String)>,
    pub env: Vec<(String, String)>,
    pub idp: Option<Idp>,
    /// Appended to the main file (e.g. a `sessions:` section).
    pub main: String,
    /// Start a second gateway (`gw_b`) with the same configuration on other ports.
    pub second_gateway: bool,
    /// The provider POSTs logout tokens to app1's `/oauth2/backchannel_logout` on the first
    /// gateway when a user signs out there.
    pub backchannel_logout: bool,
    /// Appended inside provider `corp`'s braces (e.g. `, frontchannel_logout: true`).
    pub corp_extra: String,
}

impl AuthEnv {
    pub fn origin(config: &ConfigDir, host: &str) -> String {
        format!("https://{host}:{}", config.https.port())
    }

    /// A gateway with provider `corp` and apps: app1 (example.com emails; skip and API
    /// routes; bearer JWTs; tokens upstream), admin (group admins), public (no auth).
    pub async fn start(cookie_extra: &str, ttl: serde_json::Value) -> AuthEnv {
        Self::start_with(cookie_extra, ttl, |_, _| Extra::default()).await
    }

    /// As [`AuthEnv::start`], plus what `extra` adds once the CA and ports are known.
    pub async fn start_with(
        cookie_extra: &str,
        ttl: serde_json::Value,
        extra: impl FnOnce(&TestCa, &ConfigDir) -> Extra,
    ) -> AuthEnv {
        let upstream = Upstream::start("echo").await;
        let ca = TestCa::new();
        let config = ConfigDir::new();
        let hosts = ["app1.example.com", "admin.example.com", "public.example.com"];
        let b_ports = ConfigDir::new();
        let mut origins: Vec<String> = hosts.iter().map(|h| Self::origin(&config, h)).collect();
        origins.extend(hosts.iter().map(|h| Self::origin(&b_ports, h)));
        // An app outside the cookie domain (per-app cookie domain tests).
        origins.push(Self::origin(&config, OTHER_HOST));
        let extra = extra(&ca, &config);
        std::fs::write(config.path().join("ca.pem"), ca.cert_pem()).unwrap();
        let mut idp_config = Idp::config("gateway", CLIENT_SECRET, &origins, ttl);
        if extra.backchannel_logout {
            let uri = format!("{}/oauth2/backchannel_logout", origins[0]);
            Idp::enable_backchannel_logout(&mut idp_config, &uri, &config.path().join("ca.pem"));
        }
        let idp = Idp::start_script(&ca, "server.mjs", idp_config);
        let (crt, key) = ca.write_leaf(config.path(), "wildcard", &["*.example.com", "*.other.test"]);
        config.write_main(
            &[(&crt, &key)],
            &format!(
                "cookie: {{ name: _authgate, domain: .example.com, secrets_env: {COOKIE_SECRET}, expire: 2h{cookie_extra} }}\n\
                 providers:\n  corp: {{ type: oidc, issuer_url: \"{}\", client_id: gateway, client_secret_env: CORP_SECRET,\n\
                 \x20        scopes: [openid, email, profile, groups], ca_file: ca.pem, end_session: false{} }}\n{}{}",
                idp.issuer, extra.corp_extra, extra.providers, extra.main
            ),
        );
        config.write_app(
            "app1",
            &app_yaml(
                "app1.example.com",
                &[upstream.addr],
                "auth:\n  provider: corp\n  email_domains: [example.com]\n  skip_auth_routes: [\"GET=^/healthz$\", \"^/public/\"]\n\
                 \x20 api_routes: [\"^/api/\"]\n  skip_jwt_bearer_tokens: true\n  pass_access_token: true\n  set_authorization_header: true\n",
            ),
        );
        config.write_app(
            "admin",
            &app_yaml(
                "admin.example.com",
                &[upstream.addr],
                "auth: { provider: corp, email_domains: [\"*\"], allowed_groups: [admins] }\n",
            ),
        );
        config.write_app("public", &app_yaml("public.example.com", &[upstream.addr], ""));
        for (name, host, auth) in &extra.apps {
            config.write_app(name, &app_yaml(host, &[upstream.addr], auth));
        }
        let key = cookie_key();
        let mut env: Vec<(&str, &str)> = vec![(COOKIE_SECRET, key.as_str()), ("CORP_SECRET", CLIENT_SECRET)];
        env.extend(extra.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let gw = Gateway::start_with_env(&config, &env).await;
        let gw_b = if extra.second_gateway {
            let main = std::fs::read_to_string(config.main_file()).unwrap();
            let main_b = main
                .replace(&config.https.to_string(), &b_ports.https.to_string())
                .replace(&config.http.to_string(), &b_ports.http.to_string())
                .replace(&config.admin.to_string(), &b_ports.admin.to_string());
            let path = config.path().join("gateway-b.yaml");
            std::fs::write(&path, main_b).unwrap();
            Some(Gateway::start_file(&path, b_ports.https, b_ports.http, b_ports.admin, &env).await)
        } else {
            None
        };
        AuthEnv {
            ca,
            config,
            gw,
            idp,
            upstream,
            extra_idp: extra.idp,
            gw_b,
        }
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("{}{path}", Self::origin(&self.config, host))
    }

    pub fn browser(&self) -> Browser {
        browser(
            &self.ca,
            self.gw.https,
            &[
                "app1.example.com",
                "admin.example.com",
                "public.example.com",
                "code.example.com",
                "infra.example.com",
            ],
        )
    }

    /// Logs `user` in through app1 and returns the browser and what the upstream saw.
    pub async fn login(&self, host: &str, user: &str) -> (Browser, serde_json::Value) {
        let b = self.browser();
        let (resp, visited) = browse(&b, &self.url(host, "/private?x=1"), user, &format!("{user}-pw")).await;
        assert_eq!(
            resp.status(),
            200,
            "login of {user} ended at {visited:?}: {}\n{}",
            self.gw.logs(),
            self.idp.logs()
        );
        assert!(
            visited.last().unwrap().ends_with("/private?x=1"),
            "back where the user started: {visited:?}"
        );
        (b, resp.json().await.unwrap())
    }
    /// Logs `user` in through app1 and returns the session cookie as a `Cookie` header value.
    pub async fn login_cookie(&self, user: &str) -> String {
        let (b, _) = self.login("app1.example.com", user).await;
        self.session_cookie(&b)
    }

    /// The session cookie a logged-in browser holds, as a `Cookie` header value.
    pub fn session_cookie(&self, b: &Browser) -> String {
        let value = b
            .cookie(&self.url("app1.example.com", "/"), "_authgate_corp")
            .expect("session cookie");
        format!("_authgate_corp={value}")
    }

    /// A browser whose app hosts go to the second gateway.
    pub fn browser_b(&self) -> Browser {
        let gw = self.gw_b.as_ref().unwrap();
        browser(
            &self.ca,
            gw.https,
            &["app1.example.com", "admin.example.com", "public.example.com"],
        )
    }

    /// An URL on the second gateway.
    pub fn url_b(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.gw_b.as_ref().unwrap().https.port())
    }
}

/// Status and body of an API request (JSON answers) carrying `cookie` (status 0 and the error
/// when the request fails).
pub async fn get_with_cookie(client: &reqwest::Client, url: &str, cookie: &str) -> (u16, String) {
    match client
        .get(url)
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
    {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// The status of [`get_with_cookie`].
pub async fn status_with_cookie(client: &reqwest::Client, url: &str, cookie: &str) -> u16 {
    get_with_cookie(client, url, cookie).await.0
}

/// Polls `url` with `cookie` until it answers `want`; fails after one second.
pub async fn wait_for_status(client: &reqwest::Client, url: &str, cookie: &str, want: u16) {
    let started = std::time::Instant::now();
    loop {
        let s = status_with_cookie(client, url, cookie).await;
        if s == want {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{url}: still {s} after 1 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A claim of the ID token the upstream received (`Authorization: Bearer`, app1).
pub fn id_token_claim(echo: &serde_json::Value, claim: &str) -> Option<String> {
    let token = header(echo, "authorization")?.strip_prefix("Bearer ")?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims[claim].as_str().map(str::to_owned)
}

pub fn header<'a>(echo: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

/// An ID token `idp` issues to `client_id` for alice, by the code flow driven by hand
/// (authorize, log in, take the code to the token endpoint); `origin` is a registered origin.
pub async fn id_token_from(
    idp: &Idp,
    ca: &TestCa,
    gateway: std::net::SocketAddr,
    origin: &str,
    client_id: &str,
    secret: &str,
) -> String {
    let b = browser(ca, gateway, &[]);
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789abcdefghij";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(openssl::sha::sha256(verifier.as_bytes()));
    let redirect = format!("{origin}/oauth2/callback");
    let authorize = format!(
        "{}/auth?client_id={client_id}&response_type=code&scope=openid%20email&redirect_uri={}&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
        idp.issuer,
        url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    );
    let stop = redirect.clone();
    let landing = walk_until(&b, &authorize, "alice", "alice-pw", move |u| {
        u.as_str().starts_with(&stop)
    })
    .await;
    let code = landing.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens: serde_json::Value = b
        .post(format!("{}/token", idp.issuer))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["id_token"].as_str().unwrap().to_owned()
}
