//! Micro-benchmarks of the per-request hot path: host normalisation and lookup among
//! 10,000 apps, and the request checks that run before routing.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use authgate::request::inspect;
use authgate::routing::{normalize_host, HostPattern, RouteTable};
use authgate::state::Settings;
use criterion::{criterion_group, criterion_main, Criterion};
use pingora::http::RequestHeader;

fn table(apps: usize) -> RouteTable<usize> {
    let mut t = RouteTable::default();
    for i in 0..apps {
        // One app in ten is a wildcard, as preview environments are.
        let host = if i % 10 == 0 {
            format!("*.pr{i}.preview.example.com")
        } else {
            format!("app{i}.example.com")
        };
        t.insert(HostPattern::parse(&host).unwrap(), Arc::new(i));
    }
    t
}

fn host_lookup(c: &mut Criterion) {
    let t = table(10_000);
    let mut g = c.benchmark_group("host_lookup_10k_apps");
    g.bench_function("exact", |b| b.iter(|| t.lookup(black_box("app4321.example.com"))));
    g.bench_function("wildcard", |b| {
        b.iter(|| t.lookup(black_box("feature-x.pr4320.preview.example.com")))
    });
    g.bench_function("miss", |b| b.iter(|| t.lookup(black_box("nobody.example.org"))));
    g.bench_function("normalize_and_lookup", |b| {
        b.iter(|| {
            let host = normalize_host(black_box("App4321.Example.com:443")).unwrap();
            t.lookup(&host).map(|app| **app)
        })
    });
    g.finish();
}

fn request_checks(c: &mut Criterion) {
    // The server defaults (32 KiB headers, 8 KiB target), as a main file without a server section.
    let settings = Settings::with_defaults("127.0.0.1:8443");
    let mut req = RequestHeader::build("GET", b"/api/v1/items?page=2&sort=name%20asc", None).unwrap();
    for (k, v) in [
        ("host", "app1.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        (
            "cookie",
            "_authgate=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
    ] {
        req.append_header(k, v).unwrap();
    }
    c.bench_function("request_inspect_typical_browser_request", |b| {
        b.iter(|| inspect(black_box(&req), &settings).is_ok())
    });
}

fn session_hot_path(c: &mut Criterion) {
    use authgate::auth::headers::{inject, strip, Injection};
    use authgate::auth::policy::{Identity, Policy, PolicySpec};
    use authgate::session::seal::{random_key, Keyring};
    use authgate::session::Ticket;
    use base64::Engine;

    let keyring = Keyring::parse(&base64::engine::general_purpose::STANDARD.encode(random_key().unwrap())).unwrap();
    let ticket = Ticket::new().unwrap();
    let cookie = ticket.to_cookie(&keyring, "_authgate_corp").unwrap();
    c.bench_function("session_cookie_open", |b| {
        b.iter(|| Ticket::from_cookie(&keyring, "_authgate_corp", black_box(&cookie)).is_some())
    });

    // The cache in front of Redis, holding 100,000 sessions.
    let cache: quick_cache::sync::Cache<[u8; 16], Arc<Identity>> = quick_cache::sync::Cache::new(200_000);
    let identity = Arc::new(Identity {
        subject: "alice".into(),
        email: Some("alice@example.com".into()),
        email_verified: true,
        preferred_username: Some("alice".into()),
        groups: vec!["admins".into(), "dev".into()].into(),
        ..Identity::default()
    });
    for i in 0u32..100_000 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_le_bytes());
        cache.insert(id, identity.clone());
    }
    let mut hit = [0u8; 16];
    hit[..4].copy_from_slice(&4242u32.to_le_bytes());
    c.bench_function("session_cache_hit_100k_entries", |b| {
        b.iter(|| cache.get(black_box(&hit)).is_some())
    });

    let domains = vec!["example.com".to_owned()];
    let groups = vec!["admins".to_owned()];
    let policy = Policy::compile(&PolicySpec {
        email_domains: &domains,
        allowed_emails: &[],
        emails_file: None,
        allowed_groups: &groups,
        github_orgs: &[],
        github_teams: &[],
    })
    .unwrap();
    c.bench_function("policy_check_domain_and_group", |b| {
        b.iter(|| policy.check(black_box(&identity)))
    });

    let mut req = RequestHeader::build("GET", b"/dashboard", None).unwrap();
    for (k, v) in [
        ("host", "app1.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"),
        ("accept", "text/html"),
        ("cookie", "theme=dark; _authgate_corp=v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ("x-auth-request-email", "mallory@evil.com"),
    ] {
        req.append_header(k, v).unwrap();
    }
    c.bench_function("headers_strip_and_inject", |b| {
        b.iter(|| {
            let mut upstream = req.clone();
            strip(&mut upstream, Some("_authgate"), false);
            inject(
                &mut upstream,
                &Injection {
                    identity: &identity,
                    access_token: None,
                    id_token: None,
                    user_headers: true,
                    prefer_email: false,
                },
            );
            upstream
        })
    });
}

