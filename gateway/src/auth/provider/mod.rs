//! Identity providers: generic OIDC (also Google and Entra ID) through the `openidconnect`
//! crate, and GitHub's OAuth2 plus REST API.
//!
//! OIDC metadata is discovered on first use (or by [`Provider::warm_up`] after a reload) and
//! kept with the provider across reloads; the JWKS is fetched again when a token names a key
//! the provider no longer lists (key rotation).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreJwsSigningAlgorithm, CoreTokenResponse,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, JsonWebKeySet, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, RefreshToken, Scope,
};

mod build;
mod claims;
mod github;

use build::{extra_issuers, oidc};
pub use claims::unverified_identity;
use claims::{jwt_string_list, verified};
use github::{github, Github};

use super::logout_token::{self, LogoutClaims, LogoutTokenError};
use super::policy::Identity;
use crate::config::resolve;
use crate::config::schema::ProviderSpec;
use crate::session::{now, Session};

type OidcClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// Why a provider call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached or answered nonsense: try again later (503).
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused (bad code, refresh token revoked, invalid token): sign in again.
    #[error("identity provider refused: {0}")]
    Refused(String),
}

/// Tokens and identity from a sign-in or a refresh.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// Who signed in.
    pub identity: Identity,
    /// OAuth2 access token.
    pub access_token: Option<Box<str>>,
    /// When it expires (Unix seconds).
    pub access_expires_at: Option<u64>,
    /// Refresh token, if issued.
    pub refresh_token: Option<Box<str>>,
    /// Raw ID token (OIDC).
    pub id_token: Option<Box<str>>,
    /// The provider's session id (the ID token's `sid`), when it names one.
    pub sid: Option<Box<str>>,
}

struct Discovered {
    metadata: ProviderMetadataWithLogout,
    client: OidcClient,
}

struct Oidc {
    issuer: String,
    /// The audience ID tokens must name, when not the provider's client id (an extra issuer).
    audience: Option<String>,
    allowed_algorithms: Vec<CoreJwsSigningAlgorithm>,
    scopes: Vec<String>,
    end_session: bool,
    groups_claim: String,
    discovered: ArcSwapOption<Discovered>,
    discovering: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// What a token check against the provider's keys found wrong ([`Provider::with_current_keys`]).
enum KeyCheck {
    /// Signed with a key the JWKS does not list (or a signature that does not verify): worth one
    /// refetch of the JWKS; the reason, for when it is still so after it.
    UnknownKey(String),
    /// Refused, with the reason.
    Refused(String),
}

impl KeyCheck {
    fn refusal(self) -> ProviderError {
        match self {
            KeyCheck::UnknownKey(e) | KeyCheck::Refused(e) => ProviderError::Refused(e),
        }
    }
}

/// Unknown signing keys refetch the JWKS at most this often, so forged tokens cannot make
/// the gateway hammer the provider.
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

enum Kind {
    Oidc(Oidc),
    Github(Github),
}

/// Verified bearer tokens, by SHA-256 of the token: an RS256 check costs ~0.3 ms, so an API
/// client sending the same token request after request is verified once.
type BearerCache = moka::sync::Cache<[u8; 32], (Arc<Identity>, u64)>;

/// One configured identity provider.
pub struct Provider {
    /// Its name in the configuration.
    pub name: String,
    spec: ProviderSpec,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    kind: Kind,
    /// Verifiers of `extra_jwt_issuers` (OIDC providers only).
    extra_issuers: Vec<Oidc>,
    /// The name shown on the sign-in page.
    pub display_name: String,
    bearer_cache: BearerCache,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unavailable(e.to_string())
}

impl Provider {
    /// Builds a provider from its spec; `secret` is the client secret read from the
    /// environment. Errors are `(field, message)` relative to `providers.<name>`.
    pub fn build(name: &str, spec: &ProviderSpec, secret: String, base: &Path) -> Result<Provider, (String, String)> {
        let (client_id, ca_file) = match spec {
            ProviderSpec::Oidc(o) | ProviderSpec::Google(o) | ProviderSpec::Entra(o) => (&o.client_id, &o.ca_file),
            ProviderSpec::Github(g) => (&g.client_id, &g.ca_file),
        };
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent("authgate");
        if let Some(ca) = ca_file {
            let path = resolve(base, ca);
            let pem = std::fs::read(&path)
                .map_err(|e| ("ca_file".to_owned(), format!("cannot read {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                (
                    "ca_file".to_owned(),
                    format!("{} is not a PEM bundle: {e}", path.display()),
                )
            })?;
            for c in certs {
                http = http.add_root_certificate(c);
            }
        }
        let http = http
            .build()
            .map_err(|e| ("type".to_owned(), format!("cannot build the HTTP client: {e}")))?;
        let (extra, display) = match spec {
            ProviderSpec::Oidc(o) | ProviderSpec::Google(o) | ProviderSpec::Entra(o) => {
                (extra_issuers(o)?, o.display_name.as_deref())
            }
            ProviderSpec::Github(g) => (Vec::new(), g.display_name.as_deref()),
        };
        let display_name =
            super::extra_issuers::display_name(name, display).map_err(|m| ("display_name".to_owned(), m))?;
        let kind = match spec {
            ProviderSpec::Oidc(o) => Kind::Oidc(oidc(o, None)?),
            ProviderSpec::Google(o) => Kind::Oidc(oidc(o, Some("https://accounts.google.com"))?),
            ProviderSpec::Entra(o) => Kind::Oidc(oidc(o, None)?),
            ProviderSpec::Github(g) => Kind::Github(github(g)?),
        };
        Ok(Provider {
            name: name.to_owned(),
            spec: spec.clone(),
            client_id: client_id.clone(),
            client_secret: secret,
            http,
            kind,
            extra_issuers: extra,
            display_name,
            bearer_cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        })
    }

