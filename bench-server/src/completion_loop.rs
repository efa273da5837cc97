//! `--backend io_uring_completion`: per thread, one io_uring in completion mode
//! ([`poller::completion_ring`]) on its own SO_REUSEPORT listener. A multishot accept brings the
//! connections; a multishot receive per connection fills buffers from the ring's provided buffers;
//! each received buffer is sent back from where it is (one send per connection at a time, short
//! sends continued in order) and recycled when its send completes. No readiness, no read or write
//! call: the loop's system calls are its `io_uring_enter`s and the `close` of each connection.
//!
//! Options (`--fixed-files`, `--batch`/`--batch-wait`) are [`RingOptions`]: connections as fixed
//! files in a table per ring sized to the open-files limit; waits that hold out for a batch.
//! Waits block without a timeout unless the loop has something to do later (re-arm an accept,
//! look for slots freed by other loops at `--max-conns`); shutdown wakes them with a
//! [`RingWaker`].
//!
//! Abuse: a client that does not read stops being received from once 64 KiB of its echo wait
//! (its receive is cancelled, and re-armed when half of that is sent), so it cannot take every
//! buffer; a receive ended by an empty buffer ring (ENOBUFS) is re-armed once buffers come back;
//! a multishot accept ended by EMFILE is re-armed after 10 ms, not at once; over `--max-conns` a
//! new connection is closed. Completions are tagged with the connection's slot and generation, so
//! the late completion of a closed connection never reaches the next one in its slot.

use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use poller::completion_ring::{Completion, CompletionRing, RingConfig, RingWaker, Socket};

use crate::cli::{fixed_table, Config, RingOptions};
use crate::listener::{bind, ConnLimit};
use crate::server::{pin_plan, Running};
use crate::stats::{Counts, SharedCounters};

/// Echo bytes a connection may have waiting before its receive is stopped.
const BACKLOG_CAP: u64 = 64 * 1024;
/// How long a wait may block while the loop waits for slots other loops free (at
/// `--max-conns`), which nothing signals.
const TICK: Duration = Duration::from_millis(50);
/// The pause before a multishot accept that ended on an error (EMFILE) is re-armed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// The listener's token; connections use slot + 1 in the low half and a generation above.
const LISTENER: u64 = 0;

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
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(n);
    let mut threads: Vec<JoinHandle<io::Result<()>>> = Vec::with_capacity(n);
    for (i, listener) in listeners.into_iter().enumerate() {
        let spec = LoopSpec {
            listener,
            buf_size: cfg.buf_size,
            limit: limit.clone(),
            options: options.clone(),
            counters: counters[i].clone(),
            shutdown: shutdown.clone(),
        };
        let core = cores[i];
        let ready = ready_tx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("loop-{i}"))
                .spawn(move || {
                    if let Some(core) = core {
                        pollbench_common::cores::pin_current(core);
                    }
                    match CompletionLoop::new(spec) {
                        Ok(event_loop) => {
                            let _ = ready.send(Ok(event_loop.ring.waker()));
                            event_loop.run()
                        }
                        Err(e) => {
                            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
                            Err(e)
                        }
                    }
                })?,
        );
    }
    let mut ring_wakers: Vec<RingWaker> = Vec::with_capacity(n);
    for _ in 0..n {
        match ready_rx.recv() {
            Ok(Ok(waker)) => ring_wakers.push(waker),
            Ok(Err(e)) => {
                shutdown.store(true, Ordering::Release);
                for w in &ring_wakers {
                    let _ = w.wake();
                }
                return Err(e);
            }
            Err(_) => {
                return Err(io::Error::other(
                    "a completion loop ended before it was ready",
                ))
            }
        }
    }
    Ok(Running {
        addr,
        counters,
        cores,
        shutdown,
        wakers: Vec::new(),
        threads,
        // After the shutdown flag is set: every loop's wait returns and sees it.
        extra_stop: Some(Box::new(move || {
            for w in &ring_wakers {
                let _ = w.wake();
            }
        })),
    })
}

struct LoopSpec {
    listener: TcpListener,
    buf_size: usize,
    limit: Arc<ConnLimit>,
    options: RingOptions,
    counters: Arc<SharedCounters>,
    shutdown: Arc<AtomicBool>,
}

