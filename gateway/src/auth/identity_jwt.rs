//! Signed identity for upstreams: a short ES256 JWT (`iss`, `aud`, `sub`, `email`, `groups`,
//! `iat`, `exp`, `jti`) sent in a header of the app's choosing, so an app can verify who the
//! gateway admitted instead of trusting the network between them. The keys come from one
//! environment variable holding PEM-encoded EC P-256 private keys: the first signs, all are
//! published as a JWK set (`kid` = RFC 7638 thumbprint) at [`JWKS_PATH`] on every app host and
//! on the admin listener.
//!
//! Signing costs tens of microseconds, so an assertion is cached per user and app and reused
//! until a quarter of its lifetime is left.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};

use super::policy::Identity;
use crate::config::schema::{AppIdentityJwt, IdentityJwtSection};
use crate::session::now;

/// Where the JWK set is served.
pub const JWKS_PATH: &str = "/.well-known/authgate/jwks.json";

/// The default header carrying the assertion.
pub const DEFAULT_HEADER: &str = "X-Authgate-Jwt-Assertion";

/// How many (user, app) assertions are kept signed.
const CACHE_ENTRIES: u64 = 100_000;

/// One app's assertion settings, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAssertion {
    /// The header the upstream reads (any client-sent copy is removed).
    pub header: http::HeaderName,
    /// The `aud` claim.
    pub audience: Arc<str>,
    /// Lifetime of an assertion.
    pub ttl: Duration,
}

impl AppAssertion {
    /// Compiles an app's `identity_jwt:` block; `app` is the default audience. Errors are
    /// `(field, message)`.
    pub fn build(spec: &AppIdentityJwt, app: &str) -> Result<AppAssertion, (String, String)> {
        let header = http::HeaderName::from_bytes(spec.header.as_bytes()).map_err(|_| {
            (
                "identity_jwt.header".to_owned(),
                format!("{:?} is not a header name", spec.header),
            )
        })?;
        if super::headers::is_gateway_header(header.as_str()) || header == http::header::AUTHORIZATION {
            return Err((
                "identity_jwt.header".to_owned(),
                format!("{header} is a header the gateway already owns: choose another, e.g. {DEFAULT_HEADER}"),
            ));
        }
        let ttl = spec.ttl.0;
        if !(Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&ttl) {
            return Err(("identity_jwt.ttl".to_owned(), "must be between 10s and 1h".to_owned()));
        }
        Ok(AppAssertion {
            header,
            audience: spec.audience.as_deref().unwrap_or(app).into(),
            ttl,
        })
    }
}

struct SigningKey {
    kid: String,
    key: PKey<Private>,
}

/// A signed assertion, with what it was signed for (checked on every cache hit).
struct Cached {
    subject: Box<str>,
    email: Option<Box<str>>,
    groups: Box<[Box<str>]>,
    audience: Arc<str>,
    renew_at: u64,
    jwt: Arc<str>,
}

