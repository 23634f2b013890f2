//! Downstream TLS: the certificate store of a snapshot and the SNI resolver that picks a
//! certificate at each handshake.
//!
//! The TLS stack is rustls (Pingora's `rustls` backend). Certificates are parsed and checked
//! (key matches certificate, key type one rustls can sign with) when a snapshot is built,
//! never during a handshake: each becomes a ready [`CertifiedKey`]. A handshake reads the
//! current snapshot, so a rotated certificate is served from the next handshake on, with no
//! restart.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use openssl::asn1::Asn1Time;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::x509::X509;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::TimingDigest;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::schema::CertificateFiles;
use crate::config::{resolve, ConfigError, ConfigErrors, Fingerprint};
use crate::routing::normalize_host;
use crate::state::State;

/// A certificate chain with its key, parsed and checked.
pub struct CertKey {
    /// The leaf and its intermediates with the signing key, as handshakes serve them.
    pub certified: Arc<CertifiedKey>,
    /// DNS names of the leaf (subjectAltName, or the CN when there is none), lower-cased.
    pub names: Vec<String>,
    /// Expiry as seconds since the Unix epoch.
    pub not_after_unix: i64,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl CertKey {
    /// True when one of the certificate's names covers `host` (a normalised host name).
    /// A wildcard covers exactly one label, as in RFC 6125.
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|n| match n.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => n == host,
        })
    }
}

/// How a certificate was chosen for a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The SNI equals one of its names.
    Exact,
    /// A `*.parent` name covers the SNI.
    Wildcard,
    /// No name matched (or no SNI was sent): the first certificate.
    Default,
}

impl Selection {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Wildcard => "wildcard",
            Self::Default => "default",
        }
    }
}

/// The certificates of one snapshot, indexed by name.
#[derive(Debug, Default)]
pub struct CertStore {
    certs: Vec<Arc<CertKey>>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl CertStore {
    /// Loads every certificate listed in the main file. Errors name `tls.certificates[i]`.
    pub fn load(
        entries: &[CertificateFiles],
        main_path: &Path,
        fingerprint: &mut Fingerprint,
        errors: &mut ConfigErrors,
    ) -> CertStore {
        let base = crate::config::base_dir(main_path);
        let mut store = CertStore::default();
        if entries.is_empty() {
            errors.push(ConfigError::new(
                main_path,
                "tls.certificates",
                "at least one certificate is required: add { cert_file, key_file }",
            ));
        }
        for (i, entry) in entries.iter().enumerate() {
            let field = format!("tls.certificates[{i}]");
            match load_pair(&base, entry, fingerprint) {
                Ok(ck) => store.add(ck),
                Err((sub, message)) => errors.push(ConfigError::new(main_path, format!("{field}.{sub}"), message)),
            }
        }
        store
    }

    fn add(&mut self, ck: CertKey) {
        let index = self.certs.len();
        for name in &ck.names {
            match name.strip_prefix("*.") {
                Some(parent) => {
                    self.wildcard.entry(parent.to_owned()).or_insert(index);
                }
                None => {
                    self.exact.entry(name.clone()).or_insert(index);
                }
            }
        }
        self.certs.push(Arc::new(ck));
    }

    /// The certificate for an SNI value: exact name, then `*.parent`, then the first one.
    pub fn select(&self, sni: Option<&str>) -> Option<(&Arc<CertKey>, Selection)> {
        if let Some(sni) = sni {
            if let Some(&i) = self.exact.get(sni) {
                return self.certs.get(i).map(|c| (c, Selection::Exact));
            }
            if let Some((_, parent)) = sni.split_once('.') {
                if let Some(&i) = self.wildcard.get(parent) {
                    return self.certs.get(i).map(|c| (c, Selection::Wildcard));
                }
            }
        }
        self.certs.first().map(|c| (c, Selection::Default))
    }

    /// Every certificate, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CertKey>> {
        self.certs.iter()
    }
}