/// One access-log line formatted as JSON into a reused buffer, and the request's ids
/// (X-Request-Id, traceparent) read and set: the per-request cost of the access log on a
/// worker thread, without the writer thread's batched write.
fn access_log_line(c: &mut Criterion) {
    use authgate::access_log::format::Line;
    use authgate::logging::LogFormat;
    use authgate::trace_context::RequestTrace;
    let mut req = RequestHeader::build("GET", b"/reports/2026?x=1", None).unwrap();
    req.insert_header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .unwrap();
    let mut buf = Vec::with_capacity(1024);
    c.bench_function("access_log/json_line", |b| {
        b.iter(|| {
            let mut line = Line::begin(&mut buf, LogFormat::Json, "authgate::access");
            line.str("request_id", "5f0c2a9d3b7e4f1a8c6d0e2b4a9f7c31")
                .str("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")
                .str("span_id", "a1b2c3d4e5f60718")
                .display("client", Some(std::net::Ipv4Addr::new(10, 0, 3, 7)))
                .str("method", "GET")
                .str("host", "app1.example.com")
                .str("path", "/reports/2026")
                .u64("status", 200)
                .str("app", "app1")
                .opt_str("user", Some("alice@example.com"))
                .opt_str("auth", Some("allowed"))
                .display("upstream", Some(std::net::SocketAddr::from(([10, 1, 0, 12], 8080))))
                .millis("duration_ms", std::time::Duration::from_micros(3127))
                .opt_millis("upstream_ms", Some(std::time::Duration::from_micros(2804)))
                .u64("bytes", 5120)
                .opt_str("error", None);
            line.end();
            std::hint::black_box(buf.len())
        })
    });
    c.bench_function("access_log/request_ids", |b| {
        b.iter(|| {
            let trace = RequestTrace::from_request(&req, false);
            let mut up = req.clone();
            trace.apply_upstream(&mut up).unwrap();
            std::hint::black_box(up)
        })
    });
}

/// Path-route choice (a hash probe per segment) and the identity assertion: cached per user and
/// app (every request of a signed-in user) against signing one (once per user, app and ttl).
fn routes_and_assertions(c: &mut Criterion) {
    use authgate::auth::identity_jwt::{AppAssertion, IdentitySigner};
    use authgate::auth::policy::Identity;
    use authgate::config::schema::IdentityJwtSection;
    let mut routes = authgate::routing::PathRoutes::default();
    for (i, p) in ["/api/", "/api/v2", "/static", "/admin", "/docs/internal"]
        .iter()
        .enumerate()
    {
        routes.insert(p, i).unwrap();
    }
    let mut g = c.benchmark_group("path_routes_5");
    g.bench_function("hit_depth_4", |b| {
        b.iter(|| routes.lookup(black_box("/api/v2/users/42")))
    });
    g.bench_function("miss", |b| b.iter(|| routes.lookup(black_box("/shop/cart/items"))));
    g.finish();

    let key = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .unwrap();
    let pem = String::from_utf8(
        openssl::pkey::PKey::from_ec_key(key)
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap(),
    )
    .unwrap();
    std::env::set_var("AUTHGATE_BENCH_JWT_KEYS", pem);
    let section = IdentityJwtSection {
        issuer: "https://authgate.example.com".into(),
        keys_env: "AUTHGATE_BENCH_JWT_KEYS".into(),
    };
    let signer = IdentitySigner::build(&section, None).unwrap();
    let app = AppAssertion {
        header: http::HeaderName::from_static("x-authgate-jwt-assertion"),
        audience: "app1".into(),
        ttl: std::time::Duration::from_secs(60),
    };
    let alice = Identity {
        subject: "alice".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["admins".into(), "dev".into()].into(),
        ..Identity::default()
    };
    let mut g = c.benchmark_group("identity_jwt");
    g.bench_function("cached", |b| b.iter(|| signer.assertion(black_box(&alice), &app)));
    let mut n = 0u64;
    g.bench_function("sign", |b| {
        b.iter(|| {
            n += 1;
            let who = Identity {
                subject: format!("user{n}").into(),
                ..alice.clone()
            };
            signer.assertion(&who, &app)
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    host_lookup,
    request_checks,
    session_hot_path,
    access_log_line,
    routes_and_assertions
);
criterion_main!(benches);
