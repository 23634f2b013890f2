//! The gateway's whole request side without sockets: the real `ProxyHttp` implementation
//! (`authgate::proxy::Gateway`) driven over a Pingora `Session` parsed from an in-memory stream,
//! as the server runs it for each request: `new_ctx`, `request_filter`, `upstream_peer`, the
//! upstream header (Pingora clones the client's), `upstream_request_filter`. The network,
//! TLS and Pingora's own HTTP/1 parsing and writing are not in it: a regression here is ours.
//!
//! Two apps of one real configuration (loaded by `config::load`, compiled by `Snapshot::build`):
//! a public one, and one with the load tests' `auth` block whose session is in the store
//! (`sessions.store: memory`, the same moka cache lookup as the Redis store's cache hit).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::metrics::Metrics;
use authgate::proxy::Gateway;
use authgate::session::{now, MemoryStore, Session as StoredSession, Store, Ticket};
use authgate::state::{Snapshot, State};
use criterion::{criterion_group, criterion_main, Criterion};
use pingora::proxy::{ProxyHttp, Session};
use tokio::io::AsyncWriteExt;

/// A self-signed `*.example.com` certificate and its key, PEM (the configuration needs one).
fn self_signed() -> (Vec<u8>, Vec<u8>) {
    use openssl::{asn1::Asn1Time, ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509};
    let key =
        PKey::from_ec_key(ec::EcKey::generate(&ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap())
            .unwrap();
    let mut name = x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, "*.example.com").unwrap();
    let name = name.build();
    let mut b = x509::X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
    let san = x509::extension::SubjectAlternativeName::new()
        .dns("*.example.com")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build().to_pem().unwrap(), key.private_key_to_pem_pkcs8().unwrap())
}

/// The gateway of the load tests' configuration (bench.sh `gateway-plain` and
/// `gateway-auth-cached`, with the memory store), and a session cookie for its protected app.
fn gateway(dir: &std::path::Path, rt: &tokio::runtime::Runtime) -> (Gateway, String) {
    let (crt, key) = self_signed();
    std::fs::write(dir.join("c.crt"), crt).unwrap();
    std::fs::write(dir.join("c.key"), key).unwrap();
    std::fs::create_dir(dir.join("apps.d")).unwrap();
    std::env::set_var(
        "AUTHGATE_BENCH_COOKIE_SECRETS",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    );
    std::env::set_var("AUTHGATE_BENCH_CLIENT_SECRET", "secret");
    std::fs::write(
        dir.join("gateway.yaml"),
        "listen: { https: \"127.0.0.1:8443\" }\n\
         tls: { certificates: [ { cert_file: c.crt, key_file: c.key } ] }\n\
         cookie: { name: _authgate, domain: .example.com, secrets_env: AUTHGATE_BENCH_COOKIE_SECRETS }\n\
         providers:\n  corp: { type: oidc, issuer_url: \"https://idp.example.com\", client_id: gateway,\n\
         \x20         client_secret_env: AUTHGATE_BENCH_CLIENT_SECRET }\n\
         sessions: { store: memory }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("apps.d/app1.yaml"),
        "host: app1.example.com\nupstreams: [\"127.0.0.1:9001\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("apps.d/app0001.yaml"),
        "host: app0001.example.com\nupstreams: [\"127.0.0.1:9001\"]\nauth:\n  provider: corp\n  \
         email_domains: [\"example.com\"]\n  skip_auth_routes: [\"GET=^/healthz$\", \"^/public/\"]\n  \
         api_routes: [\"^/api/\"]\n  skip_jwt_bearer_tokens: true\n",
    )
    .unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let config = authgate::config::load(&dir.join("gateway.yaml")).unwrap();
    let snapshot = Snapshot::build(config, None, &metrics).unwrap();
    let keyring = &snapshot.auth.as_ref().unwrap().cookie.keyring;
    let store = Arc::new(MemoryStore::new(100_000));
    let ticket = Ticket::new().unwrap();
    let t = now();
    let identity = authgate::auth::policy::Identity {
        subject: "alice".into(),
        email: Some("alice@example.com".into()),
        email_verified: true,
        preferred_username: Some("alice".into()),
        groups: vec!["admins".into(), "dev".into()].into(),
        ..Default::default()
    };
    let session = StoredSession::without_tokens("corp", identity, t, t + 12 * 3600);
    rt.block_on(store.save(&ticket, Arc::new(session))).unwrap();
    let cookie = format!(
        "_authgate_corp={}",
        ticket.to_cookie(keyring, "_authgate_corp").unwrap()
    );
    let state = State::new(snapshot, metrics, dir.join("gateway.yaml"), store);
    (Gateway::new(Arc::new(state)), cookie)
}

/// A Pingora session that has read `request` from an in-memory stream (the other end is
/// returned: dropping it would close the stream).
async fn session_for(request: &str) -> (Session, tokio::io::DuplexStream) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client.write_all(request.as_bytes()).await.unwrap();
    let mut session = Session::new_h1(Box::new(server));
    assert!(session.read_request().await.unwrap());
    (session, client)
}

/// One request's hooks, as Pingora calls them before it writes the upstream request.
async fn hooks(gw: &Gateway, session: &mut Session) {
    let mut ctx = gw.new_ctx();
    assert!(
        !gw.request_filter(session, &mut ctx).await.unwrap(),
        "proxied, not answered"
    );
    let peer = gw.upstream_peer(session, &mut ctx).await.unwrap();
    let mut upstream = session.req_header().clone();
    gw.upstream_request_filter(session, &mut upstream, &mut ctx)
        .await
        .unwrap();
    std::hint::black_box((peer, upstream));
}

fn proxy_hooks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (gw, cookie) = gateway(dir.path(), &rt);
    // wrk's requests in bench.sh: a Host header (and the session cookie) only.
    let cases = [
        ("public", "GET / HTTP/1.1\r\nHost: app1.example.com\r\n\r\n".to_owned()),
        (
            "auth_cached",
            format!("GET / HTTP/1.1\r\nHost: app0001.example.com\r\nCookie: {cookie}\r\n\r\n"),
        ),
    ];
    let mut g = c.benchmark_group("proxy_request_hooks");
    for (name, request) in cases {
        let (mut session, _client) = rt.block_on(session_for(&request));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        hooks(&gw, &mut session).await;
                    }
                    started.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = proxy_hooks
}
criterion_main!(benches);
