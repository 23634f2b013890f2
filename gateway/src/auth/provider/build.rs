//! Building a provider's OIDC verifiers from its configuration, with errors naming the field.

use arc_swap::ArcSwapOption;
use openidconnect::core::CoreJwsSigningAlgorithm;

use super::Oidc;
use crate::config::schema::OidcSpec;

/// The verifier of an OIDC provider's own ID tokens, from its spec.
pub(super) fn oidc(o: &OidcSpec, default_issuer: Option<&str>) -> Result<Oidc, (String, String)> {
    let issuer = o
        .issuer_url
        .clone()
        .or_else(|| default_issuer.map(str::to_owned))
        .ok_or_else(|| {
            (
                "issuer_url".to_owned(),
                "is required, e.g. https://idp.example.com".to_owned(),
            )
        })?;
    let parsed =
        url::Url::parse(&issuer).map_err(|e| ("issuer_url".to_owned(), format!("{issuer:?} is not a URL: {e}")))?;
    if parsed.scheme() != "https" {
        return Err(("issuer_url".to_owned(), format!("{issuer:?} must be an https:// URL")));
    }
    if !o.scopes.iter().any(|s| s == "openid") {
        return Err(("scopes".to_owned(), "must include \"openid\"".to_owned()));
    }
    Ok(Oidc {
        allowed_algorithms: allowed_algorithms(&o.allowed_algorithms)?,
        issuer,
        scopes: o.scopes.clone(),
        end_session: o.end_session,
        groups_claim: o.groups_claim.clone(),
        discovered: ArcSwapOption::empty(),
        discovering: tokio::sync::Mutex::new(None),
        audience: None,
    })
}

/// The verifiers of `extra_jwt_issuers` (`issuer=audience`), sharing the provider's algorithms
/// and groups claim.
pub(super) fn extra_issuers(o: &OidcSpec) -> Result<Vec<Oidc>, (String, String)> {
    let mut out = Vec::new();
    for (i, entry) in o.extra_jwt_issuers.iter().enumerate() {
        let (issuer, audience) =
            crate::auth::extra_issuers::parse(entry).map_err(|m| (format!("extra_jwt_issuers[{i}]"), m))?;
        out.push(Oidc {
            issuer,
            audience: Some(audience),
            allowed_algorithms: allowed_algorithms(&o.allowed_algorithms)?,
            scopes: Vec::new(),
            end_session: false,
            groups_claim: o.groups_claim.clone(),
            discovered: ArcSwapOption::empty(),
            discovering: tokio::sync::Mutex::new(None),
        });
    }
    Ok(out)
}

/// The configured `allowed_algorithms`: asymmetric JWS algorithms only, at least one.
fn allowed_algorithms(names: &[String]) -> Result<Vec<CoreJwsSigningAlgorithm>, (String, String)> {
    use crate::config::schema::ASYMMETRIC_ALGORITHMS;
    let field = || "allowed_algorithms".to_owned();
    if names.is_empty() {
        return Err((field(), "give at least one algorithm, e.g. [RS256]".to_owned()));
    }
    names
        .iter()
        .map(|n| {
            if !ASYMMETRIC_ALGORITHMS.contains(&n.as_str()) {
                return Err((
                    field(),
                    format!("{n:?} is not allowed: use asymmetric algorithms only ({ASYMMETRIC_ALGORITHMS:?})"),
                ));
            }
            serde_json::from_value(serde_json::Value::String(n.clone())).map_err(|e| (field(), format!("{n:?}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_algorithms_can_be_allowed() {
        assert_eq!(
            allowed_algorithms(&["RS256".into(), "EdDSA".into()]).unwrap(),
            vec![
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::EdDsa
            ]
        );
        for bad in ["HS256", "none", "rs256"] {
            let (field, message) = allowed_algorithms(&[bad.into()]).unwrap_err();
            assert_eq!(field, "allowed_algorithms");
            assert!(message.contains(bad), "{message}");
        }
        assert!(allowed_algorithms(&[]).is_err());
    }
}