fn load_pair(
    base: &Path,
    entry: &CertificateFiles,
    fingerprint: &mut Fingerprint,
) -> Result<CertKey, (&'static str, String)> {
    let cert_path = resolve(base, &entry.cert_file);
    let key_path = resolve(base, &entry.key_file);
    let cert_pem =
        std::fs::read(&cert_path).map_err(|e| ("cert_file", format!("cannot read {}: {e}", cert_path.display())))?;
    let key_pem =
        std::fs::read(&key_path).map_err(|e| ("key_file", format!("cannot read {}: {e}", key_path.display())))?;
    fingerprint.add(&cert_path, &cert_pem);
    fingerprint.add(&key_path, &key_pem);
    let mut stack = X509::stack_from_pem(&cert_pem)
        .map_err(|e| {
            (
                "cert_file",
                format!("{} is not a PEM certificate: {e}", cert_path.display()),
            )
        })?
        .into_iter();
    let cert = stack
        .next()
        .ok_or_else(|| ("cert_file", format!("{} holds no certificate", cert_path.display())))?;
    let chain: Vec<X509> = stack.collect();
    let key = PKey::private_key_from_pem(&key_pem).map_err(|e| {
        (
            "key_file",
            format!("{} is not a PEM private key: {e}", key_path.display()),
        )
    })?;
    let matches = cert.public_key().map(|p| p.public_eq(&key)).unwrap_or(false);
    if !matches {
        return Err((
            "key_file",
            format!(
                "{} does not match the certificate in {}: use the key the certificate was issued for",
                key_path.display(),
                cert_path.display()
            ),
        ));
    }
    let names = cert_names(&cert);
    if names.is_empty() {
        return Err((
            "cert_file",
            format!("{} has no DNS name (subjectAltName or CN)", cert_path.display()),
        ));
    }
    let not_after_unix = Asn1Time::from_unix(0)
        .and_then(|epoch| epoch.diff(cert.not_after()))
        .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
        .unwrap_or(0);
    let certified = certified_key(&cert, &chain, &key).map_err(|e| match e {
        CertifiedError::Chain(e) => ("cert_file", format!("{}: {e}", cert_path.display())),
        CertifiedError::KeyEncoding(e) => ("key_file", format!("{}: {e}", key_path.display())),
        CertifiedError::Key => (
            "key_file",
            format!(
                "{} is {}, which the TLS stack (rustls) cannot sign with: use ECDSA P-256 or P-384, RSA of 2048 bits or more, or Ed25519",
                key_path.display(),
                key_kind(&key)
            ),
        ),
    })?;
    Ok(CertKey {
        certified: Arc::new(certified),
        names,
        not_after_unix,
    })
}

/// Why a parsed certificate and key cannot become a [`CertifiedKey`].
enum CertifiedError {
    /// A certificate would not encode as DER.
    Chain(openssl::error::ErrorStack),
    /// The key would not encode as PKCS#8.
    KeyEncoding(openssl::error::ErrorStack),
    /// rustls has no signer for this key type.
    Key,
}

/// The chain (leaf first) and key in the form rustls serves them.
fn certified_key(cert: &X509, chain: &[X509], key: &PKey<Private>) -> Result<CertifiedKey, CertifiedError> {
    let ders = std::iter::once(cert)
        .chain(chain)
        .map(|c| c.to_der().map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertifiedError::Chain)?;
    let pkcs8 = key.private_key_to_pkcs8().map_err(CertifiedError::KeyEncoding)?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)))
        .map_err(|_| CertifiedError::Key)?;
    Ok(CertifiedKey::new(ders, signer))
}

/// "an RSA key of 1024 bits", for errors.
fn key_kind(key: &PKey<Private>) -> String {
    let kind = match key.id() {
        Id::RSA => "RSA".to_owned(),
        Id::EC => key
            .ec_key()
            .ok()
            .and_then(|k| k.group().curve_name())
            .and_then(|n| n.short_name().ok())
            .map_or_else(|| "EC".to_owned(), |n| format!("EC ({n})")),
        Id::ED25519 => "Ed25519".to_owned(),
        Id::ED448 => "Ed448".to_owned(),
        Id::DSA => "DSA".to_owned(),
        other => format!("type-{}", other.as_raw()),
    };
    let article = if kind.starts_with(['E', 'R']) { "an" } else { "a" };
    format!("{article} {kind} key of {} bits", key.bits())
}

fn cert_names(cert: &X509) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| n.dnsname().map(|d| d.trim_end_matches('.').to_ascii_lowercase()))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        if let Some(cn) = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next() {
            if let Ok(cn) = cn.data().to_string() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    names
}

/// What the gateway remembers of a TLS connection, for the HTTP layer.
#[derive(Debug)]
pub struct TlsConnInfo {
    /// The server name the client asked for, normalised; `None` when it sent none.
    pub sni: Option<String>,
    /// The protocol version, e.g. `TLSv1.3`.
    pub version: &'static str,
    /// Whether a request has reported the handshake (tracing on: the connection's first).
    handshake_reported: AtomicBool,
}

