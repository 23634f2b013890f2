//! Process signals: Pingora's (`SIGTERM` graceful stop, `SIGINT` fast stop, `SIGQUIT` hand
//! the listening sockets to a process started with `run --upgrade`, then drain), plus
//! `SIGUSR2`: start that new process ourselves, from the binary now on disk, and hand over to
//! it once it is waiting (so that under systemd it runs inside the service's own cgroup). If
//! the new process fails (for example on a configuration error) this one keeps serving.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

/// How long a new process may take to load its configuration and wait for the sockets.
const SUCCESSOR_START: Duration = Duration::from_secs(120);

/// The signal watcher handed to Pingora's main loop.
pub struct Signals {
    upgrade_socket: String,
}

impl Signals {
    /// Signals of a process whose sockets go over `upgrade_socket` on an upgrade.
    pub fn new(upgrade_socket: String) -> Self {
        Self { upgrade_socket }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let kinds = [
            SignalKind::quit(),
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::user_defined2(),
        ];
        let mut streams = Vec::with_capacity(kinds.len());
        for kind in kinds {
            match signal(kind) {
                Ok(s) => streams.push(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for signals; stop the process with SIGKILL");
                    return std::future::pending().await;
                }
            }
        }
        let [quit, term, int, usr2] = &mut streams[..] else {
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
                _ = term.recv() => return ShutdownSignal::GracefulTerminate,
                _ = int.recv() => return ShutdownSignal::FastShutdown,
                _ = usr2.recv() => match start_successor(&self.upgrade_socket).await {
                    Ok(pid) => {
                        tracing::info!(pid, "SIGUSR2: the new process is waiting; handing the listening sockets over");
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    Err(e) => tracing::error!("SIGUSR2: binary upgrade aborted, still serving: {e}"),
                },
            }
        }
    }
}

/// The command line of this process with `--upgrade` added.
fn successor_args() -> (OsString, Vec<OsString>) {
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| OsString::from("authgate"));
    let mut rest: Vec<OsString> = args.collect();
    if !rest.iter().any(|a| a == "--upgrade") {
        rest.push(OsString::from("--upgrade"));
    }
    (program, rest)
}

/// Starts `<this binary> <these arguments> --upgrade` and waits until it listens on
/// `upgrade_socket`. Returns its process id.
async fn start_successor(upgrade_socket: &str) -> Result<u32, String> {
    let socket = Path::new(upgrade_socket);
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove the stale {upgrade_socket}: {e}")),
    }
    let (program, args) = successor_args();
    let mut child = std::process::Command::new(&program)
        .args(&args)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.to_string_lossy()))?;
    let pid = child.id();
    tracing::info!(pid, program = %program.to_string_lossy(), "SIGUSR2: started the new process");
    let deadline = Instant::now() + SUCCESSOR_START;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("the new process (pid {pid}) exited with {status}")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot watch the new process (pid {pid}): {e}")),
        }
        if socket.exists() {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the new process (pid {pid}) did not wait for the sockets within {SUCCESSOR_START:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
