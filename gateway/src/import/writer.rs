//! The output: `gateway.yaml` and `apps.d/<app>.yaml`, serialised from types that mirror
//! [`crate::config::schema`] (a unit test reads them back with the real schema).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::build::Plan;
use super::ImportError;

fn is_false(b: &bool) -> bool {
    !*b
}

/// `gateway.yaml`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GatewayOut {
    pub listen: ListenOut,
    pub tls: TlsOut,
    pub apps_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieOut>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, ProviderOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionsOut>,
}

/// `listen:`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ListenOut {
    pub https: String,
    pub http: String,
    pub admin: String,
}

/// `server:` (only what the sidecars said).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServerOut {
    pub trusted_proxies: Vec<String>,
}

/// `tls:`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TlsOut {
    pub certificates: Vec<CertOut>,
}

/// One certificate.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CertOut {
    pub cert_file: String,
    pub key_file: String,
}

/// `cookie:`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CookieOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub secrets_env: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samesite: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
}

/// One provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ProviderOut {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_url: Option<String>,
    pub client_id: String,
    pub client_secret_env: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_jwt_issuers: Vec<String>,
}

/// `sessions:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SessionsOut {
    pub store: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisOut>,
}

/// `sessions.redis`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct RedisOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RedisTlsOut>,
}

/// `sessions.redis.sentinel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SentinelOut {
    pub master: String,
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

/// `sessions.redis.tls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RedisTlsOut {
    pub ca_file: String,
}

/// One app file.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AppOut {
    /// File name (without `.yaml`); not part of the file.
    #[serde(skip)]
    pub name: String,
    /// Where it came from (written as a comment).
    #[serde(skip)]
    pub sources: Vec<String>,
    pub host: String,
    pub upstreams: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<UpstreamTlsOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsOut>,
    pub auth: AuthOut,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteOut>,
}

/// One `routes:` entry.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RouteOut {
    pub path_prefix: String,
    pub upstreams: Vec<String>,
    /// Only when it differs from the app's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthOut>,
}

/// `upstream_tls:`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UpstreamTlsOut {
    pub insecure_skip_verify: bool,
}

/// `timeouts:`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TimeoutsOut {
    pub read: String,
}

/// `auth:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct AuthOut {
    pub provider: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub email_domains: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_emails: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub github_org: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub github_team: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip_auth_routes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_routes: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub skip_jwt_bearer_tokens: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub pass_access_token: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub set_authorization_header: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub whitelist_domains: Vec<String>,
    /// Written only when `false` (authgate's default is `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_provider_button: Option<bool>,
    /// Written only when `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_user_headers: Option<bool>,
    /// Written only when `false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_xauthrequest: Option<bool>,
    #[serde(skip_serializing_if = "is_false")]
    pub prefer_email_to_user: bool,
}

impl AuthOut {
    /// Whether any admission rule is set (authgate refuses an `auth` block without one).
    pub(crate) fn has_rule(&self) -> bool {
        !(self.email_domains.is_empty()
            && self.allowed_emails.is_empty()
            && self.allowed_groups.is_empty()
            && self.github_org.is_empty()
            && self.github_team.is_empty())
    }
}

/// The YAML of `gateway.yaml`, with a header comment.
pub(crate) fn gateway_yaml(gateway: &GatewayOut) -> String {
    let body = serde_yaml::to_string(gateway).unwrap_or_default();
    format!(
        "# Written by `authgate import oauth2-proxy`; read import-report.md before using it.\n\
         # Listeners and certificates are defaults: adjust them. Every field: docs/configuration.md.\n{body}"
    )
}

/// The YAML of an app file, with its sources as a comment.
pub(crate) fn app_yaml(app: &AppOut) -> String {
    let body = serde_yaml::to_string(app).unwrap_or_default();
    let mut head = String::from("# Written by `authgate import oauth2-proxy` from:\n");
    for s in &app.sources {
        head.push_str(&format!("#   {}\n", s.replace('\n', " ")));
    }
    head + &body
}

/// Writes `gateway.yaml` and `apps.d/` under `out`.
pub(crate) fn write(out: &Path, plan: &Plan) -> Result<(), ImportError> {
    let apps = out.join("apps.d");
    std::fs::create_dir_all(&apps).map_err(|source| ImportError::Write {
        path: apps.clone(),
        source,
    })?;
    let put = |path: std::path::PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|source| ImportError::Write { path, source })
    };
    put(out.join("gateway.yaml"), gateway_yaml(&plan.gateway))?;
    for app in &plan.apps {
        put(apps.join(format!("{}.yaml", app.name)), app_yaml(app))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::schema::{AppFile, GatewayFile};

    /// What the writer emits is what the real schema reads.
    #[test]
    fn output_reads_back_with_the_schema() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let input = dir.path().join("billing.cfg");
        let cfg = "provider = \"github\"\nclient_id = \"abc\"\nclient_secret = \"s3cr3t-value\"\ngithub_org = \"acme\"\n\
                   github_team = [\"ops\"]\nemail_domains = [\"*\"]\nupstreams = [\"https://10.1.2.3:8443/\"]\n\
                   ssl_upstream_insecure_skip_verify = true\nupstream_timeout = \"45s\"\nredirect_url = \"https://billing.example.com/oauth2/callback\"\n\
                   cookie_secret = \"c00kie-value\"\ncookie_name = \"_sso\"\ncookie_expire = \"24h\"\ncookie_refresh = \"30m\"\n\
                   session_store_type = \"redis\"\nredis_connection_url = \"redis://:pw-in-url@redis:6379/0\"\n";
        std::fs::write(&input, cfg).unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("out");
        let summary = super::super::import(&super::super::ImportOptions {
            inputs: vec![input],
            out: out.clone(),
            host: None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((summary.apps, summary.providers, summary.unmapped), (1, 1, 0));
        let main = std::fs::read_to_string(out.join("gateway.yaml")).unwrap_or_default();
        let gw: GatewayFile = serde_yaml::from_str(&main).unwrap_or_else(|e| panic!("{e}\n{main}"));
        let cookie = gw.cookie.unwrap_or_else(|| panic!("cookie"));
        assert_eq!(
            (cookie.name.as_str(), cookie.secrets_env.as_str()),
            ("_sso", "AUTHGATE_COOKIE_SECRETS")
        );
        let redis = gw.sessions.redis.unwrap_or_else(|| panic!("redis"));
        assert_eq!(redis.url.as_deref(), Some("redis://redis:6379/0"));
        assert_eq!(redis.password_env.as_deref(), Some("AUTHGATE_REDIS_PASSWORD"));
        let app_text = std::fs::read_to_string(out.join("apps.d/billing.yaml")).unwrap_or_default();
        let app: AppFile = serde_yaml::from_str(&app_text).unwrap_or_else(|e| panic!("{e}\n{app_text}"));
        assert_eq!(app.host, "billing.example.com");
        assert_eq!(app.upstreams, vec!["https://10.1.2.3:8443"]);
        assert!(app.upstream_tls.is_some_and(|t| t.insecure_skip_verify));
        let auth = app.auth.unwrap_or_else(|| panic!("auth"));
        assert_eq!(auth.github_team, vec!["acme/ops"]);
        assert!(auth.github_org.is_empty(), "a team narrows the org");
        for file in [
            main,
            app_text,
            std::fs::read_to_string(out.join("import-report.md")).unwrap_or_default(),
        ] {
            for secret in ["s3cr3t-value", "c00kie-value", "pw-in-url"] {
                assert!(!file.contains(secret), "{secret} written:\n{file}");
            }
        }
    }
}
