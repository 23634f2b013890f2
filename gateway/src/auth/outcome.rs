//! The outcome of an authentication decision and the rule behind it: the label of
//! `authgate_auth_decisions_total`, the `auth` field of the access log and the audit log's
//! `outcome` and `rule`.

use super::policy::DenyReason;

/// How an authentication decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A signed-in session passed the policy.
    Allowed,
    /// A bearer ID token passed the policy.
    Bearer,
    /// The route is in `skip_auth_routes`: no authentication.
    Skipped,
    /// No session: the browser was sent to the provider (or shown the sign-in page).
    Redirect,
    /// No (valid) credentials from an API client: 401.
    Unauthorized,
    /// Signed in, but the policy refused the user: 403.
    Forbidden,
    /// The session store could not be read: 503.
    StoreUnavailable,
    /// The identity provider could not be reached (login start, token check): 503.
    IdpUnavailable,
    /// The client is over its `bearer_failures` limit: 429.
    RateLimited,
}

impl Outcome {
    /// Every outcome, for metrics present at 0.
    pub const ALL: [Outcome; 9] = [
        Outcome::Allowed,
        Outcome::Bearer,
        Outcome::Skipped,
        Outcome::Redirect,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::StoreUnavailable,
        Outcome::IdpUnavailable,
        Outcome::RateLimited,
    ];

    /// Metric label and log value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Bearer => "bearer",
            Outcome::Skipped => "skipped",
            Outcome::Redirect => "redirect",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::StoreUnavailable => "store_unavailable",
            Outcome::IdpUnavailable => "idp_unavailable",
            Outcome::RateLimited => "rate_limited",
        }
    }

    /// Index into [`Outcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The rule that decided, for the audit log.
pub mod rule {
    use super::DenyReason;

    /// Every rule of the app's policy passed.
    pub const POLICY: &str = "policy";
    /// The route matched `skip_auth_routes`.
    pub const SKIP_AUTH_ROUTES: &str = "skip_auth_routes";
    /// No session cookie or an expired, unknown or signed-out session.
    pub const NO_SESSION: &str = "no_session";
    /// The bearer token did not verify.
    pub const INVALID_TOKEN: &str = "invalid_token";
    /// The session store failed.
    pub const STORE: &str = "session_store";
    /// The identity provider failed.
    pub const PROVIDER: &str = "provider";
    /// The client's address is over a `rate_limits` limit.
    pub const RATE_LIMITS: &str = "rate_limits";

    /// The policy rule a refusal comes from.
    pub fn denied(reason: DenyReason) -> &'static str {
        match reason {
            DenyReason::NoEmail => "email_missing",
            DenyReason::EmailNotVerified => "email_unverified",
            DenyReason::EmailNotAllowed => "email_domains_allowed_emails",
            DenyReason::NotInAllowedGroup => "allowed_groups",
            DenyReason::NotInAllowedGithubOrgOrTeam => "github_orgs_teams",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_match_all() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i, "{}", o.as_str());
        }
    }
}
