//! Sealing with an AEAD (AES-256-GCM): cookies are sealed with the gateway's keyring, and a
//! session's stored form with the session's own key.
//!
//! A sealed value is `v1.` + base64url(`kid(4) ‖ nonce(12) ‖ ciphertext ‖ tag(16)`), where
//! `kid` names the keyring key (the first 4 bytes of its SHA-256), so opening never has to try
//! every key and rotation keeps old cookies valid while any key that sealed them is listed.
//!
//! The AEAD is ring's: a keyring key is expanded once, when the keyring is built (AES key
//! schedule and GHASH tables), not on every cookie opened, and a value is opened in place in
//! the buffer it was decoded into.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KID_LEN: usize = 4;
const PREFIX: &str = "v1.";

/// Why a keyring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No key at all.
    #[error("no key: give one or more comma-separated base64 32-byte keys (make one with `openssl rand -base64 32`)")]
    Empty,
    /// A key does not decode to 32 bytes.
    #[error("key #{0} is not base64 of exactly 32 bytes (make one with `openssl rand -base64 32`)")]
    BadKey(usize),
}

/// Sealing failed (the crypto library refused; not an input problem).
#[derive(Debug, thiserror::Error)]
#[error("cannot seal: {0}")]
pub struct SealError(String);

/// 32 random bytes from the system CSPRNG.
pub fn random_key() -> Result<[u8; 32], SealError> {
    let mut key = [0u8; 32];
    openssl::rand::rand_bytes(&mut key).map_err(|e| SealError(e.to_string()))?;
    Ok(key)
}