    /// True when this provider was built from `spec` and `secret` (so it can be reused, with
    /// its discovered metadata, by the next snapshot).
    pub fn same_as(&self, spec: &ProviderSpec, secret: &str) -> bool {
        &self.spec == spec && self.client_secret == secret
    }

    /// True for OIDC providers (which issue JWTs usable as bearer tokens).
    pub fn is_oidc(&self) -> bool {
        matches!(self.kind, Kind::Oidc(_))
    }

    /// The attributes of this provider's spans.
    fn span_attributes(&self) -> Vec<opentelemetry::KeyValue> {
        vec![opentelemetry::KeyValue::new("authgate.provider", self.name.clone())]
    }

    /// Fetches OIDC metadata now, so the first login does not wait for it.
    pub async fn warm_up(&self) {
        if let Kind::Oidc(o) = &self.kind {
            if let Err(e) = self.discover(o, false).await {
                tracing::warn!(provider = %self.name, error = %e, "provider discovery failed; will retry on first use");
            }
        }
    }

    async fn discover(&self, o: &Oidc, refresh_keys: bool) -> Result<Arc<Discovered>, ProviderError> {
        if let (Some(d), false) = (o.discovered.load_full(), refresh_keys) {
            return Ok(d);
        }
        let mut last_keys_refresh = o.discovering.lock().await;
        let current = o.discovered.load_full();
        let metadata = match (&current, refresh_keys) {
            (Some(d), false) => return Ok(d.clone()),
            (Some(d), true) if last_keys_refresh.is_some_and(|t| t.elapsed() < JWKS_REFRESH_INTERVAL) => {
                return Ok(d.clone())
            }
            (Some(d), true) => {
                let _span = crate::telemetry::child_with("provider.jwks", || self.span_attributes());
                *last_keys_refresh = Some(std::time::Instant::now());
                let jwks = JsonWebKeySet::fetch_async(d.metadata.jwks_uri(), &self.http)
                    .await
                    .map_err(unavailable)?;
                d.metadata.clone().set_jwks(jwks)
            }
            (None, _) => {
                let _span = crate::telemetry::child_with("provider.discovery", || self.span_attributes());
                let issuer = IssuerUrl::new(o.issuer.clone()).map_err(unavailable)?;
                ProviderMetadataWithLogout::discover_async(issuer, &self.http)
                    .await
                    .map_err(unavailable)?
            }
        };
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(o.audience.clone().unwrap_or_else(|| self.client_id.clone())),
            Some(ClientSecret::new(self.client_secret.clone())),
        );
        let d = Arc::new(Discovered { metadata, client });
        o.discovered.store(Some(d.clone()));
        tracing::info!(provider = %self.name, refresh_keys, "provider metadata loaded");
        Ok(d)
    }

