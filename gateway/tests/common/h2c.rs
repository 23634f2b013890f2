//! A raw HTTP/2 client over TLS (the `h2` crate): it sends `:path` exactly as given, where
//! browsers and reqwest would normalise it first.

use std::net::SocketAddr;
use std::pin::Pin;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

use super::TestCa;

/// Status, headers and body of one HTTP/2 exchange.
pub struct H2Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// Sends `GET https://{host}{path}` over a fresh h2 connection with extra `headers`.
pub async fn get(ca: &TestCa, addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> H2Response {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.cert_store_mut().add_cert(ca.cert.clone()).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    b.set_alpn_protos(b"\x02h2").unwrap();
    let ssl = b.build().configure().unwrap().into_ssl(host).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut tls).connect().await.unwrap();
    assert_eq!(tls.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    let (mut client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut req = http::Request::builder()
        .method("GET")
        .uri(format!("https://{host}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (response, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body_stream = response.into_body();
    let mut body = Vec::new();
    while let Some(chunk) = body_stream.data().await {
        let chunk = chunk.unwrap();
        let _ = body_stream.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    H2Response { status, headers, body }
}
