//! The bounded, non-blocking line queue between the request path and the log writer thread.
//!
//! A worker appends its formatted line to a shared byte buffer under a mutex held only for the
//! copy (never across I/O, never across `.await`); a dedicated thread swaps the buffer out and
//! writes it in one call. When the buffer is full — the output is slower than the traffic, or
//! blocked — the line is dropped and counted: a worker never waits for the output. This is
//! nginx's `access_log ... buffer=... flush=...`, with a drop counter instead of blocking.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Limits of a [`LineQueue`].
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Most bytes waiting for the writer; a line that does not fit is dropped.
    pub capacity: usize,
    /// Pending bytes at which the writer is woken before its flush interval.
    pub wake_at: usize,
    /// Longest time a line waits in the buffer.
    pub flush_interval: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            capacity: 4 << 20,
            wake_at: 64 << 10,
            flush_interval: Duration::from_millis(100),
        }
    }
}

struct Shared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    limits: QueueLimits,
    dropped: AtomicU64,
    written: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves only bytes behind: keep going.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Producer side of the queue; cheap to share between worker threads.
#[derive(Clone)]
pub struct LineQueue {
    shared: Arc<Shared>,
}

/// Joins the writer thread (after a final write) when dropped or [`Writer::finish`]ed.
pub struct Writer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LineQueue {
    /// A queue drained by a new thread named `name` into `out`.
    pub fn start<W: Write + Send + 'static>(
        name: &str,
        limits: QueueLimits,
        out: W,
    ) -> std::io::Result<(LineQueue, Writer)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(limits.wake_at * 2)),
            wake: Condvar::new(),
            limits,
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || drain(&for_thread, out))?;
        Ok((
            LineQueue { shared: shared.clone() },
            Writer {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Queues one complete line (with its `\n`). Never blocks on I/O; returns false, and counts
    /// the line as dropped, when the buffer is full.
    pub fn push(&self, line: &[u8]) -> bool {
        let shared = &*self.shared;
        let mut pending = shared.lock();
        if pending.len() + line.len() > shared.limits.capacity {
            drop(pending);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let below = pending.len() < shared.limits.wake_at;
        pending.extend_from_slice(line);
        let wake = below && pending.len() >= shared.limits.wake_at;
        drop(pending);
        if wake {
            shared.wake.notify_one();
        }
        true
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Bytes handed to the output so far.
    pub fn written_bytes(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }
}

impl Writer {
    /// Writes what is pending and stops the thread.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread: waits for the flush interval or the wake mark, swaps the buffer out,
/// writes it in one call.
fn drain<W: Write>(shared: &Shared, mut out: W) {
    let mut batch: Vec<u8> = Vec::with_capacity(shared.limits.wake_at * 2);
    let mut reported = false;
    loop {
        let stopping = {
            let mut pending = shared.lock();
            if pending.len() < shared.limits.wake_at && !shared.stop.load(Ordering::Relaxed) {
                pending = shared
                    .wake
                    .wait_timeout(pending, shared.limits.flush_interval)
                    .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
            }
            std::mem::swap(&mut *pending, &mut batch);
            shared.stop.load(Ordering::Relaxed)
        };
        if !batch.is_empty() {
            match out.write_all(&batch).and_then(|()| out.flush()) {
                Ok(()) => {
                    shared.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    let lines = batch.iter().filter(|b| **b == b'\n').count() as u64;
                    shared.dropped.fetch_add(lines, Ordering::Relaxed);
                    if !reported {
                        // Not through `tracing`: its output may be the one failing.
                        eprintln!("authgate: cannot write the access log ({e}); dropping lines");
                        reported = true;
                    }
                }
            }
            batch.clear();
        }
        if stopping && shared.lock().is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An output that blocks every write until the test lets it go, and keeps what it got.
    struct Gate {
        release: mpsc::Receiver<()>,
        entered: mpsc::Sender<()>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.entered.send(());
            let _ = self.release.recv();
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_writer_makes_lines_drop_and_count_never_block() {
        let (release_tx, release) = mpsc::channel();
        let (entered, entered_rx) = mpsc::channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let limits = QueueLimits {
            capacity: 100,
            wake_at: 10,
            flush_interval: Duration::from_secs(3600),
        };
        let gate = Gate {
            release,
            entered,
            got: got.clone(),
        };
        let (queue, writer) = LineQueue::start("test-log", limits, gate).unwrap();
        // The first line crosses the wake mark: the writer takes it and blocks in write().
        assert!(queue.push(b"first line\n"));
        entered_rx.recv().unwrap();
        // The writer is stuck: 100 bytes fit, the rest are dropped and counted.
        let line = b"0123456789abcdefghi\n"; // 20 bytes
        let accepted = (0..8).filter(|_| queue.push(line)).count();
        assert_eq!(accepted, 5);
        assert_eq!(queue.dropped(), 3);
        // Unblock: everything accepted is written, in order, whole lines only.
        drop(release_tx);
        writer.finish();
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 6, "{text}");
        assert!(text.starts_with("first line\n0123456789"));
        assert_eq!(queue.written_bytes(), 11 + 5 * 20);
    }

    #[test]
    fn lines_below_the_wake_mark_are_written_at_the_flush_interval_or_at_finish() {
        let got = Arc::new(Mutex::new(Vec::new()));
        struct Keep(Arc<Mutex<Vec<u8>>>);
        impl Write for Keep {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let limits = QueueLimits {
            capacity: 1 << 20,
            wake_at: 1 << 16,
            flush_interval: Duration::from_millis(5),
        };
        let (queue, writer) = LineQueue::start("test-log", limits, Keep(got.clone())).unwrap();
        assert!(queue.push(b"a\n"));
        assert!(queue.push(b"b\n"));
        writer.finish();
        assert_eq!(&*got.lock().unwrap(), b"a\nb\n");
        assert_eq!(queue.dropped(), 0);
    }
}
