//! HTTP conformance a real client notices (issue 8 §5): pipelined requests are answered in
//! order; absolute-form targets are covered in tests/paths.rs.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{app_yaml, tls_connect, Env, Upstream};

/// Reads from `stream` until `n` complete responses (head + Content-Length body) arrived or
/// the connection closed; returns the paths the echo upstream reported, in order.
fn read_responses<S: Read>(stream: &mut S, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut paths = Vec::new();
    while paths.len() < n && Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
        // Parse as many complete responses as the buffer holds.
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some(head_end) = text.find("\r\n\r\n") else { break };
            let head = text[..head_end].to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() < head_end + 4 + len {
                break;
            }
            let body = String::from_utf8_lossy(&buf[head_end + 4..head_end + 4 + len]).into_owned();
            let echo: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            paths.push(echo["path"].as_str().unwrap_or("?").to_owned());
            buf.drain(..head_end + 4 + len);
        }
    }
    paths
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_get_every_response_in_order() {
    let up = Upstream::start("echo").await;
    let env = Env::start(&[("app", app_yaml("app.example.com", &[up.addr], ""))], "").await;
    let mut s = tls_connect(&env.ca, env.gw.https, Some("app.example.com"), &["http/1.1"]).unwrap();
    let mut pipeline = String::new();
    for i in 1..=3 {
        pipeline.push_str(&format!("GET /r{i} HTTP/1.1\r\nHost: app.example.com\r\n\r\n"));
    }
    s.write_all(pipeline.as_bytes()).unwrap();
    assert_eq!(read_responses(&mut s, 3), ["/r1", "/r2", "/r3"]);
    // The connection stays usable afterwards.
    s.write_all(b"GET /r4 HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        .unwrap();
    assert_eq!(read_responses(&mut s, 1), ["/r4"]);
    // A pipeline with a body in the middle.
    let body = "x".repeat(100);
    let pipeline = format!(
        "GET /a HTTP/1.1\r\nHost: app.example.com\r\n\r\n\
         POST /b HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {}\r\n\r\n{body}\
         GET /c HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
        body.len()
    );
    s.write_all(pipeline.as_bytes()).unwrap();
    assert_eq!(read_responses(&mut s, 3), ["/a", "/b", "/c"]);
}
