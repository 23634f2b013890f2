//! A request loop against the gateway while something changes under it (reloads, upgrades).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::TestCa;

/// Requests sent in a loop until stopped, counting successes and failures: one client keeps its
/// connections, another opens a new connection for each request.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(ca: &TestCa, https: SocketAddr, host: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for fresh in [false, true] {
            let mut b = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca.cert_pem()).unwrap())
                .tls_built_in_root_certs(false)
                .resolve(host, https)
                .timeout(Duration::from_secs(10));
            if fresh {
                b = b.pool_max_idle_per_host(0);
            }
            let client = b.build().unwrap();
            let url = format!("https://{host}:{}/load", https.port());
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(r) => {
                            eprintln!("load: status {}", r.status());
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            eprintln!("load: {e:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }));
        }
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}