impl TlsConnInfo {
    /// The handshake's start and end from the connection's timing, to the first caller only.
    pub fn take_handshake(&self, timing: &[Option<TimingDigest>]) -> Option<(SystemTime, SystemTime)> {
        if self.handshake_reported.swap(true, Ordering::Relaxed) {
            return None;
        }
        // The TLS layer is the outermost one that measured its establishment.
        let tls = timing
            .iter()
            .rev()
            .flatten()
            .find(|t| t.establishment_duration.is_some())?;
        let end = tls.established_ts;
        let start = end.checked_sub(tls.establishment_duration?)?;
        Some((start, end))
    }
}

/// The downstream certificate resolver (rustls asks it at each ClientHello) and handshake
/// callback (Pingora calls it once the handshake is done) of the HTTPS listener.
pub struct SniResolver {
    state: Arc<State>,
}

impl SniResolver {
    /// A resolver that serves the certificates of the current snapshot of `state`.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

/// A server name in the one canonical form hosts have everywhere ([`normalize_host`]: lower
/// case, no trailing dot), as the certificate store indexes names and the HTTP layer compares
/// it with the Host. Borrows when it already is (rustls lower-cases the names it accepts).
/// `None` for a name that is not a host name, as if the client had sent none.
fn server_name(name: &str) -> Option<Cow<'_, str>> {
    normalize_host(name).ok()
}

/// rustls names versions `TLSv1_3`; metrics, logs and spans say `TLSv1.3`, as OpenSSL did.
fn version_label(version: Option<&str>) -> &'static str {
    match version {
        Some("TLSv1_3") => "TLSv1.3",
        Some("TLSv1_2") => "TLSv1.2",
        _ => "unknown",
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().and_then(server_name);
        let snapshot = self.state.snapshot();
        let (ck, how) = snapshot.certs.select(sni.as_deref())?;
        self.state
            .metrics
            .tls_certificate_selections
            .with_label_values(&[how.as_str()])
            .inc();
        Some(ck.certified.clone())
    }
}

#[async_trait]
impl TlsAccept for SniResolver {
    async fn handshake_complete_callback(&self, tls: &TlsRef) -> Option<Arc<dyn Any + Send + Sync>> {
        let version = version_label(tls.version());
        self.state.metrics.tls_handshakes.with_label_values(&[version]).inc();
        Some(Arc::new(TlsConnInfo {
            sni: tls.server_name().and_then(server_name).map(Cow::into_owned),
            version,
            handshake_reported: AtomicBool::new(false),
        }))
    }
}

