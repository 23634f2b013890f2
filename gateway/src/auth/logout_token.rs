//! OpenID Connect Back-Channel Logout 1.0 logout tokens: the JWT a provider POSTs to
//! `/oauth2/backchannel_logout`, verified as §2.6 of the specification asks.
//!
//! `openidconnect` has no logout-token type, so the checks are here, on the keys the provider's
//! JWKS lists ([`verify`]): a signature by one of them with one of the provider's allowed
//! (asymmetric) algorithms, the issuer, this gateway's client id among the audiences, a recent
//! `iat`, an `exp` not past, the back-channel logout event, no `nonce`, a `jti`, and a `sub`
//! or a `sid`. Single use of the `jti` is the store's job (across replicas).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{CoreJsonWebKeySet, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey;
use serde::Deserialize;

/// The event a logout token must carry (§2.4).
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Logout tokens issued longer ago than this are refused (their `jti` is remembered longer:
/// [`crate::session::ONE_TIME_TOKEN_MEMORY`]).
pub const MAX_AGE_SECS: u64 = 300;

/// Clock skew tolerated between the provider and the gateway.
const SKEW_SECS: u64 = 60;

/// Whose sessions a verified logout token ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    /// The user at the provider, when named.
    pub sub: Option<String>,
    /// The provider session, when named.
    pub sid: Option<String>,
    /// The token's unique id (single use).
    pub jti: String,
}

/// Why a logout token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    /// No key of the JWKS has the token's `kid` (the provider may have rotated: refetch once).
    #[error("signed with a key the provider does not list")]
    UnknownKey,
    /// Anything else: malformed, wrong signature, wrong claims.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> LogoutTokenError {
    LogoutTokenError::Invalid(message.into())
}

/// What a logout token must name.
pub struct Expected<'a> {
    /// The provider's issuer.
    pub issuer: &'a str,
    /// This gateway's client id.
    pub audience: &'a str,
    /// The algorithms the provider may sign with.
    pub algorithms: &'a [CoreJwsSigningAlgorithm],
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    iat: Option<u64>,
    exp: Option<u64>,
    jti: Option<String>,
    sub: Option<String>,
    sid: Option<String>,
    events: Option<serde_json::Map<String, serde_json::Value>>,
    nonce: Option<serde_json::Value>,
}

fn decode<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, LogoutTokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| invalid(format!("the {what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("the {what} is not valid JSON: {e}")))
}

/// Verifies `jwt` against the provider's `keys` and `expected`, at Unix time `now`.
pub fn verify(
    jwt: &str,
    keys: &CoreJsonWebKeySet,
    expected: &Expected<'_>,
    now: u64,
) -> Result<LogoutClaims, LogoutTokenError> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts[..] else {
        return Err(invalid(if parts.len() == 5 {
            "encrypted logout tokens are not supported"
        } else {
            "not a signed JWT"
        }));
    };
    let header: Header = decode(header_b64, "header")?;
    check_header(&header)?;
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(serde_json::Value::String(header.alg.clone()))
        .map_err(|_| invalid(format!("unknown algorithm {:?}", header.alg)))?;
    if !expected.algorithms.contains(&alg) {
        return Err(invalid(format!("algorithm {} is not allowed", header.alg)));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| invalid("the signature is not base64url"))?;
    let message = &jwt[..header_b64.len() + 1 + payload_b64.len()];
    check_signature(keys, header.kid.as_deref(), &alg, message.as_bytes(), &signature)?;
    let claims: Claims = decode(payload_b64, "payload")?;
    check_claims(claims, expected, now)
}

fn check_header(header: &Header) -> Result<(), LogoutTokenError> {
    if header.crit.is_some() {
        return Err(invalid("critical header extensions are not supported"));
    }
    // §2.4: `logout+jwt` when typed; an untyped token is still accepted (older providers).
    match header.typ.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("logout+jwt") | Some("application/logout+jwt") | Some("jwt") => Ok(()),
        Some(other) => Err(invalid(format!("type {other:?} is not a logout token"))),
    }
}

/// A signature by a key of `keys` (the one named `kid`, or any signing key when unnamed).
fn check_signature(
    keys: &CoreJsonWebKeySet,
    kid: Option<&str>,
    alg: &CoreJwsSigningAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), LogoutTokenError> {
    let candidates: Vec<_> = keys
        .keys()
        .iter()
        .filter(|k| kid.is_none() || k.key_id().map(|id| id.as_str()) == kid)
        .filter(|k| matches!(k.key_use(), None | Some(CoreJsonWebKeyUse::Signature)))
        .collect();
    if candidates.is_empty() {
        return Err(LogoutTokenError::UnknownKey);
    }
    if candidates
        .iter()
        .any(|k| k.verify_signature(alg, message, signature).is_ok())
    {
        Ok(())
    } else {
        Err(invalid("the signature does not verify"))
    }
}

