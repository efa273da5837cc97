//! One event loop: written once, generic over the poller backend, run on one thread.
//!
//! Per connection a buffer from the loop's pool (reused after close, so no allocation per message in
//! steady state); bytes read are written back before more is read, so memory per connection is bounded
//! by the buffer whatever the client does. Listening sockets are always level-triggered with a bounded
//! accept batch, so one loop cannot starve the others and nothing is left behind an edge.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use poller::{Backend, Event, Events, Interest, Mode, Token, Waker, WithBackend};
use slab::Slab;

use crate::listener::ConnLimit;
use crate::running::{announce, Ready};
use crate::stats::{Counts, SharedCounters};
use crate::work::{Work, WorkMeter};

const LISTENER: Token = Token(usize::MAX - 1);
/// How long accepting pauses after EMFILE/ENFILE or at the connection limit before it is retried
/// (sooner when this loop closes a connection). Waiting, not spinning, is the point.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// Accepts per listener event, so that a connection burst does not stall the loop's connections.
const ACCEPT_BATCH: usize = 64;

/// Where a loop's new connections come from.
pub enum Intake {
    /// A listener this loop accepts on: its own (reuseport) or one shared by all loops.
    Listener {
        listener: Arc<TcpListener>,
        exclusive: bool,
    },
    /// Sockets handed over by the acceptor thread, announced through the loop's waker.
    Handoff(Receiver<Handoff>),
}

/// A connection the acceptor thread accepted for a loop, with the system calls it made for it:
/// its accept() (and any that failed since the last connection it handed over) and the wake-up of
/// the loop. The loop adds them to its `syscalls`, so the strategy's cost per message includes
/// the acceptor's calls; they would be nobody's otherwise.
pub struct Handoff {
    pub stream: TcpStream,
    pub calls: u64,
}

/// Everything a loop thread needs.
pub struct LoopSpec {
    /// The loop's index: the acceptor hands sockets to loop i and wakes loop i's waker.
    pub id: usize,
    pub intake: Intake,
    pub mode: Mode,
    pub buf_size: usize,
    pub events: usize,
    /// Poll without blocking for this long after the last event (zero: always block).
    pub busy_poll: Duration,
    /// `--work` per message (`None`: off).
    pub work: Option<Work>,
    pub limit: Arc<ConnLimit>,
    pub counters: Arc<SharedCounters>,
    pub shutdown: Arc<AtomicBool>,
    /// The loop sends its index and waker here once it is ready to serve (or the error that stopped it).
    pub ready: Ready<Waker>,
}

impl WithBackend for LoopSpec {
    type Output = io::Result<()>;

    fn run<B: Backend>(self) -> io::Result<()> {
        let (ready, id) = (self.ready.clone(), self.id);
        announce(id, &ready, EventLoop::<B>::new(self))?.run()
    }
}

struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    /// `buf[start..end]` has been read and not yet echoed.
    start: usize,
    end: usize,
    /// The last read filled less than the buffer: the socket was drained.
    last_short: bool,
    /// The client shut its write side; close once everything is echoed.
    read_closed: bool,
    /// What is registered: readable, or writable while the client is not reading.
    interest: Interest,
    /// `--work`: whole messages received cost a spin each, before their echo.
    meter: WorkMeter,
}

enum Outcome {
    /// Keep the connection, waiting for this readiness next.
    Wait(Interest),
    Close,
}

