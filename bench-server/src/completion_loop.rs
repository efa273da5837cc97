//! `--backend io_uring_completion`: per thread, one io_uring in completion mode
//! ([`poller::completion_ring`]) on its own SO_REUSEPORT listener. A multishot accept brings the
//! connections; a multishot receive per connection fills buffers from the ring's provided buffers;
//! each received buffer is sent back from where it is and recycled when its send completes (the
//! echo's rules, abuse included, are [`crate::completion_echo`]'s). No readiness, no read, write
//! or close call: the loop's system calls are its `io_uring_enter`s.
//!
//! Options (`--fixed-files`, `--batch`/`--batch-wait`) are [`RingOptions`]: connections as fixed
//! files in a table per ring sized to the open-files limit; waits that hold out for a batch.
//! Waits block without a timeout unless the loop has something to do later (re-arm an accept,
//! look for slots freed by other loops at `--max-conns`); shutdown wakes them with a
//! [`RingWaker`].

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use poller::completion_ring::{CompletionRing, RecvBuf, RingConfig, RingWaker, Socket};

use crate::cli::{fixed_table, Config, RingOptions};
use crate::completion_batch::Batching;
use crate::completion_echo::{Echo, Ring};
use crate::listener::{bind, ConnLimit};
use crate::running::{announce, pin_plan, spawn_loops, LoopWaker, Ready, Running};
use crate::stats::SharedCounters;
use crate::work::Work;

/// The listener's token (connections' tokens start at 1).
const LISTENER: u64 = 0;
/// Provided buffers per ring: 4,096, fewer where they are big, so that a ring's buffers take at
/// most 256 MiB (`--buf-size 1MiB`: 256 of them), but never fewer than 256.
fn buffer_count(buffer_size: u32) -> u16 {
    let fit = (256 << 20) / buffer_size.max(1);
    let count = fit.clamp(256, 4096);
    1 << count.ilog2() // a power of two, as the ring takes them
}

/// The features a ring set up with these options gets here (by name, as the stats JSON says
/// them), or the one-line reason completion mode cannot run so.
pub fn probe(fixed_files: bool, batch: bool) -> Result<Vec<String>, String> {
    let config = RingConfig {
        entries: 8,
        buffers: 8,
        buffer_size: 64,
        fixed_files: table_size(fixed_files),
    };
    let ring = CompletionRing::new(&config)
        .map_err(|e| format!("--backend io_uring_completion is not available here: {e}"))?;
    let f = ring.features();
    if batch && !f.min_wait {
        return Err("--batch: this kernel cannot hold a wait out for a batch (IORING_FEAT_MIN_TIMEOUT, Linux 6.12+)".into());
    }
    Ok([
        (f.single_issuer, "single_issuer"),
        (f.defer_taskrun, "defer_taskrun"),
        (f.coop_taskrun, "coop_taskrun"),
        (f.registered_ring, "registered_ring"),
        (f.fixed_files, "fixed_files"),
        (f.min_wait, "min_wait"),
    ]
    .into_iter()
    .filter(|(has, _)| *has)
    .map(|(_, name)| name.to_owned())
    .collect())
}

/// [`RingConfig::fixed_files`] for a loop: the table, or 0 without `--fixed-files`.
fn table_size(fixed_files: bool) -> u32 {
    if fixed_files {
        fixed_table()
    } else {
        0
    }
}

/// Start `cfg.threads` completion loops, each on its own SO_REUSEPORT listener; returns once
/// every loop is serving.
pub fn start(cfg: &Config) -> io::Result<Running> {
    let n = cfg.threads;
    let shutdown = Arc::new(AtomicBool::new(false));
    let limit = Arc::new(ConnLimit::new(cfg.max_conns));
    let options = cfg
        .ring
        .clone()
        .expect("a completion config has ring options");
    let first = bind(cfg.addr, true, false)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..n {
        listeners.push(bind(addr, true, false)?);
    }
    let cores = pin_plan(n, cfg.pinned);
    let counters: Vec<_> = (0..n)
        .map(|_| Arc::new(SharedCounters::completion()))
        .collect();
    let starts: Vec<_> = listeners
        .into_iter()
        .zip(&counters)
        .map(|(listener, counters)| {
            let spec = LoopSpec {
                listener,
                buf_size: cfg.buf_size,
                limit: limit.clone(),
                options: options.clone(),
                work: cfg.work,
                counters: counters.clone(),
                shutdown: shutdown.clone(),
            };
            move |id, ready: Ready<RingWaker>| {
                let built = CompletionLoop::new(spec).map(|l| {
                    let waker = l.ring.ring.waker();
                    (l, waker)
                });
                announce(id, &ready, built)?.run()
            }
        })
        .collect();
    let loops = spawn_loops(starts, cores, shutdown.clone())?;
    Ok(Running::of_loops(addr, counters, loops, || {}))
}

impl LoopWaker for RingWaker {
    fn wake_loop(&self) {
        let _ = self.wake();
    }
}