/// A send waiting or in flight: bytes `offset..offset + len` of a received buffer.
#[derive(Clone, Copy)]
struct Chunk {
    buffer: u16,
    offset: u32,
    len: u32,
}

struct Conn {
    socket: Socket,
    generation: u32,
    /// What waits to be echoed, in order; the front one is in flight when `sending`.
    queue: VecDeque<Chunk>,
    sending: bool,
    /// Bytes in `queue`.
    waiting: u64,
    /// Its multishot receive is armed (or being cancelled).
    receiving: bool,
    /// The receive was stopped on purpose: the client is not reading its echo.
    stopped: bool,
    /// The client closed its side, or the receive failed: close once the queue is sent.
    ending: bool,
}

struct CompletionLoop {
    ring: CompletionRing,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    generations: Vec<u32>,
    /// Connections whose receive ended for want of buffers: re-armed when buffers come back.
    starved: Vec<u64>,
    accept_resume: Option<Instant>,
    /// Accepting is paused at `--max-conns`: the multishot accept is cancelled, and the
    /// connections it accepted past the limit before the cancel landed (a burst from the backlog)
    /// wait here, unserved, for slots, oldest first, as they would have in the backlog.
    held: VecDeque<Socket>,
    at_limit: bool,
    /// `--batch` and `--batch-wait`.
    batch: usize,
    batch_wait: Duration,
    limit: Arc<ConnLimit>,
    shared: Arc<SharedCounters>,
    shutdown: Arc<AtomicBool>,
    c: Counts,
}

fn token(slot: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | (slot as u64 + 1)
}

impl CompletionLoop {
    fn new(spec: LoopSpec) -> io::Result<CompletionLoop> {
        let buffer_size = u32::try_from(spec.buf_size.clamp(512, 1 << 20)).expect("clamped");
        let mut ring = CompletionRing::new(&RingConfig {
            entries: 1024,
            buffers: 4096,
            buffer_size,
            fixed_files: table_size(spec.options.fixed_files),
        })?;
        ring.accept_multishot(spec.listener.as_raw_fd(), LISTENER)?;
        Ok(CompletionLoop {
            ring,
            listener: spec.listener,
            conns: Vec::with_capacity(1024),
            free: Vec::with_capacity(1024),
            generations: Vec::with_capacity(1024),
            starved: Vec::with_capacity(1024),
            accept_resume: None,
            held: VecDeque::new(),
            at_limit: false,
            batch: spec.options.batch as usize,
            batch_wait: spec.options.batch_wait,
            limit: spec.limit,
            shared: spec.counters,
            shutdown: spec.shutdown,
            c: Counts::default(),
        })
    }

    fn run(mut self) -> io::Result<()> {
        while !self.shutdown.load(Ordering::Acquire) {
            // Block until a completion (or the waker), unless something is due later.
            let timeout = match (self.accept_resume, self.at_limit) {
                (Some(t), _) => Some(t.saturating_duration_since(Instant::now()).min(TICK)),
                (None, true) => Some(TICK),
                (None, false) => None,
            };
            if self.batch > 1 {
                self.ring
                    .wait_batched(self.batch, self.batch_wait, timeout)?;
            } else {
                self.ring.wait(1, timeout)?;
            }
            self.c.syscalls += 1;
            self.c.waits += 1;
            let n = self.ring.completions().len();
            self.c.events += n as u64;
            if n == 0 {
                self.c.empty_wakeups += 1;
            }
            for i in 0..n {
                let completion = self.ring.completions()[i];
                self.complete(completion)?;
            }
            if !self.starved.is_empty() && self.ring.stats().buffers_in_use < 4096 {
                for k in 0..self.starved.len() {
                    let t = self.starved[k];
                    if let Some(conn) = self.conn_mut(t) {
                        if !conn.receiving && !conn.ending {
                            let socket = conn.socket;
                            conn.receiving = true;
                            self.ring.recv_multishot(socket, t)?;
                        }
                    }
                }
                self.starved.clear();
            }
            // Slots freed by other loops are noticed here, at the latest one tick later.
            while self.at_limit && !self.held.is_empty() && self.limit_has_room() {
                self.resume_at_limit();
            }
            if !self.at_limit && self.accept_resume.is_some_and(|t| t <= Instant::now()) {
                self.accept_resume = None;
                self.ring
                    .accept_multishot(self.listener.as_raw_fd(), LISTENER)?;
            }
            self.publish();
        }
        // Close what is open; dropping the ring cancels its requests.
        while let Some(socket) = self.held.pop_front() {
            self.ring.close(socket)?;
        }
        for slot in 0..self.conns.len() {
            if let Some(conn) = self.conns[slot].take() {
                self.ring.close(conn.socket)?;
                self.c.closed += 1;
                self.limit.release();
            }
        }
        self.publish();
        Ok(())
    }

