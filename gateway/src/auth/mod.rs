//! Per-app authentication: providers, policy, the login flow and identity headers.
//!
//! The gateway-wide part ([`AuthSettings`]: cookie keyring and settings, providers) and each
//! app's part ([`AppAuth`]: provider, policy, route rules, header options) are compiled with
//! the snapshot. [`flow`] decides, per request, whether to pass, answer, or start a login;
//! [`endpoints`] serves `/oauth2/*`.

pub mod endpoints;
pub mod flow;
pub mod headers;
pub mod identity_jwt;
pub mod limits;
pub mod login;
pub mod outcome;
pub mod policy;
pub mod provider;
pub mod redirect;
pub mod refresh;
pub mod routes;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::schema::{AuthSpec, CookieSection, ProviderSpec, RateLimitsSection};
use crate::session::seal::Keyring;
use policy::{Policy, PolicySpec};
use provider::Provider;
use routes::RouteRules;

/// Cookie settings shared by every app.
#[derive(Debug)]
pub struct CookieSettings {
    /// Base name; a provider's session cookie is `<name>_<provider>`.
    pub name: String,
    /// Shared domain (`.example.com`), without the leading dot, lower-cased.
    pub domain: Option<String>,
    /// Absolute session lifetime.
    pub expire: Duration,
    /// Refresh interval.
    pub refresh: Duration,
    /// Seals cookies; the first key seals, all open.
    pub keyring: Keyring,
}

/// The gateway-wide authentication settings of a snapshot.
#[derive(Debug)]
pub struct AuthSettings {
    /// Cookies.
    pub cookie: CookieSettings,
    /// Providers by name.
    pub providers: HashMap<String, Arc<Provider>>,
    /// A replacement sign-in page (`templates_dir/sign_in.html`).
    pub sign_in_template: Option<String>,
    /// Per-client-address limits (`rate_limits:`).
    pub rate_limits: RateLimitsSection,
}

/// Reads an environment variable holding a secret; the error says which field names it.
pub fn secret_from_env(var: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(format!(
            "environment variable {var} is not set (it must hold the secret; secrets never live in files)"
        )),
    }
}

impl AuthSettings {
    /// Compiles the cookie section and the providers. `previous` providers with the same spec
    /// and secret are reused with their discovered metadata. Errors are `(field, message)`.
    pub fn build(
        cookie: &CookieSection,
        providers: &BTreeMap<String, ProviderSpec>,
        rate_limits: &RateLimitsSection,
        templates_dir: Option<&Path>,
        base: &Path,
        previous: Option<&AuthSettings>,
    ) -> Result<AuthSettings, Vec<(String, String)>> {
        let mut errors = limits::validate(rate_limits);
        let keyring =
            match secret_from_env(&cookie.secrets_env).and_then(|v| Keyring::parse(&v).map_err(|e| e.to_string())) {
                Ok(k) => Some(k),
                Err(e) => {
                    errors.push(("cookie.secrets_env".to_owned(), e));
                    None
                }
            };
        let valid_name = !cookie.name.is_empty()
            && cookie
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            errors.push((
                "cookie.name".to_owned(),
                "use letters, digits, '_' and '-' only".to_owned(),
            ));
        }
        let domain = cookie
            .domain
            .as_deref()
            .map(|d| d.trim_start_matches('.').to_ascii_lowercase());
        if let Some(d) = &domain {
            if crate::routing::normalize_host(d).is_err() || !d.contains('.') {
                errors.push((
                    "cookie.domain".to_owned(),
                    format!("{d:?} is not a domain such as .example.com"),
                ));
            }
        }
        if cookie.refresh.0 >= cookie.expire.0 {
            errors.push((
                "cookie.refresh".to_owned(),
                "must be shorter than cookie.expire".to_owned(),
            ));
        }
        let mut built = HashMap::new();
        for (name, spec) in providers {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                errors.push((
                    format!("providers.{name}"),
                    "provider names use letters, digits, '_' and '-' only".to_owned(),
                ));
                continue;
            }
            let secret_env = match spec {
                ProviderSpec::Oidc(o) | ProviderSpec::Google(o) | ProviderSpec::Entra(o) => &o.client_secret_env,
                ProviderSpec::Github(g) => &g.client_secret_env,
            };
            let secret = match secret_from_env(secret_env) {
                Ok(s) => s,
                Err(e) => {
                    errors.push((format!("providers.{name}.client_secret_env"), e));
                    continue;
                }
            };
            let reused = previous
                .and_then(|p| p.providers.get(name))
                .filter(|p| p.same_as(spec, &secret));
            match reused {
                Some(p) => {
                    built.insert(name.clone(), p.clone());
                }
                None => match Provider::build(name, spec, secret, base) {
                    Ok(p) => {
                        built.insert(name.clone(), Arc::new(p));
                    }
                    Err((field, message)) => errors.push((format!("providers.{name}.{field}"), message)),
                },
            }
        }
        let mut sign_in_template = None;
        if let Some(dir) = templates_dir {
            let path = crate::config::resolve(base, &dir.join("sign_in.html"));
            match std::fs::read_to_string(&path) {
                Ok(t) => sign_in_template = Some(t),
                Err(e) => errors.push((
                    "templates_dir".to_owned(),
                    format!("cannot read {}: {e}", path.display()),
                )),
            }
        }
        match (keyring, errors.is_empty()) {
            (Some(keyring), true) => Ok(AuthSettings {
                cookie: CookieSettings {
                    name: cookie.name.clone(),
                    domain,
                    expire: cookie.expire.0,
                    refresh: cookie.refresh.0,
                    keyring,
                },
                providers: built,
                sign_in_template,
                rate_limits: *rate_limits,
            }),
            _ => Err(errors),
        }
    }
}

