//! A tiny HTTP/1.1 upstream for development, tests and benchmarks (`authgate echo`): it
//! answers each request with a JSON description of what it received, so the headers the
//! gateway forwards can be seen.
//!
//! Special paths: `/healthz` (200, or 503 after `/__health/off`), `/__health/on|off`,
//! `/__delay/<ms>` (answers after a delay), `/__bytes/<n>` (an `n`-byte body). A request
//! with `Upgrade: websocket` gets a 101 and then every byte is echoed back. Each request
//! header `X-Echo-Set-Cookie: <value>` comes back as a `Set-Cookie: <value>` response header.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Shared state of one echo server.
#[derive(Debug)]
pub struct Echo {
    name: String,
    healthy: AtomicBool,
    requests: AtomicU64,
}

impl Echo {
    /// An echo server that reports itself as `name`.
    pub fn new(name: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            healthy: AtomicBool::new(true),
            requests: AtomicU64::new(0),
        })
    }

    /// Requests answered so far (health checks included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Serves connections from `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let echo = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = echo.connection(stream).await {
                            tracing::debug!(error = %e, "echo connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "echo accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        loop {
            // Read one request head.
            let head_end = loop {
                if let Some(pos) = find(&buf, b"\r\n\r\n") {
                    break pos + 4;
                }
                if buf.len() > 1 << 20 {
                    return Ok(());
                }
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut req = httparse::Request::new(&mut headers);
            if req.parse(&buf[..head_end]).is_err() {
                stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await?;
                return Ok(());
            }
            let method = req.method.unwrap_or("GET").to_owned();
            let path = req.path.unwrap_or("/").to_owned();
            let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut content_length = 0usize;
            let mut upgrade = false;
            let mut ws_key = None;
            for h in req.headers.iter() {
                let name = h.name.to_ascii_lowercase();
                let value = String::from_utf8_lossy(h.value).into_owned();
                match name.as_str() {
                    "content-length" => content_length = value.trim().parse().unwrap_or(0),
                    "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
                    "sec-websocket-key" => ws_key = Some(value.clone()),
                    _ => {}
                }
                map.entry(name).or_default().push(value);
            }
            buf.drain(..head_end);
            while buf.len() < content_length {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body_len = content_length;
            buf.drain(..content_length);
            self.requests.fetch_add(1, Ordering::Relaxed);

            if upgrade {
                let accept = ws_key.map(|k| websocket_accept(&k)).unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).await?;
                if !buf.is_empty() {
                    stream.write_all(&buf).await?;
                }
                let (mut r, mut w) = stream.split();
                tokio::io::copy(&mut r, &mut w).await?;
                return Ok(());
            }

            let (status, body): (u16, Vec<u8>) = if path == "/healthz" {
                if self.healthy.load(Ordering::Relaxed) {
                    (200, b"ok".to_vec())
                } else {
                    (503, b"unhealthy".to_vec())
                }
            } else if let Some(state) = path.strip_prefix("/__health/") {
                self.healthy.store(state == "on", Ordering::Relaxed);
                (200, b"ok".to_vec())
            } else if let Some(ms) = path.strip_prefix("/__delay/") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
                (200, self.describe(&method, &path, &map, body_len))
            } else if let Some(n) = path.strip_prefix("/__bytes/") {
                (200, vec![b'x'; n.parse().unwrap_or(0)])
            } else {
                (200, self.describe(&method, &path, &map, body_len))
            };
            let content_type = if status == 200 && path.starts_with("/__bytes/") {
                "application/octet-stream"
            } else {
                "application/json"
            };
            let mut head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nx-echo-name: {}\r\n",
                if status == 200 { "OK" } else { "Service Unavailable" },
                body.len(),
                self.name
            );
            for cookie in map.get("x-echo-set-cookie").into_iter().flatten() {
                head.push_str(&format!("set-cookie: {cookie}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await?;
            if method != "HEAD" {
                stream.write_all(&body).await?;
            }
        }
    }

    fn describe(&self, method: &str, path: &str, headers: &BTreeMap<String, Vec<String>>, body_len: usize) -> Vec<u8> {
        serde_json::json!({
            "name": self.name,
            "method": method,
            "path": path,
            "headers": headers,
            "body_bytes": body_len,
        })
        .to_string()
        .into_bytes()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
fn websocket_accept(key: &str) -> String {
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = openssl::sha::sha1(&input);
    openssl::base64::encode_block(&digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_accept_matches_rfc_example() {
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
