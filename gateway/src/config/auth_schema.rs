//! The authentication part of the schema: the main file's `cookie:` and `providers:`
//! sections and an app's `auth:` block (re-exported by [`super::schema`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::schema::HumanDuration;

/// `cookie:` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CookieSection {
    /// Base name; the session cookie of provider `p` is `<name>_<p>`.
    #[serde(default = "default_cookie_name")]
    pub name: String,
    /// Cookie domain such as `.example.com`: one sign-in serves every app under it that uses
    /// the same provider. Apps outside it get host-only cookies.
    #[serde(default)]
    pub domain: Option<String>,
    /// Environment variable holding comma-separated base64 32-byte keys: the first seals, all open.
    pub secrets_env: String,
    /// Absolute session lifetime.
    #[serde(default = "default_cookie_expire")]
    pub expire: HumanDuration,
    /// Refresh tokens are used after this long (and whenever the access token has expired).
    #[serde(default = "default_cookie_refresh")]
    pub refresh: HumanDuration,
    /// The `SameSite` attribute of session and login cookies: `lax` (default), `strict`,
    /// `none` (needs `secure`), or `""` (no attribute).
    #[serde(default)]
    pub samesite: SameSite,
    /// The `Secure` attribute (default true).
    #[serde(default = "default_true")]
    pub secure: bool,
}

/// `cookie.samesite` values, as oauth2-proxy's `cookie_samesite`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SameSite {
    /// `SameSite=Lax`: sent on top-level navigations from other sites (the login callback).
    #[default]
    Lax,
    /// `SameSite=Strict`: never sent on requests another site starts.
    Strict,
    /// `SameSite=None`: sent on every request (needs `Secure`).
    None,
    /// No `SameSite` attribute: the browser's default.
    Unset,
}

impl SameSite {
    /// The attribute as written in `Set-Cookie` (with its leading `; `), empty for [`SameSite::Unset`].
    pub fn attribute(self) -> &'static str {
        match self {
            SameSite::Lax => "; SameSite=Lax",
            SameSite::Strict => "; SameSite=Strict",
            SameSite::None => "; SameSite=None",
            SameSite::Unset => "",
        }
    }
}

impl<'de> Deserialize<'de> for SameSite {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = String::deserialize(deserializer)?;
        match v.to_ascii_lowercase().as_str() {
            "lax" => Ok(SameSite::Lax),
            "strict" => Ok(SameSite::Strict),
            "none" => Ok(SameSite::None),
            "" => Ok(SameSite::Unset),
            _ => Err(serde::de::Error::custom(format!(
                "{v:?} is not one of \"lax\", \"strict\", \"none\" or \"\""
            ))),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_cookie_name() -> String {
    "_authgate".to_owned()
}
fn default_cookie_expire() -> HumanDuration {
    HumanDuration(Duration::from_secs(168 * 3600))
}
fn default_cookie_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

/// One identity provider.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderSpec {
    /// A generic OpenID Connect provider (discovery, JWKS, ID token checks).
    Oidc(OidcSpec),
    /// Google: OIDC at `https://accounts.google.com`.
    Google(OidcSpec),
    /// Microsoft Entra ID: OIDC with a tenant issuer and a `groups` claim.
    Entra(OidcSpec),
    /// GitHub (or GitHub Enterprise): OAuth2 plus the user, emails, orgs and teams API.
    Github(GithubSpec),
}

/// OIDC provider settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct OidcSpec {
    /// The issuer; discovery reads `<issuer_url>/.well-known/openid-configuration`. Optional for
    /// `google`; for `entra` give `https://login.microsoftonline.com/<tenant>/v2.0`.
    #[serde(default)]
    pub issuer_url: Option<String>,
    /// OAuth2 client id.
    pub client_id: String,
    /// Environment variable holding the client secret.
    pub client_secret_env: String,
    /// Scopes requested at login.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// PEM CA bundle for a provider behind a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Sign-out also ends the session at the provider (RP-initiated logout).
    #[serde(default)]
    pub end_session: bool,
    /// Serve `/oauth2/frontchannel_logout` (OpenID Connect Front-Channel Logout): the
    /// provider's logout page ends this provider session's gateway sessions by `iss` and `sid`.
    #[serde(default)]
    pub frontchannel_logout: bool,
    /// Claim holding group names.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// JWS algorithms accepted on ID tokens and bearer JWTs: asymmetric ones only (`RS256`,
    /// `RS384`, `RS512`, `PS256`, `PS384`, `PS512`, `ES256`, `ES384`, `ES512`, `EdDSA`), all of
    /// them by default. `HS*` (a token signed with the client secret) and `none` are refused
    /// even when the provider advertises them.
    #[serde(default = "default_allowed_algorithms")]
    pub allowed_algorithms: Vec<String>,
    /// The name shown on the sign-in page (default: the provider's key, humanised).
    #[serde(default)]
    pub display_name: Option<String>,
    /// More issuers whose ID tokens are accepted as bearer tokens, as `issuer=audience`:
    /// each verified against that issuer's discovery document and JWKS.
    #[serde(default)]
    pub extra_jwt_issuers: Vec<String>,
}

