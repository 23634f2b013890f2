//! One app's compiled `auth` block ([`AppAuth`]) and how it classifies requests.

use std::path::Path;
use std::sync::Arc;

use super::emails_file::{self, EmailsFile};
use super::policy::{Policy, PolicySpec};
use super::provider::Provider;
use super::routes::RouteRules;
use super::whitelist::AllowedDomain;
use super::{cookie_domain_for, AuthSettings};
use crate::config::schema::AuthSpec;
use crate::config::Fingerprint;
use crate::routing::HostPattern;

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
    /// `Domain` of the session cookie: `auth.cookie_domain`, else the shared domain when the
    /// app's host is under it.
    pub cookie_domain: Option<String>,
    /// Where `rd` may lead besides the app's host and `cookie.domain`: `whitelist_domains`,
    /// and the app's own cookie domain.
    pub redirect_domains: Vec<AllowedDomain>,
    /// The `authenticated_emails_file` as read for this build.
    pub emails_file: Option<EmailsFile>,
}

/// Reads the files an `auth` block names (`authenticated_emails_file`, relative to `base`,
/// the app file's directory), mixing them into `fingerprint`. Errors are `(field, message)`.
pub fn load_files(
    spec: &AuthSpec,
    base: &Path,
    fingerprint: &mut Fingerprint,
) -> Result<Option<EmailsFile>, Vec<(String, String)>> {
    spec.authenticated_emails_file
        .as_deref()
        .map(|p| emails_file::load(base, p, fingerprint))
        .transpose()
        .map_err(|m| vec![("auth.authenticated_emails_file".to_owned(), m)])
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
    /// same block, same provider object, same cookie settings, same emails file content.
    pub fn reusable_for(
        &self,
        spec: &AuthSpec,
        settings: &AuthSettings,
        cookie_domain_host: &HostPattern,
        emails: &Option<EmailsFile>,
    ) -> bool {
        &self.spec == spec
            && settings
                .providers
                .get(&spec.provider)
                .is_some_and(|p| Arc::ptr_eq(p, &self.provider))
            && self.cookie_name == format!("{}_{}", settings.cookie.name, self.provider.name)
            && cookie_domain_for(settings, cookie_domain_host, spec.cookie_domain.as_deref()).as_ref()
                == Ok(&self.cookie_domain)
            && &self.emails_file == emails
    }

    /// Compiles an app's `auth` block, with the files [`load_files`] read. Errors are
    /// `(field, message)` relative to the app file.
    pub fn build(
        spec: &AuthSpec,
        host: &HostPattern,
        settings: Option<&AuthSettings>,
        emails: Option<EmailsFile>,
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
            emails_file: emails.as_ref().map(|f| f.emails.as_slice()),
            allowed_groups: &spec.allowed_groups,
            github_orgs: &spec.github_org,
            github_teams: &spec.github_team,
        })
        .map_err(|list| errors.extend(list.into_iter().map(|(f, m)| (format!("auth.{f}"), m))))
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
        let cookie_domain = cookie_domain_for(settings, host, spec.cookie_domain.as_deref())
            .map_err(|m| errors.push(("auth.cookie_domain".to_owned(), m)))
            .ok();
        let mut redirect_domains = Vec::new();
        for (i, entry) in spec.whitelist_domains.iter().enumerate() {
            match AllowedDomain::parse(entry) {
                Ok(d) => redirect_domains.push(d),
                Err(m) => errors.push((format!("auth.whitelist_domains[{i}]"), m)),
            }
        }
        let (Some(provider), Some(policy), Some(skip), Some(api), Some(cookie_domain), true) =
            (provider, policy, skip, api, cookie_domain, errors.is_empty())
        else {
            return Err(errors);
        };
        redirect_domains.extend(cookie_domain.as_deref().map(AllowedDomain::cookie_domain));
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
            redirect_domains,
            emails_file: emails,
        })
    }
}
