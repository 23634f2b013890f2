//! Per-app authentication: providers, policy, the login flow and identity headers.
//!
//! The gateway-wide part ([`AuthSettings`]: cookie keyring and settings, providers) and each
//! app's part ([`AppAuth`]: provider, policy, route rules, header options) are compiled with
//! the snapshot. [`flow`] decides, per request, whether to pass, answer, or start a login;
//! [`endpoints`] serves `/oauth2/*`.

mod app;
pub mod emails_file;
pub mod endpoints;
pub mod extra_issuers;
pub mod flow;
pub mod headers;
pub mod identity_jwt;
pub mod limits;
pub mod login;
pub mod logout;
pub mod logout_token;
pub mod outcome;
pub mod page;
pub mod policy;
pub mod provider;
pub mod redirect;
pub mod refresh;
pub mod routes;
pub mod whitelist;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::schema::{CookieSection, ProviderSpec, RateLimitsSection, SameSite};
use crate::config::Fingerprint;
use crate::session::seal::Keyring;
use crate::templates::Templates;
pub use app::{load_files, AppAuth, RouteClass};
use provider::Provider;

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
    /// `SameSite` of session and login cookies.
    pub samesite: SameSite,
    /// `Secure` attribute.
    pub secure: bool,
}

impl CookieSettings {
    /// A session cookie's `Set-Cookie` value (`HttpOnly`, with the configured `Secure` and
    /// `SameSite`).
    pub fn set_cookie(&self, name: &str, value: &str, domain: Option<&str>, path: &str, max_age: u64) -> String {
        self.with_samesite(self.samesite, name, value, domain, path, max_age)
    }

    /// A login cookie's `Set-Cookie` value: as [`Self::set_cookie`], except that `Strict`
    /// becomes `Lax`: the provider's redirect back to the callback is a navigation from
    /// another site, which never carries a `Strict` cookie, so no login could complete.
    pub fn set_login_cookie(&self, name: &str, value: &str, path: &str, max_age: u64) -> String {
        let samesite = match self.samesite {
            SameSite::Strict => SameSite::Lax,
            other => other,
        };
        self.with_samesite(samesite, name, value, None, path, max_age)
    }

    fn with_samesite(
        &self,
        samesite: SameSite,
        name: &str,
        value: &str,
        domain: Option<&str>,
        path: &str,
        max_age: u64,
    ) -> String {
        let domain = domain.map(|d| format!("; Domain={d}")).unwrap_or_default();
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{name}={value}; Path={path}; Max-Age={max_age}{secure}; HttpOnly{}{domain}",
            samesite.attribute()
        )
    }
}

/// The gateway-wide authentication settings of a snapshot.
#[derive(Debug)]
pub struct AuthSettings {
    /// Cookies.
    pub cookie: CookieSettings,
    /// Providers by name.
    pub providers: HashMap<String, Arc<Provider>>,
    /// Replacement pages (`templates_dir`: `sign_in.html`, `error.html`).
    pub templates: Templates,
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
        fingerprint: &mut Fingerprint,
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
        if cookie.samesite == SameSite::None && !cookie.secure {
            errors.push((
                "cookie.samesite".to_owned(),
                "\"none\" needs cookie.secure: true (browsers drop SameSite=None cookies without Secure)".to_owned(),
            ));
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
        let mut templates = Templates::default();
        if let Some(dir) = templates_dir {
            match Templates::load(base, dir, fingerprint) {
                Ok(t) => templates = t,
                Err(list) => errors.extend(list.into_iter().map(|m| ("templates_dir".to_owned(), m))),
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
                    samesite: cookie.samesite,
                    secure: cookie.secure,
                },
                providers: built,
                templates,
                rate_limits: *rate_limits,
            }),
            _ => Err(errors),
        }
    }
}

/// True when cookie domain `d` (lower-case, no leading dot) covers every name of `host`.
fn covers(d: &str, host: &crate::routing::HostPattern) -> bool {
    let under = |h: &str| h == d || h.strip_suffix(d).is_some_and(|rest| rest.ends_with('.'));
    match host {
        crate::routing::HostPattern::Exact(h) => under(h),
        crate::routing::HostPattern::Wildcard(s) => under(s),
    }
}

/// The `Domain` of an app's session cookie: its own `auth.cookie_domain` (`""`: host-only),
/// else the shared domain when the host is under it. Errors are for `auth.cookie_domain`.
fn cookie_domain_for(
    settings: &AuthSettings,
    host: &crate::routing::HostPattern,
    own: Option<&str>,
) -> Result<Option<String>, String> {
    let Some(own) = own else {
        return Ok(settings.cookie.domain.clone().filter(|d| covers(d, host)));
    };
    if own.is_empty() {
        return Ok(None);
    }
    let d = own.trim_start_matches('.').to_ascii_lowercase();
    if crate::routing::normalize_host(&d).is_err() || !d.contains('.') || d.starts_with("*.") {
        return Err(format!(
            "{own:?} is not a domain such as .example.com (or \"\" for host-only cookies)"
        ));
    }
    if !covers(&d, host) {
        return Err(format!(
            "{own:?} does not cover the app's host: browsers would refuse the cookie; use a parent domain of the host, or \"\" for host-only"
        ));
    }
    Ok(Some(d))
}
