//! Listening sockets: bound up front, before any service starts, so that an address that
//! cannot be bound stops the process at once with a message naming it (Pingora would bind
//! inside a service thread, retry for 30 s and then panic that thread while the rest of the
//! process kept answering `/ping`). With `run --upgrade` the sockets are received from the
//! running process instead (Pingora's protocol over `server.upgrade_socket`), so no connection
//! is refused during a binary upgrade. Also: the systemd readiness notification.

use std::collections::HashSet;
use std::os::unix::io::{IntoRawFd, RawFd};
use std::path::Path;

use async_trait::async_trait;
use pingora::server::{Fds, ListenFds, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};

use crate::config::schema::Listen;

/// Why the listening sockets could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// An address could not be bound (in use, not on this host, not permitted).
    #[error("cannot listen on {addr} ({field}): {error}")]
    Bind {
        /// The configuration field, e.g. `listen.https`.
        field: &'static str,
        /// The address as configured.
        addr: String,
        /// The cause.
        error: std::io::Error,
    },
    /// `--upgrade` received no sockets from the running process.
    #[error("no listening sockets received on {path} (is the old process running, and was it sent SIGQUIT?): {error}")]
    Upgrade {
        /// `server.upgrade_socket`.
        path: String,
        /// The cause.
        error: String,
    },
}

/// The configured listeners as `(field, address)`, in a fixed order.
pub fn addresses(listen: &Listen) -> Vec<(&'static str, &str)> {
    let mut out = vec![("listen.https", listen.https.as_str())];
    if let Some(a) = &listen.http {
        out.push(("listen.http", a.as_str()));
    }
    if let Some(a) = &listen.admin {
        out.push(("listen.admin", a.as_str()));
    }
    out
}

/// One listening socket, keyed by the address string as configured (the key Pingora uses to
/// hand sockets to the next process).
#[derive(Debug)]
pub struct Bound {
    /// The address as configured.
    pub addr: String,
    fd: RawFd,
}

fn bind_listener(field: &'static str, addr: &str) -> Result<std::net::TcpListener, ListenError> {
    let error = |error| ListenError::Bind {
        field,
        addr: addr.to_owned(),
        error,
    };
    let socket_addr: std::net::SocketAddr = addr.parse().map_err(|_| {
        error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not an ip:port address",
        ))
    })?;
    std::net::TcpListener::bind(socket_addr).map_err(error)
}

fn bind_one(field: &'static str, addr: &str) -> Result<RawFd, ListenError> {
    let listener = bind_listener(field, addr)?;
    listener.set_nonblocking(true).map_err(|error| ListenError::Bind {
        field,
        addr: addr.to_owned(),
        error,
    })?;
    Ok(listener.into_raw_fd())
}

/// Binds every configured listener, or takes it from `inherited` (sockets received from the
/// process being upgraded; those not configured any more are closed). Fails on the first
/// address that cannot be bound.
pub fn bind_all(listen: &Listen, inherited: Option<Fds>) -> Result<Vec<Bound>, ListenError> {
    let wanted = addresses(listen);
    let mut inherited = inherited;
    if let Some(fds) = inherited.as_mut() {
        let keep: HashSet<String> = wanted.iter().map(|(_, a)| (*a).to_owned()).collect();
        for addr in fds.close_unclaimed(&keep) {
            tracing::warn!(
                addr,
                "closed an inherited listening socket that is no longer configured"
            );
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (field, addr) in wanted {
        let fd = match inherited.as_ref().and_then(|fds| fds.get(addr)) {
            Some(fd) => {
                tracing::info!(addr, field, "listening socket taken over from the previous process");
                *fd
            }
            None => bind_one(field, addr)?,
        };
        out.push(Bound {
            addr: addr.to_owned(),
            fd,
        });
    }
    Ok(out)
}

/// Checks that every listener of `listen` can be bound now (all at once, so an address given
/// twice fails too), then releases them (`authgate check --bind`).
pub fn check_bind(listen: &Listen) -> Result<(), ListenError> {
    let mut held = Vec::new();
    for (field, addr) in addresses(listen) {
        held.push(bind_listener(field, addr)?);
    }
    Ok(())
}

/// Receives the listening sockets of the running process over `path` (blocking: waits a few
/// seconds for it to be sent SIGQUIT).
pub fn receive_inherited(path: &str) -> Result<Fds, ListenError> {
    let error = |error: String| ListenError::Upgrade {
        path: path.to_owned(),
        error,
    };
    if let Some(dir) = Path::new(path).parent() {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            return Err(error(format!("directory {} does not exist", dir.display())));
        }
    }
    tracing::info!(
        path,
        "waiting for the listening sockets of the running process (send it SIGQUIT)"
    );
    let mut fds = Fds::new();
    fds.get_from_sock(path).map_err(|e| error(e.to_string()))?;
    if fds.is_empty() {
        return Err(error("the message held no socket".to_owned()));
    }
    Ok(fds)
}

/// A Pingora service whose listening sockets were bound before it starts: they are put in
/// Pingora's socket table (which it also sends to the next process on SIGQUIT), where its
/// listeners find them instead of binding.
pub struct PreBound {
    inner: Box<dyn ServiceWithDependents>,
    sockets: Vec<Bound>,
}

impl PreBound {
    /// `inner`, which listens on the addresses of `sockets`.
    pub fn new(inner: Box<dyn ServiceWithDependents>, sockets: Vec<Bound>) -> Self {
        Self { inner, sockets }
    }
}

#[async_trait]
impl ServiceWithDependents for PreBound {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        if let Some(table) = &fds {
            let mut table = table.lock();
            for socket in self.sockets.drain(..) {
                table.add(socket.addr, socket.fd);
            }
        }
        self.inner.start_service(fds, shutdown, listeners_per_fd, ready).await;
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

/// Tells systemd (`Type=notify`) that this process is ready and is the service's main process
/// (after an upgrade the new process replaces the old one). Does nothing without
/// `NOTIFY_SOCKET`. The protocol is one datagram of `KEY=value` lines on a Unix socket.
pub fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message = format!("MAINPID={}\nREADY=1\n", std::process::id());
    if let Err(e) = send_notify(&path, message.as_bytes()) {
        tracing::warn!(socket = ?path, error = %e, "cannot notify systemd of readiness");
    }
}

fn send_notify(path: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name)?,
        None => SocketAddr::from_pathname(Path::new(path))?,
    };
    UnixDatagram::unbound()?.send_to_addr(message, &addr)?;
    Ok(())
}