/// The `Domain` of an app's session cookie: the shared domain when the host is under it.
fn cookie_domain_for(settings: &AuthSettings, host: &crate::routing::HostPattern) -> Option<String> {
    settings.cookie.domain.clone().filter(|d| match host {
        crate::routing::HostPattern::Exact(h) => h == d || h.ends_with(&format!(".{d}")),
        crate::routing::HostPattern::Wildcard(s) => s == d || s.ends_with(&format!(".{d}")),
    })
}

/// What an app's path rules make of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// A `skip_auth_routes` match: proxied without authentication.
    Public,
    /// An `api_routes` match: authenticated, answered 401 JSON rather than redirected.
    Api,
    /// Everything else: authenticated, redirected to sign in.
    Protected,
}

/// One app's compiled authentication policy.
#[derive(Debug)]
pub struct AppAuth {
    /// The `auth` block it was compiled from (to reuse it when a reload leaves it unchanged).
    pub spec: AuthSpec,
    /// The provider users sign in with.
    pub provider: Arc<Provider>,
    /// Who may enter.
    pub policy: Policy,
    /// Routes served without authentication.
    pub skip: RouteRules,
    /// Routes answered with 401 JSON instead of a redirect.
    pub api: RouteRules,
    /// Accept provider-signed bearer JWTs.
    pub skip_jwt_bearer_tokens: bool,
    /// Send the access token upstream.
    pub pass_access_token: bool,
    /// Send `Authorization: Bearer <id token>` upstream.
    pub set_authorization_header: bool,
    /// The session cookie's name: `<cookie.name>_<provider>`.
    pub cookie_name: String,
    /// `Domain` of the session cookie: the shared domain when the app's host is under it.
    pub cookie_domain: Option<String>,
}

impl AppAuth {
    /// Classifies a request by its canonical `path`. `stripped` is the same path without
    /// matrix parameters ([`Target::stripped_path`](crate::target::Target::stripped_path)):
    /// when the two get different verdicts the answer is `None` and the request is refused,
    /// since upstreams that cut parameters would route what the rules did not judge.
    pub fn classify(&self, method: &http::Method, path: &str, stripped: Option<&str>) -> Option<RouteClass> {
        let class = self.class_of(method, path);
        match stripped {
            Some(s) if self.class_of(method, s) != class => None,
            _ => Some(class),
        }
    }

    fn class_of(&self, method: &http::Method, path: &str) -> RouteClass {
        if self.skip.matches(method, path) {
            RouteClass::Public
        } else if self.api.matches(method, path) {
            RouteClass::Api
        } else {
            RouteClass::Protected
        }
    }

    /// True when this compiled policy can serve `spec` for `host` under `settings` unchanged:
    /// same block, same provider object, same cookie settings.
    pub fn reusable_for(
        &self,
        spec: &AuthSpec,
        settings: &AuthSettings,
        cookie_domain_host: &crate::routing::HostPattern,
    ) -> bool {
        &self.spec == spec
            && settings
                .providers
                .get(&spec.provider)
                .is_some_and(|p| Arc::ptr_eq(p, &self.provider))
            && self.cookie_name == format!("{}_{}", settings.cookie.name, self.provider.name)
            && self.cookie_domain == cookie_domain_for(settings, cookie_domain_host)
    }

    /// Compiles an app's `auth` block. Errors are `(field, message)` relative to the app file.
    pub fn build(
        spec: &AuthSpec,
        host: &crate::routing::HostPattern,
        settings: Option<&AuthSettings>,
    ) -> Result<AppAuth, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let Some(settings) = settings else {
            return Err(vec![(
                "auth".to_owned(),
                "the main file has no cookie section: add cookie: { secrets_env: ... }".to_owned(),
            )]);
        };
        let provider = settings.providers.get(&spec.provider).cloned();
        if provider.is_none() {
            let known: Vec<&str> = settings.providers.keys().map(String::as_str).collect();
            errors.push((
                "auth.provider".to_owned(),
                format!("unknown provider {:?}; the main file defines {known:?}", spec.provider),
            ));
        }
        let policy = Policy::compile(&PolicySpec {
            email_domains: &spec.email_domains,
            allowed_emails: &spec.allowed_emails,
            allowed_groups: &spec.allowed_groups,
            github_orgs: &spec.github_org,
            github_teams: &spec.github_team,
        })
        .map_err(|list| {
            for (f, m) in list {
                errors.push((format!("auth.{f}"), m));
            }
        })
        .ok();
        let skip = RouteRules::compile(&spec.skip_auth_routes)
            .map_err(|(i, m)| errors.push((format!("auth.skip_auth_routes[{i}]"), m)))
            .ok();
        let api = RouteRules::compile(&spec.api_routes)
            .map_err(|(i, m)| errors.push((format!("auth.api_routes[{i}]"), m)))
            .ok();
        if spec.skip_jwt_bearer_tokens && provider.as_ref().is_some_and(|p| !p.is_oidc()) {
            errors.push((
                "auth.skip_jwt_bearer_tokens".to_owned(),
                "needs an OIDC provider (GitHub tokens are not JWTs)".to_owned(),
            ));
        }
        let (Some(provider), Some(policy), Some(skip), Some(api), true) =
            (provider, policy, skip, api, errors.is_empty())
        else {
            return Err(errors);
        };
        let cookie_domain = cookie_domain_for(settings, host);
        Ok(AppAuth {
            spec: spec.clone(),
            cookie_name: format!("{}_{}", settings.cookie.name, provider.name),
            provider,
            policy,
            skip,
            api,
            skip_jwt_bearer_tokens: spec.skip_jwt_bearer_tokens,
            pass_access_token: spec.pass_access_token,
            set_authorization_header: spec.set_authorization_header,
            cookie_domain,
        })
    }
}
