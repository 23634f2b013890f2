//! `bare-pingora`: the reference "bare Pingora proxy" for load tests.
//!
//! One TLS listener, a minimal [`ProxyHttp`] that forwards every request unchanged to one
//! upstream over HTTP/1.1 (Pingora's connection pool keeps upstream connections alive),
//! mimalloc as the allocator. Nothing else: no routing, no headers added, no logging.
//! `loadtest/bench.sh` measures the gateway's CPU per request against this binary.
//!
//! The TLS backend is a cargo feature, exactly one of: `rustls` (the default, as authgate) or
//! `openssl` (Pingora's OpenSSL backend: `--no-default-features --features openssl`).
//!
//! ```text
//! bare-pingora --listen 127.0.0.1:8444 --cert cert.pem --key key.pem --upstream 127.0.0.1:9001 [--threads 2]
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use clap::Parser;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::Result;

#[cfg(all(feature = "openssl", feature = "rustls"))]
compile_error!("bare-pingora: choose one TLS backend, feature `rustls` (default) or `openssl`, not both");
#[cfg(not(any(feature = "openssl", feature = "rustls")))]
compile_error!("bare-pingora: choose a TLS backend, feature `rustls` (default) or `openssl`");

/// The TLS backend this binary was built with.
const TLS_BACKEND: &str = if cfg!(feature = "rustls") { "rustls" } else { "openssl" };

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A bare Pingora TLS reverse proxy to a single HTTP/1.1 upstream.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address of the TLS listener.
    #[arg(short, long, default_value = "127.0.0.1:8444")]
    listen: SocketAddr,
    /// PEM certificate chain (leaf first).
    #[arg(long)]
    cert: String,
    /// PEM private key of the leaf.
    #[arg(long)]
    key: String,
    /// Plain-HTTP upstream every request goes to.
    #[arg(short, long)]
    upstream: SocketAddr,
    /// Worker threads of the proxy service.
    #[arg(short, long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
}

/// Forwards every request to one fixed upstream.
struct BareProxy {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let threads = usize::from(args.threads);

    // Load the certificate now so that a bad path or PEM is an error message, not a panic later.
    // (OpenSSL's `intermediate` loads both files; rustls' only keeps the paths, so check them.)
    let tls = TlsSettings::intermediate(&args.cert, &args.key);
    #[cfg(feature = "rustls")]
    let tls = tls.and_then(|mut tls| {
        tls.set_certificate_chain_file(&args.cert)?;
        tls.set_private_key_file(&args.key)?;
        Ok(tls)
    });
    let tls = match tls {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("bare-pingora: TLS setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };

    let conf = ServerConf {
        threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    // `SocketAddr` resolves infallibly, so `HttpPeer::new` cannot fail here.
    let proxy = BareProxy {
        peer: HttpPeer::new(args.upstream, false, String::new()),
    };
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, proxy);
    service.add_tls_with_settings(&args.listen.to_string(), None, tls);
    service.threads = Some(threads);
    server.add_service(service);

    eprintln!(
        "bare-pingora: listening on https://{} -> http://{} ({threads} threads, {TLS_BACKEND})",
        args.listen, args.upstream
    );
    server.bootstrap();
    server.run_forever()
}
