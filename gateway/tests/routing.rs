//! Routing and forwarding over real sockets: exact and wildcard hosts, 404/400, headers set
//! for the upstream, WebSocket upgrades, streamed bodies, and bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

async fn env_with_two_apps() -> (Env, Upstream, Upstream) {
    let a = Upstream::start("exact").await;
    let w = Upstream::start("wild").await;
    let env = Env::start(
        &[
            ("app1", app_yaml("app1.example.com", &[a.addr], "")),
            ("preview", app_yaml("*.preview.example.com", &[w.addr], "")),
            ("x", app_yaml("x.preview.example.com", &[a.addr], "")),
        ],
        "",
    )
    .await;
    (env, a, w)
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_exact_then_longest_wildcard_and_rejects_unknown_hosts() {
    let (env, _a, _w) = env_with_two_apps().await;
    let (s, body) = env.get_json("app1.example.com", "/p").await;
    assert_eq!((s, body["name"].as_str()), (200, Some("exact")));
    let (s, body) = env.get_json("pr-42.preview.example.com", "/").await;
    assert_eq!((s, body["name"].as_str()), (200, Some("wild")));
    let (s, body) = env.get_json("deep.pr-42.preview.example.com", "/").await;
    assert_eq!((s, body["name"].as_str()), (200, Some("wild")));
    let (s, body) = env.get_json("x.preview.example.com", "/").await;
    assert_eq!(
        (s, body["name"].as_str()),
        (200, Some("exact")),
        "exact name beats the wildcard"
    );
    let (s, body) = env.get_json("unknown.example.com", "/").await;
    assert_eq!((s, body["error"].as_str()), (404, None), "HTML page for browsers");
    let r = env
        .client(&["unknown.example.com"])
        .get(env.gw.url("unknown.example.com", "/"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unknown_host");
    assert!(env.gw.metric("authgate_requests_total{app=\"-\",status=\"404\"}").await >= 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_header_with_port_and_case_is_routed() {
    let (env, _a, _w) = env_with_two_apps().await;
    let mut s = tls_connect(&env.ca, env.gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
    let resp = raw_exchange(&mut s, b"GET / HTTP/1.1\r\nHost: APP1.example.COM:443\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"name\":\"exact\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_are_set_not_trusted() {
    let (env, _a, _w) = env_with_two_apps().await;
    let r = env
        .client(&["app1.example.com"])
        .get(env.gw.url("app1.example.com", "/h"))
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", "evil.com")
        .header("X-Real-IP", "6.6.6.6")
        .header("Forwarded", "for=6.6.6.6")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    let h = &body["headers"];
    assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(h["x-real-ip"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["https"]));
    assert_eq!(
        h["x-forwarded-host"],
        serde_json::json!([format!("app1.example.com:{}", env.gw.https.port())])
    );
    assert!(h.get("forwarded").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_passes_through() {
    let (env, _a, _w) = env_with_two_apps().await;
    let mut s = tls_connect(&env.ca, env.gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
    let head = raw_read_head(
        &mut s,
        b"GET /ws HTTP/1.1\r\nHost: app1.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // After the upgrade the tunnel carries bytes both ways (the echo upstream sends them back).
    use std::io::{Read, Write};
    s.write_all(b"ping over the tunnel").unwrap();
    let mut buf = [0u8; 20];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping over the tunnel");
}

fn raw_read_head<S: std::io::Read + std::io::Write>(s: &mut S, req: &[u8]) -> String {
    s.write_all(req).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_stream_both_ways() {
    let (env, _a, _w) = env_with_two_apps().await;
    let client = env.client(&["app1.example.com"]);
    let size = 8 * 1024 * 1024;
    let r = client
        .post(env.gw.url("app1.example.com", "/upload"))
        .body(vec![7u8; size])
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["body_bytes"], size);
    let r = client
        .get(env.gw.url("app1.example.com", &format!("/__bytes/{size}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), size);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_4xx_or_close_and_the_gateway_keeps_serving() {
    let (env, _a, _w) = env_with_two_apps().await;
    let gw = &env.gw;
    let ca = &env.ca;
    let ok = || async {
        let (s, _) = env.get_json("app1.example.com", "/still-ok").await;
        assert_eq!(s, 200);
    };

    // Garbage on the TLS port: the handshake fails and the connection closes.
    let mut tcp = std::net::TcpStream::connect(gw.https).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let resp = raw_exchange(
        &mut tcp,
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef, b'\n'].repeat(50),
    );
    assert!(!resp.contains("HTTP/1.1 200"));
    ok().await;

    let status_of = |request: Vec<u8>| {
        let mut s = tls_connect(ca, gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
        let resp = raw_exchange(&mut s, &request);
        resp.split(' ').nth(1).unwrap_or("closed").to_owned()
    };
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: app1.example.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert_eq!(status_of(big_header.into_bytes()), "431");
    ok().await;
    let long_path = format!("GET /{} HTTP/1.1\r\nHost: app1.example.com\r\n\r\n", "p".repeat(10_000));
    assert_eq!(status_of(long_path.into_bytes()), "414");
    ok().await;
    assert_eq!(
        status_of(b"GET /a%zz%4 HTTP/1.1\r\nHost: app1.example.com\r\n\r\n".to_vec()),
        "400"
    );
    assert_eq!(status_of(b"GET / HTTP/1.0\r\n\r\n".to_vec()), "400");
    assert_eq!(status_of(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n".to_vec()), "400");
    assert_eq!(
        status_of(b"GET / HTTP/1.1\r\nHost: app1.example.com\r\nHost: x.example.com\r\n\r\n".to_vec()),
        "400"
    );
    let s = status_of(b"\x00\x01garbage\r\n\r\n".to_vec());
    assert!(s == "400" || s == "closed", "{s}");
    ok().await;
    assert!(
        gw.metric("authgate_rejected_requests_total{reason=\"headers_too_large\"}")
            .await
            >= 1.0
    );
}