/// `n` random bytes as base64url, for states, nonces and ids.
pub fn random_token(n: usize) -> Result<String, SealError> {
    let mut buf = vec![0u8; n];
    openssl::rand::rand_bytes(&mut buf).map_err(|e| SealError(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// A prepared AES-256-GCM key (32 bytes always make one).
fn aead_key(bytes: &[u8; 32]) -> Result<LessSafeKey, SealError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| SealError("cannot prepare the AES-256-GCM key".to_owned()))
}

/// Appends nonce ‖ ciphertext ‖ tag of `plaintext` to `out`.
fn seal_into(key: &LessSafeKey, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    openssl::rand::rand_bytes(&mut nonce).map_err(|e| SealError(e.to_string()))?;
    out.reserve(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[start..])
        .map_err(|_| SealError("AES-256-GCM refused to seal".to_owned()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Opens nonce ‖ ciphertext ‖ tag at `buf[offset..]` in place; `buf` becomes the plaintext.
fn open_in(key: &LessSafeKey, aad: &[u8], mut buf: Vec<u8>, offset: usize) -> Option<Vec<u8>> {
    let sealed = buf.get_mut(offset..)?;
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, in_out) = sealed.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let len = key.open_in_place(nonce, Aad::from(aad), in_out).ok()?.len();
    buf.drain(..offset + NONCE_LEN);
    buf.truncate(len);
    Some(buf)
}

/// Encrypts and authenticates `plaintext` under `key`, binding `aad`. Output: nonce ‖ ct ‖ tag.
pub fn seal_raw(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut out = Vec::new();
    seal_into(&aead_key(key)?, aad, plaintext, &mut out)?;
    Ok(out)
}

/// Opens what [`seal_raw`] produced; `None` when anything does not check out.
pub fn open_raw(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    open_in(&aead_key(key).ok()?, aad, sealed.to_vec(), 0)
}

struct Key {
    id: [u8; KID_LEN],
    bytes: [u8; 32],
    aead: LessSafeKey,
}

/// The gateway's cookie keys: the first seals, every one opens.
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

impl PartialEq for Keyring {
    fn eq(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len() && self.keys.iter().zip(&other.keys).all(|(a, b)| a.bytes == b.bytes)
    }
}

impl Keyring {
    /// Parses comma-separated base64 (standard or URL-safe) 32-byte keys.
    pub fn parse(value: &str) -> Result<Keyring, KeyringError> {
        let mut keys = Vec::new();
        for (i, part) in value.split(',').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(part)
                .or_else(|_| URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')))
                .map_err(|_| KeyringError::BadKey(i + 1))?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyringError::BadKey(i + 1))?;
            let digest = openssl::sha::sha256(&bytes);
            let mut id = [0u8; KID_LEN];
            id.copy_from_slice(&digest[..KID_LEN]);
            let aead = aead_key(&bytes).map_err(|_| KeyringError::BadKey(i + 1))?;
            keys.push(Key { id, bytes, aead });
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// Seals `plaintext` with the first key, binding `aad` (the purpose and context).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<String, SealError> {
        let key = self.keys.first().ok_or_else(|| SealError("empty keyring".to_owned()))?;
        let mut raw = Vec::with_capacity(KID_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
        raw.extend_from_slice(&key.id);
        seal_into(&key.aead, aad, plaintext, &mut raw)?;
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// Opens a value sealed by any key of the ring with the same `aad`; `None` for anything
    /// tampered, truncated, foreign or malformed.
    pub fn open(&self, aad: &[u8], value: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(value.strip_prefix(PREFIX)?).ok()?;
        let id = raw.get(..KID_LEN)?;
        let key = self.keys.iter().find(|k| k.id == id)?;
        open_in(&key.aead, aad, raw, KID_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_b64() -> String {
        base64::engine::general_purpose::STANDARD.encode(random_key().unwrap())
    }

    #[test]
    fn seals_and_opens_and_rotates() {
        let (k1, k2) = (key_b64(), key_b64());
        let old = Keyring::parse(&k1).unwrap();
        let sealed = old.seal(b"ctx", b"hello").unwrap();
        assert!(sealed.starts_with("v1."));
        assert_eq!(old.open(b"ctx", &sealed).unwrap(), b"hello");
        // Rotation: the new key seals, the old one still opens.
        let rotated = Keyring::parse(&format!("{k2}, {k1}")).unwrap();
        assert_eq!(rotated.open(b"ctx", &sealed).unwrap(), b"hello");
        let new = rotated.seal(b"ctx", b"x").unwrap();
        assert!(old.open(b"ctx", &new).is_none(), "sealed with a key the old ring lacks");
        assert!(
            Keyring::parse(&k2).unwrap().open(b"ctx", &sealed).is_none(),
            "retired key"
        );
    }

    #[test]
    fn rejects_tampering_truncation_and_wrong_context() {
        let ring = Keyring::parse(&key_b64()).unwrap();
        let sealed = ring.seal(b"ctx", b"payload").unwrap();
        assert!(ring.open(b"other", &sealed).is_none());
        assert!(ring.open(b"ctx", &sealed[..sealed.len() - 2]).is_none());
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 5;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(ring.open(b"ctx", std::str::from_utf8(&bytes).unwrap()).is_none());
        for junk in ["", "v1.", "v1.!!!", "v2.abc", "garbage", "v1.AAAA"] {
            assert!(ring.open(b"ctx", junk).is_none(), "{junk}");
        }
    }

    /// Cookies and stored sessions sealed by earlier releases (OpenSSL's AES-256-GCM, the same
    /// layout) still open: an upgrade signs nobody out.
    #[test]
    fn values_sealed_with_openssl_still_open() {
        use openssl::symm::{encrypt_aead, Cipher};
        let key = random_key().unwrap();
        let nonce = [7u8; NONCE_LEN];
        let mut tag = [0u8; TAG_LEN];
        let ct = encrypt_aead(
            Cipher::aes_256_gcm(),
            &key,
            Some(&nonce),
            b"aad",
            b"old session",
            &mut tag,
        )
        .unwrap();
        let sealed = [&nonce[..], &ct, &tag].concat();
        assert_eq!(open_raw(&key, b"aad", &sealed).unwrap(), b"old session");
        assert!(open_raw(&key, b"other", &sealed).is_none());

        let ring = Keyring::parse(&base64::engine::general_purpose::STANDARD.encode(key)).unwrap();
        let cookie = format!(
            "{PREFIX}{}",
            URL_SAFE_NO_PAD.encode([&ring.keys[0].id[..], &sealed].concat())
        );
        assert_eq!(ring.open(b"aad", &cookie).unwrap(), b"old session");
        // And the other way: what this release seals, OpenSSL opens.
        let new = seal_raw(&key, b"aad", b"new").unwrap();
        let (n, rest) = new.split_at(NONCE_LEN);
        let (c, t) = rest.split_at(rest.len() - TAG_LEN);
        let plain = openssl::symm::decrypt_aead(Cipher::aes_256_gcm(), &key, Some(n), b"aad", c, t).unwrap();
        assert_eq!(plain, b"new");
    }

    #[test]
    fn keyring_errors_are_clear() {
        assert_eq!(Keyring::parse(" , ").unwrap_err(), KeyringError::Empty);
        assert_eq!(Keyring::parse("c2hvcnQ=").unwrap_err(), KeyringError::BadKey(1));
        assert_eq!(
            Keyring::parse(&format!("{},%%%", key_b64())).unwrap_err(),
            KeyringError::BadKey(2)
        );
        assert_eq!(format!("{:?}", Keyring::parse(&key_b64()).unwrap()), "Keyring(1 keys)");
    }
}
