//! A throwaway Redis Sentinel topology on loopback for integration tests: one master, N replicas and three
//! sentinels, each a real `redis-server` process with its own directory under one temporary directory, on free
//! 127.0.0.1 ports (needs the Debian packages `redis-server` and `redis-sentinel`, Redis >= 7.0).
//!
//! Every test builds its own [`RedisTopology`]; several may run in parallel in one test binary. The API is
//! synchronous (std processes, the sync `redis` client, polling with `std::thread::sleep`): it may be called directly
//! from a `#[tokio::test(flavor = "multi_thread")]` body, where it blocks one worker thread while it waits; use
//! `tokio::task::spawn_blocking` if the test serves something from the same runtime that must keep running meanwhile.
//! This file refers to the crate as `::redis` because the module itself is named `redis`.
//!
//! What it sets up (the constants below hold the exact text):
//! - data nodes: `user default off`; the ACL users `admin` (everything; for the harness and for test assertions),
//!   `replicator` ([`REPLICATOR_ACL`]), `sentinel-mon` ([`SENTINEL_MON_ACL`], from the Redis Sentinel docs) and the
//!   application user `authgate` ([`GATEWAY_ACL`]), each with a random password; `min-replicas-to-write 1`,
//!   `min-replicas-max-lag 5`; no persistence (`save ""`, `appendonly no`); diskless replication without delay;
//! - sentinels (`redis-server <conf> --sentinel`): master name `authgate`, quorum 2, `down-after-milliseconds 1000`,
//!   `failover-timeout 5000`, `parallel-syncs 1`, `auth-user sentinel-mon` to the data nodes; clients of the
//!   sentinels need no password (loopback only). Their configs already name each other (`sentinel myid`,
//!   `known-sentinel`, `known-replica`, as sentinel itself would write them after discovery), which saves the ~2 s
//!   of discovery at start; after start the harness runs [`SENTINEL_DEBUG`] on each.
//!
//! Timings measured on a loaded 2-core VM (Redis 7.0.15): `start` 0.4-1.3 s; `failover` 0.9-1.4 s with 2 replicas
//! (sometimes ~3 s: the other sentinels learn the new master from hello messages sent every 2 s) and ~9.5 s with 1
//! replica; `kill_master` to `wait_new_master` 2.1-2.4 s; `wait_settled` after a graceful failover ~9.5 s (until the
//! deposed master is demoted), after `restart` ~1.1 s; `stop_all_data_nodes` 0.1-0.5 s; `start_all_data_nodes`
//! 0.6-4.5 s (it waits out a failover attempt that a sentinel may have begun during the outage).
//!
//! Traps worth knowing when writing tests:
//! - after a graceful failover the deposed master still has `role:master` for ~8-10 s, until sentinel demotes it
//!   (`+convert-to-slave`); with `min-replicas-to-write 1` it refuses writes (NOREPLICAS) as soon as its replicas
//!   have moved, and so does the new master until it has a replica again: with `start(1)` that is ~10 s;
//! - after `kill_master` with `start(1)` the new master has no replica, so writes fail with NOREPLICAS until the old
//!   node is restarted;
//! - chain failovers only through [`RedisTopology::failover`] (it waits until settled first): a `SENTINEL FAILOVER`
//!   sent while a sentinel still has a stale view of a replica can be aborted.
//!
//! Everything waits by polling real state with bounded deadlines and panics with [`RedisTopology::logs`] in the
//! message. [`Drop`] SIGKILLs every process and removes the directory; a watchdog shell does the same if the test
//! process dies without unwinding (SIGKILL, abort).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Loopback address every process binds to.
pub const HOST: &str = "127.0.0.1";
/// The Sentinel master name.
pub const MASTER_NAME: &str = "authgate";
/// The restricted application user on the data nodes.
pub const USERNAME: &str = "authgate";
/// The harness-only user on the data nodes (all commands, all keys).
pub const ADMIN_USERNAME: &str = "admin";
/// ACL rules of the application user, after `user authgate on >PASSWORD`: keys `authgate:*` and channels
/// `authgate:*` only; every command except the `@dangerous` category, plus back `ROLE` (redis-rs sentinel resolution
/// verifies the master with it), `INFO` (its fallback), `WAIT`, `CLIENT SETNAME` and `PING`. `KEYS`, `FLUSHDB`,
/// `FLUSHALL`, `CONFIG`, `CLIENT KILL/LIST`, `SORT`, `MIGRATE`/`RESTORE`, `DEBUG`, `SHUTDOWN` ... are denied.
/// Note that `SCAN` (not `@dangerous`) lists key names of every prefix, as ACL key patterns do not filter it.
pub const GATEWAY_ACL: &str =
    "resetkeys ~authgate:* resetchannels &authgate:* +@all -@dangerous +role +wait +info +client|setname +ping";
