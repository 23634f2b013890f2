//! `authgate health`: probes the admin listener's `/ready` (or any `http://` URL) with one
//! HTTP/1.1 `GET`, for container health checks in images without a shell or curl.
//!
//! A 2xx answer within the timeout is healthy; anything else (refused, no answer in time, a
//! malformed answer, another status) is an error that says what happened.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The largest answer read; `/ready` bodies are a few hundred bytes.
const MAX_RESPONSE: usize = 64 * 1024;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("{url}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Name resolution, connect, write or read failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL probed.
        url: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The whole exchange took longer than the timeout.
    #[error("{url}: no answer within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The URL probed.
        url: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The answer is not an HTTP/1.x response.
    #[error("{url}: not an HTTP response")]
    Malformed {
        /// The URL probed.
        url: String,
    },
    /// The endpoint answered with a status other than 2xx.
    #[error("{url}: HTTP {status}: {body}")]
    NotReady {
        /// The URL probed.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body (e.g. the `/ready` JSON).
        body: String,
    },
}

/// A healthy answer: the status and the body.
#[derive(Debug)]
pub struct Healthy {
    /// The HTTP status (2xx).
    pub status: u16,
    /// The body, lossily decoded.
    pub body: String,
}

/// Sends `GET <path>` to `url` and waits at most `timeout` for the whole answer.
pub fn probe(url: &str, timeout: Duration) -> Result<Healthy, HealthError> {
    let target = Target::parse(url)?;
    let deadline = Instant::now() + timeout;
    let io = |source: std::io::Error| {
        if matches!(source.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
            HealthError::Timeout {
                url: url.to_owned(),
                timeout,
            }
        } else {
            HealthError::Io {
                url: url.to_owned(),
                source,
            }
        }
    };
    let mut stream = target.connect(deadline).map_err(io)?;
    stream
        .set_write_timeout(Some(remaining(deadline).map_err(io)?))
        .map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: authgate-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let (status, body) = read_response(&mut stream, deadline).map_err(|e| match e {
        ReadError::Io(e) => io(e),
        ReadError::Malformed => HealthError::Malformed { url: url.to_owned() },
    })?;
    if (200..300).contains(&status) {
        Ok(Healthy { status, body })
    } else {
        Err(HealthError::NotReady {
            url: url.to_owned(),
            status,
            body: body.chars().take(300).collect::<String>().trim_end().to_owned(),
        })
    }
}

/// Where to connect and what to ask for.
struct Target {
    /// `host:port`, as sent in `Host`.
    authority: String,
    /// The socket addresses of the host.
    addrs: Vec<std::net::SocketAddr>,
    /// Path and query.
    path: String,
}

impl Target {
    fn parse(raw: &str) -> Result<Target, HealthError> {
        let bad = |reason| HealthError::BadUrl {
            url: raw.to_owned(),
            reason,
        };
        let url = url::Url::parse(raw).map_err(|_| bad("not a URL (expected http://host:port/path)"))?;
        if url.scheme() != "http" {
            return Err(bad("only http:// is supported (the admin listener is plain HTTP)"));
        }
        let host = url.host_str().ok_or_else(|| bad("the URL has no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs = url.socket_addrs(|| Some(80)).map_err(|source| HealthError::Io {
            url: raw.to_owned(),
            source,
        })?;
        let mut path = url.path().to_owned();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Target {
            authority: format!("{host}:{port}"),
            addrs,
            path,
        })
    }

    /// Connects to the first address that accepts before the deadline.
    fn connect(&self, deadline: Instant) -> std::io::Result<TcpStream> {
        let mut last = std::io::Error::new(ErrorKind::NotFound, "the host has no address");
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, remaining(deadline)?) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Time left before `deadline`, or a `TimedOut` error.
fn remaining(deadline: Instant) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(std::io::Error::new(ErrorKind::TimedOut, "deadline passed"))
    } else {
        Ok(left)
    }
}

enum ReadError {
    Io(std::io::Error),
    Malformed,
}

/// Reads the status and body: until `Content-Length` bytes of body, or the end of the stream.
fn read_response(stream: &mut TcpStream, deadline: Instant) -> Result<(u16, String), ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        stream
            .set_read_timeout(Some(remaining(deadline).map_err(ReadError::Io)?))
            .map_err(ReadError::Io)?;
        let n = stream.read(&mut chunk).map_err(ReadError::Io)?;
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = resp.code.ok_or(ReadError::Malformed)?;
                let length = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok());
                let body = &buf[head_len..];
                let done = n == 0 || length.is_some_and(|l| body.len() >= l) || buf.len() >= MAX_RESPONSE;
                if done {
                    let end = length.map_or(body.len(), |l| l.min(body.len()));
                    return Ok((status, String::from_utf8_lossy(&body[..end]).into_owned()));
                }
            }
            Ok(httparse::Status::Partial) if n > 0 && buf.len() < MAX_RESPONSE => {}
            Ok(httparse::Status::Partial) | Err(_) => return Err(ReadError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server on loopback that reads the request and writes `answer` (if any).
    fn serve(answer: Option<&'static [u8]>) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ready", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&b[..n]);
            }
            match answer {
                Some(a) => s.write_all(a).unwrap(),
                // Hold the connection open without answering until the client gives up.
                None => {
                    let _ = s.read(&mut b);
                }
            }
            String::from_utf8(req).unwrap()
        });
        (url, handle)
    }

    #[test]
    fn a_2xx_answer_is_healthy_and_the_request_is_a_plain_get() {
        let (url, server) = serve(Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n{\"status\":\"ready\"}",
        ));
        let ok = probe(&url, Duration::from_secs(5)).unwrap();
        assert_eq!(ok.status, 200);
        assert_eq!(ok.body, "{\"status\":\"ready\"}");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /ready HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nHost: 127.0.0.1:"), "{req}");
    }

    #[test]
    fn a_503_is_unhealthy_and_quotes_the_body() {
        let (url, _server) = serve(Some(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\nnot ready",
        ));
        let err = probe(&url, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, HealthError::NotReady { status: 503, .. }), "{err}");
        assert!(err.to_string().ends_with("HTTP 503: not ready"), "{err}");
    }

    #[test]
    fn no_answer_times_out_within_the_bound() {
        let (url, _server) = serve(None);
        let started = Instant::now();
        let err = probe(&url, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, HealthError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[test]
    fn a_refused_connection_and_garbage_are_errors() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = probe(&format!("http://127.0.0.1:{port}/ready"), Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, HealthError::Io { .. }), "{err}");
        let (url, _server) = serve(Some(b"SSH-2.0-OpenSSH\r\n\r\n"));
        let err = probe(&url, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, HealthError::Malformed { .. }), "{err}");
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        for bad in [
            "https://127.0.0.1:9090/ready",
            "127.0.0.1:9090",
            "ftp://127.0.0.1/ready",
        ] {
            let err = probe(bad, Duration::from_secs(1)).unwrap_err();
            assert!(matches!(err, HealthError::BadUrl { .. }), "{bad}: {err}");
        }
    }
}