    /// The URL that starts a login at the provider.
    pub async fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        challenge: PkceCodeChallenge,
    ) -> Result<String, ProviderError> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(unavailable)?;
        match &self.kind {
            Kind::Oidc(o) => {
                let d = self.discover(o, false).await?;
                let (state, nonce) = (state.to_owned(), nonce.to_owned());
                let mut req = d
                    .client
                    .authorize_url(
                        CoreAuthenticationFlow::AuthorizationCode,
                        move || CsrfToken::new(state),
                        move || Nonce::new(nonce),
                    )
                    .set_pkce_challenge(challenge)
                    .set_redirect_uri(Cow::Owned(redirect));
                for s in o.scopes.iter().filter(|s| s.as_str() != "openid") {
                    req = req.add_scope(Scope::new(s.clone()));
                }
                Ok(req.url().0.to_string())
            }
            Kind::Github(g) => self.github_authorize_url(g, redirect.as_str(), state, &challenge),
        }
    }

    /// Exchanges an authorization code for tokens and the user's identity.
    pub async fn sign_in(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<SignIn, ProviderError> {
        let _span = crate::telemetry::child_with("provider.token_exchange", || self.span_attributes());
        let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(unavailable)?;
        match &self.kind {
            Kind::Oidc(o) => {
                let d = self.discover(o, false).await?;
                let response = d
                    .client
                    .exchange_code(AuthorizationCode::new(code.to_owned()))
                    .map_err(unavailable)?
                    .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
                    .set_redirect_uri(Cow::Owned(redirect))
                    .request_async(&self.http)
                    .await
                    .map_err(token_error)?;
                let id_token = response
                    .extra_fields()
                    .id_token()
                    .ok_or_else(|| ProviderError::Refused("the token response has no ID token".into()))?
                    .clone();
                let nonce = Nonce::new(nonce.to_owned());
                let (identity, _) = self.verify_id_token(o, &id_token, Some(&nonce)).await?;
                Ok(oidc_sign_in(identity, &response, Some(id_token.to_string().into())))
            }
            Kind::Github(g) => self.github_sign_in(g, code, redirect.as_str(), verifier).await,
        }
    }

    /// Verifies an ID token (signature, issuer, audience, expiry, and `nonce` when given),
    /// refetching the JWKS once when the signing key is unknown.
    async fn verify_id_token(
        &self,
        o: &Oidc,
        token: &CoreIdToken,
        nonce: Option<&Nonce>,
    ) -> Result<(Identity, u64), ProviderError> {
        let check = |d: &Discovered| {
            // Pinned: never the algorithms the provider advertises (which may include HS256,
            // verified with the client secret every relying party knows).
            let verifier = d
                .client
                .id_token_verifier()
                .set_allowed_algs(o.allowed_algorithms.iter().cloned());
            let result = match nonce {
                Some(n) => token
                    .claims(&verifier, n)
                    .map(|c| verified(c, &token.to_string(), &o.groups_claim)),
                None => token
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map(|c| verified(c, &token.to_string(), &o.groups_claim)),
            };
            result.map_err(|e| match e {
                e @ ClaimsVerificationError::SignatureVerification(_) => {
                    KeyCheck::UnknownKey(format!("ID token rejected: {e}"))
                }
                e => KeyCheck::Refused(format!("ID token rejected: {e}")),
            })
        };
        self.with_current_keys(o, check).await
    }

    /// Runs `check` against the provider's metadata and keys; when it reports a key the JWKS
    /// does not list (the provider may have rotated), fetches the JWKS again (at most every
    /// [`JWKS_REFRESH_INTERVAL`]) and runs it once more.
    async fn with_current_keys<T>(
        &self,
        o: &Oidc,
        check: impl Fn(&Discovered) -> Result<T, KeyCheck>,
    ) -> Result<T, ProviderError> {
        let d = self.discover(o, false).await?;
        match check(&d) {
            Err(KeyCheck::UnknownKey(_)) => {}
            other => return other.map_err(KeyCheck::refusal),
        }
        let d = self.discover(o, true).await?;
        check(&d).map_err(KeyCheck::refusal)
    }

    /// Verifies a bearer JWT sent by an API client: an ID token of this provider issued to
    /// this gateway's client id, or of an `extra_jwt_issuers` issuer for its audience.
    pub async fn verify_bearer(&self, jwt: &str) -> Result<Arc<Identity>, ProviderError> {
        let Kind::Oidc(o) = &self.kind else {
            return Err(ProviderError::Refused(
                "bearer tokens are only accepted from OIDC providers".into(),
            ));
        };
        let key = openssl::sha::sha256(jwt.as_bytes());
        if let Some((identity, exp)) = self.bearer_cache.get(&key) {
            if exp > now() {
                return Ok(identity);
            }
            self.bearer_cache.invalidate(&key);
        }
        let token: CoreIdToken = jwt
            .parse()
            .map_err(|e| ProviderError::Refused(format!("not a JWT: {e}")))?;
        let (identity, exp) = self.verify_any_issuer(o, jwt, &token).await?;
        let identity = Arc::new(identity);
        self.bearer_cache.insert(key, (identity.clone(), exp));
        Ok(identity)
    }

    /// Verifies a bearer ID token with the verifiers whose issuer its (unverified) `iss`
    /// names: the provider's own and those of `extra_jwt_issuers` (several may share an
    /// issuer with different audiences). Each verifier checks the issuer again.
    async fn verify_any_issuer(
        &self,
        own: &Oidc,
        jwt: &str,
        token: &CoreIdToken,
    ) -> Result<(Identity, u64), ProviderError> {
        let issuer = super::extra_issuers::unverified_issuer(jwt);
        let named = |x: &&Oidc| {
            issuer
                .as_deref()
                .is_some_and(|i| super::extra_issuers::same_issuer(i, &x.issuer))
        };
        let mut candidates: Vec<&Oidc> = std::iter::once(own).chain(&self.extra_issuers).filter(named).collect();
        if candidates.is_empty() {
            candidates.push(own);
        }
        let mut refused = None;
        for verifier in candidates {
            match self.verify_id_token(verifier, token, None).await {
                Ok(found) => return Ok(found),
                Err(e @ ProviderError::Unavailable(_)) => return Err(e),
                Err(e) => refused = Some(e),
            }
        }
        Err(refused.unwrap_or_else(|| ProviderError::Refused("no verifier for this issuer".into())))
    }

    /// Verifies a back-channel logout token ([`logout_token::verify`]; OIDC providers only),
    /// refetching the JWKS once when the signing key is unknown.
    pub(crate) async fn verify_logout_token(&self, jwt: &str) -> Result<LogoutClaims, ProviderError> {
        let Kind::Oidc(o) = &self.kind else {
            return Err(ProviderError::Refused(
                "back-channel logout needs an OIDC provider".into(),
            ));
        };
        let expected = logout_token::Expected {
            issuer: &o.issuer,
            audience: &self.client_id,
            algorithms: &o.allowed_algorithms,
        };
        let check = |d: &Discovered| {
            logout_token::verify(jwt, d.metadata.jwks(), &expected, now()).map_err(|e| match e {
                e @ LogoutTokenError::UnknownKey => KeyCheck::UnknownKey(format!("logout token rejected: {e}")),
                e => KeyCheck::Refused(format!("logout token rejected: {e}")),
            })
        };
        self.with_current_keys(o, check).await
    }

    /// The issuer of an OIDC provider with `frontchannel_logout` on: front-channel logout
    /// requests must name it. `None`: the endpoint is off for this provider.
    pub fn frontchannel_issuer(&self) -> Option<&str> {
        match (&self.kind, &self.spec) {
            (Kind::Oidc(o), ProviderSpec::Oidc(s) | ProviderSpec::Google(s) | ProviderSpec::Entra(s))
                if s.frontchannel_logout =>
            {
                Some(&o.issuer)
            }
            _ => None,
        }
    }

    /// Refreshes a session's tokens (OIDC) or re-reads the user (GitHub).
    pub async fn refresh(&self, session: &Session) -> Result<SignIn, ProviderError> {
        let _span = crate::telemetry::child_with("provider.refresh", || self.span_attributes());
        match &self.kind {
            Kind::Oidc(o) => {
                let Some(refresh_token) = &session.refresh_token else {
                    return Err(ProviderError::Refused("no refresh token".into()));
                };
                let d = self.discover(o, false).await?;
                let response = d
                    .client
                    .exchange_refresh_token(&RefreshToken::new(refresh_token.to_string()))
                    .map_err(unavailable)?
                    .request_async(&self.http)
                    .await
                    .map_err(token_error)?;
                let (identity, id_token) = match response.extra_fields().id_token() {
                    Some(t) => (self.verify_id_token(o, t, None).await?.0, Some(t.to_string().into())),
                    None => (session.identity.clone(), session.id_token.clone()),
                };
                let mut out = oidc_sign_in(identity, &response, id_token);
                if out.refresh_token.is_none() {
                    out.refresh_token = session.refresh_token.clone();
                }
                Ok(out)
            }
            Kind::Github(g) => {
                let token = session
                    .access_token
                    .as_deref()
                    .ok_or_else(|| ProviderError::Refused("no access token".into()))?;
                let identity = self.github_identity(g, token).await?;
                Ok(SignIn {
                    identity,
                    access_token: session.access_token.clone(),
                    access_expires_at: None,
                    refresh_token: None,
                    id_token: None,
                    sid: None,
                })
            }
        }
    }

    /// Where to send the browser to end the session at the provider too, when configured.
    pub async fn end_session_url(&self, id_token_hint: Option<&str>, post_logout: &str) -> Option<String> {
        let Kind::Oidc(o) = &self.kind else { return None };
        if !o.end_session {
            return None;
        }
        let d = self.discover(o, false).await.ok()?;
        let endpoint = d.metadata.additional_metadata().end_session_endpoint.clone()?;
        let mut req = LogoutRequest::from(endpoint);
        if let Ok(uri) = url::Url::parse(post_logout) {
            req = req.set_post_logout_redirect_uri(PostLogoutRedirectUrl::from_url(uri));
        }
        let mut url = req.http_get_url();
        // The hint is passed as a raw string: the token was verified when the session began.
        if let Some(hint) = id_token_hint {
            url.query_pairs_mut().append_pair("id_token_hint", hint);
        }
        url.query_pairs_mut().append_pair("client_id", &self.client_id);
        Some(url.to_string())
    }
}