/// ACL rules of the user Sentinel logs in with (from the Redis Sentinel documentation).
pub const SENTINEL_MON_ACL: &str = "allchannels -@all +multi +slaveof +replicaof +ping +exec +subscribe \
     +config|rewrite +role +publish +info +client|setname +client|kill +script|kill";
/// ACL rules of the replication user.
pub const REPLICATOR_ACL: &str = "-@all +psync +replconf +ping";
/// Sentinel `down-after-milliseconds`.
pub const DOWN_AFTER_MS: u64 = 1000;
/// Sentinel `failover-timeout`.
pub const FAILOVER_TIMEOUT_MS: u64 = 5000;
/// Data node `min-replicas-to-write`.
pub const MIN_REPLICAS_TO_WRITE: u32 = 1;
/// Data node `min-replicas-max-lag` (seconds).
pub const MIN_REPLICAS_MAX_LAG: u32 = 5;
/// `SENTINEL DEBUG` arguments run on every sentinel once it answers (Redis >= 7.0; runtime only, not in the config):
/// - `ping-period 250` (default 1000): with `down-after-milliseconds 1000` equal to the ping period, sentinel sends
///   its first PING to a newly known instance (a just-promoted master) only after ~1 s, when the instance is already
///   due to be judged down; under load this gave spurious `+sdown`/`+odown` of the new master and a second,
///   unrequested failover. A shorter ping period removes that race (and detects a killed master slightly sooner);
/// - `info-period 1000` (default 10000): sentinels re-read `INFO` of the replicas every second, so their view
///   (`role-reported`, `master-link-status`) converges in ~1 s instead of up to 10 s. Settling after a graceful
///   failover still takes ~9.5 s: sentinel demotes a deposed or restarted master only after 4 x publish-period (8 s),
///   which is left at its default as in production;
/// - `tilt-period 5000` (default 30000): a sentinel that was starved of CPU for > 2 s enters TILT mode (acts on
///   nothing) for 5 s instead of 30 s.
pub const SENTINEL_DEBUG: &[&str] = &["info-period", "1000", "ping-period", "250", "tilt-period", "5000"];

/// Default deadline of the bounded waits.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of [`RedisTopology::wait_settled`] (demoting a stale master alone takes ~10 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(50);
const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Data,
    Sentinel,
}

/// One redis-server process: its port, directory, config and (while running) child process.
struct Proc {
    name: String,
    kind: Kind,
    port: u16,
    dir: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    stdout: PathBuf,
    /// Pid file read by the watchdog; present while the child is not reaped.
    livepid: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Proc {
    fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// The child slot; a panic while it was locked (e.g. redis-server missing) must not turn Drop into an abort.
    fn child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, extra_args: &[&str]) {
        let mut child = self.child();
        assert!(child.is_none(), "{} is already running", self.name);
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stdout)
            .unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.arg(&self.conf);
        if self.kind == Kind::Sentinel {
            cmd.arg("--sentinel");
        }
        cmd.args(extra_args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let spawned = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run redis-server ({e}); install redis-server and redis-sentinel (.ci/install-deps)")
        });
        fs::write(&self.livepid, spawned.id().to_string()).unwrap();
        *child = Some(spawned);
    }

    /// Whether the process runs (reaps it if it has exited).
    fn running(&self) -> bool {
        let mut child = self.child();
        match child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                *child = None;
                let _ = fs::remove_file(&self.livepid);
                false
            }
            None => false,
        }
    }

    /// SIGKILL and reap.
    fn kill(&self) {
        let mut child = self.child();
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let _ = fs::remove_file(&self.livepid);
        }
    }
}

/// A running topology. Dropping it kills every process and removes the temporary directory.
pub struct RedisTopology {
    nodes: Vec<Proc>,
    sentinels: Vec<Proc>,
    password: String,
    admin_password: String,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
    // Declared last: removed after the processes are gone.
    dir: tempfile::TempDir,
}