struct LoopSpec {
    listener: TcpListener,
    buf_size: usize,
    limit: Arc<ConnLimit>,
    options: RingOptions,
    work: Option<Work>,
    counters: Arc<SharedCounters>,
    shutdown: Arc<AtomicBool>,
}

/// A completion ring on one listener, as the echo asks of it.
struct ListenerRing {
    ring: CompletionRing,
    listener: RawFd,
    /// `--work`, spun on the loop's thread (`None`: off).
    work: Option<Work>,
}

impl Ring for ListenerRing {
    type Buf = RecvBuf;
    type Sock = Socket;
    fn buf_len(buf: &RecvBuf) -> u32 {
        buf.len()
    }
    fn accept(&mut self) -> io::Result<()> {
        self.ring.accept_multishot(self.listener, LISTENER)
    }
    fn cancel_accept(&mut self) -> io::Result<()> {
        self.ring.cancel_accept(LISTENER)
    }
    fn recv(&mut self, socket: &Socket, token: u64) -> io::Result<()> {
        self.ring.recv_multishot(socket, token)
    }
    fn cancel_recv(&mut self, token: u64) -> io::Result<()> {
        self.ring.cancel_recv(token)
    }
    fn send(
        &mut self,
        socket: &Socket,
        token: u64,
        buf: RecvBuf,
        offset: u32,
        len: u32,
    ) -> io::Result<()> {
        self.ring.send(socket, token, buf, offset, len)
    }
    fn recycle(&mut self, buf: RecvBuf) {
        self.ring.recycle(buf)
    }
    fn close(&mut self, socket: Socket) -> io::Result<()> {
        self.ring.close(socket)
    }
    fn buffers_in_use(&self) -> u32 {
        self.ring.stats().buffers_in_use
    }
    fn work(&mut self, messages: u32) {
        if let Some(work) = self.work {
            work.spin(messages);
        }
    }
}

struct CompletionLoop {
    ring: ListenerRing,
    /// Kept open for the ring's accepts.
    _listener: TcpListener,
    echo: Echo<ListenerRing>,
    /// `--batch` and `--batch-wait`, applied while the load fills batches.
    batching: Batching,
    shared: Arc<SharedCounters>,
    shutdown: Arc<AtomicBool>,
}

impl CompletionLoop {
    fn new(spec: LoopSpec) -> io::Result<CompletionLoop> {
        let buffer_size = u32::try_from(spec.buf_size.clamp(512, 1 << 20)).expect("clamped");
        let buffers = buffer_count(buffer_size);
        let mut ring = ListenerRing {
            ring: CompletionRing::new(&RingConfig {
                entries: 1024,
                buffers,
                buffer_size,
                fixed_files: table_size(spec.options.fixed_files),
            })?,
            listener: spec.listener.as_raw_fd(),
            work: spec.work,
        };
        let echo = Echo::new(&mut ring, u32::from(buffers), spec.limit)?.with_work(spec.work);
        Ok(CompletionLoop {
            ring,
            _listener: spec.listener,
            echo,
            batching: Batching::new(
                spec.options.batch as usize,
                spec.options.batch_wait,
                Instant::now(),
            ),
            shared: spec.counters,
            shutdown: spec.shutdown,
        })
    }

    fn run(mut self) -> io::Result<()> {
        while !self.shutdown.load(Ordering::Acquire) {
            // Block until a completion (or the waker), unless something is due later.
            let timeout = self.echo.timeout(Instant::now());
            let ring = &mut self.ring.ring;
            let n = match self.batching.next() {
                Some((batch, wait)) => ring.wait_batched(batch, wait, timeout)?,
                None => ring.wait(1, timeout)?,
            };
            let now = Instant::now();
            self.batching.waited(n, now);
            let c = &mut self.echo.c;
            c.waits += 1;
            c.events += n as u64;
            if n == 0 {
                c.empty_wakeups += 1;
            }
            while let Some(completion) = self.ring.ring.next_completion() {
                self.echo.complete(&mut self.ring, completion, now)?;
            }
            self.echo.after_wait(&mut self.ring, now)?;
            self.publish();
        }
        // Close what is open; dropping the ring cancels its requests and runs the closes.
        self.echo.close_all(&mut self.ring)?;
        self.publish();
        Ok(())
    }

    /// Publish the loop's counts, the ring's own with them: its system calls are its enters.
    fn publish(&mut self) {
        let ring = self.ring.ring.stats();
        let c = &mut self.echo.c;
        c.syscalls = ring.enters;
        c.ring_submissions = ring.submissions;
        c.ring_enobufs = ring.enobufs;
        c.ring_buffers_in_use = u64::from(ring.buffers_in_use);
        self.shared.publish(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring's buffers: 4,096 up to 64 KiB each, then as many as fit in 256 MiB, at least 256.
    #[test]
    fn big_buffers_are_fewer() {
        assert_eq!(buffer_count(512), 4096);
        assert_eq!(buffer_count(16 << 10), 4096);
        assert_eq!(buffer_count(64 << 10), 4096);
        assert_eq!(buffer_count(100 << 10), 2048);
        assert_eq!(buffer_count(1 << 20), 256);
    }
}
