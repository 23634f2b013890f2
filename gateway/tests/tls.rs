//! Downstream TLS over real sockets: certificate per SNI, versions, ALPN, the HTTP redirect
//! listener and the Host/SNI check.
#![allow(clippy::unwrap_used)]

mod common;

use common::certs::common_name;
use common::*;

async fn three_certs() -> (TestCa, ConfigDir, Gateway, Upstream) {
    let up = Upstream::start("u").await;
    let ca = TestCa::new();
    let config = ConfigDir::new();
    let wild = ca.write_leaf(config.path(), "wild", &["*.example.com"]);
    let app1 = ca.write_leaf(config.path(), "app1", &["app1.example.com"]);
    let other = ca.write_leaf(config.path(), "other", &["other.test", "*.other.test"]);
    config.write_main(&[(&wild.0, &wild.1), (&app1.0, &app1.1), (&other.0, &other.1)], "");
    config.write_app("app1", &app_yaml("app1.example.com", &[up.addr], ""));
    config.write_app("app2", &app_yaml("app2.example.com", &[up.addr], ""));
    config.write_app("other", &app_yaml("www.other.test", &[up.addr], ""));
    let gw = Gateway::start(&config).await;
    (ca, config, gw, up)
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_is_chosen_by_sni() {
    let (ca, _config, gw, _up) = three_certs().await;
    let cn = |sni: Option<&str>| common_name(&peer_cert(&tls_connect(&ca, gw.https, sni, &[]).unwrap()));
    assert_eq!(
        cn(Some("app1.example.com")),
        "app1.example.com",
        "exact name beats the wildcard"
    );
    assert_eq!(cn(Some("app2.example.com")), "*.example.com");
    assert_eq!(cn(Some("www.other.test")), "other.test");
    assert_eq!(
        cn(Some("APP1.Example.com")),
        "app1.example.com",
        "SNI is case-insensitive"
    );
    // No SNI: the first certificate is the default (verification of the name is off here).
    assert_eq!(cn(None), "*.example.com");
    // An unknown name still gets the default certificate, which the client then refuses.
    assert!(tls_connect(&ca, gw.https, Some("unknown.org"), &[]).is_err());
    assert!(
        gw.metric("authgate_tls_certificate_selections_total{match=\"exact\"}")
            .await
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_tls12_and_tls13_with_h2_and_http11_alpn() {
    let (ca, _config, gw, _up) = three_certs().await;
    let s = tls_connect(&ca, gw.https, Some("app1.example.com"), &["h2", "http/1.1"]).unwrap();
    assert_eq!(s.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    let s = tls_connect(&ca, gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
    assert_eq!(s.ssl().selected_alpn_protocol(), Some(&b"http/1.1"[..]));

    for (max, ok) in [
        (openssl::ssl::SslVersion::TLS1_1, false),
        (openssl::ssl::SslVersion::TLS1_2, true),
        (openssl::ssl::SslVersion::TLS1_3, true),
    ] {
        let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        b.cert_store_mut().add_cert(ca.cert.clone()).unwrap();
        b.set_min_proto_version(Some(openssl::ssl::SslVersion::TLS1)).unwrap();
        b.set_max_proto_version(Some(max)).unwrap();
        // Let OpenSSL offer old versions at all (the client's own security level refuses them).
        b.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
        let tcp = std::net::TcpStream::connect(gw.https).unwrap();
        let result = b.build().connect("app1.example.com", tcp);
        assert_eq!(result.is_ok(), ok, "max {max:?}");
    }
    // Both versions served over HTTP/2 and HTTP/1.1 return real responses.
    let client = client(&ca, &gw, &["app1.example.com"]);
    let r = client.get(gw.url("app1.example.com", "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_listener_redirects_to_https_keeping_host_path_query_and_port() {
    let (_ca, _config, gw, _up) = three_certs().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://{}/some/path?a=1&b=%20", gw.http))
        .header("Host", "App1.Example.com:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://app1.example.com:{}/some/path?a=1&b=%20", gw.https.port()).as_str()
    );
    let r = plain.get(format!("http://{}/ping", gw.http)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut tcp = std::net::TcpStream::connect(gw.http).unwrap();
    let resp = raw_exchange(&mut tcp, b"GET / HTTP/1.0\r\n\r\n");
    assert!(
        resp.starts_with("HTTP/1.1 400") || resp.starts_with("HTTP/1.0 400"),
        "{resp}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_uses_public_https_port() {
    let up = Upstream::start("u").await;
    let env = Env::start(
        &[("a", app_yaml("a.example.com", &[up.addr], ""))],
        "public_https_port: 443\n",
    )
    .await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://{}/x", env.gw.http))
        .header("Host", "a.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "https://a.example.com/x");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_not_covered_by_the_connections_certificate_is_misdirected() {
    let (ca, _config, gw, _up) = three_certs().await;
    // A connection opened for app1 (its own certificate) must not reach another tenant.
    let mut s = tls_connect(&ca, gw.https, Some("app1.example.com"), &["http/1.1"]).unwrap();
    let resp = raw_exchange(&mut s, b"GET / HTTP/1.1\r\nHost: www.other.test\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 421"), "{resp}");
    // Under one wildcard certificate, connection reuse across hosts is legitimate (h2 coalescing).
    let mut s = tls_connect(&ca, gw.https, Some("app2.example.com"), &["http/1.1"]).unwrap();
    let resp = raw_exchange(&mut s, b"GET / HTTP/1.1\r\nHost: app3.example.com\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}
