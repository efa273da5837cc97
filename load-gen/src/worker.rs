//! One load-generating thread: an event loop on the poller, generic over the backend, driving its
//! share of the connections.
//!
//! Closed loop: each connection keeps `pipeline` messages in flight. Open loop: messages follow one
//! constant schedule over all connections (connection c sends its j-th message at
//! t0 + (c + j*C)/R), and latency is measured from that intended time, so a stalled server shows in
//! the percentiles (coordinated omission corrected); the time from the actual send is kept too,
//! and so is each message's send lateness (actual send minus intended time), so that the client's
//! own lateness is seen apart from the server's latency.
//!
//! Punctuality: each worker sets its timer slack to the minimum (Linux), and in open loop sleeps in
//! the poller only until `spin` before the next due send; from there it busy-polls (non-blocking
//! waits, so readiness is still serviced) until the send is due. A woken-up thread is late by the
//! timer's slack plus the scheduler's wake-up latency; spinning through the last stretch takes
//! that out of the send time, at the cost of the client CPU it burns.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poller::{Backend, Events, Interest, Mode, Token, WithBackend};

use crate::connect::start_connect;
use crate::measure::{record, InFlight, Interval, WorkerResult};
use crate::stream::ByteStream;

/// What every worker needs to know about the run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub size: usize,
    pub pipeline: usize,
    /// Messages per second over all connections (open loop), or closed loop.
    pub rate: Option<f64>,
    /// Connections that carry load, over all threads.
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    /// Open loop: busy-poll for at most this long before each due send instead of sleeping
    /// (zero: sleep until it is due).
    pub spin: Duration,
    /// Connection churn: each connection carries this many messages, closes, and is replaced at
    /// once by a new one, connected without blocking in the worker's own poller. Open loop keeps
    /// its schedule: messages due while the new connection is being made wait for it.
    pub messages_per_connection: Option<u64>,
    /// Churn: how long a replacement connect() may take before it counts as a connect error.
    pub connect_timeout: Duration,
    /// Where churned connections connect to, and the local addresses they bind, round robin.
    pub target: std::net::SocketAddr,
    pub source: Vec<std::net::IpAddr>,
}

/// A worker's input: its connections (global index, socket), and shared run state.
pub struct WorkerSpec {
    pub conns: Vec<(usize, TcpStream)>,
    pub plan: Arc<Plan>,
    pub start: Instant,
    pub stop: Arc<AtomicBool>,
    /// Messages echoed so far by this worker, warm-up included (read by the progress display).
    pub progress: Arc<AtomicU64>,
    /// Connections of this worker still alive (the run ends early when every worker's is 0): starts
    /// at the number of `conns`, and the worker subtracts each one it loses.
    pub alive: Arc<AtomicU64>,
}

/// The most messages a run can hold in flight at once, over all workers: closed loop,
/// `pipeline` per connection; open loop also every message due in the last `timeout` (plus one
/// timeout scan), since an older one times out and closes its connection.
pub fn in_flight_bound(plan: &Plan) -> u64 {
    let pipelined = plan.connections as u64 * plan.pipeline.max(1) as u64;
    let scheduled = plan.rate.map_or(0.0, |rate| {
        rate * (plan.timeout + TIMEOUT_SCAN).as_secs_f64() + plan.connections as f64
    });
    pipelined.saturating_add(scheduled.min(u64::MAX as f64) as u64)
}

/// The memory one in-flight message takes in the client.
pub const IN_FLIGHT_BYTES: u64 = std::mem::size_of::<InFlight>() as u64;

struct Conn {
    stream: TcpStream,
    index: usize,
    bytes: ByteStream,
    /// Messages issued (closed loop: on each reply; open loop: by the schedule).
    issued: u64,
    /// Bytes written so far.
    tx: u64,
    /// Bytes echoed and verified so far.
    rx: u64,
    in_flight: VecDeque<InFlight>,
    writable_registered: bool,
    alive: bool,
    /// Churn: when the non-blocking connect() of this connection began, until it is established.
    connecting: Option<Instant>,
    /// Churn: how many connections this slot has had before this one.
    generation: u64,
}

