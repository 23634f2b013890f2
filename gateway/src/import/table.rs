//! The mapping table: every oauth2-proxy option (flag, config-file key, environment variable)
//! with its authgate equivalent, or the reason it has none and the nearest thing that does.
//!
//! The option list follows oauth2-proxy's options reference (docs/docs/configuration/overview.md
//! and the provider pages) at v7.15.3-9-g14af2951. `docs/migration.md` embeds
//! [`markdown`]'s output; a unit test fails when the two differ.

/// How an option's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A single string (or number, or duration).
    Str,
    /// A string or a list: repeated flags, TOML arrays, comma-separated values.
    List,
    /// `true` / `false`.
    Bool,
    /// A secret: never written out, mapped to a `*_env` variable.
    Secret,
}

/// What authgate does with an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Mapped onto an authgate setting (some values may still be reported, see the note).
    Mapped,
    /// Nothing to carry over: the gateway's own listener, logging or behaviour covers it.
    NotNeeded,
    /// No equivalent; reported with the nearest one.
    Unsupported,
}

impl Status {
    /// The word used in the report and the docs table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Status::Mapped => "mapped",
            Status::NotNeeded => "not needed",
            Status::Unsupported => "unsupported",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// The flag without `--`.
    pub flag: &'static str,
    /// The config-file key (the environment variable is `OAUTH2_PROXY_` + its upper case).
    pub toml: &'static str,
    /// How its value is written.
    pub kind: Kind,
    /// What authgate does with it.
    pub status: Status,
    /// The authgate setting it becomes (or the nearest one).
    pub to: &'static str,
    /// Why, and what to watch for.
    pub note: &'static str,
}

const fn e(
    flag: &'static str,
    toml: &'static str,
    kind: Kind,
    status: Status,
    to: &'static str,
    note: &'static str,
) -> Entry {
    Entry {
        flag,
        toml,
        kind,
        status,
        to,
        note,
    }
}

use Kind::{Bool as B, List as L, Secret as S, Str as T};
use Status::{Mapped as M, NotNeeded as N, Unsupported as U};