fn check_claims(claims: Claims, expected: &Expected<'_>, now: u64) -> Result<LogoutClaims, LogoutTokenError> {
    let issuer_matches = claims
        .iss
        .as_deref()
        .is_some_and(|iss| super::extra_issuers::same_issuer(iss, expected.issuer));
    if !issuer_matches {
        return Err(invalid("wrong or missing issuer"));
    }
    let audience_matches = match &claims.aud {
        Some(Audience::One(a)) => a == expected.audience,
        Some(Audience::Many(list)) => list.iter().any(|a| a == expected.audience),
        None => false,
    };
    if !audience_matches {
        return Err(invalid("not issued to this gateway (audience)"));
    }
    let iat = claims.iat.ok_or_else(|| invalid("no iat"))?;
    if iat > now + SKEW_SECS || iat + MAX_AGE_SECS < now {
        return Err(invalid("issued too long ago or in the future (iat)"));
    }
    if claims.exp.is_some_and(|exp| exp + SKEW_SECS < now) {
        return Err(invalid("expired"));
    }
    let is_logout = claims
        .events
        .as_ref()
        .and_then(|e| e.get(LOGOUT_EVENT))
        .is_some_and(serde_json::Value::is_object);
    if !is_logout {
        return Err(invalid("no back-channel logout event"));
    }
    if claims.nonce.is_some() {
        return Err(invalid("a logout token must not carry a nonce (is this an ID token?)"));
    }
    let jti = claims.jti.filter(|j| !j.is_empty()).ok_or_else(|| invalid("no jti"))?;
    let (sub, sid) = (
        claims.sub.filter(|s| !s.is_empty()),
        claims.sid.filter(|s| !s.is_empty()),
    );
    if sub.is_none() && sid.is_none() {
        return Err(invalid("names neither sub nor sid"));
    }
    Ok(LogoutClaims { sub, sid, jti })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity_jwt::{public_jwk, sign_es256};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};

    const ISSUER: &str = "https://idp.example.com";

    fn key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    fn jwks(keys: &[&PKey<Private>]) -> CoreJsonWebKeySet {
        let list: Vec<_> = keys.iter().map(|k| public_jwk(k).unwrap()).collect();
        serde_json::from_value(serde_json::json!({ "keys": list })).unwrap()
    }

    fn kid(key: &PKey<Private>) -> String {
        public_jwk(key).unwrap()["kid"].as_str().unwrap().to_owned()
    }

    fn claims(now: u64) -> serde_json::Value {
        serde_json::json!({
            "iss": ISSUER, "aud": "gateway", "iat": now, "exp": now + 120, "jti": "j1",
            "sub": "alice", "sid": "s1",
            "events": { LOGOUT_EVENT: {} },
        })
    }

    fn token(key: &PKey<Private>, header: serde_json::Value, claims: &serde_json::Value) -> String {
        sign_es256(key, &header, claims).unwrap()
    }

    fn check(jwt: &str, keys: &CoreJsonWebKeySet, now: u64) -> Result<LogoutClaims, LogoutTokenError> {
        let algs = [
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ];
        let expected = Expected {
            issuer: ISSUER,
            audience: "gateway",
            algorithms: &algs,
        };
        verify(jwt, keys, &expected, now)
    }

    #[test]
    fn a_valid_token_names_its_session_and_user() {
        let (k, now) = (key(), 1_800_000_000);
        let header = serde_json::json!({ "alg": "ES256", "typ": "logout+jwt", "kid": kid(&k) });
        let got = check(&token(&k, header, &claims(now)), &jwks(&[&k]), now).unwrap();
        assert_eq!(
            got,
            LogoutClaims {
                sub: Some("alice".into()),
                sid: Some("s1".into()),
                jti: "j1".into()
            }
        );
        // A list of audiences naming the gateway, no kid (any listed key), no typ: accepted.
        let mut c = claims(now);
        c["aud"] = serde_json::json!(["other", "gateway"]);
        let jwt = token(&k, serde_json::json!({ "alg": "ES256" }), &c);
        assert!(check(&jwt, &jwks(&[&key(), &k]), now).is_ok());
    }

    #[test]
    fn a_token_signed_by_another_implementation_verifies() {
        // The fuzz seed signed by Python's `cryptography` (fuzz/seeds.py), and its public key.
        let jwt = include_str!("../../../fuzz/corpus/logout_token/valid");
        let keys: CoreJsonWebKeySet = serde_json::from_value(serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "kid": "fuzz", "use": "sig", "alg": "ES256",
            "x": "Z2dtIaj2a6E8GXO6kI4jQDNNVP0l6QAeR6XdpxXo-Qw", "y": "6aBru9lsjJe-WctKLqvjpTOrpseYR4Iea1HSt1pkbn4",
        }]}))
        .unwrap();
        assert_eq!(check(jwt, &keys, 1_800_000_000).unwrap().sid.as_deref(), Some("s1"));
        let refused = include_str!("../../../fuzz/corpus/logout_token/id-token-with-nonce");
        assert!(check(refused, &keys, 1_800_000_000).is_err());
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let (k, other, now) = (key(), key(), 1_800_000_000);
        let header = serde_json::json!({ "alg": "ES256", "kid": kid(&k) });
        // Signed by a key the provider does not list under that kid.
        let forged = token(&other, header.clone(), &claims(now));
        assert_eq!(
            check(&forged, &jwks(&[&k]), now),
            Err(invalid("the signature does not verify"))
        );
        let unknown = token(
            &other,
            serde_json::json!({ "alg": "ES256", "kid": kid(&other) }),
            &claims(now),
        );
        assert_eq!(check(&unknown, &jwks(&[&k]), now), Err(LogoutTokenError::UnknownKey));
        // A payload swapped under a valid signature.
        let good = token(&k, header.clone(), &claims(now));
        let mut c = claims(now);
        c["sub"] = "bob".into();
        let swapped = token(&k, header.clone(), &c);
        let parts: Vec<&str> = good.split('.').collect();
        let other_payload = swapped.split('.').nth(1).unwrap();
        let spliced = format!("{}.{}.{}", parts[0], other_payload, parts[2]);
        assert!(check(&spliced, &jwks(&[&k]), now).is_err());
        // `alg: none` and symmetric algorithms are never accepted.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims(now).to_string())
        );
        assert!(check(&none, &jwks(&[&k]), now).is_err());
        let hs = format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(claims(now).to_string())
        );
        assert_eq!(
            check(&hs, &jwks(&[&k]), now),
            Err(invalid("algorithm HS256 is not allowed"))
        );
        for bad in ["", "a.b", "a.b.c.d.e", "...", "!!.!!.!!"] {
            assert!(check(bad, &jwks(&[&k]), now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_claim_is_checked() {
        let (k, now) = (key(), 1_800_000_000u64);
        let keys = jwks(&[&k]);
        let header = serde_json::json!({ "alg": "ES256", "kid": kid(&k) });
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims(now);
            edit(&mut c);
            check(&token(&k, header.clone(), &c), &keys, now)
        };
        type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
        let cases: [(&str, Edit); 12] = [
            ("issuer", &|c| c["iss"] = "https://evil.example.com".into()),
            ("no issuer", &|c| drop(c.as_object_mut().unwrap().remove("iss"))),
            ("audience", &|c| c["aud"] = "another-client".into()),
            ("no iat", &|c| drop(c.as_object_mut().unwrap().remove("iat"))),
            ("old", &|c| c["iat"] = (now - MAX_AGE_SECS - 1).into()),
            ("future", &|c| c["iat"] = (now + SKEW_SECS + 5).into()),
            ("expired", &|c| c["exp"] = (now - SKEW_SECS - 1).into()),
            ("no event", &|c| c["events"] = serde_json::json!({})),
            ("event not an object", &|c| {
                c["events"] = serde_json::json!({ LOGOUT_EVENT: "x" })
            }),
            ("nonce", &|c| c["nonce"] = "n".into()),
            ("no jti", &|c| drop(c.as_object_mut().unwrap().remove("jti"))),
            ("neither sub nor sid", &|c| {
                let o = c.as_object_mut().unwrap();
                o.remove("sub");
                o.remove("sid");
            }),
        ];
        for (name, edit) in cases {
            assert!(matches!(with(edit), Err(LogoutTokenError::Invalid(_))), "{name}");
        }
        // sid alone, sub alone: accepted.
        assert!(with(&|c| drop(c.as_object_mut().unwrap().remove("sub"))).is_ok());
        assert!(with(&|c| drop(c.as_object_mut().unwrap().remove("sid"))).is_ok());
        // An ID token (typ JWT is fine, but it has no event) and a wrongly typed token.
        let typed = token(&k, serde_json::json!({ "alg": "ES256", "typ": "at+jwt" }), &claims(now));
        assert!(check(&typed, &keys, now).is_err());
        let crit = token(&k, serde_json::json!({ "alg": "ES256", "crit": ["exp"] }), &claims(now));
        assert!(check(&crit, &keys, now).is_err());
    }
}
