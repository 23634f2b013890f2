//! The cookie opener (`authgate::session::seal::Keyring::open`, `Ticket::from_cookie`) and
//! what reads an opened cookie (the login state and a stored session, both JSON).
//!
//! The input, as text, is tried as:
//! - a ticket cookie value and a login cookie value: no panic; a value that opens is one the
//!   keyring sealed (in practice: the seed cookies, sealed with the key below);
//! - a plaintext: sealed, it opens to itself under the same additional data and to nothing
//!   under another; sealed and then altered at one position chosen by the input, it opens to
//!   nothing;
//! - the JSON inside an opened login cookie and an opened stored session: no panic.
#![no_main]

use std::sync::OnceLock;

use authgate::auth::login::{login_aad, LoginState};
use authgate::session::seal::Keyring;
use authgate::session::{Session, Ticket};
use libfuzzer_sys::fuzz_target;

/// The key the seed cookies in `corpus/cookie_open` were sealed with (32 bytes, base64).
const SEED_KEY: &str = "ZnV6ei1vbmx5LWtleS1ub3Qtc2VjcmV0LTAxMjM0NTY=";
/// A second key, so lookups by key id see a ring of two.
const OTHER_KEY: &str = "b3RoZXItZnV6ei1rZXktbm90LXNlY3JldC02Nzg5MDE=";
const COOKIE: &str = "_authgate_corp";

fn ring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| Keyring::parse(&format!("{SEED_KEY},{OTHER_KEY}")).expect("fixed keys are valid"))
}

fuzz_target!(|data: &[u8]| {
    let ring = ring();
    let value = String::from_utf8_lossy(data);
    let login = login_aad("corp", "https://app1.example.com");

    // As cookie values.
    if let Some(ticket) = Ticket::from_cookie(ring, COOKIE, &value) {
        let again = Ticket::from_cookie(ring, COOKIE, &ticket.to_cookie(ring, COOKIE).expect("seal"));
        assert_eq!(again, Some(ticket));
    }
    if let Some(plain) = ring.open(&login, &value) {
        let _ = serde_json::from_slice::<LoginState>(&plain);
    }
    let _ = Keyring::parse(&value);

    // As a plaintext: the seal round trip and tampering.
    let sealed = ring.seal(&login, data).expect("seal");
    assert_eq!(ring.open(&login, &sealed).as_deref(), Some(data));
    assert_eq!(ring.open(b"another purpose", &sealed), None);
    assert!(
        Ticket::from_cookie(ring, COOKIE, &sealed).is_none(),
        "a login cookie is not a ticket"
    );
    if let Some((&position, &byte)) = data.first().zip(data.last()) {
        let mut altered = sealed.clone().into_bytes();
        let i = usize::from(position) * altered.len() / 256;
        if altered[i] != byte {
            altered[i] = byte;
            let altered = String::from_utf8_lossy(&altered);
            assert_eq!(ring.open(&login, &altered), None, "{sealed} altered at {i} to {byte}");
        }
    }

    // As the JSON inside an opened cookie or a stored session.
    let _ = serde_json::from_slice::<LoginState>(data);
    let _ = serde_json::from_slice::<Session>(data);
});