impl WithBackend for WorkerSpec {
    type Output = std::io::Result<WorkerResult>;

    fn run<B: Backend>(self) -> std::io::Result<WorkerResult> {
        Worker::<B>::new(self)?.run()
    }
}

struct Worker<B: Backend> {
    poller: B,
    conns: Vec<Conn>,
    plan: Arc<Plan>,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    alive_shared: Arc<AtomicU64>,
    result: WorkerResult,
    scratch: Vec<u8>,
    /// Open loop: the next message of this worker's schedule.
    next_k: u64,
    /// Timeouts are looked for at most this often: the scan is O(connections).
    next_timeout_scan: Instant,
}

const TIMEOUT_SCAN: Duration = Duration::from_millis(100);

impl<B: Backend> Worker<B> {
    fn new(spec: WorkerSpec) -> std::io::Result<Worker<B>> {
        let mut poller = B::new()?;
        let pipeline = spec.plan.pipeline.max(1);
        let mut conns = Vec::with_capacity(spec.conns.len());
        for (slot, (index, stream)) in spec.conns.into_iter().enumerate() {
            stream.set_nonblocking(true)?;
            let _ = stream.set_nodelay(true);
            poller.register(
                stream.as_raw_fd(),
                Token(slot),
                Interest::READABLE,
                Mode::Level,
            )?;
            conns.push(Conn {
                stream,
                index,
                bytes: ByteStream::new(index as u64),
                issued: 0,
                tx: 0,
                rx: 0,
                in_flight: VecDeque::with_capacity(pipeline.clamp(16, 1024)),
                writable_registered: false,
                alive: true,
                connecting: None,
                generation: 0,
            });
        }
        let plan = spec.plan;
        Ok(Worker {
            poller,
            measure_from: spec.start + plan.warmup,
            end: spec.start + plan.warmup + plan.duration,
            start: spec.start,
            stop: spec.stop,
            progress: spec.progress,
            alive_shared: spec.alive,
            result: WorkerResult::new(conns.len()),
            conns,
            scratch: vec![0u8; 64 * 1024],
            next_k: 0,
            next_timeout_scan: spec.start,
            plan,
        })
    }

    fn run(mut self) -> std::io::Result<WorkerResult> {
        let mut events = Events::with_capacity(1024);
        let now = Instant::now();
        if self.plan.rate.is_none() {
            for slot in 0..self.conns.len() {
                self.start_closed_loop(slot, now);
            }
        }
        loop {
            let now = Instant::now();
            if now >= self.end || self.stop.load(Ordering::Relaxed) || self.result.alive == 0 {
                break;
            }
            let mut wake_at = self.end;
            if self.plan.rate.is_some() {
                // Sleep until `spin` before the next send is due; from there the timeout is zero:
                // a non-blocking wait each time round (readiness is still serviced), until it is.
                let due = self.issue_due(now);
                wake_at = wake_at.min(due.checked_sub(self.plan.spin).unwrap_or(due));
            }
            if now >= self.next_timeout_scan {
                self.check_timeouts(now);
                self.next_timeout_scan = now + TIMEOUT_SCAN;
            }
            wake_at = wake_at.min(self.next_timeout_scan);
            let timeout = wake_at.saturating_duration_since(Instant::now());
            self.poller.wait(&mut events, Some(timeout))?;
            for event in &events {
                let slot = event.token().0;
                if self.conns[slot].connecting.is_some() {
                    self.established(slot);
                    continue;
                }
                if event.is_writable() {
                    self.flush(slot);
                }
                if event.is_readable() || event.is_error() || event.is_hangup() {
                    self.receive(slot);
                }
            }
        }
        let measure_from = self.measure_from;
        self.result.unfinished = self
            .conns
            .iter()
            .filter(|c| c.alive)
            .flat_map(|c| c.in_flight.iter())
            .filter(|f| f.intended >= measure_from)
            .count() as u64;
        Ok(self.result)
    }