impl Conn {
    /// Echo pending bytes, then read and echo more. Level: one read per event. Edge: until a read
    /// would block, or a short read shows the socket is drained (not trusted when the event also says
    /// the peer hung up: the end-of-file read must still happen). Every read and write call is
    /// counted in `syscalls`, whatever it returns.
    fn pump(&mut self, edge: bool, hangup: bool, c: &mut Counts) -> Outcome {
        let mut did_read = false;
        loop {
            while self.start < self.end {
                c.syscalls += 1;
                match (&self.stream).write(&self.buf[self.start..self.end]) {
                    Ok(0) => return Outcome::Close,
                    Ok(n) => {
                        self.start += n;
                        c.writes += 1;
                        c.bytes_out += n as u64;
                    }
                    // The client is not reading: stop reading from it until it does (backpressure).
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        c.would_block += 1;
                        return Outcome::Wait(Interest::WRITABLE);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Outcome::Close,
                }
            }
            self.start = 0;
            self.end = 0;
            if self.read_closed {
                return Outcome::Close; // half-close: everything pending was echoed
            }
            if did_read && (!edge || (self.last_short && !hangup)) {
                return Outcome::Wait(Interest::READABLE);
            }
            c.syscalls += 1;
            match (&self.stream).read(&mut self.buf) {
                Ok(0) => {
                    c.reads += 1;
                    self.read_closed = true;
                }
                Ok(n) => {
                    c.reads += 1;
                    c.bytes_in += n as u64;
                    self.meter.charge(n);
                    self.end = n;
                    self.last_short = n < self.buf.len();
                    did_read = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    c.would_block += 1;
                    return Outcome::Wait(Interest::READABLE);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Outcome::Close, // reset, timeout: this connection only
            }
        }
    }
}

struct EventLoop<B: Backend> {
    poller: B,
    conns: Slab<Conn>,
    /// Buffers of closed connections, reused by new ones.
    free_bufs: Vec<Box<[u8]>>,
    mode: Mode,
    buf_size: usize,
    events: usize,
    busy_poll: Duration,
    work: Option<Work>,
    listener: Option<(Arc<TcpListener>, bool)>,
    handoff: Option<Receiver<Handoff>>,
    /// The listener is registered (not paused).
    listening: bool,
    resume_at: Option<Instant>,
    limit: Arc<ConnLimit>,
    shutdown: Arc<AtomicBool>,
    shared: Arc<SharedCounters>,
    c: Counts,
}

impl<B: Backend> EventLoop<B> {
    fn new(spec: LoopSpec) -> io::Result<(EventLoop<B>, Waker)> {
        let poller = B::new()?;
        let waker = poller.waker();
        let (listener, handoff) = match spec.intake {
            Intake::Listener {
                listener,
                exclusive,
            } => (Some((listener, exclusive)), None),
            Intake::Handoff(rx) => (None, Some(rx)),
        };
        let mut event_loop = EventLoop {
            poller,
            conns: Slab::with_capacity(1024),
            free_bufs: Vec::new(),
            mode: spec.mode,
            buf_size: spec.buf_size,
            events: spec.events,
            busy_poll: spec.busy_poll,
            work: spec.work,
            listener,
            handoff,
            listening: false,
            resume_at: None,
            limit: spec.limit,
            shutdown: spec.shutdown,
            shared: spec.counters,
            c: Counts::default(),
        };
        event_loop.start_accepting()?;
        Ok((event_loop, waker))
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(self.events);
        let busy_polling = !self.busy_poll.is_zero();
        let mut last_event = Instant::now();
        while !self.shutdown.load(Ordering::Acquire) {
            let timeout = if busy_polling && last_event.elapsed() < self.busy_poll {
                Some(Duration::ZERO)
            } else {
                self.resume_at
                    .map(|t| t.saturating_duration_since(Instant::now()))
            };
            self.c.syscalls += 1;
            self.poller.wait(&mut events, timeout)?;
            if busy_polling && !events.is_empty() {
                last_event = Instant::now();
            }
            let work_before = self.work();
            self.c.waits += 1;
            self.c.events += events.len() as u64;
            // The listener is registered once, so it is in a wait's events at most once; a
            // wake-up for it that accepts nothing is the herd's (another loop took the connection).
            let mut listener_woke = false;
            for event in &events {
                if event.token() == LISTENER {
                    let accepted = self.c.accepted;
                    self.accept_ready();
                    if !listener_woke {
                        listener_woke = true;
                        self.c.listener_wakeups += 1;
                        if self.c.accepted == accepted {
                            self.c.listener_wakeups_empty += 1;
                        }
                    }
                } else {
                    self.conn_ready(event);
                }
            }
            while let Some(handoff) = self.handoff.as_ref().and_then(|rx| rx.try_recv().ok()) {
                self.c.syscalls += handoff.calls;
                self.add(handoff.stream);
            }
            if self.resume_at.is_some_and(|t| t <= Instant::now()) {
                self.start_accepting()?;
            }
            if !events.is_empty() && self.work() == work_before {
                self.c.empty_wakeups += 1;
            }
            self.shared.publish(&self.c);
        }
        // Shutdown: connections still open are closed by dropping them; `closed` counts only what
        // closed while serving, so accepted - closed - rejected = open when shutdown began.
        self.shared.publish(&self.c);
        Ok(())
    }

    fn work(&self) -> (u64, u64, u64, u64) {
        (self.c.accepted, self.c.reads, self.c.writes, self.c.closed)
    }

