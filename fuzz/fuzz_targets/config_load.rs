//! The configuration loader: what `authgate check` runs (`config::load`, the session store
//! settings, `Snapshot::build`) on a main file and one app file written from the input.
//!
//! The input is the main file, a NUL byte, then the app file (`apps.d/app.yaml`; without a NUL
//! the whole input is the main file). Every mistake must come back as an error naming a file
//! (and, for a field, the field); nothing may panic.
//!
//! The fuzzer never queries DNS: an upstream whose host is not an IP address literal or
//! `localhost` is replaced with `127.0.0.1:9` before the build (its parsing is reached through
//! the literal forms). The secrets the example configuration names are set in the
//! environment so that cookie and provider sections compile.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use authgate::config::{self, ConfigErrors};
use authgate::metrics::Metrics;
use authgate::state::Snapshot;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    /// Holds the directory for the life of the process.
    _dir: tempfile::TempDir,
    main: PathBuf,
    app: PathBuf,
    metrics: Arc<Metrics>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        std::env::set_var(
            "AUTHGATE_COOKIE_SECRETS",
            "ZnV6ei1vbmx5LWtleS1ub3Qtc2VjcmV0LTAxMjM0NTY=",
        );
        std::env::set_var("CORP_CLIENT_SECRET", "fuzz-client-secret");
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("apps.d")).expect("apps.d");
        Fixture {
            main: dir.path().join("gateway.yaml"),
            app: dir.path().join("apps.d/app.yaml"),
            _dir: dir,
            metrics: Arc::new(Metrics::new().expect("metrics")),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (main, app) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    std::fs::write(&f.main, main).expect("write main file");
    std::fs::write(&f.app, app).expect("write app file");
    let mut config = match config::load(&f.main) {
        Ok(c) => c,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a failed load says why");
            return assert_named(&errors);
        }
    };
    for entry in &mut config.apps {
        for upstream in &mut entry.spec.upstreams {
            if needs_dns(upstream) {
                *upstream = "127.0.0.1:9".into();
            }
        }
    }
    assert_named(&config.errors);
    if let Err(list) = authgate::session::open_store(&config.gateway.sessions, &config::base_dir(&f.main), &f.metrics) {
        assert!(
            list.iter()
                .all(|(field, message)| !field.is_empty() && !message.is_empty()),
            "{list:?}"
        );
    }
    if let Err(errors) = Snapshot::build(config, None, &f.metrics) {
        assert!(!errors.0.is_empty(), "a failed build says why");
        assert_named(&errors);
    }
});

/// Every error names its file and says what is wrong.
fn assert_named(errors: &ConfigErrors) {
    for e in &errors.0 {
        assert!(!e.file.as_os_str().is_empty(), "{e}");
        assert!(!e.message.is_empty(), "{e}");
    }
}

/// Whether resolving this upstream would ask a DNS server: its host (as `host:port`,
/// `[v6]:port` or `scheme://host[:port]`) is neither an IP literal nor `localhost`.
fn needs_dns(raw: &str) -> bool {
    let rest = match raw.split_once("://") {
        Some(("http" | "https", rest)) => rest,
        Some(_) => return false,
        None => raw,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '@']) {
        // Refused before any resolution.
        return false;
    }
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        rest.rsplit_once(':').map_or(rest, |(h, _)| h)
    };
    host.parse::<std::net::IpAddr>().is_err() && !host.eq_ignore_ascii_case("localhost")
}