fn token_error<E: std::error::Error>(e: E) -> ProviderError {
    // A token endpoint that answers with an OAuth2 error refused the grant, except the two
    // errors RFC 6749 §5.2/§4.1.2.1 defines for a provider in trouble; anything else
    // (connection, parse) is the provider being unavailable.
    let text = e.to_string();
    let in_trouble = text.contains("temporarily_unavailable") || text.contains("server_error");
    if !in_trouble && (text.contains("invalid_grant") || text.contains("Server returned error response")) {
        ProviderError::Refused(text)
    } else {
        ProviderError::Unavailable(text)
    }
}

fn oidc_sign_in(identity: Identity, response: &CoreTokenResponse, id_token: Option<Box<str>>) -> SignIn {
    let sid = id_token
        .as_deref()
        .and_then(|t| jwt_string_list(t, "sid").last().cloned());
    SignIn {
        sid,
        identity,
        access_token: Some(response.access_token().secret().as_str().into()),
        access_expires_at: response.expires_in().map(|d| now() + d.as_secs()),
        refresh_token: response.refresh_token().map(|t| t.secret().as_str().into()),
        id_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Text(&'static str);
    impl std::fmt::Display for Text {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Text {}

    #[test]
    fn a_provider_in_trouble_is_unavailable_not_a_refusal() {
        let e = token_error(Text("Server returned error response: temporarily_unavailable"));
        assert!(matches!(e, ProviderError::Unavailable(_)), "{e:?}");
        let e = token_error(Text("Server returned error response: server_error"));
        assert!(matches!(e, ProviderError::Unavailable(_)), "{e:?}");
        let e = token_error(Text("Server returned error response: invalid_grant"));
        assert!(matches!(e, ProviderError::Refused(_)), "{e:?}");
    }
}