/// Every option, in the order of oauth2-proxy's reference (one row per line).
#[rustfmt::skip]
pub(crate) const TABLE: &[Entry] = &[
    // Command line.
    e("config", "config", T, N, "INPUT", "Pass the file it names as another INPUT (a Kubernetes ConfigMap it names is read automatically)."),
    e("alpha-config", "alpha_config", T, N, "INPUT", "Pass the alpha YAML file as another INPUT."),
    e("config-test", "config_test", B, N, "`authgate check`", "The gateway's own check."),
    e("version", "version", B, N, "`authgate --version`", ""),
    // General provider options.
    e("acr-values", "acr_values", T, U, "none", "authgate sends no acr_values; require the assurance level at the provider."),
    e("allowed-group", "allowed_groups", L, M, "auth.allowed_groups", "Adds the `groups` scope for OIDC providers without an explicit scope, as oauth2-proxy does."),
    e("approval-prompt", "approval_prompt", T, N, "none", "authgate sends no prompt: the provider decides (oauth2-proxy's default `force` is dropped)."),
    e("backend-logout-url", "backend_logout_url", T, U, "providers.<p>.end_session", "RP-initiated logout through discovery's end_session_endpoint instead of a backend URL."),
    e("client-id", "client_id", T, M, "providers.<p>.client_id", ""),
    e("client-secret-file", "client_secret_file", T, M, "providers.<p>.client_secret_env", "Secrets come from the environment: set the variable from the file's content."),
    e("client-secret", "client_secret", S, M, "providers.<p>.client_secret_env", "Never written; the report names the variable and where its value is."),
    e("code-challenge-method", "code_challenge_method", T, M, "(always S256)", "authgate always uses PKCE with S256."),
    e("insecure-oidc-allow-unverified-email", "insecure_oidc_allow_unverified_email", B, U, "auth.allowed_groups", "authgate only accepts verified emails; admit by group instead."),
    e("insecure-oidc-skip-issuer-verification", "insecure_oidc_skip_issuer_verification", B, U, "providers.<p>.issuer_url", "The issuer is always checked; use the tenant-specific issuer."),
    e("insecure-oidc-skip-nonce", "insecure_oidc_skip_nonce", B, N, "(nonce always checked)", "authgate always sends and checks a nonce."),
    e("jwt-key-file", "jwt_key_file", T, U, "none", "login.gov private-key JWT client authentication is not supported."),
    e("jwt-key", "jwt_key", S, U, "none", "login.gov private-key JWT client authentication is not supported."),
    e("login-url", "login_url", T, M, "providers.<p>.login_url (github)", "GitHub Enterprise: the base URL becomes `login_url`. OIDC providers use discovery (unsupported there)."),
    e("auth-request-response-mode", "auth-request-response-mode", T, U, "none", "authgate uses the default (query) response mode."),
    e("oidc-audience-claim", "oidc_audience_claims", L, U, "none", "The audience is always the `aud` claim."),
    e("oidc-email-claim", "oidc_email_claim", T, U, "none", "The email is always the `email` claim (with `email_verified`)."),
    e("oidc-extra-audience", "oidc_extra_audiences", L, U, "providers.<p>.extra_jwt_issuers", "Write `<issuer>=<audience>` entries in extra_jwt_issuers for each extra audience."),
    e("oidc-groups-claim", "oidc_groups_claim", T, M, "providers.<p>.groups_claim", ""),
    e("oidc-issuer-url", "oidc_issuer_url", T, M, "providers.<p>.issuer_url", ""),
    e("oidc-jwks-url", "oidc_jwks_url", T, U, "providers.<p>.issuer_url", "Keys come from discovery."),
    e("oidc-public-key-file", "oidc_public_key_files", L, U, "providers.<p>.issuer_url", "Keys come from discovery."),
    e("oidc-enabled-signing-alg", "oidc_enabled_signing_algs", L, U, "none", "Algorithms come from the provider's JWKS."),
    e("profile-url", "profile_url", T, U, "none", "Claims come from the ID token (GitHub: its API)."),
    e("prompt", "prompt", T, U, "none", "authgate sends no prompt parameter."),
    e("provider-ca-file", "provider_ca_files", L, M, "providers.<p>.ca_file", "One file: concatenate several into one PEM bundle."),
    e("provider-display-name", "provider_display_name", T, M, "providers.<p>.display_name", ""),
    e("provider", "provider", T, M, "providers.<p>.type", "`oidc`, `keycloak-oidc` → oidc; `google`; `entra-id`, `azure` → entra; `github`. Others are reported."),
    e("pubjwk-url", "pubjwk_url", T, U, "none", "login.gov is not supported."),
    e("redeem-url", "redeem_url", T, M, "providers.<p>.login_url (github)", "GitHub Enterprise only; OIDC providers use discovery (unsupported there)."),
    e("scope", "scope", T, M, "providers.<p>.scopes", "Split on spaces."),
    e("skip-claims-from-profile-url", "skip_claims_from_profile_url", B, N, "none", "No profile URL is called."),
    e("skip-oidc-discovery", "skip_oidc_discovery", B, U, "providers.<p>.issuer_url", "Discovery is required."),
    e("use-system-trust-store", "use_system_trust_store", B, N, "providers.<p>.ca_file", "Without ca_file the system roots are used."),
    e("validate-url", "validate_url", T, M, "providers.<p>.api_url (github)", "GitHub Enterprise: the API base becomes `api_url`."),
    // Provider-specific options.
    e("github-org", "github_org", T, M, "auth.github_org", "With github_team, teams are written `org/team`."),
    e("github-team", "github_team", L, M, "auth.github_team", "`slug` (with github_org) or `org:slug` becomes `org/slug`."),
    e("github-repo", "github_repo", T, U, "auth.github_org / auth.github_team", "Repository collaborators are not checked."),
    e("github-token", "github_token", S, U, "none", "Only used with github_repo."),
    e("github-user", "github_users", L, U, "auth.allowed_emails", "GitHub logins are not matched; list the users' emails."),
    e("google-admin-api-user-scope", "google_admin_api_user_scope", T, U, "none", "Only used with google_group."),
    e("google-admin-email", "google_admin_email", T, U, "none", "Only used with google_group."),
    e("google-group", "google_groups", L, U, "auth.allowed_emails / auth.email_domains", "Google Workspace groups are not read (no Admin SDK)."),
    e("google-service-account-json", "google_service_account_json", T, U, "none", "Only used with google_group."),
    e("google-target-principal", "google_target_principal", T, U, "none", "Only used with google_group."),
    e("google-use-application-default-credentials", "google_use_application_default_credentials", B, U, "none", "Only used with google_group."),
    e("google-use-organization-id", "google_use_organization_id", B, U, "none", "Only used with google_group."),
    e("azure-tenant", "azure_tenant", T, M, "providers.<p>.issuer_url", "Becomes `https://login.microsoftonline.com/<tenant>/v2.0`; `common` has no fixed issuer and is reported."),
    e("resource", "resource", T, U, "none", "Azure AD v1 resources are not requested."),
    e("entra-id-allowed-tenant", "entra_id_allowed_tenants", L, U, "providers.<p>.issuer_url", "One tenant per provider (its issuer)."),
    e("entra-id-federated-token-auth", "entra_id_federated_token_auth", B, U, "providers.<p>.client_secret_env", "Workload identity federation is not supported; use a client secret."),
    e("gitlab-group", "gitlab_groups", L, U, "auth.allowed_groups", "GitLab is not a provider type."),
    e("gitlab-project", "gitlab_projects", L, U, "auth.allowed_groups", "GitLab is not a provider type."),
    e("keycloak-group", "keycloak_groups", L, U, "auth.allowed_groups", "Use provider keycloak-oidc (→ oidc) with allowed_groups."),
    e("allowed-role", "allowed_roles", L, U, "auth.allowed_groups", "Map the roles into a claim and set groups_claim to it."),
    e("bitbucket-team", "bitbucket_team", T, U, "none", "Bitbucket is not a provider type."),
    e("bitbucket-repository", "bitbucket_repository", T, U, "none", "Bitbucket is not a provider type."),
    // Cookie options.
    e("cookie-csrf-expire", "cookie_csrf_expire", T, N, "(10 minutes)", "Login cookies live 10 minutes."),
    e("cookie-csrf-per-request", "cookie_csrf_per_request", B, N, "(always per login)", "Every login has its own cookie."),
    e("cookie-csrf-per-request-limit", "cookie_csrf_per_request_limit", T, N, "none", ""),
    e("cookie-csrf-samesite", "cookie_csrf_samesite", T, N, "cookie.samesite", "Login cookies follow cookie.samesite (`strict` becomes `Lax` for them)."),
    e("cookie-domain", "cookie_domains", L, M, "cookie.domain", "One domain for the gateway: the first of the list; different domains across sidecars are reported."),
    e("cookie-expire", "cookie_expire", T, M, "cookie.expire", ""),
    e("cookie-httponly", "cookie_httponly", B, M, "(always HttpOnly)", "`false` is reported."),
    e("cookie-name", "cookie_name", T, M, "cookie.name", "authgate appends `_<provider>`."),
    e("cookie-path", "cookie_path", T, M, "(always /)", "Another path is reported."),
    e("cookie-refresh", "cookie_refresh", T, M, "cookie.refresh", "`0` (off) keeps authgate's default 1h."),
    e("cookie-samesite", "cookie_samesite", T, M, "cookie.samesite", "`strict` keeps login cookies `Lax` (the provider's redirect back is cross-site); `none` needs `secure`."),
    e("cookie-secret", "cookie_secret", S, M, "cookie.secrets_env", "authgate cannot read oauth2-proxy cookies: everyone signs in once after the move."),
    e("cookie-secret-file", "cookie_secret_file", T, M, "cookie.secrets_env", "authgate cannot read oauth2-proxy cookies: everyone signs in once after the move."),
    e("cookie-secure", "cookie_secure", B, M, "cookie.secure", ""),
    // Header options.
    e("basic-auth-password", "basic_auth_password", S, U, "X-Forwarded-User", "No Basic auth upstream; read the identity headers."),
    e("set-xauthrequest", "set_xauthrequest", B, M, "auth.set_xauthrequest", "authgate's default is `true`: /oauth2/auth answers with X-Auth-Request-* unless `false`; they also always go upstream."),
    e("set-authorization-header", "set_authorization_header", B, M, "auth.set_authorization_header", ""),
    e("set-basic-auth", "set_basic_auth", B, U, "X-Forwarded-User", "No Basic auth upstream; read the identity headers."),
    e("skip-auth-strip-headers", "skip_auth_strip_headers", B, M, "(always)", "Identity headers are always stripped from clients; `false` is reported."),
    e("pass-access-token", "pass_access_token", B, M, "auth.pass_access_token", ""),
    e("pass-authorization-header", "pass_authorization_header", B, M, "auth.set_authorization_header", ""),
    e("pass-basic-auth", "pass_basic_auth", B, U, "X-Forwarded-User", "No Basic auth upstream; `false` needs nothing, `true` (the default) is reported only when set."),
    e("prefer-email-to-user", "prefer_email_to_user", B, M, "auth.prefer_email_to_user", ""),
    e("pass-user-headers", "pass_user_headers", B, M, "auth.pass_user_headers", ""),
    // Logging options.
    e("auth-logging-format", "auth_logging_format", T, N, "--log-format", "authgate logs text or JSON."),
    e("auth-logging", "auth_logging", B, N, "--log-format", ""),
    e("errors-to-info-log", "errors_to_info_log", B, N, "none", ""),
    e("exclude-logging-path", "exclude_logging_paths", L, N, "none", ""),
    e("logging-compress", "logging_compress", B, N, "none", "Logs go to stderr."),
    e("logging-filename", "logging_filename", T, N, "none", "Logs go to stderr."),
    e("logging-local-time", "logging_local_time", B, N, "none", ""),
    e("logging-max-age", "logging_max_age", T, N, "none", ""),
    e("logging-max-backups", "logging_max_backups", T, N, "none", ""),
    e("logging-max-size", "logging_max_size", T, N, "none", ""),
    e("request-id-header", "request_id_header", T, U, "access log", "No request id header is read or forwarded."),
    e("request-logging-format", "request_logging_format", T, N, "--log-format", ""),
    e("request-logging", "request_logging", B, N, "--log-format", ""),
    e("silence-ping-logging", "silence_ping_logging", B, N, "none", ""),
    e("standard-logging-format", "standard_logging_format", T, N, "--log-format", ""),
    e("standard-logging", "standard_logging", B, N, "none", ""),
    // Page templates.
    e("banner", "banner", T, U, "templates_dir", "Put the text into a sign_in.html."),
    e("custom-sign-in-logo", "custom_sign_in_logo", T, U, "templates_dir", "Put the logo into a sign_in.html."),
    e("custom-templates-dir", "custom_templates_dir", T, U, "templates_dir", "authgate reads sign_in.html and error.html with `{{placeholder}}` syntax, not Go templates: rewrite them."),
    e("display-htpasswd-form", "display_htpasswd_form", B, N, "none", "No local users."),
    e("footer", "footer", T, U, "templates_dir", "Put the text into a sign_in.html."),
    e("show-debug-on-error", "show_debug_on_error", B, U, "logs", "Details are in the logs, not on the page."),
    // Probes.
    e("ping-path", "ping_path", T, M, "listen.http /ping, listen.admin /ping", "Fixed paths on the HTTP and admin listeners."),
    e("ping-user-agent", "ping_user_agent", T, U, "listen.admin /ping", ""),
    e("ready-path", "ready_path", T, M, "listen.admin /ready", ""),
    e("gcp-healthchecks", "gcp_healthchecks", B, U, "listen.http /ping", ""),
    // Proxy options.
    e("allow-query-semicolons", "allow_query_semicolons", B, N, "none", "The query string is passed through untouched."),
    e("api-route", "api_routes", L, M, "auth.api_routes", ""),
    e("authenticated-emails-file", "authenticated_emails_file", T, M, "auth.allowed_emails", "Read at import and copied (the sidecar's path is not the gateway's); to keep a watched file, set auth.authenticated_emails_file."),
    e("bearer-token-login-fallback", "bearer_token_login_fallback", B, N, "none", "An invalid bearer token gets 401."),
    e("email-domain", "email_domains", L, M, "auth.email_domains", "`.example.com` becomes `*.example.com`."),
    e("encode-state", "encode_state", B, N, "none", ""),
    e("extra-jwt-issuers", "extra_jwt_issuers", L, M, "providers.<p>.extra_jwt_issuers", "Used by apps with skip_jwt_bearer_tokens; OIDC providers only."),
    e("force-https", "force_https", B, M, "listen.http", "The HTTP listener redirects to HTTPS."),
    e("force-json-errors", "force_json_errors", B, U, "auth.api_routes", "Mark the paths as API routes."),
    e("htpasswd-file", "htpasswd_file", T, U, "none", "No local users: move them to the identity provider."),
    e("htpasswd-user-group", "htpasswd_user_groups", L, U, "none", "No local users."),
    e("proxy-prefix", "proxy_prefix", T, M, "(always /oauth2)", "Another prefix is reported."),
    e("real-client-ip-header", "real_client_ip_header", T, M, "server.trusted_proxies", "`X-Forwarded-For` (the default) maps; other headers are reported."),
    e("redirect-url", "redirect_url", T, M, "host", "Its host is the app's host; authgate's callback is https://<host>/oauth2/callback."),
    e("relative-redirect-url", "relative_redirect_url", B, N, "none", ""),
    e("reverse-proxy", "reverse_proxy", B, N, "server.trusted_proxies", "authgate replaces the sidecars at the edge and sets X-Forwarded-For itself; behind a load balancer, list it in server.trusted_proxies."),
    e("trusted-proxy-ip", "trusted_proxy_ips", L, M, "server.trusted_proxies", "Bare addresses become /32 or /128 networks."),
    e("signature-key", "signature_key", S, U, "X-Auth-Request-* headers", "GAP-Signature is not sent."),
    e("skip-auth-preflight", "skip_auth_preflight", B, M, "auth.skip_auth_routes", "Becomes `OPTIONS=.*`."),
    e("skip-auth-regex", "skip_auth_regex", L, M, "auth.skip_auth_routes", ""),
    e("skip-auth-route", "skip_auth_routes", L, M, "auth.skip_auth_routes", "Same `METHOD=regex` syntax, matched on the normalised path."),
    e("skip-jwt-bearer-tokens", "skip_jwt_bearer_tokens", B, M, "auth.skip_jwt_bearer_tokens", "OIDC providers only."),
    e("skip-provider-button", "skip_provider_button", B, M, "auth.skip_provider_button", "authgate's default is `true` (straight to the provider); `false` is written out."),
    e("ssl-insecure-skip-verify", "ssl_insecure_skip_verify", B, U, "providers.<p>.ca_file", "Provider certificates are always verified."),
    e("trusted-ip", "trusted_ips", L, U, "auth.skip_auth_routes", "No IP allow-list."),
    e("whitelist-domain", "whitelist_domains", L, M, "auth.whitelist_domains", ""),
    // Server options.
    e("http-address", "http_address", T, N, "listen.http", "The gateway's listener replaces every sidecar's."),
    e("https-address", "https_address", T, N, "listen.https", "The gateway's listener replaces every sidecar's."),
    e("metrics-address", "metrics_address", T, N, "listen.admin", "/metrics on the admin listener."),
    e("metrics-secure-address", "metrics_secure_address", T, N, "listen.admin", ""),
    e("metrics-tls-cert-file", "metrics_tls_cert_file", T, N, "none", ""),
    e("metrics-tls-key-file", "metrics_tls_key_file", T, N, "none", ""),
    e("tls-cert-file", "tls_cert_file", T, N, "tls.certificates", "Certificates are the gateway's, chosen by SNI."),
    e("tls-key-file", "tls_key_file", T, N, "tls.certificates", ""),
    e("tls-cipher-suite", "tls_cipher_suites", L, N, "none", "TLS 1.2 and 1.3 with rustls' default suites."),
    e("tls-min-version", "tls_min_version", T, N, "none", "TLS 1.2 minimum."),
    // Sessions.
    e("session-cookie-minimal", "session_cookie_minimal", B, N, "none", "Sessions are server-side; the cookie is a ticket."),
    e("session-store-type", "session_store_type", T, M, "sessions.store", "`cookie` → memory (one replica) — use redis with several replicas."),
    e("redis-cluster-connection-urls", "redis_cluster_connection_urls", L, U, "sessions.redis.sentinel", "Redis Cluster is not supported."),
    e("redis-connection-url", "redis_connection_url", T, M, "sessions.redis.url", "A password in the URL is removed and reported."),
    e("redis-ca-path", "redis_ca_path", T, M, "sessions.redis.tls.ca_file", ""),
    e("redis-insecure-skip-tls-verify", "redis_insecure_skip_tls_verify", B, U, "sessions.redis.tls.ca_file", "Redis certificates are always verified."),
    e("redis-password", "redis_password", S, M, "sessions.redis.password_env", ""),
    e("redis-sentinel-password", "redis_sentinel_password", S, M, "sessions.redis.sentinel.password_env", ""),
    e("redis-sentinel-master-name", "redis_sentinel_master_name", T, M, "sessions.redis.sentinel.master", ""),
    e("redis-sentinel-connection-urls", "redis_sentinel_connection_urls", L, M, "sessions.redis.sentinel.addresses", ""),
    e("redis-use-cluster", "redis_use_cluster", B, U, "sessions.redis.sentinel", "Redis Cluster is not supported."),
    e("redis-use-sentinel", "redis_use_sentinel", B, M, "sessions.redis.sentinel", ""),
    e("redis-connection-idle-timeout", "redis_connection_idle_timeout", T, N, "none", "Connections are managed and re-established."),
    // Upstreams.
    e("flush-interval", "flush_interval", T, N, "none", "Responses are streamed."),
    e("pass-host-header", "pass_host_header", B, M, "(always)", "The Host header is passed through; `false` is reported."),
    e("proxy-websockets", "proxy_websockets", B, M, "(always)", "WebSockets are always proxied."),
    e("ssl-upstream-insecure-skip-verify", "ssl_upstream_insecure_skip_verify", B, M, "upstream_tls.insecure_skip_verify", ""),
    e("disable-keep-alives", "disable_keep_alives", B, U, "timeouts.idle", "Upstream connections are always reused."),
    e("upstream-timeout", "upstream_timeout", T, M, "timeouts.read", ""),
    e("upstream", "upstreams", L, M, "upstreams, routes[].upstreams", "The upstream at `/` is the app's; one at another path becomes a `routes:` entry with that `path_prefix` (whole segments: `/api` no longer matches `/apix`); `file://`, `static://` and `unix://` are reported."),
];

