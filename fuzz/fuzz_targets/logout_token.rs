//! The back-channel logout token verifier (`authgate::auth::logout_token::verify`): what any
//! client may POST to `/oauth2/backchannel_logout`.
//!
//! The input, as text, is verified against a JWK set holding the public half of the fixed key
//! the seeds in `corpus/logout_token` were signed with (`seeds.py`). Besides "no panic":
//! - an accepted token names a `jti` and a `sub` or `sid`;
//! - an accepted token with any one character of its signature changed is refused.
#![no_main]

use std::sync::OnceLock;

use authgate::auth::logout_token::{verify, Expected};
use libfuzzer_sys::fuzz_target;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};

/// The public key of the seeds' fixed signing key (P-256, see `seeds.py`).
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"fuzz","use":"sig","alg":"ES256",
 "x":"Z2dtIaj2a6E8GXO6kI4jQDNNVP0l6QAeR6XdpxXo-Qw","y":"6aBru9lsjJe-WctKLqvjpTOrpseYR4Iea1HSt1pkbn4"}]}"#;
/// The time the seeds were issued at.
const NOW: u64 = 1_800_000_000;

fn keys() -> &'static CoreJsonWebKeySet {
    static KEYS: OnceLock<CoreJsonWebKeySet> = OnceLock::new();
    KEYS.get_or_init(|| serde_json::from_str(JWKS).expect("a valid JWK set"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(jwt) = std::str::from_utf8(data) else { return };
    let algorithms = [CoreJwsSigningAlgorithm::EcdsaP256Sha256, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256];
    let expected = Expected {
        issuer: "https://idp.example.com",
        audience: "gateway",
        algorithms: &algorithms,
    };
    let Ok(claims) = verify(jwt, keys(), &expected, NOW) else { return };
    assert!(!claims.jti.is_empty());
    assert!(claims.sub.is_some() || claims.sid.is_some());
    let signature_at = jwt.rfind('.').expect("a compact JWS") + 1;
    for i in signature_at..jwt.len() {
        let mut altered = jwt.as_bytes().to_vec();
        altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("ASCII stays ASCII");
        // Also the last character: a strict base64url decoder refuses set unused bits.
        assert!(verify(&altered, keys(), &expected, NOW).is_err(), "altered at {i}");
    }
});