    /// Publish the loop's counts, the ring's own with them.
    fn publish(&mut self) {
        let ring = self.ring.stats();
        self.c.ring_submissions = ring.submissions;
        self.c.ring_enobufs = ring.enobufs;
        self.c.ring_buffers_in_use = u64::from(ring.buffers_in_use);
        self.shared.publish(&self.c);
    }

    /// The open connection a completion's token names, if it is still that connection.
    fn conn_mut(&mut self, t: u64) -> Option<&mut Conn> {
        let slot = (t & 0xffff_ffff) as usize;
        let generation = (t >> 32) as u32;
        self.conns
            .get_mut(slot.checked_sub(1)?)?
            .as_mut()
            .filter(|c| c.generation == generation)
    }

    fn complete(&mut self, completion: Completion) -> io::Result<()> {
        match completion {
            Completion::Accept { result, more, .. } => {
                match result {
                    Ok(fd) => self.accepted(fd)?,
                    Err(libc::ECANCELED) if self.at_limit => {} // paused on purpose
                    Err(_) => self.c.accept_pauses += u64::from(!more),
                }
                if !more && !self.at_limit {
                    match result {
                        // Ended after a connection: go on at once.
                        Ok(_) => self
                            .ring
                            .accept_multishot(self.listener.as_raw_fd(), LISTENER)?,
                        // EMFILE and friends: pause rather than spin.
                        Err(_) => self.accept_resume = Some(Instant::now() + ACCEPT_PAUSE),
                    }
                }
            }
            Completion::Received {
                token: t,
                buffer,
                len,
                more,
            } => {
                let Some(conn) = self.conn_mut(t) else {
                    self.ring.recycle(buffer); // a closed connection's late data
                    return Ok(());
                };
                conn.queue.push_back(Chunk {
                    buffer,
                    offset: 0,
                    len,
                });
                conn.waiting += u64::from(len);
                conn.receiving = more;
                let (socket, stop, rearm) = (
                    conn.socket,
                    more && conn.waiting > BACKLOG_CAP,
                    !more && !conn.ending,
                );
                if stop {
                    conn.stopped = true;
                }
                self.c.reads += 1;
                self.c.bytes_in += u64::from(len);
                if stop {
                    self.ring.cancel_recv(t)?;
                } else if rearm {
                    self.conn_mut(t).expect("open").receiving = true;
                    self.ring.recv_multishot(socket, t)?;
                }
                self.send_next(t)?;
            }
            Completion::NoBuffers { token: t } => {
                if let Some(conn) = self.conn_mut(t) {
                    conn.receiving = false;
                    self.starved.push(t);
                }
            }
            Completion::Eof { token: t } => {
                if let Some(conn) = self.conn_mut(t) {
                    conn.receiving = false;
                    conn.ending = true;
                    self.close_if_done(t)?;
                }
            }
            Completion::RecvFailed { token: t, errno } => {
                if let Some(conn) = self.conn_mut(t) {
                    conn.receiving = false;
                    // Cancelled on purpose: wait for the echo to drain; anything else ends it.
                    if !(errno == libc::ECANCELED && conn.stopped) {
                        conn.ending = true;
                    }
                    self.close_if_done(t)?;
                }
            }
            Completion::Sent { token: t, result } => self.sent(t, result)?,
        }
        Ok(())
    }

    fn accepted(&mut self, socket: Socket) -> io::Result<()> {
        if self.at_limit || !self.limit.try_acquire() {
            // At --max-conns: hold it for a free slot, and stop accepting (the rest wait in the
            // kernel's backlog).
            self.held.push_back(socket);
            if !self.at_limit {
                self.at_limit = true;
                self.c.accept_pauses += 1;
                self.ring.cancel_accept(LISTENER)?;
            }
            return Ok(());
        }
        self.serve(socket)
    }