    /// Open loop: issue every message whose intended time has come; returns when the next is due.
    fn issue_due(&mut self, now: Instant) -> Instant {
        let m = self.conns.len() as u64;
        if m == 0 {
            return self.end;
        }
        while self.due(self.next_k) <= now {
            let slot = (self.next_k % m) as usize;
            let intended = self.due(self.next_k);
            self.next_k += 1;
            if self.conns[slot].alive {
                self.issue(slot, intended);
                // Only this connection has something new to send: no scan over all of them.
                self.flush(slot);
            }
        }
        self.due(self.next_k)
    }

    /// Open loop: when this worker's k-th message is due. It goes to the worker's connection
    /// k mod m, whose global index c places it in the global schedule at (c + j*C)/R, j = k / m.
    fn due(&self, k: u64) -> Instant {
        let rate = self.plan.rate.expect("open loop");
        let m = self.conns.len() as u64;
        let conn = &self.conns[(k % m) as usize];
        let j = (k / m) as f64;
        self.start
            + Duration::from_secs_f64((conn.index as f64 + j * self.plan.connections as f64) / rate)
    }

    fn issue(&mut self, slot: usize, intended: Instant) {
        let c = &mut self.conns[slot];
        c.issued += 1;
        c.in_flight.push_back(InFlight {
            intended,
            sent: None,
        });
    }

    /// Bytes the connection may have written: at most `pipeline` messages on the wire, as in wrk2.
    /// Scheduled messages beyond that wait for replies; their late actual send is what the
    /// uncorrected latency measures from, and their intended time what the corrected one does.
    /// Under churn, no more than the connection's share: the messages after it go on the next one.
    fn sendable(&self, slot: usize) -> u64 {
        let c = &self.conns[slot];
        let size = self.plan.size as u64;
        let share = self.plan.messages_per_connection.unwrap_or(u64::MAX);
        c.issued
            .min(c.rx / size + self.plan.pipeline.max(1) as u64)
            .min(share)
            * size
    }

