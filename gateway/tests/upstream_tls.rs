//! `https://` backends over real sockets, served by an OpenSSL server: the gateway's upstream
//! TLS client (rustls) verifies the chain against `upstream_tls.ca_file` and the name against
//! `server_name` (or the IP the upstream is written as), refuses a backend signed by another CA
//! or named otherwise, and `insecure_skip_verify` skips both checks.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use common::*;
use openssl::pkey::PKey;
use openssl::ssl::{NameType, Ssl, SslAcceptor, SslMethod};
use openssl::x509::X509;

/// A TLS server for `names` issued by `ca`, in front of an echo upstream. Records the server
/// name each handshake asked for.
struct TlsBackend {
    addr: SocketAddr,
    server_names: Arc<Mutex<Vec<Option<String>>>>,
    _echo: Upstream,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_backend(ca: &TestCa, names: &[&str]) -> TlsBackend {
    let echo = Upstream::start("tls-backend").await;
    let (crt, key) = ca.issue(names);
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    b.set_certificate(&X509::from_pem(&crt).unwrap()).unwrap();
    b.set_private_key(&PKey::private_key_from_pem(&key).unwrap()).unwrap();
    let server_names = Arc::new(Mutex::new(Vec::new()));
    let seen = server_names.clone();
    b.set_servername_callback(move |ssl, _| {
        seen.lock()
            .unwrap()
            .push(ssl.servername(NameType::HOST_NAME).map(str::to_owned));
        Ok(())
    });
    let acceptor = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let echo_addr = echo.addr;
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let ssl = Ssl::new(acceptor.context()).unwrap();
            tokio::spawn(async move {
                let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                if Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                let mut plain = tokio::net::TcpStream::connect(echo_addr).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsBackend {
        addr,
        server_names,
        _echo: echo,
        task,
    }
}

fn app(host: &str, upstream: String, tls: &str) -> String {
    format!("host: \"{host}\"\nupstreams: [\"{upstream}\"]\nupstream_tls: {{ {tls} }}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn https_backends_are_verified_against_the_apps_ca_and_name() {
    let backend_ca = TestCa::new();
    let other_ca = TestCa::new();
    let named = tls_backend(&backend_ca, &["backend.internal"]).await;
    let by_ip = tls_backend(&backend_ca, &["127.0.0.1"]).await;
    let port = named.addr.port();
    let apps = [
        (
            "good",
            app(
                "good.example.com",
                format!("https://127.0.0.1:{port}"),
                "ca_file: ca.pem, server_name: backend.internal",
            ),
        ),
        (
            "ip",
            app(
                "ip.example.com",
                format!("https://127.0.0.1:{}", by_ip.addr.port()),
                "ca_file: ca.pem",
            ),
        ),
        (
            "other-ca",
            app(
                "other-ca.example.com",
                format!("https://127.0.0.1:{port}"),
                "ca_file: other-ca.pem, server_name: backend.internal",
            ),
        ),
        (
            "wrong-name",
            app(
                "wrong-name.example.com",
                format!("https://127.0.0.1:{port}"),
                "ca_file: ca.pem, server_name: elsewhere.internal",
            ),
        ),
        (
            "skip",
            app(
                "skip.example.com",
                format!("https://127.0.0.1:{port}"),
                "server_name: elsewhere.internal, insecure_skip_verify: true",
            ),
        ),
    ];
    let ca = TestCa::new();
    let config = ConfigDir::new();
    let (crt, key) = ca.write_leaf(config.path(), "wildcard", &["*.example.com"]);
    config.write_main(&[(&crt, &key)], "");
    // The CA files sit beside the app files, where `ca_file` is resolved.
    config.write("apps.d/ca.pem", std::str::from_utf8(&backend_ca.cert_pem()).unwrap());
    config.write(
        "apps.d/other-ca.pem",
        std::str::from_utf8(&other_ca.cert_pem()).unwrap(),
    );
    for (name, yaml) in &apps {
        config.write_app(name, yaml);
    }
    let gw = Gateway::start(&config).await;
    let env = Env { ca, config, gw };
    let hosts: Vec<String> = apps.iter().map(|(n, _)| format!("{n}.example.com")).collect();
    let client = env.client(&hosts.iter().map(String::as_str).collect::<Vec<_>>());
    let status = |host: &'static str| {
        let request = client.get(env.gw.url(host, "/"));
        async move { request.send().await.unwrap() }
    };

    let r = status("good.example.com").await;
    assert_eq!(r.status(), 200, "{}", env.gw.logs());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["name"], "tls-backend");
    assert!(
        named
            .server_names
            .lock()
            .unwrap()
            .contains(&Some("backend.internal".to_owned())),
        "the backend is asked for server_name: {:?}",
        named.server_names.lock().unwrap()
    );

    let r = status("ip.example.com").await;
    assert_eq!(
        r.status(),
        200,
        "an IP upstream verifies against the IP in the certificate"
    );

    for refused in ["other-ca.example.com", "wrong-name.example.com"] {
        let r = status(refused).await;
        assert_eq!(
            r.status(),
            502,
            "{refused}: a backend that fails verification gets no request"
        );
    }

    let r = status("skip.example.com").await;
    assert_eq!(r.status(), 200, "insecure_skip_verify accepts the wrong name");
    assert!(named
        .server_names
        .lock()
        .unwrap()
        .contains(&Some("elsewhere.internal".to_owned())));
}
