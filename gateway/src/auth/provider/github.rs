//! GitHub as a provider: OAuth2 login (PKCE) and the REST API for the user, their verified
//! emails, organisations and teams (github.com or GitHub Enterprise).

use serde::Deserialize;

use openidconnect::PkceCodeChallenge;

use super::{unavailable, Provider, ProviderError, SignIn};
use crate::auth::policy::{exact_list, Identity};
use crate::config::schema::GithubSpec;

/// A GitHub provider's endpoints and scopes.
pub(super) struct Github {
    login_url: String,
    api_url: String,
    scopes: Vec<String>,
}

impl Provider {
    /// Where a GitHub login starts.
    pub(super) fn github_authorize_url(
        &self,
        g: &Github,
        redirect: &str,
        state: &str,
        challenge: &PkceCodeChallenge,
    ) -> Result<String, ProviderError> {
        let mut url = url::Url::parse(&format!("{}/login/oauth/authorize", g.login_url)).map_err(unavailable)?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair("scope", &g.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256");
        Ok(url.to_string())
    }

    pub(super) async fn github_sign_in(
        &self,
        g: &Github,
        code: &str,
        redirect: &str,
        verifier: &str,
    ) -> Result<SignIn, ProviderError> {
        #[derive(Deserialize)]
        struct TokenAnswer {
            access_token: Option<String>,
            error: Option<String>,
        }
        let answer: TokenAnswer = self
            .http
            .post(format!("{}/login/oauth/access_token", g.login_url))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
                ("code", code),
                ("redirect_uri", redirect),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        let token = match (answer.access_token, answer.error) {
            (Some(t), _) => t,
            (None, e) => {
                return Err(ProviderError::Refused(format!(
                    "GitHub refused the code: {}",
                    e.unwrap_or_default()
                )))
            }
        };
        let identity = self.github_identity(g, &token).await?;
        Ok(SignIn {
            identity,
            access_token: Some(token.into()),
            access_expires_at: None,
            refresh_token: None,
            id_token: None,
            sid: None,
        })
    }

    async fn github_get<T: serde::de::DeserializeOwned>(
        &self,
        g: &Github,
        token: &str,
        path: &str,
    ) -> Result<T, ProviderError> {
        let resp = self
            .http
            .get(format!("{}{path}", g.api_url))
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .send()
            .await
            .map_err(unavailable)?;
        match resp.status().as_u16() {
            200 => resp.json().await.map_err(unavailable),
            401 | 403 => Err(ProviderError::Refused(format!("GitHub refused the token on {path}"))),
            s => Err(ProviderError::Unavailable(format!("GitHub answered {s} on {path}"))),
        }
    }

    pub(super) async fn github_identity(&self, g: &Github, token: &str) -> Result<Identity, ProviderError> {
        #[derive(Deserialize)]
        struct User {
            login: String,
            id: u64,
        }
        #[derive(Deserialize)]
        struct EmailEntry {
            email: String,
            primary: bool,
            verified: bool,
        }
        #[derive(Deserialize)]
        struct Org {
            login: String,
        }
        #[derive(Deserialize)]
        struct Team {
            slug: String,
            organization: Org,
        }
        let user: User = self.github_get(g, token, "/user").await?;
        let emails: Vec<EmailEntry> = self.github_get(g, token, "/user/emails").await?;
        let orgs: Vec<Org> = self.github_get(g, token, "/user/orgs").await?;
        let teams: Vec<Team> = self.github_get(g, token, "/user/teams").await?;
        let email = emails
            .iter()
            .find(|e| e.primary && e.verified)
            .or_else(|| emails.iter().find(|e| e.verified));
        Ok(Identity {
            subject: user.id.to_string().into(),
            email: email.map(|e| e.email.as_str().into()),
            email_verified: email.is_some(),
            preferred_username: Some(user.login.into()),
            groups: Box::default(),
            github_orgs: exact_list(orgs.into_iter().map(|o| o.login.into()).collect()),
            github_teams: exact_list(
                teams
                    .into_iter()
                    .map(|t| format!("{}/{}", t.organization.login, t.slug).into())
                    .collect(),
            ),
        })
    }
}

/// Checks and normalises a GitHub provider's URLs.
pub(super) fn github(g: &GithubSpec) -> Result<Github, (String, String)> {
    for (field, value) in [("login_url", &g.login_url), ("api_url", &g.api_url)] {
        let ok = url::Url::parse(value).is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
        if !ok {
            return Err((field.to_owned(), format!("{value:?} is not an http(s) URL")));
        }
    }
    Ok(Github {
        login_url: g.login_url.trim_end_matches('/').to_owned(),
        api_url: g.api_url.trim_end_matches('/').to_owned(),
        scopes: g.scopes.clone(),
    })
}