    /// Write owed bytes; register for writability if the socket is full.
    fn flush(&mut self, slot: usize) {
        let size = self.plan.size as u64;
        let target = self.sendable(slot);
        let c = &mut self.conns[slot];
        if !c.alive || c.connecting.is_some() {
            return; // a connection being made is flushed once it is established
        }
        while c.tx < target {
            let n = ((target - c.tx) as usize).min(self.scratch.len());
            c.bytes.fill(c.tx, &mut self.scratch[..n]);
            // A message is sent when the write that carries its first byte begins, as in wrk2: on
            // loopback that write itself delivers the bytes to the server's socket and wakes the
            // server, which is latency, not the client's lateness.
            let now = Instant::now();
            match (&c.stream).write(&self.scratch[..n]) {
                Ok(written) => {
                    // Messages whose first byte went out in this write were sent at its start.
                    let done = c.rx / size;
                    let first = c.tx.div_ceil(size);
                    let last = (c.tx + written as u64).div_ceil(size);
                    for msg in first.max(done)..last {
                        if let Some(f) = c.in_flight.get_mut((msg - done) as usize) {
                            f.sent.get_or_insert(now);
                        }
                    }
                    c.tx += written as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(slot, &e),
            }
        }
        let c = &mut self.conns[slot];
        let want = c.tx < target;
        if want != c.writable_registered {
            let interest = if want {
                Interest::BOTH
            } else {
                Interest::READABLE
            };
            if self
                .poller
                .modify(c.stream.as_raw_fd(), Token(slot), interest, Mode::Level)
                .is_ok()
            {
                c.writable_registered = want;
            }
        }
    }

    fn receive(&mut self, slot: usize) {
        let size = self.plan.size as u64;
        loop {
            let c = &mut self.conns[slot];
            if !c.alive {
                return;
            }
            let n = match (&c.stream).read(&mut self.scratch) {
                Ok(0) => {
                    self.result.errors.closed += 1;
                    return self.kill(slot);
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(slot, &e),
            };
            if n as u64 > c.tx - c.rx || c.bytes.check(c.rx, &self.scratch[..n]).is_err() {
                self.result.errors.mismatch += 1;
                return self.kill(slot);
            }
            let before = c.rx / size;
            c.rx += n as u64;
            let completed = c.rx / size - before;
            let now = Instant::now();
            for _ in 0..completed {
                let Some(f) = c.in_flight.pop_front() else {
                    break;
                };
                // What is echoed inside the measured window counts, whenever it was due: a server
                // that fell behind during the warm-up is still answering that backlog, and its
                // latency (from the intended time) is what a client of it would see.
                if now >= self.measure_from && now < self.end {
                    let open_loop = self.plan.rate.is_some();
                    record(&mut self.result, f, now, self.measure_from, open_loop);
                }
            }
            // Every echo, warm-up included, so the progress display shows the warm-up's rate too.
            self.progress.fetch_add(completed, Ordering::Relaxed);
            if completed > 0 && now < self.end {
                if self.plan.rate.is_none() {
                    let limit = self.plan.messages_per_connection.unwrap_or(u64::MAX);
                    for _ in 0..completed {
                        if self.conns[slot].issued < limit {
                            self.issue(slot, now);
                        }
                    }
                }
                if let Some(n) = self.plan.messages_per_connection {
                    if self.conns[slot].rx >= n * size {
                        return self.replace(slot);
                    }
                }
                self.flush(slot); // replies free pipeline slots for waiting messages
            }
            if n < self.scratch.len() {
                return; // a short read: drained
            }
        }
    }

    /// Closed loop: put the first `pipeline` messages (at most the connection's share) in flight.
    fn start_closed_loop(&mut self, slot: usize, now: Instant) {
        let limit = self.plan.messages_per_connection.unwrap_or(u64::MAX);
        for _ in 0..self.plan.pipeline.max(1) {
            if self.conns[slot].issued < limit {
                self.issue(slot, now);
            }
        }
        self.flush(slot);
    }

    /// Churn: the connection has sent and verified its messages; close it (the client closes
    /// first, so TIME_WAIT stays on the client) and start a non-blocking connect in its place.
    /// Messages already due and not yet sent (open loop) stay queued for the new connection.
    fn replace(&mut self, slot: usize) {
        let plan = self.plan.clone();
        let c = &mut self.conns[slot];
        let _ = self.poller.deregister(c.stream.as_raw_fd());
        c.generation += 1;
        let index = c.index;
        let generation = c.generation;
        let source = (!plan.source.is_empty())
            .then(|| plan.source[(index + generation as usize) % plan.source.len()]);
        let started = Instant::now();
        let stream = match start_connect(plan.target, source) {
            Ok(s) => s,
            Err(e) => return self.connect_failed(slot, &e),
        };
        let c = &mut self.conns[slot];
        // Dropping the old stream closes it (FIN, not RST).
        c.stream = stream;
        c.bytes = ByteStream::new(index as u64 + generation * plan.connections as u64);
        // Every message the old connection carried is echoed and gone from `in_flight`; what is
        // left there was never written.
        c.issued = c.in_flight.len() as u64;
        c.tx = 0;
        c.rx = 0;
        c.writable_registered = false;
        c.connecting = Some(started);
        if let Err(e) = self.poller.register(
            self.conns[slot].stream.as_raw_fd(),
            Token(slot),
            Interest::WRITABLE,
            Mode::Level,
        ) {
            self.connect_failed(slot, &e);
        }
    }

    /// Churn: the non-blocking connect of `slot` finished, one way or the other.
    fn established(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        let Some(started) = c.connecting else {
            return;
        };
        match c.stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.connect_failed(slot, &e),
        }
        // Writable without an error can still be a connect in progress only on spurious wake-ups;
        // peer_addr tells: it fails with ENOTCONN until the connection is established.
        if c.stream.peer_addr().is_err() {
            return;
        }
        let now = Instant::now();
        c.connecting = None;
        let _ = c.stream.set_nodelay(true);
        if now >= self.measure_from && now < self.end {
            self.result.connects += 1;
            let micros = (now.saturating_duration_since(started).as_micros() as u64).max(1);
            self.result.connect_latency.saturating_record(micros);
            let second = now.saturating_duration_since(self.measure_from).as_secs() as usize;
            while self.result.intervals.len() <= second {
                self.result.intervals.push(Interval::new());
            }
            self.result.intervals[second]
                .connect
                .saturating_record(micros);
        }
        if let Err(e) = self.poller.modify(
            self.conns[slot].stream.as_raw_fd(),
            Token(slot),
            Interest::READABLE,
            Mode::Level,
        ) {
            return self.connect_failed(slot, &e);
        }
        if self.plan.rate.is_none() {
            self.start_closed_loop(slot, now);
        } else {
            self.flush(slot); // the messages that fell due while connecting
        }
    }

    /// Churn: a connection could not be made. Running out of local ports or descriptors stops the
    /// run with a line naming the cause and the remedy, rather than a silent drop in rate.
    fn connect_failed(&mut self, slot: usize, e: &std::io::Error) {
        self.result.errors.connect += 1;
        let why = match e.raw_os_error() {
            Some(libc::EADDRNOTAVAIL) => Some(format!(
                "connect: {e}: the client's ephemeral ports are exhausted (each closed connection holds its port in TIME_WAIT for 60 s on the client, which closes first); use more local addresses with --source 127.0.0.2,127.0.0.3,... (127.0.0.0/8), allow reuse with sysctl net.ipv4.tcp_tw_reuse=1, or widen net.ipv4.ip_local_port_range"
            )),
            Some(libc::EMFILE) | Some(libc::ENFILE) => Some(format!(
                "connect: {e}: out of file descriptors; raise the open-files limit (ulimit -n) or lower -c"
            )),
            _ => None,
        };
        if let Some(why) = why {
            self.result.fatal.get_or_insert(why);
            self.stop.store(true, Ordering::Relaxed);
        }
        let c = &mut self.conns[slot];
        c.connecting = None;
        c.alive = true; // so that kill counts it once
        self.kill(slot);
    }

    /// Close connections whose oldest message is not echoed `timeout` after it was due. Counting
    /// from the due time, not the actual send, bounds the queue: a message waiting unsent behind a
    /// slow server times out too, so no connection holds more than `timeout` of its schedule.
    /// Churn: a replacement connect() not established within the connect timeout is a connect
    /// error.
    fn check_timeouts(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let c = &self.conns[slot];
            if let Some(started) = c.connecting.filter(|_| c.alive) {
                if started + self.plan.connect_timeout <= now {
                    let e = std::io::Error::from(ErrorKind::TimedOut);
                    self.connect_failed(slot, &e);
                }
                continue;
            }
            let Some(oldest) = c.in_flight.front().filter(|_| c.alive) else {
                continue;
            };
            if oldest.intended + self.plan.timeout <= now {
                self.result.errors.timeout += 1;
                self.kill(slot);
            }
        }
    }

    fn fail(&mut self, slot: usize, e: &std::io::Error) {
        match e.kind() {
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
                self.result.errors.reset += 1
            }
            _ => self.result.errors.closed += 1,
        }
        self.kill(slot);
    }

    fn kill(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        if c.alive {
            c.alive = false;
            c.in_flight.clear();
            let _ = self.poller.deregister(c.stream.as_raw_fd());
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            self.result.alive -= 1;
            self.alive_shared.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Make this thread's timers as punctual as the kernel allows: timer slack is how much later than
/// asked Linux may fire a thread's timers (poll and sleep timeouts) to batch wake-ups, 50 µs by
/// default, and it is per thread (a new thread inherits its creator's). Elsewhere, nothing to do.
pub fn minimal_timer_slack() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // 1 ns is the least: 0 would reset the slack to the thread's default.
        // SAFETY: PR_SET_TIMERSLACK takes one unsigned long argument by value and touches no
        // memory of ours; prctl is variadic, so the argument is passed as the c_ulong it reads.
        let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    }
}