/// The asymmetric JWS algorithms, the only ones a provider may sign tokens with.
pub const ASYMMETRIC_ALGORITHMS: [&str; 10] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
];

fn default_allowed_algorithms() -> Vec<String> {
    ASYMMETRIC_ALGORITHMS.iter().map(|s| (*s).to_owned()).collect()
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].iter().map(|s| (*s).to_owned()).collect()
}
fn default_groups_claim() -> String {
    "groups".to_owned()
}

/// GitHub provider settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct GithubSpec {
    /// OAuth app client id.
    pub client_id: String,
    /// Environment variable holding the client secret.
    pub client_secret_env: String,
    /// Base of the login URLs (`<login_url>/login/oauth/authorize`); GitHub Enterprise: your host.
    #[serde(default = "default_github_login")]
    pub login_url: String,
    /// Base of the REST API (`<api_url>/user`); GitHub Enterprise: `https://<host>/api/v3`.
    #[serde(default = "default_github_api")]
    pub api_url: String,
    /// Scopes requested at login.
    #[serde(default = "default_github_scopes")]
    pub scopes: Vec<String>,
    /// PEM CA bundle for GitHub Enterprise behind a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name shown on the sign-in page (default: the provider's key, humanised).
    #[serde(default)]
    pub display_name: Option<String>,
}

fn default_github_login() -> String {
    "https://github.com".to_owned()
}
fn default_github_api() -> String {
    "https://api.github.com".to_owned()
}
fn default_github_scopes() -> Vec<String> {
    vec!["read:user".to_owned(), "user:email".to_owned(), "read:org".to_owned()]
}

/// An app's `auth:` block.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// Name of a provider in the main file.
    pub provider: String,
    /// Allowed email domains: `example.com`, `*.example.com`, or `*` for any verified email.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Allowed email addresses.
    #[serde(default)]
    pub allowed_emails: Vec<String>,
    /// Allowed groups (any one suffices).
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Allowed GitHub organisations (GitHub provider).
    #[serde(default)]
    pub github_org: Vec<String>,
    /// Allowed GitHub teams as `org/team` (GitHub provider).
    #[serde(default)]
    pub github_team: Vec<String>,
    /// Routes served without authentication: `"^/public/"`, `"GET=^/healthz$"`.
    #[serde(default)]
    pub skip_auth_routes: Vec<String>,
    /// Routes answered with 401 JSON instead of a login redirect.
    #[serde(default)]
    pub api_routes: Vec<String>,
    /// Accept `Authorization: Bearer <JWT>` signed by the provider for this app's client id.
    #[serde(default)]
    pub skip_jwt_bearer_tokens: bool,
    /// Send the access token upstream as `X-Auth-Request-Access-Token`.
    #[serde(default)]
    pub pass_access_token: bool,
    /// Send `Authorization: Bearer <id token>` upstream.
    #[serde(default)]
    pub set_authorization_header: bool,
    /// A file of allowed email addresses, one per line (case-insensitive), relative to the
    /// app file; re-read on every reload and watched like the configuration.
    #[serde(default)]
    pub authenticated_emails_file: Option<PathBuf>,
    /// More domains `rd` may redirect to after sign-in and sign-out: `example.org`,
    /// `.example.org` or `*.example.org` (subdomains), each with an optional `:port`.
    #[serde(default)]
    pub whitelist_domains: Vec<String>,
    /// `Domain` of this app's session cookie, for apps outside `cookie.domain`: a domain
    /// covering the app's host, or `""` for a host-only cookie. Default: `cookie.domain` when
    /// it covers the host, else host-only.
    #[serde(default)]
    pub cookie_domain: Option<String>,
    /// Send signed-out browsers straight to the provider (default); `false` shows the
    /// sign-in page instead.
    #[serde(default = "default_true")]
    pub skip_provider_button: bool,
    /// Send `X-Forwarded-User`, `-Email`, `-Groups` and `-Preferred-Username` upstream.
    #[serde(default = "default_true")]
    pub pass_user_headers: bool,
    /// Answer `/oauth2/auth` with the `X-Auth-Request-*` headers.
    #[serde(default = "default_true")]
    pub set_xauthrequest: bool,
    /// `X-Forwarded-User` carries the email (when there is one) instead of the user id.
    #[serde(default)]
    pub prefer_email_to_user: bool,
}