/// The row of an option named as a flag (`email-domain`), a config key (`email_domains`), or an
/// environment variable without its prefix (`EMAIL_DOMAINS`), singular or plural.
pub(crate) fn lookup(name: &str) -> Option<&'static Entry> {
    let key = name
        .trim()
        .trim_start_matches('-')
        .to_ascii_lowercase()
        .replace('-', "_");
    TABLE.iter().find(|e| {
        let flag = e.flag.replace('-', "_");
        let toml = e.toml.replace('-', "_");
        key == flag || key == toml || key == format!("{flag}s") || key.strip_suffix('s') == Some(toml.as_str())
    })
}

/// The table as Markdown, as docs/migration.md embeds it.
pub(crate) fn markdown() -> String {
    let mut out = String::from(
        "| oauth2-proxy flag | config key / `OAUTH2_PROXY_` variable | status | authgate | notes |\n|---|---|---|---|---|\n",
    );
    for e in TABLE {
        let note = if e.kind == Kind::Secret && !e.note.contains("Never written") {
            format!("Secret: never written. {}", e.note)
        } else {
            e.note.to_owned()
        };
        out.push_str(&format!(
            "| `--{}` | `{}` / `OAUTH2_PROXY_{}` | {} | {} | {} |\n",
            e.flag,
            e.toml,
            e.toml.to_ascii_uppercase().replace('-', "_"),
            e.status.label(),
            e.to,
            note.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_finds_its_row() {
        for name in [
            "email-domain",
            "--email-domain",
            "email_domains",
            "EMAIL_DOMAINS",
            "EMAIL_DOMAIN",
        ] {
            assert_eq!(lookup(name).map(|e| e.toml), Some("email_domains"), "{name}");
        }
        assert_eq!(lookup("upstream").map(|e| e.toml), Some("upstreams"));
        assert_eq!(lookup("GITHUB_USERS").map(|e| e.flag), Some("github-user"));
        assert!(lookup("no-such-option").is_none());
    }

    #[test]
    fn names_are_unique_and_find_their_own_row() {
        let mut seen = std::collections::HashSet::new();
        for e in TABLE {
            assert!(seen.insert(e.flag), "duplicate flag {}", e.flag);
            assert_eq!(lookup(e.flag).map(|x| x.flag), Some(e.flag), "flag {}", e.flag);
            assert_eq!(lookup(e.toml).map(|x| x.flag), Some(e.flag), "key {}", e.toml);
        }
    }

    /// docs/migration.md embeds the generated table between markers; regenerate it with
    /// `AUTHGATE_BLESS=1 cargo test -p authgate --lib import::table`.
    #[test]
    fn migration_guide_embeds_this_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/migration.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        let (begin, end) = ("<!-- mapping-table:begin -->\n", "<!-- mapping-table:end -->");
        let (Some(a), Some(b)) = (doc.find(begin), doc.find(end)) else {
            panic!("docs/migration.md lacks the mapping-table markers");
        };
        let current = &doc[a + begin.len()..b];
        let generated = markdown();
        if current != generated {
            if std::env::var_os("AUTHGATE_BLESS").is_some() {
                let updated = format!("{}{generated}{}", &doc[..a + begin.len()], &doc[b..]);
                std::fs::write(&path, updated).unwrap_or_default();
            } else {
                panic!("docs/migration.md's option table is stale: AUTHGATE_BLESS=1 cargo test -p authgate --lib import::table");
            }
        }
    }
}