    fn start_accepting(&mut self) -> io::Result<()> {
        self.resume_at = None;
        let Some((listener, exclusive)) = &self.listener else {
            return Ok(());
        };
        if self.listening {
            return Ok(());
        }
        let fd = listener.as_raw_fd();
        self.c.registrations += 1;
        self.c.syscalls += 1;
        if *exclusive {
            self.poller
                .register_exclusive(fd, LISTENER, Interest::READABLE, Mode::Level)?;
        } else {
            self.poller
                .register(fd, LISTENER, Interest::READABLE, Mode::Level)?;
        }
        self.listening = true;
        Ok(())
    }

    /// Stop watching the listener for a while: at the connection limit or out of descriptors, a
    /// level-triggered listener would otherwise report readable forever and spin the loop.
    fn pause_accepting(&mut self) {
        if let (Some((listener, _)), true) = (&self.listener, self.listening) {
            self.c.registrations += 1;
            self.c.syscalls += 1;
            let _ = self.poller.deregister(listener.as_raw_fd());
            self.listening = false;
            self.c.accept_pauses += 1;
        }
        self.resume_at = Some(Instant::now() + ACCEPT_PAUSE);
    }

    fn accept_ready(&mut self) {
        let Some((listener, _)) = self.listener.clone() else {
            return;
        };
        for _ in 0..ACCEPT_BATCH {
            if !self.limit.try_acquire() {
                return self.pause_accepting();
            }
            self.c.syscalls += 1;
            match listener.accept() {
                Ok((stream, _)) => self.add(stream),
                Err(e) => {
                    self.limit.release();
                    match e.kind() {
                        ErrorKind::WouldBlock => {
                            self.c.would_block += 1;
                            return;
                        }
                        ErrorKind::Interrupted
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::ConnectionReset => {}
                        // EMFILE, ENFILE, ENOBUFS, ENOMEM: back off and let descriptors free up.
                        _ => return self.pause_accepting(),
                    }
                }
            }
        }
    }

    /// Serve a new connection whose slot in the limit is already taken (by `accept_ready`, or by
    /// the acceptor thread for handed-over sockets).
    fn add(&mut self, stream: TcpStream) {
        self.c.accepted += 1;
        let _ = stream.set_nodelay(true);
        if stream.set_nonblocking(true).is_err() {
            self.c.rejected += 1;
            self.limit.release();
            return;
        }
        // Readable only, in every mode; writable is added while a client is not reading. (Edge
        // registrations of both directions would also wake on every writable edge, and libkqueue
        // loses EV_CLEAR events of such fds when the event list is full.)
        let interest = Interest::READABLE;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // select cannot watch descriptors above FD_SETSIZE: such connections are closed at once.
        self.c.registrations += 1;
        self.c.syscalls += 1;
        if self
            .poller
            .register(stream.as_raw_fd(), Token(key), interest, self.mode)
            .is_err()
        {
            self.c.rejected += 1;
            self.limit.release();
            return;
        }
        let buf_size = self.buf_size;
        let buf = self
            .free_bufs
            .pop()
            .unwrap_or_else(|| vec![0; buf_size].into_boxed_slice());
        entry.insert(Conn {
            stream,
            buf,
            start: 0,
            end: 0,
            last_short: false,
            read_closed: false,
            interest,
            meter: WorkMeter::new(self.work),
        });
    }

    fn conn_ready(&mut self, event: &Event) {
        let key = event.token().0;
        let edge = self.mode.is_edge();
        // An earlier event of this batch may have closed it.
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let hangup = event.is_read_hangup() || event.is_hangup() || event.is_error();
        match conn.pump(edge, hangup, &mut self.c) {
            Outcome::Close => self.close(key),
            Outcome::Wait(interest) => {
                if !self.mode.is_oneshot() && interest == conn.interest {
                    return;
                }
                let fd = conn.stream.as_raw_fd();
                conn.interest = interest;
                self.c.registrations += 1;
                self.c.syscalls += 1;
                if self
                    .poller
                    .modify(fd, Token(key), interest, self.mode)
                    .is_err()
                {
                    self.close(key);
                }
            }
        }
    }

    fn close(&mut self, key: usize) {
        let conn = self.conns.remove(key);
        self.c.registrations += 1;
        self.c.syscalls += 1;
        let _ = self.poller.deregister(conn.stream.as_raw_fd());
        self.free_bufs.push(conn.buf);
        self.c.closed += 1;
        self.limit.release();
        if self.resume_at.is_some() {
            self.resume_at = Some(Instant::now()); // a descriptor and a slot just freed up
        }
    }
}