#[cfg(test)]
pub(crate) mod test_certs {
    //! Certificates made in memory for tests.
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};

    /// A self-signed certificate for `names`, with its key, as PEM.
    pub fn self_signed(names: &[&str]) -> (Vec<u8>, Vec<u8>) {
        self_signed_with(names, new_key())
    }

    /// A self-signed certificate for `names` with the given key, as PEM.
    pub fn self_signed_with(names: &[&str], key: PKey<Private>) -> (Vec<u8>, Vec<u8>) {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, names[0]).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
        let mut san = SubjectAlternativeName::new();
        for n in names {
            san.dns(n);
        }
        let san = san.build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(san).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (b.build().to_pem().unwrap(), key.private_key_to_pem_pkcs8().unwrap())
    }

    /// A fresh P-256 key.
    pub fn new_key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::CertificateFiles;

    fn store_with(dir: &Path, certs: &[&[&str]]) -> (CertStore, ConfigErrors) {
        let mut entries = Vec::new();
        for (i, names) in certs.iter().enumerate() {
            let (crt, key) = test_certs::self_signed(names);
            std::fs::write(dir.join(format!("{i}.crt")), crt).unwrap();
            std::fs::write(dir.join(format!("{i}.key")), key).unwrap();
            entries.push(CertificateFiles {
                cert_file: format!("{i}.crt").into(),
                key_file: format!("{i}.key").into(),
            });
        }
        let mut errors = ConfigErrors::default();
        let store = CertStore::load(
            &entries,
            &dir.join("gateway.yaml"),
            &mut Fingerprint::default(),
            &mut errors,
        );
        (store, errors)
    }

    #[test]
    fn exact_beats_wildcard_and_first_is_default() {
        let dir = tempfile::tempdir().unwrap();
        let (store, errors) = store_with(dir.path(), &[&["*.example.com"], &["app1.example.com"], &["other.org"]]);
        assert!(errors.0.is_empty(), "{errors}");
        let pick = |sni: Option<&str>| {
            let (c, how) = store.select(sni).unwrap();
            (c.names[0].clone(), how)
        };
        assert_eq!(
            pick(Some("app1.example.com")),
            ("app1.example.com".into(), Selection::Exact)
        );
        assert_eq!(
            pick(Some("app2.example.com")),
            ("*.example.com".into(), Selection::Wildcard)
        );
        assert_eq!(pick(Some("other.org")), ("other.org".into(), Selection::Exact));
        assert_eq!(
            pick(Some("a.b.example.com")),
            ("*.example.com".into(), Selection::Default)
        );
        assert_eq!(pick(None), ("*.example.com".into(), Selection::Default));
    }

    #[test]
    fn wildcard_covers_one_label() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with(dir.path(), &[&["*.example.com", "example.com"]]);
        let ck = store.select(None).unwrap().0;
        assert!(ck.covers("a.example.com"));
        assert!(ck.covers("example.com"));
        assert!(!ck.covers("a.b.example.com"));
        assert!(!ck.covers("evilexample.com"));
        assert!(!ck.covers(".example.com"));
    }

    #[test]
    fn a_key_rustls_cannot_sign_with_is_named_with_what_to_use() {
        use openssl::ec::{EcGroup, EcKey};
        let dir = tempfile::tempdir().unwrap();
        let group = EcGroup::from_curve_name(Nid::SECP521R1).unwrap();
        let p521 = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let (crt, key) = test_certs::self_signed_with(&["a.example.com"], p521);
        std::fs::write(dir.path().join("a.crt"), crt).unwrap();
        std::fs::write(dir.path().join("a.key"), key).unwrap();
        let entries = vec![CertificateFiles {
            cert_file: "a.crt".into(),
            key_file: "a.key".into(),
        }];
        let mut errors = ConfigErrors::default();
        CertStore::load(
            &entries,
            &dir.path().join("gateway.yaml"),
            &mut Fingerprint::default(),
            &mut errors,
        );
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].field, "tls.certificates[0].key_file");
        let message = &errors.0[0].message;
        assert!(
            message.contains("is an EC (secp521r1) key of 521 bits") && message.contains("ECDSA P-256"),
            "{message}"
        );
    }

    #[test]
    fn loaded_certificates_are_ready_for_handshakes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, errors) = store_with(dir.path(), &[&["a.example.com"]]);
        assert!(errors.0.is_empty(), "{errors}");
        let ck = store.select(Some("a.example.com")).unwrap().0;
        assert_eq!(ck.certified.cert.len(), 1);
        ck.certified.keys_match().unwrap();
    }

    #[test]
    fn server_names_are_normalised_without_copying_normal_ones() {
        assert!(matches!(
            server_name("app1.example.com"),
            Some(Cow::Borrowed("app1.example.com"))
        ));
        assert!(matches!(
            server_name("app1.example.com."),
            Some(Cow::Borrowed("app1.example.com"))
        ));
        assert_eq!(server_name("App1.EXAMPLE.com.").as_deref(), Some("app1.example.com"));
        assert_eq!(version_label(Some("TLSv1_3")), "TLSv1.3");
        assert_eq!(version_label(Some("TLSv1_2")), "TLSv1.2");
        assert_eq!(version_label(None), "unknown");
    }

    #[test]
    fn mismatched_key_and_missing_file_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (crt, _) = test_certs::self_signed(&["a.example.com"]);
        let (_, other_key) = test_certs::self_signed(&["b.example.com"]);
        std::fs::write(dir.path().join("a.crt"), crt).unwrap();
        std::fs::write(dir.path().join("b.key"), other_key).unwrap();
        let entries = vec![
            CertificateFiles {
                cert_file: "a.crt".into(),
                key_file: "b.key".into(),
            },
            CertificateFiles {
                cert_file: "missing.crt".into(),
                key_file: "b.key".into(),
            },
            CertificateFiles {
                cert_file: "b.key".into(),
                key_file: "b.key".into(),
            },
        ];
        let mut errors = ConfigErrors::default();
        let main = dir.path().join("gateway.yaml");
        CertStore::load(&entries, &main, &mut Fingerprint::default(), &mut errors);
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "tls.certificates[0].key_file",
                "tls.certificates[1].cert_file",
                "tls.certificates[2].cert_file"
            ]
        );
        assert!(errors.0[0].message.contains("does not match"));
        assert!(errors.0.iter().all(|e| e.file == main));
    }
}