    fn serve(&mut self, socket: Socket) -> io::Result<()> {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        let generation = self.generations[slot];
        self.conns[slot] = Some(Conn {
            socket,
            generation,
            queue: VecDeque::with_capacity(8),
            sending: false,
            waiting: 0,
            receiving: true,
            stopped: false,
            ending: false,
        });
        self.c.accepted += 1;
        self.ring.recv_multishot(socket, token(slot, generation))
    }

    fn limit_has_room(&self) -> bool {
        self.limit.has_room()
    }

    /// Start the send of the connection's next chunk, unless one is in flight.
    fn send_next(&mut self, t: u64) -> io::Result<()> {
        let Some(conn) = self.conn_mut(t) else {
            return Ok(());
        };
        if conn.sending {
            return Ok(());
        }
        let Some(&chunk) = conn.queue.front() else {
            return Ok(());
        };
        conn.sending = true;
        let socket = conn.socket;
        self.ring
            .send(socket, t, chunk.buffer, chunk.offset, chunk.len)
    }

    fn sent(&mut self, t: u64, result: Result<u32, i32>) -> io::Result<()> {
        let Some(conn) = self.conn_mut(t) else {
            return Ok(());
        };
        conn.sending = false;
        let chunk = *conn.queue.front().expect("a send was in flight");
        match result {
            Ok(n) if n < chunk.len => {
                let front = conn.queue.front_mut().expect("in flight");
                front.offset += n;
                front.len -= n;
                conn.waiting -= u64::from(n);
                self.c.writes += 1;
                self.c.bytes_out += u64::from(n);
            }
            Ok(n) => {
                conn.queue.pop_front();
                conn.waiting -= u64::from(n);
                self.c.writes += 1;
                self.c.bytes_out += u64::from(n);
                self.ring.recycle(chunk.buffer);
            }
            Err(_) => {
                // The client is gone (reset, broken pipe): give its buffers back and close it.
                conn.ending = true;
                conn.waiting = 0;
                let receiving = conn.receiving;
                while let Some(c) = self.conn_mut(t).and_then(|c| c.queue.pop_front()) {
                    self.ring.recycle(c.buffer);
                }
                if receiving {
                    self.ring.cancel_recv(t)?;
                }
                return self.close_if_done(t);
            }
        }
        let conn = self.conn_mut(t).expect("open");
        // A stopped receive resumes once half the backlog is echoed.
        if conn.stopped && !conn.receiving && conn.waiting <= BACKLOG_CAP / 2 && !conn.ending {
            conn.stopped = false;
            conn.receiving = true;
            let socket = conn.socket;
            self.ring.recv_multishot(socket, t)?;
        }
        self.send_next(t)?;
        self.close_if_done(t)
    }

    /// Close a connection that is ending and has nothing left to send or receive.
    fn close_if_done(&mut self, t: u64) -> io::Result<()> {
        let done = self
            .conn_mut(t)
            .is_some_and(|c| c.ending && !c.sending && c.queue.is_empty() && !c.receiving);
        if !done {
            return Ok(());
        }
        let slot = (t & 0xffff_ffff) as usize - 1;
        let conn = self.conns[slot].take().expect("open");
        // A descriptor's close(2) is a system call; a fixed file's close is a request.
        let system_call = self.ring.close(conn.socket)?;
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.free.push(slot);
        self.c.closed += 1;
        self.c.syscalls += u64::from(system_call);
        self.limit.release();
        self.resume_at_limit();
        Ok(())
    }

    /// At the limit, if a slot is free (this loop's or another's: they share `--max-conns`): serve
    /// the oldest held connection, or accept again when none is held.
    fn resume_at_limit(&mut self) {
        if !self.at_limit {
            return;
        }
        let mut result = Ok(());
        if let Some(&socket) = self.held.front() {
            if !self.limit.try_acquire() {
                return; // another loop took the slot
            }
            self.held.pop_front();
            result = self.serve(socket);
            if !self.held.is_empty() {
                // More are held: they take the next slots before anything new is accepted.
                if let Err(e) = result {
                    eprintln!("bench-server: completion loop: cannot serve a held connection: {e}");
                }
                return;
            }
        }
        self.at_limit = false;
        let resumed = self
            .ring
            .accept_multishot(self.listener.as_raw_fd(), LISTENER);
        if let Err(e) = result.and(resumed) {
            eprintln!("bench-server: completion loop: cannot resume accepting: {e}");
        }
    }
}