/// Signs identity assertions with the first key and publishes every key.
pub struct IdentitySigner {
    issuer: String,
    keys: Vec<SigningKey>,
    jwks: serde_json::Value,
    cache: moka::sync::Cache<u64, Arc<Cached>>,
    /// The section and key text it was built from (to reuse it across reloads).
    source: (IdentityJwtSection, String),
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySigner")
            .field("issuer", &self.issuer)
            .field("kids", &self.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

impl IdentitySigner {
    /// Builds the signer of the main file's `identity_jwt:` section, reading its keys from
    /// the environment; `previous` is reused (with its cache) when nothing changed. Errors
    /// are `(field, message)`.
    pub fn build(
        section: &IdentityJwtSection,
        previous: Option<&Arc<IdentitySigner>>,
    ) -> Result<Arc<IdentitySigner>, (String, String)> {
        let field = |m: String| ("identity_jwt.keys_env".to_owned(), m);
        let pem = std::env::var(&section.keys_env).map_err(|_| {
            field(format!(
                "environment variable {} is not set (it must hold PEM-encoded EC P-256 private keys, the signing key first)",
                section.keys_env
            ))
        })?;
        if let Some(p) = previous.filter(|p| p.source.0 == *section && p.source.1 == pem) {
            return Ok(p.clone());
        }
        if !section.issuer.starts_with("https://") {
            return Err((
                "identity_jwt.issuer".to_owned(),
                "must be an https:// URL (the `iss` claim upstreams check)".to_owned(),
            ));
        }
        let keys = parse_keys(&pem).map_err(|m| field(format!("{}: {m}", section.keys_env)))?;
        let jwks = serde_json::json!({ "keys": keys.iter().map(|(_, jwk)| jwk.clone()).collect::<Vec<_>>() });
        Ok(Arc::new(IdentitySigner {
            issuer: section.issuer.clone(),
            keys: keys.into_iter().map(|(k, _)| k).collect(),
            jwks,
            cache: moka::sync::Cache::new(CACHE_ENTRIES),
            source: (section.clone(), pem),
        }))
    }

    /// The public keys as a JWK set.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// The assertion for `who` at `app`: cached, or signed now. `None` only if signing fails
    /// (logged).
    pub fn assertion(&self, who: &Identity, app: &AppAssertion) -> Option<Arc<str>> {
        let t = now();
        let key = cache_key(who, &app.audience);
        if let Some(c) = self.cache.get(&key) {
            let same = c.subject == who.subject
                && c.email == who.email
                && c.groups == who.groups
                && c.audience == app.audience;
            if same && t < c.renew_at {
                return Some(c.jwt.clone());
            }
        }
        let exp = t + app.ttl.as_secs();
        let jwt: Arc<str> = match self.sign(who, app, t, exp) {
            Ok(jwt) => jwt.into(),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an identity assertion");
                return None;
            }
        };
        self.cache.insert(
            key,
            Arc::new(Cached {
                subject: who.subject.clone(),
                email: who.email.clone(),
                groups: who.groups.clone(),
                audience: app.audience.clone(),
                renew_at: exp.saturating_sub((app.ttl.as_secs() / 4).max(1)),
                jwt: jwt.clone(),
            }),
        );
        Some(jwt)
    }

    fn sign(
        &self,
        who: &Identity,
        app: &AppAssertion,
        iat: u64,
        exp: u64,
    ) -> Result<String, openssl::error::ErrorStack> {
        let key = self.keys.first().ok_or_else(openssl::error::ErrorStack::get)?;
        let mut jti = [0u8; 16];
        openssl::rand::rand_bytes(&mut jti)?;
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": key.kid });
        let claims = serde_json::json!({
            "iss": self.issuer,
            "aud": &*app.audience,
            "sub": who.subject,
            "email": who.email,
            "groups": who.groups,
            "preferred_username": who.preferred_username,
            "iat": iat,
            "exp": exp,
            "jti": URL_SAFE_NO_PAD.encode(jti),
        });
        sign_es256(&key.key, &header, &claims)
    }
}

/// A compact JWS of `claims` under `header`, signed ES256 with `key` (an EC P-256 key).
pub(crate) fn sign_es256(
    key: &PKey<Private>,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> Result<String, openssl::error::ErrorStack> {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), key)?;
    let der = signer.sign_oneshot_to_vec(input.as_bytes())?;
    // JWS wants r || s, each 32 bytes (RFC 7518 §3.4), not DER.
    let sig = EcdsaSig::from_der(&der)?;
    let mut raw = sig.r().to_vec_padded(32)?;
    raw.extend(sig.s().to_vec_padded(32)?);
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(raw)))
}

fn cache_key(who: &Identity, audience: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    who.subject.hash(&mut h);
    who.email.hash(&mut h);
    who.groups.hash(&mut h);
    audience.hash(&mut h);
    h.finish()
}

/// Every PEM private key in `text`, with its public JWK; each must be EC P-256.
fn parse_keys(text: &str) -> Result<Vec<(SigningKey, serde_json::Value)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let end_marker = block
            .find("-----END ")
            .and_then(|e| block[e..].find("\n").map(|n| e + n + 1).or(Some(block.len())))
            .ok_or("a PEM block has no END line")?;
        let pem = &block[..end_marker];
        let key = PKey::private_key_from_pem(pem.as_bytes())
            .map_err(|_| format!("key {} is not a PEM private key", out.len() + 1))?;
        let jwk = public_jwk(&key).map_err(|m| format!("key {}: {m}", out.len() + 1))?;
        let kid = jwk["kid"].as_str().unwrap_or_default().to_owned();
        out.push((SigningKey { kid, key }, jwk));
        rest = &block[end_marker..];
    }
    if out.is_empty() {
        return Err("holds no PEM private key (generate one: openssl ecparam -name prime256v1 -genkey -noout)".into());
    }
    Ok(out)
}

