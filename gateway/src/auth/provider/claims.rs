//! Reading an identity from ID-token claims (verified, or for `authgate explain` not).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::CoreIdTokenClaims;

use super::{Kind, Provider};
use crate::auth::policy::{exact_list, Identity};

/// The identity and expiry (Unix seconds) of verified claims.
pub(super) fn verified(claims: &CoreIdTokenClaims, raw_jwt: &str, groups_claim: &str) -> (Identity, u64) {
    let exp = u64::try_from(claims.expiration().timestamp()).unwrap_or(0);
    (identity_from_claims(claims, raw_jwt, groups_claim), exp)
}

/// Reads the identity from verified claims; groups come from the (verified) JWT payload.
fn identity_from_claims(claims: &CoreIdTokenClaims, raw_jwt: &str, groups_claim: &str) -> Identity {
    Identity {
        subject: claims.subject().as_str().into(),
        email: claims.email().map(|e| e.as_str().into()),
        email_verified: claims.email_verified().unwrap_or(false),
        preferred_username: claims.preferred_username().map(|u| u.as_str().into()),
        groups: jwt_string_list(raw_jwt, groups_claim),
        github_orgs: Box::default(),
        github_teams: Box::default(),
    }
}

/// The identity a JWT's claims describe, read **without** verifying it (for `authgate explain`,
/// which works offline; the gateway itself only reads verified tokens).
pub fn unverified_identity(jwt: &str, provider: &Provider) -> Identity {
    let payload = jwt.split('.').nth(1).and_then(|p| URL_SAFE_NO_PAD.decode(p).ok());
    let claims: serde_json::Value = payload
        .and_then(|p| serde_json::from_slice(&p).ok())
        .unwrap_or_default();
    let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(Box::<str>::from);
    let groups_claim = match &provider.kind {
        Kind::Oidc(o) => o.groups_claim.as_str(),
        Kind::Github(_) => "groups",
    };
    Identity {
        subject: text("sub").unwrap_or_default(),
        email: text("email"),
        email_verified: claims.get("email_verified").and_then(|v| v.as_bool()).unwrap_or(false),
        preferred_username: text("preferred_username"),
        groups: jwt_string_list(jwt, groups_claim),
        github_orgs: Box::default(),
        github_teams: Box::default(),
    }
}

/// A claim holding a string or a list of strings, from a JWT whose signature was verified.
pub(super) fn jwt_string_list(jwt: &str, claim: &str) -> Box<[Box<str>]> {
    let payload = jwt.split('.').nth(1).and_then(|p| URL_SAFE_NO_PAD.decode(p).ok());
    let value: Option<serde_json::Value> = payload.and_then(|p| serde_json::from_slice(&p).ok());
    match value.as_ref().and_then(|v| v.get(claim)) {
        Some(serde_json::Value::Array(items)) => {
            exact_list(items.iter().filter_map(|i| i.as_str().map(Box::from)).collect())
        }
        Some(serde_json::Value::String(s)) => Box::new([s.as_str().into()]),
        _ => Box::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_groups_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"groups":["admins","dev"],"roles":"x"}"#);
        let jwt = format!("e30.{payload}.sig");
        assert_eq!(jwt_string_list(&jwt, "groups"), ["admins".into(), "dev".into()].into());
        assert_eq!(jwt_string_list(&jwt, "roles"), ["x".into()].into());
        assert!(jwt_string_list(&jwt, "missing").is_empty());
        assert!(jwt_string_list("garbage", "groups").is_empty());
    }
}