impl RedisTopology {
    /// A gateway's `sessions:` section on these sentinels, as the application user (whose
    /// credentials come from [`RedisTopology::gateway_env`]), with a session cache of `cache_ttl`.
    pub fn sessions_yaml(&self, cache_ttl: &str) -> String {
        let addrs: Vec<String> = self.sentinel_addrs().iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "sessions:\n  store: redis\n  cache: {{ max_entries: 1000, ttl: {cache_ttl} }}\n  redis:\n\
             \x20   sentinel: {{ master: {}, addresses: [{}] }}\n\
             \x20   username_env: TEST_REDIS_USER\n    password_env: TEST_REDIS_PASSWORD\n    key_prefix: \"authgate:\"\n\
             \x20   timeouts: {{ connect: 500ms, command: 500ms }}\n",
            self.master_name(),
            addrs.join(", ")
        )
    }

    /// The environment [`RedisTopology::sessions_yaml`] names: the application user's credentials.
    pub fn gateway_env(&self) -> Vec<(String, String)> {
        vec![
            ("TEST_REDIS_USER".to_owned(), self.username().to_owned()),
            ("TEST_REDIS_PASSWORD".to_owned(), self.password().to_owned()),
        ]
    }

    /// Starts 1 master + `replicas` replicas (>= 1, since `min-replicas-to-write 1`) + 3 sentinels and waits until
    /// the topology is settled (see [`RedisTopology::wait_settled`]) and every sentinel knows the two others.
    pub fn start(replicas: usize) -> RedisTopology {
        assert!(replicas >= 1, "min-replicas-to-write 1 needs at least one replica");
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(replicas) {
                Ok(topology) => return topology,
                // A port picked by binding :0 was taken by someone else before redis bound it: pick new ones.
                Err(e) if e.contains("Address already in use") => last_error = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last_error}")
    }

    fn try_start(replicas: usize) -> Result<RedisTopology, String> {
        let dir = tempfile::Builder::new().prefix("authgate-redis-").tempdir().unwrap();
        let ports = free_ports(1 + replicas + 3);
        let password = random_hex(16);
        let admin_password = random_hex(16);
        let repl_password = random_hex(16);
        let mon_password = random_hex(16);
        let master_port = ports[0];

        let make_proc = |name: String, kind: Kind, port: u16| {
            let pdir = dir.path().join(&name);
            fs::create_dir(&pdir).unwrap();
            let log = pdir.join(if kind == Kind::Data {
                "redis.log"
            } else {
                "sentinel.log"
            });
            Proc {
                conf: pdir.join(if kind == Kind::Data {
                    "redis.conf"
                } else {
                    "sentinel.conf"
                }),
                stdout: pdir.join("stdout.log"),
                livepid: dir.path().join(format!("{name}.livepid")),
                child: Mutex::new(None),
                name,
                kind,
                port,
                dir: pdir,
                log,
            }
        };
        let nodes: Vec<Proc> = (0..=replicas)
            .map(|i| make_proc(format!("node{i}"), Kind::Data, ports[i]))
            .collect();
        let sentinels: Vec<Proc> = (0..3)
            .map(|i| make_proc(format!("sentinel{i}"), Kind::Sentinel, ports[1 + replicas + i]))
            .collect();

        for (i, node) in nodes.iter().enumerate() {
            let mut conf = String::new();
            let _ = writeln!(
                conf,
                "bind {HOST}\nport {}\nprotected-mode yes\ndaemonize no",
                node.port
            );
            let _ = writeln!(conf, "dir {}\nlogfile {}", node.dir.display(), node.log.display());
            conf.push_str("save \"\"\nappendonly no\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\n");
            let _ = writeln!(
                conf,
                "replica-announce-ip {HOST}\nmasteruser replicator\nmasterauth {repl_password}"
            );
            let _ = writeln!(conf, "min-replicas-to-write {MIN_REPLICAS_TO_WRITE}");
            let _ = writeln!(conf, "min-replicas-max-lag {MIN_REPLICAS_MAX_LAG}");
            conf.push_str("user default off\n");
            let _ = writeln!(conf, "user {ADMIN_USERNAME} on >{admin_password} ~* &* +@all");
            let _ = writeln!(conf, "user replicator on >{repl_password} {REPLICATOR_ACL}");
            let _ = writeln!(conf, "user sentinel-mon on >{mon_password} {SENTINEL_MON_ACL}");
            let _ = writeln!(conf, "user {USERNAME} on >{password} {GATEWAY_ACL}");
            if i > 0 {
                let _ = writeln!(conf, "replicaof {HOST} {master_port}");
            }
            fs::write(&node.conf, conf).unwrap();
        }
        let sentinel_ids: Vec<String> = sentinels.iter().map(|_| random_hex(20)).collect();
        for (i, s) in sentinels.iter().enumerate() {
            let mut conf = String::new();
            let _ = writeln!(conf, "bind {HOST}\nport {}\ndaemonize no", s.port);
            let _ = writeln!(conf, "dir {}\nlogfile {}", s.dir.display(), s.log.display());
            let _ = writeln!(conf, "sentinel announce-ip {HOST}");
            let _ = writeln!(conf, "sentinel monitor {MASTER_NAME} {HOST} {master_port} 2");
            let _ = writeln!(conf, "sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}");
            let _ = writeln!(conf, "sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}");
            let _ = writeln!(conf, "sentinel parallel-syncs {MASTER_NAME} 1");
            let _ = writeln!(conf, "sentinel auth-user {MASTER_NAME} sentinel-mon");
            let _ = writeln!(conf, "sentinel auth-pass {MASTER_NAME} {mon_password}");
            // What sentinel would discover (and write here) itself within ~2 s: saves that wait at start.
            let _ = writeln!(conf, "sentinel myid {}", sentinel_ids[i]);
            for (j, other) in sentinels.iter().enumerate().filter(|(j, _)| *j != i) {
                let _ = writeln!(
                    conf,
                    "sentinel known-sentinel {MASTER_NAME} {HOST} {} {}",
                    other.port, sentinel_ids[j]
                );
            }
            for node in &nodes[1..] {
                let _ = writeln!(conf, "sentinel known-replica {MASTER_NAME} {HOST} {}", node.port);
            }
            fs::write(&s.conf, conf).unwrap();
        }

        let watchdog = spawn_watchdog(dir.path());
        let topology = RedisTopology {
            nodes,
            sentinels,
            password,
            admin_password,
            watchdog: Mutex::new(Some(watchdog)),
            dir,
        };
        // Master first, so that the replicas' first connection attempt succeeds (they retry only once a second).
        topology.nodes[0].spawn(&[]);
        topology.try_wait_ping(&topology.nodes[0])?;
        for p in topology.nodes[1..].iter().chain(&topology.sentinels) {
            p.spawn(&[]);
        }
        for p in topology.nodes[1..].iter().chain(&topology.sentinels) {
            topology.try_wait_ping(p)?;
        }
        for s in &topology.sentinels {
            let mut cmd = ::redis::cmd("SENTINEL");
            cmd.arg("DEBUG").arg(SENTINEL_DEBUG);
            query::<String>(s.port, None, &cmd).map_err(|e| format!("SENTINEL DEBUG on {}: {e}", s.name))?;
        }
        topology.try_wait_until("topology to come up", TIMEOUT, || topology.settled_check(true))?;
        Ok(topology)
    }

    /// The sentinels' addresses, `127.0.0.1:port`.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(Proc::addr).collect()
    }

    /// The data nodes' addresses (running or not), `127.0.0.1:port`; node 0 is the initial master.
    pub fn data_node_addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Proc::addr).collect()
    }

    /// `"authgate"`.
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// The restricted application user, `"authgate"`.
    pub fn username(&self) -> &str {
        USERNAME
    }

    /// Its random password (32 hex digits, URL-safe).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The harness's own all-powerful user on the data nodes, `"admin"`.
    pub fn admin_username(&self) -> &str {
        ADMIN_USERNAME
    }

    /// Its random password.
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// The temporary directory holding configs, logs and RDB files.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The master address as a sentinel reports it (`SENTINEL GET-MASTER-ADDR-BY-NAME`, first sentinel that answers).
    pub fn master_addr(&self) -> String {
        self.wait_until("a sentinel to report the master", TIMEOUT, || {
            let mut errors = Vec::new();
            for s in self.sentinels.iter().filter(|s| s.running()) {
                match sentinel_master(s.port) {
                    Ok(addr) => return Ok(addr),
                    Err(e) => errors.push(format!("{}: {e}", s.name)),
                }
            }
            Err(errors.join("; "))
        })
    }

    /// A connection to a data node as the restricted `authgate` user.
    pub fn user_connection(&self, addr: &str) -> ::redis::Connection {
        connect(port_of(addr), Some((USERNAME, &self.password)))
            .unwrap_or_else(|e| panic!("connect to {addr} as {USERNAME}: {e}\n{}", self.logs()))
    }

    /// A connection to a data node as `admin` (all commands and keys).
    pub fn admin_connection(&self, addr: &str) -> ::redis::Connection {
        connect(port_of(addr), Some((ADMIN_USERNAME, &self.admin_password)))
            .unwrap_or_else(|e| panic!("connect to {addr} as {ADMIN_USERNAME}: {e}\n{}", self.logs()))
    }

    /// A connection to a sentinel (no authentication).
    pub fn sentinel_connection(&self, addr: &str) -> ::redis::Connection {
        connect(port_of(addr), None).unwrap_or_else(|e| panic!("connect to sentinel {addr}: {e}\n{}", self.logs()))
    }

    /// Graceful failover: waits until settled, sends `SENTINEL FAILOVER authgate`, then waits until every sentinel
    /// reports a new master, that node answers `role:master`, and it has `min-replicas-to-write` good replicas
    /// (so writes and `WAIT 1` work). Returns the new master address.
    ///
    /// The deposed master keeps `role:master` for another ~8-10 s until sentinel demotes it; with one replica the new
    /// master only gets a replica back then, so with `start(1)` this returns after ~10 s (`start(2)`: ~1-2 s).
    pub fn failover(&self) -> String {
        let old = self.wait_settled();
        let mut last_sent: Option<Instant> = None;
        let mut attempt = 0usize;
        let new = self.wait_until(&format!("a failover away from {old}"), TIMEOUT, || {
            // Resend if an attempt was refused, or made no progress (e.g. -failover-abort-slave-timeout).
            if last_sent.is_none_or(|t| t.elapsed() > Duration::from_millis(FAILOVER_TIMEOUT_MS + 3000)) {
                let s = &self.sentinels[attempt % self.sentinels.len()];
                attempt += 1;
                let mut cmd = ::redis::cmd("SENTINEL");
                cmd.arg("FAILOVER").arg(MASTER_NAME);
                match query::<String>(s.port, None, &cmd) {
                    Ok(_) => last_sent = Some(Instant::now()),
                    Err(e) => {
                        last_sent = None;
                        return Err(format!("SENTINEL FAILOVER on {}: {e}", s.name));
                    }
                }
            }
            self.new_master_check(&old)
        });
        self.wait_until(&format!("new master {new} to have a good replica"), TIMEOUT, || {
            let info = self.info(port_of(&new), "replication")?;
            let good: u32 = info
                .get("min_slaves_good_slaves")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if good >= MIN_REPLICAS_TO_WRITE {
                Ok(())
            } else {
                Err(format!("{new} has {good} good replicas"))
            }
        });
        new
    }

    /// Waits (bounded) until every sentinel reports a master other than `old` and that node answers `role:master`.
    /// Returns it. Use after [`RedisTopology::kill_master`].
    pub fn wait_new_master(&self, old: &str) -> String {
        self.wait_until(&format!("a new master other than {old}"), TIMEOUT, || {
            self.new_master_check(old)
        })
    }

    /// SIGKILLs the current master (the one all sentinels agree on and that answers `role:master`) and returns its
    /// address. Does not wait for the failover (see [`RedisTopology::wait_new_master`]) nor restart it.
    pub fn kill_master(&self) -> String {
        let master = self.wait_until("sentinels to agree on a live master", TIMEOUT, || {
            let m = self.agreed_master()?;
            self.expect_role(&m, "master")?;
            Ok(m)
        });
        self.proc_by_addr(&master).kill();
        master
    }

    /// SIGKILLs one data node (master or replica), without restarting it.
    pub fn kill(&self, addr: &str) {
        self.proc_by_addr(addr).kill();
    }

    /// Restarts a killed or stopped data node with its config file plus `--replicaof <master>`, the master the
    /// sentinels report, as an orchestrator would (so it does not come back as a stale master; see
    /// [`RedisTopology::restart_stale`] for that). If the sentinels still report this very node as master, it first
    /// waits for their failover when another data node runs, and otherwise starts it as master. Waits until it
    /// answers and, as a replica, has its replication link up (the sentinels notice it ~1-2 s later; see
    /// [`RedisTopology::wait_settled`]).
    pub fn restart(&self, addr: &str) {
        let p = self.proc_by_addr(addr);
        assert!(!p.running(), "{} ({addr}) is running", p.name);
        let mut master = self.master_addr();
        if master == addr && self.nodes.iter().any(Proc::running) {
            master = self.wait_new_master(addr);
        }
        if master == addr {
            p.spawn(&["--replicaof", "no", "one"]);
            self.wait_ping(p);
        } else {
            let mport = port_of(&master).to_string();
            p.spawn(&["--replicaof", HOST, &mport]);
            self.wait_ping(p);
            self.wait_until(&format!("{addr} to sync from {master}"), TIMEOUT, || {
                self.replica_check(p.port, port_of(&master))
            });
        }
    }

    /// Restarts a killed data node with only its config file, as a crashed server restarted without orchestration:
    /// a former master comes back as a master with whatever its directory's RDB holds (nothing, or an old replica
    /// sync, as persistence is off) for ~8-10 s until the sentinels demote it (`+convert-to-slave`). Writes to it
    /// fail meanwhile with NOREPLICAS (min-replicas-to-write). Waits only until it answers PING.
    pub fn restart_stale(&self, addr: &str) {
        let p = self.proc_by_addr(addr);
        assert!(!p.running(), "{} ({addr}) is running", p.name);
        p.spawn(&[]);
        self.wait_ping(p);
    }

    /// "Redis stopped entirely": `SHUTDOWN SAVE` on every running data node, replicas first (so that no replica is
    /// left to promote), then waits until the processes are gone. The data is kept in each node's RDB file and
    /// comes back with [`RedisTopology::start_all_data_nodes`]. Sentinels keep running.
    pub fn stop_all_data_nodes(&self) {
        let mut running: Vec<&Proc> = self.nodes.iter().filter(|p| p.running()).collect();
        running.sort_by_cached_key(|p| self.expect_role(&p.addr(), "master").is_ok());
        for p in running {
            let _ = query::<String>(
                p.port,
                Some((ADMIN_USERNAME, &self.admin_password)),
                ::redis::cmd("SHUTDOWN").arg("SAVE"),
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while p.running() && Instant::now() < deadline {
                sleep(POLL);
            }
            p.kill();
        }
    }

    /// Starts every data node that is not running: first the master the sentinels still report (as master, once all
    /// sentinels agree on it), then, once every sentinel sees it up again (flags `master`, no failover in progress),
    /// the others as its replicas. Then waits until settled.
    pub fn start_all_data_nodes(&self) {
        let master = self.wait_until("sentinels to agree on the master", TIMEOUT, || self.agreed_master());
        let mp = self.proc_by_addr(&master);
        if !mp.running() {
            mp.spawn(&["--replicaof", "no", "one"]);
            self.wait_ping(mp);
        }
        self.wait_until(&format!("sentinels to see {master} up"), TIMEOUT, || {
            for s in &self.sentinels {
                let m = sentinel_map(s.port, &["MASTER", MASTER_NAME])?;
                let flags = m.get("flags").map(String::as_str).unwrap_or("");
                if flags != "master" {
                    return Err(format!("{}: flags {flags}", s.name));
                }
            }
            Ok(())
        });
        let mport = mp.port.to_string();
        for p in self.nodes.iter().filter(|p| !p.running()) {
            p.spawn(&["--replicaof", HOST, &mport]);
        }
        for p in &self.nodes {
            self.wait_ping(p);
        }
        self.wait_settled();
    }

    /// Waits (bounded) until the topology is settled and returns the master: all sentinels report the same master;
    /// it answers `role:master`; there is at least one running replica; every running data node other than the
    /// master is its replica with the link up and is seen by every sentinel as `flags=slave`,
    /// `role-reported=slave`, `master-link-status=ok` under that master. Killed nodes are ignored.
    pub fn wait_settled(&self) -> String {
        self.wait_until("the topology to settle", SETTLE_TIMEOUT, || self.settled_check(false))
    }

    /// `calls` of `cmdstat_<command>` in `INFO commandstats` of a data node (0 if never called); subcommands as
    /// `client|setname`. Counts every client, including the harness's own INFO/PING polling and sentinel traffic,
    /// and on replicas the replicated writes. Use [`RedisTopology::reset_stats`] to start from zero.
    pub fn command_count(&self, addr: &str, command: &str) -> u64 {
        let key = format!("cmdstat_{}", command.to_ascii_lowercase());
        let stats = self
            .info(port_of(addr), "commandstats")
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
        stats
            .get(&key)
            .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("calls=")))
            .map(|n| n.parse().unwrap())
            .unwrap_or(0)
    }

    /// `CONFIG RESETSTAT` on a data node (resets `INFO commandstats`).
    pub fn reset_stats(&self, addr: &str) {
        let mut con = self.admin_connection(addr);
        ::redis::cmd("CONFIG").arg("RESETSTAT").query::<()>(&mut con).unwrap();
    }

    /// Every key of a data node (db 0) with its raw content, sorted by key: strings as stored; hashes as
    /// `field\nvalue\n` per field; sets, lists and sorted sets as `member\n` per member (sorted sets with
    /// `score\n` after each member); other types as `<type>`. Key names are converted lossily to UTF-8.
    pub fn keys_dump(&self, addr: &str) -> Vec<(String, Vec<u8>)> {
        let mut con = self.admin_connection(addr);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
                .unwrap();
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let unique: HashSet<Vec<u8>> = keys.into_iter().collect();
        let mut out = Vec::new();
        for key in unique {
            let kind: String = ::redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
            let joined = |parts: Vec<Vec<u8>>| {
                let mut v = Vec::new();
                for p in parts {
                    v.extend_from_slice(&p);
                    v.push(b'\n');
                }
                v
            };
            let value = match kind.as_str() {
                "none" => continue, // expired meanwhile
                "string" => ::redis::cmd("GET")
                    .arg(&key)
                    .query::<Option<Vec<u8>>>(&mut con)
                    .unwrap()
                    .unwrap_or_default(),
                "hash" => joined(::redis::cmd("HGETALL").arg(&key).query(&mut con).unwrap()),
                "set" => joined(::redis::cmd("SMEMBERS").arg(&key).query(&mut con).unwrap()),
                "list" => joined(::redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(&mut con).unwrap()),
                "zset" => joined(
                    ::redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query(&mut con)
                        .unwrap(),
                ),
                other => format!("<{other}>").into_bytes(),
            };
            out.push((String::from_utf8_lossy(&key).into_owned(), value));
        }
        out.sort();
        out
    }

    /// The last 40 lines of every process's log (and any stdout/stderr output), for assertion messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in self.nodes.iter().chain(&self.sentinels) {
            let state = if p.running() { "running" } else { "not running" };
            let _ = writeln!(out, "==== {} {} ({state}) {} ====", p.name, p.addr(), p.log.display());
            for file in [&p.log, &p.stdout] {
                let text = fs::read_to_string(file).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for line in &lines[lines.len().saturating_sub(40)..] {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        out
    }

    // ------------------------------------------------------------------------------------------------ internals

    fn proc_by_addr(&self, addr: &str) -> &Proc {
        let port = port_of(addr);
        self.nodes.iter().find(|p| p.port == port).unwrap_or_else(|| {
            panic!(
                "{addr} is not a data node of this topology ({:?})",
                self.data_node_addrs()
            )
        })
    }

    fn admin(&self) -> Option<(&str, &str)> {
        Some((ADMIN_USERNAME, &self.admin_password))
    }

    fn info(&self, port: u16, section: &str) -> Result<HashMap<String, String>, String> {
        let text: String = query(port, self.admin(), ::redis::cmd("INFO").arg(section))?;
        Ok(parse_info(&text))
    }

    fn expect_role(&self, addr: &str, role: &str) -> Result<(), String> {
        let info = self.info(port_of(addr), "replication")?;
        match info.get("role").map(String::as_str) {
            Some(r) if r == role => Ok(()),
            r => Err(format!("{addr} has role {r:?}, not {role}")),
        }
    }

    /// All running sentinels report the same master; returns it.
    fn agreed_master(&self) -> Result<String, String> {
        let mut seen: Option<String> = None;
        for s in &self.sentinels {
            let m = sentinel_master(s.port).map_err(|e| format!("{}: {e}", s.name))?;
            match &seen {
                Some(first) if *first != m => return Err(format!("sentinels disagree: {first} vs {m}")),
                _ => seen = Some(m),
            }
        }
        seen.ok_or_else(|| "no sentinel".to_string())
    }

    fn new_master_check(&self, old: &str) -> Result<String, String> {
        let m = self.agreed_master()?;
        if m == old {
            return Err(format!("sentinels still report {old}"));
        }
        self.expect_role(&m, "master")?;
        Ok(m)
    }

    /// `port` is a replica of `master_port` with its link up.
    fn replica_check(&self, port: u16, master_port: u16) -> Result<(), String> {
        let info = self.info(port, "replication")?;
        let get = |k: &str| info.get(k).map(String::as_str).unwrap_or("");
        if get("role") != "slave" || get("master_port") != master_port.to_string() || get("master_link_status") != "up"
        {
            return Err(format!(
                "{HOST}:{port}: role={} master_port={} link={} (want a replica of {master_port}, link up)",
                get("role"),
                get("master_port"),
                get("master_link_status")
            ));
        }
        Ok(())
    }

    fn settled_check(&self, all_nodes: bool) -> Result<String, String> {
        let master = self.agreed_master()?;
        let mport = port_of(&master);
        let mproc = self
            .nodes
            .iter()
            .find(|p| p.port == mport)
            .ok_or(format!("{master} is not ours"))?;
        if !mproc.running() {
            return Err(format!("master {master} is not running"));
        }
        self.expect_role(&master, "master")?;
        let replicas: Vec<&Proc> = self
            .nodes
            .iter()
            .filter(|p| p.port != mport && (all_nodes || p.running()))
            .collect();
        if replicas.is_empty() {
            return Err(format!("master {master} has no running replica"));
        }
        for r in &replicas {
            self.replica_check(r.port, mport)?;
        }
        for s in &self.sentinels {
            let m = sentinel_map(s.port, &["MASTER", MASTER_NAME])?;
            let get = |k: &str| m.get(k).map(String::as_str).unwrap_or("");
            if get("flags") != "master" || get("num-other-sentinels") != "2" {
                return Err(format!(
                    "{}: flags={} num-other-sentinels={}",
                    s.name,
                    get("flags"),
                    get("num-other-sentinels")
                ));
            }
            let peers: Vec<HashMap<String, String>> = sentinel_query(s.port, &["SENTINELS", MASTER_NAME])?;
            for peer in &peers {
                let get = |k: &str| peer.get(k).map(String::as_str).unwrap_or("");
                // `master_down` is only that peer's last opinion about the master; a dead or unreachable peer
                // shows `s_down` / `disconnected`.
                if get("flags").split(',').any(|f| f == "s_down" || f == "disconnected") {
                    return Err(format!(
                        "{} sees sentinel {}: flags={}",
                        s.name,
                        get("port"),
                        get("flags")
                    ));
                }
            }
            let seen: Vec<HashMap<String, String>> = sentinel_query(s.port, &["REPLICAS", MASTER_NAME])?;
            for r in &replicas {
                let entry = seen
                    .iter()
                    .find(|e| e.get("port").map(String::as_str) == Some(&r.port.to_string()))
                    .ok_or(format!("{} does not list replica {}", s.name, r.addr()))?;
                let get = |k: &str| entry.get(k).map(String::as_str).unwrap_or("");
                if get("flags") != "slave"
                    || get("role-reported") != "slave"
                    || get("master-link-status") != "ok"
                    || get("master-port") != mport.to_string()
                {
                    return Err(format!(
                        "{} sees {}: flags={} role-reported={} master-link-status={} master-port={}",
                        s.name,
                        r.addr(),
                        get("flags"),
                        get("role-reported"),
                        get("master-link-status"),
                        get("master-port")
                    ));
                }
            }
        }
        Ok(master)
    }

    fn try_wait_ping(&self, p: &Proc) -> Result<(), String> {
        let auth = if p.kind == Kind::Data { self.admin() } else { None };
        self.try_wait_until(&format!("{} ({}) to answer PING", p.name, p.addr()), TIMEOUT, || {
            if !p.running() {
                return Err(format!("{} exited", p.name));
            }
            query::<String>(p.port, auth, &::redis::cmd("PING")).map(|_| ())
        })
    }

    fn wait_ping(&self, p: &Proc) {
        self.try_wait_ping(p).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Polls `check` every 50 ms until it succeeds or `timeout` passes; the error carries the last failure and logs.
    fn try_wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Result<T, String>,
    ) -> Result<T, String> {
        let start = Instant::now();
        loop {
            match check() {
                Ok(v) => return Ok(v),
                Err(e) if start.elapsed() >= timeout => {
                    return Err(format!(
                        "redis harness: timed out after {:?} waiting for {what}; last state: {e}\nlogs in {}:\n{}",
                        start.elapsed(),
                        self.dir.path().display(),
                        self.logs()
                    ))
                }
                Err(_) => sleep(POLL),
            }
        }
    }

    fn wait_until<T>(&self, what: &str, timeout: Duration, check: impl FnMut() -> Result<T, String>) -> T {
        self.try_wait_until(what, timeout, check)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for RedisTopology {
    fn drop(&mut self) {
        for p in self.nodes.iter().chain(&self.sentinels) {
            p.kill();
        }
        if let Some((mut child, stdin)) = self.watchdog.lock().unwrap_or_else(|e| e.into_inner()).take() {
            drop(stdin); // EOF: the watchdog finds no live pid and exits
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------------- helpers

/// A shell that waits for EOF on its stdin (the write end lives only in this process), then SIGKILLs the pids in
/// `*.livepid` and removes the directory: cleans up when the test process dies without running destructors.
fn spawn_watchdog(dir: &std::path::Path) -> (Child, ChildStdin) {
    let script = r#"read -r _ignored; for f in "$1"/*.livepid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done; rm -rf "$1"; exit 0"#;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("redis-harness-watchdog")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// `n` distinct free loopback ports, never handed out twice in this process.
fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| super::free_port()).collect()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom").unwrap().read_exact(&mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not host:port: {addr}"))
}

fn connect(port: u16, auth: Option<(&str, &str)>) -> Result<::redis::Connection, String> {
    let url = match auth {
        Some((user, pass)) => format!("redis://{user}:{pass}@{HOST}:{port}/"),
        None => format!("redis://{HOST}:{port}/"),
    };
    let client = ::redis::Client::open(url).map_err(|e| e.to_string())?;
    let con = client
        .get_connection_with_timeout(IO_TIMEOUT)
        .map_err(|e| e.to_string())?;
    con.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    con.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(con)
}

fn query<T: ::redis::FromRedisValue>(port: u16, auth: Option<(&str, &str)>, cmd: &::redis::Cmd) -> Result<T, String> {
    let mut con = connect(port, auth)?;
    cmd.query(&mut con).map_err(|e| format!("{HOST}:{port}: {e}"))
}

fn sentinel_query<T: ::redis::FromRedisValue>(port: u16, args: &[&str]) -> Result<T, String> {
    let mut cmd = ::redis::cmd("SENTINEL");
    cmd.arg(args);
    query(port, None, &cmd)
}

fn sentinel_map(port: u16, args: &[&str]) -> Result<HashMap<String, String>, String> {
    sentinel_query(port, args)
}

fn sentinel_master(port: u16) -> Result<String, String> {
    let reply: Option<(String, String)> = sentinel_query(port, &["GET-MASTER-ADDR-BY-NAME", MASTER_NAME])?;
    let (host, port) = reply.ok_or("sentinel does not know the master")?;
    Ok(format!("{host}:{port}"))
}

fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
