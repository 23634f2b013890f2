//! Small provider helpers: `extra_jwt_issuers` entries (`issuer=audience`, as oauth2-proxy
//! writes them), picking a bearer token's verifier by its issuer, and the display name.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Parses `issuer=audience`; the issuer must be an `https://` URL.
pub fn parse(entry: &str) -> Result<(String, String), String> {
    let Some((issuer, audience)) = entry.split_once('=') else {
        return Err(format!(
            "{entry:?} is not issuer=audience, e.g. https://login.example.com=my-api"
        ));
    };
    let (issuer, audience) = (issuer.trim(), audience.trim());
    let https = url::Url::parse(issuer).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some());
    if !https {
        return Err(format!("issuer {issuer:?} must be an https:// URL"));
    }
    if audience.is_empty() {
        return Err(format!("{entry:?} names no audience after '='"));
    }
    Ok((issuer.to_owned(), audience.to_owned()))
}

/// The `iss` claim of a JWT, read without verifying anything (only to choose a verifier).
pub fn unverified_issuer(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// Issuers compare exactly, except for one trailing slash.
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The name the sign-in page shows: `configured` (not blank, at most 64 characters), else the
/// provider's key with `_`/`-` as spaces and the first letter upper-cased (`corp-sso` → `Corp sso`).
pub fn display_name(key: &str, configured: Option<&str>) -> Result<String, String> {
    if let Some(name) = configured {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err("give 1 to 64 printable characters, e.g. \"Corporate SSO\"".to_owned());
        }
        return Ok(name.to_owned());
    }
    let spaced = key.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    Ok(match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => spaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_issuers() {
        assert_eq!(
            parse("https://idp.example.com/=api").unwrap(),
            ("https://idp.example.com/".to_owned(), "api".to_owned())
        );
        for bad in [
            "https://idp.example.com",
            "http://idp.example.com=a",
            "https://idp.example.com=",
            "=a",
            "idp=a",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://x.example.com","aud":"a"}"#);
        assert_eq!(
            unverified_issuer(&format!("h.{payload}.s")).as_deref(),
            Some("https://x.example.com")
        );
        assert_eq!(unverified_issuer("garbage"), None);
        assert!(same_issuer("https://a/", "https://a") && !same_issuer("https://a", "https://b"));
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("corp", None).unwrap(), "Corp");
        assert_eq!(display_name("corp-sso_eu", None).unwrap(), "Corp sso eu");
        assert_eq!(display_name("corp", Some(" Corporate SSO ")).unwrap(), "Corporate SSO");
        assert!(display_name("corp", Some(" ")).is_err());
        assert!(display_name("corp", Some("a\nb")).is_err());
    }
}
