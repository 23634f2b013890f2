//! The session store's two paths, against a real `redis-server` started here: a cache hit
//! (no network) and a cache miss (one `GET` to Redis, then open and decode).
//! Skipped, with a message, when `redis-server` is not installed.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use authgate::auth::policy::Identity;
use authgate::config::schema::{CacheSpec, HumanDuration, RedisSpec, RedisTimeouts};
use authgate::metrics::Metrics;
use authgate::session::redis_store::{RedisSettings, RedisStore};
use authgate::session::{now, Session, Store, Ticket};
use criterion::{criterion_group, criterion_main, Criterion};

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn store_paths(c: &mut Criterion) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Ok(child) = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
    else {
        eprintln!("redis-server is not installed: skipping the session store benchmarks");
        return;
    };
    let _server = Server(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spec = RedisSpec {
        sentinel: None,
        url: Some(format!("redis://127.0.0.1:{port}/0")),
        username_env: None,
        password_env: None,
        key_prefix: "authgate:".into(),
        timeouts: RedisTimeouts::default(),
        tls: None,
    };
    let settings = RedisSettings {
        spec,
        username: None,
        password: None,
        sentinel_username: None,
        sentinel_password: None,
        cache: CacheSpec {
            max_entries: 100_000,
            ttl: HumanDuration(Duration::from_secs(300)),
        },
        tls_ca: None,
    };
    let store = rt.block_on(async { RedisStore::new(settings, Arc::new(Metrics::new().unwrap())).unwrap() });
    let ticket = Ticket::new().unwrap();
    let t = now();
    let session = Arc::new(Session {
        provider: "corp".into(),
        identity: Identity {
            subject: "alice".into(),
            email: Some("alice@example.com".into()),
            email_verified: true,
            groups: vec!["admins".into(), "dev".into()].into(),
            ..Identity::default()
        },
        access_token: Some("a".repeat(800).into()),
        access_expires_at: Some(t + 3600),
        refresh_token: Some("r".repeat(200).into()),
        id_token: Some("i".repeat(900).into()),
        sid: None,
        created_at: t,
        refreshed_at: t,
        expires_at: t + 3600,
        version: 0,
    });
    rt.block_on(store.save(&ticket, session)).unwrap();
    let mut g = c.benchmark_group("session_store");
    g.bench_function("hit", |b| {
        b.iter(|| rt.block_on(store.load(&ticket)).unwrap().is_some())
    });
    g.bench_function("miss_one_redis_get", |b| {
        b.iter(|| {
            // A read past the cache: one Redis GET, opened and decoded, as on a cache miss.
            rt.block_on(store.load_fresh(&ticket)).unwrap().is_some()
        })
    });
    g.finish();
}

criterion_group!(benches, store_paths);
criterion_main!(benches);
