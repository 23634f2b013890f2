//! OpenTelemetry traces over real sockets: the gateway exports OTLP/HTTP (protobuf) to a
//! minimal collector started here, with the caller's trace id, the parent/child links and
//! the spans of TLS, auth, the session store, the provider and the upstream; a collector
//! that is down never fails a request; tracing off sends nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::authenv::{header, AuthEnv, Extra};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

/// A minimal OTLP/HTTP collector: `POST /v1/traces` with a protobuf body, answered 200.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
    posts: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let posts = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (spans.clone(), posts.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, s.clone(), p.clone()));
            }
        });
        Collector { addr, spans, posts }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (bounded) until a span satisfies `pick`.
    async fn wait_span(&self, what: &str, pick: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.spans().into_iter().find(&pick) {
                return s;
            }
            assert!(Instant::now() < deadline, "no span {what}: {:#?}", self.spans());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Serves one keep-alive connection of the exporter.
async fn serve(conn: tokio::net::TcpStream, spans: Arc<Mutex<Vec<Received>>>, posts: Arc<Mutex<Vec<String>>>) {
    let mut conn = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if conn.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap(),
                "content-type" => content_type = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await.unwrap();
        posts
            .lock()
            .unwrap()
            .push(format!("{} {content_type}", request_line.trim_end()));
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        spans.lock().unwrap().extend(flatten(request));
        let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        conn.get_mut().write_all(reply).await.unwrap();
    }
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<Received> {
    let mut out = Vec::new();
    for rs in request.resource_spans {
        let resource = rs.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Received {
                    service: service.clone(),
                    name: s.name,
                    kind: s.kind,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    attributes: attributes(&s.attributes),
                });
            }
        }
    }
    out
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The main file's tracing section for an exporter posting to `addr`, with a short batch delay.
fn traced(addr: SocketAddr) -> Extra {
    Extra {
        main: format!("tracing: {{ enabled: true, otlp_endpoint: \"http://{addr}\", sample_ratio: 1.0 }}\n"),
        env: vec![("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned())],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_in_request_is_exported_with_the_callers_trace_and_its_child_spans() {
    let collector = Collector::start().await;
    let addr = collector.addr;
    let env = AuthEnv::start_with("", serde_json::json!({}), move |_, _| traced(addr)).await;
    let (browser, _) = env.login("app1.example.com", "alice").await;
    let r = browser
        .get(env.url("app1.example.com", "/private/page"))
        .header("traceparent", PARENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.unwrap();
    // The upstream's parent is the gateway's server span.
    let forwarded = header(&echo, "traceparent").unwrap().to_owned();
    let hop = forwarded.split('-').nth(2).unwrap().to_owned();

    let server = collector
        .wait_span("server span of the traced request", |s| {
            s.trace_id == TRACE_ID && s.kind == SpanKind::Server as i32
        })
        .await;
    assert_eq!(server.span_id, hop, "the span id forwarded upstream: {server:?}");
    assert_eq!(server.parent, CALLER_SPAN, "child of the caller's span");
    assert_eq!(server.service, "authgate");
    assert_eq!(server.name, "GET");
    for (key, value) in [
        ("authgate.app", "app1"),
        ("http.request.method", "GET"),
        ("http.response.status_code", "200"),
        ("authgate.route_class", "protected"),
        ("authgate.auth.outcome", "allowed"),
        ("url.path", "/private/page"),
    ] {
        assert_eq!(
            server.attributes.get(key).map(String::as_str),
            Some(value),
            "{key}: {server:?}"
        );
    }
    let child = |name: &'static str, parent: String| {
        let trace = server.trace_id.clone();
        collector.wait_span(name, move |s| {
            s.name == name && s.parent == parent && s.trace_id == trace
        })
    };
    let auth = child("auth", server.span_id.clone()).await;
    assert_eq!(auth.attributes["authgate.app"], "app1");
    let upstream = child("upstream", server.span_id.clone()).await;
    assert_eq!(upstream.kind, SpanKind::Client as i32);
    assert_eq!(upstream.attributes["authgate.app"], "app1");
    assert_eq!(
        upstream.attributes["server.address"],
        env.upstream.addr.ip().to_string()
    );
    assert_eq!(upstream.attributes["http.response.status_code"], "200");
    child("session_store.load", auth.span_id.clone()).await;

    // The login before it: the code exchange under the callback's auth span, and the TLS
    // handshake of the browser's first connection under that connection's first request.
    let exchange = collector
        .wait_span("provider.token_exchange", |s| s.name == "provider.token_exchange")
        .await;
    assert_eq!(exchange.attributes["authgate.provider"], "corp");
    let spans = collector.spans();
    let parent_of = |s: &Received| parent(&spans, s);
    assert_eq!(
        parent_of(&exchange).map(|p| p.name),
        Some("auth".to_owned()),
        "{exchange:?}"
    );
    let tls = collector
        .wait_span("tls.handshake", |s| s.name == "tls.handshake")
        .await;
    let spans = collector.spans();
    let parent_of = |s: &Received| parent(&spans, s);
    assert_eq!(
        parent_of(&tls).map(|p| p.kind),
        Some(SpanKind::Server as i32),
        "{tls:?}"
    );
    assert!(tls.attributes["tls.protocol.version"].starts_with("TLSv1."), "{tls:?}");
    let posts = collector.posts.lock().unwrap().clone();
    assert!(
        posts
            .iter()
            .all(|p| p.starts_with("POST /v1/traces ") && p.ends_with("application/x-protobuf")),
        "{posts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_fails_no_request_and_is_counted() {
    let down: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let env = AuthEnv::start_with("", serde_json::json!({}), move |_, _| traced(down)).await;
    let client = env.browser();
    for _ in 0..20 {
        let started = Instant::now();
        let r = client.get(env.url("public.example.com", "/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request waited for the collector"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.gw.metric("authgate_trace_export_failures_total").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no export failure counted:\n{}",
            env.gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(|| env.gw.logs().contains("cannot export traces")).await;
    assert_eq!(
        env.gw.logs().matches("cannot export traces").count(),
        1,
        "logged once per outage"
    );
    let r = client.get(env.url("public.example.com", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tracing_off_nothing_is_exported() {
    let collector = Collector::start().await;
    let endpoint = format!("http://{}", collector.addr);
    // The standard variables alone do not turn tracing on: the main file does.
    let env = AuthEnv::start_with("", serde_json::json!({}), move |_, _| Extra {
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "20".to_owned()),
        ],
        ..Default::default()
    })
    .await;
    let r = env
        .browser()
        .get(env.url("public.example.com", "/"))
        .header("traceparent", PARENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(env.gw.logs().contains("tracing=false"), "{}", env.gw.logs());
    // An absence: give a running exporter many batch delays to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(collector.spans().is_empty(), "{:?}", collector.spans());
    assert!(collector.posts.lock().unwrap().is_empty());
}

/// The span `s` names as its parent, among `spans`.
fn parent(spans: &[Received], s: &Received) -> Option<Received> {
    spans
        .iter()
        .find(|p| p.span_id == s.parent && p.trace_id == s.trace_id)
        .cloned()
}