/// The public JWK of an EC P-256 key, `kid` = its RFC 7638 thumbprint.
pub(crate) fn public_jwk(key: &PKey<Private>) -> Result<serde_json::Value, String> {
    let ec = key
        .ec_key()
        .map_err(|_| "not an EC key: ES256 needs P-256".to_owned())?;
    if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
        return Err("not on curve P-256 (prime256v1): ES256 needs it".into());
    }
    let mut ctx = BigNumContext::new().map_err(|e| e.to_string())?;
    let (mut x, mut y) = (
        BigNum::new().map_err(|e| e.to_string())?,
        BigNum::new().map_err(|e| e.to_string())?,
    );
    ec.public_key()
        .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
        .map_err(|e| e.to_string())?;
    let x = URL_SAFE_NO_PAD.encode(x.to_vec_padded(32).map_err(|e| e.to_string())?);
    let y = URL_SAFE_NO_PAD.encode(y.to_vec_padded(32).map_err(|e| e.to_string())?);
    // RFC 7638: the required members, lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(openssl::sha::sha256(canonical.as_bytes()));
    Ok(serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "kid": kid, "use": "sig", "alg": "ES256",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};

    fn p256_pem() -> String {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = EcKey::generate(&group).unwrap();
        String::from_utf8(PKey::from_ec_key(key).unwrap().private_key_to_pem_pkcs8().unwrap()).unwrap()
    }

    fn signer(var: &str, pem: &str) -> Arc<IdentitySigner> {
        std::env::set_var(var, pem);
        let section = IdentityJwtSection {
            issuer: "https://authgate.example.com".into(),
            keys_env: var.into(),
        };
        IdentitySigner::build(&section, None).unwrap()
    }

    fn app() -> AppAssertion {
        AppAssertion {
            header: http::HeaderName::from_static("x-authgate-jwt-assertion"),
            audience: "app1".into(),
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn assertions_verify_with_the_published_key_and_are_cached_per_user() {
        let (k1, k2) = (p256_pem(), p256_pem());
        let s = signer("AUTHGATE_IDJWT_TEST_A", &format!("{k1}{k2}"));
        assert_eq!(s.jwks()["keys"].as_array().unwrap().len(), 2);
        let alice = Identity {
            subject: "alice".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["admins".into()].into(),
            ..Identity::default()
        };
        let jwt = s.assertion(&alice, &app()).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], s.jwks()["keys"][0]["kid"], "the first key signs");
        // Verify with the public key rebuilt from the JWK (x, y), as an upstream would.
        let jwk = &s.jwks()["keys"][0];
        let coord = |c: &str| BigNum::from_slice(&URL_SAFE_NO_PAD.decode(jwk[c].as_str().unwrap()).unwrap()).unwrap();
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let public = EcKey::from_public_key_affine_coordinates(&group, &coord("x"), &coord("y")).unwrap();
        let raw = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let sig = EcdsaSig::from_private_components(
            BigNum::from_slice(&raw[..32]).unwrap(),
            BigNum::from_slice(&raw[32..]).unwrap(),
        )
        .unwrap();
        let digest = openssl::sha::sha256(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert!(sig.verify(&digest, &public).unwrap());
        assert_eq!(s.assertion(&alice, &app()).unwrap(), jwt, "cached");
        let bob = Identity {
            subject: "bob".into(),
            ..alice.clone()
        };
        assert_ne!(
            s.assertion(&bob, &app()).unwrap(),
            jwt,
            "another user, another assertion"
        );
    }

    #[test]
    fn keys_must_be_p256_private_keys() {
        std::env::set_var("AUTHGATE_IDJWT_TEST_B", "not a key");
        let section = IdentityJwtSection {
            issuer: "https://authgate.example.com".into(),
            keys_env: "AUTHGATE_IDJWT_TEST_B".into(),
        };
        assert!(IdentitySigner::build(&section, None).is_err());
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pem = String::from_utf8(PKey::from_rsa(rsa).unwrap().private_key_to_pem_pkcs8().unwrap()).unwrap();
        std::env::set_var("AUTHGATE_IDJWT_TEST_B", pem);
        let e = IdentitySigner::build(&section, None).unwrap_err();
        assert!(e.1.contains("EC"), "{e:?}");
        let unset = IdentityJwtSection {
            keys_env: "AUTHGATE_IDJWT_TEST_UNSET".into(),
            ..section
        };
        assert!(IdentitySigner::build(&unset, None).unwrap_err().1.contains("not set"));
    }
}
