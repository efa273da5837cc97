//! The completion loop's echo, as a state machine: what to ask of the ring for each completion.
//! It talks to the ring through [`Ring`], so a test can drive it with a scripted sequence of
//! completions in any order the kernel may post them ([`completion_loop`](crate::completion_loop)
//! runs it on a real ring).
//!
//! Per connection: a multishot receive; every received buffer echoed from where it is, one send
//! at a time, short sends continued, the buffer recycled when its send completes.
//! - A client that does not read stops being received from once 64 KiB of its echo wait (the
//!   receive is cancelled), and is received from again once half of that is sent, whichever of
//!   the send and the receive's end comes first.
//! - A receive ended by an empty buffer ring (ENOBUFS) is re-armed once buffers come back, unless
//!   the connection is ending: then it is closed as any other end.
//! - A connection ends on end-of-file or a failed receive or send, and is closed once it has
//!   nothing left in flight: the slot, the socket and its `--max-conns` unit come back.
//! - Completions are tagged with the connection's slot and generation, so the late completion of
//!   a closed connection never reaches the next one in its slot.
//!
//! Accepting: one multishot accept at most is ever in flight. At `--max-conns` it is cancelled,
//! and what it accepted past the limit before the cancel landed is held, unserved, for slots; it
//! is armed again only once its last completion has come (a late ECANCELED is that completion,
//! not an error). An accept ended by an error (EMFILE) is re-armed after a pause.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poller::completion_ring::Completion;

use crate::listener::ConnLimit;
use crate::stats::Counts;
use crate::work::{Work, WorkMeter};

/// Echo bytes a connection may have waiting before its receive is stopped.
pub const BACKLOG_CAP: u64 = 64 * 1024;
/// How long a wait may block while the loop waits for slots other loops free (at
/// `--max-conns`), which nothing signals.
pub const TICK: Duration = Duration::from_millis(50);
/// The pause before a multishot accept that ended on an error (EMFILE) is re-armed.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// A connection's token: its slot + 1 in the low 32 bits, its generation in the 24 above, so
/// every token fits the 56 bits a ring request carries.
const GENERATION_BITS: u32 = 24;
const GENERATION_MASK: u32 = (1 << GENERATION_BITS) - 1;
/// The largest token this loop makes; a ring request carries it whole.
const MAX_TOKEN: u64 = ((GENERATION_MASK as u64) << 32) | u32::MAX as u64;
const _: () = assert!(MAX_TOKEN <= poller::completion_ring::MAX_TOKEN);

/// What the echo asks of a ring. `Buf` is a received buffer and `Sock` an accepted connection,
/// both owned: handed back to the ring by value.
pub trait Ring {
    type Buf;
    type Sock;
    /// Bytes received into `buf`.
    fn buf_len(buf: &Self::Buf) -> u32;
    /// Arm the multishot accept on the loop's listener.
    fn accept(&mut self) -> io::Result<()>;
    /// End it (its last completion follows).
    fn cancel_accept(&mut self) -> io::Result<()>;
    fn recv(&mut self, socket: &Self::Sock, token: u64) -> io::Result<()>;
    /// End a multishot receive (its last completion follows).
    fn cancel_recv(&mut self, token: u64) -> io::Result<()>;
    fn send(
        &mut self,
        socket: &Self::Sock,
        token: u64,
        buf: Self::Buf,
        offset: u32,
        len: u32,
    ) -> io::Result<()>;
    fn recycle(&mut self, buf: Self::Buf);
    /// Close a connection (requests still in flight on it end with their own completions).
    fn close(&mut self, socket: Self::Sock) -> io::Result<()>;
    /// Buffers received and not yet recycled.
    fn buffers_in_use(&self) -> u32;
    /// `--work` for `messages` whole messages a connection's buffer completed, done before their
    /// echo is sent: the real loop spins, a script records it.
    fn work(&mut self, messages: u32);
}

/// Where the multishot accept is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepting {
    Armed,
    /// Cancelled; its last completion has not come yet.
    Cancelling,
    /// None in flight.
    Idle,
}

struct Conn<B, S> {
    socket: S,
    generation: u32,
    /// Echo waiting to be sent, in order: a buffer and where in it to start.
    queue: VecDeque<(B, u32)>,
    /// A send is in flight (its buffer is the ring's until it completes).
    sending: bool,
    /// Bytes received and not yet sent.
    waiting: u64,
    /// Its multishot receive is armed (or being cancelled).
    receiving: bool,
    /// The receive was stopped on purpose: the client is not reading its echo.
    stopped: bool,
    /// The client closed its side, or a receive or send failed: close once nothing is in flight.
    ending: bool,
    /// `--work`: its received bytes, counted in messages across buffers.
    meter: WorkMeter,
}

/// The echo of one completion loop: its connections, held connections and accept state.
pub struct Echo<R: Ring> {
    conns: Vec<Option<Conn<R::Buf, R::Sock>>>,
    free: Vec<usize>,
    generations: Vec<u32>,
    /// Connections whose receive ended for want of buffers: re-armed when buffers come back.
    starved: Vec<u64>,
    accepting: Accepting,
    /// When an accept ended by an error may be armed again.
    accept_resume: Option<Instant>,
    /// Accepting is paused at `--max-conns`: connections accepted past the limit before the
    /// cancel landed (a burst from the backlog) wait here for slots, oldest first, as they would
    /// have in the backlog.
    held: VecDeque<R::Sock>,
    at_limit: bool,
    /// Buffers in use above which starved receives wait.
    buffers: u32,
    limit: Arc<ConnLimit>,
    /// `--work`, for each connection's meter (`None`: off).
    work: Option<Work>,
    pub c: Counts,
}

/// A connection's token.
fn token(slot: usize, generation: u32) -> u64 {
    debug_assert!(generation <= GENERATION_MASK && slot < u32::MAX as usize);
    (u64::from(generation) << 32) | (slot as u64 + 1)
}

impl<R: Ring> Echo<R> {
    /// The echo of a loop whose ring has `buffers` provided buffers; arms the accept.
    pub fn new(ring: &mut R, buffers: u32, limit: Arc<ConnLimit>) -> io::Result<Echo<R>> {
        ring.accept()?;
        Ok(Echo {
            conns: Vec::with_capacity(1024),
            free: Vec::with_capacity(1024),
            generations: Vec::with_capacity(1024),
            starved: Vec::with_capacity(1024),
            accepting: Accepting::Armed,
            accept_resume: None,
            held: VecDeque::new(),
            at_limit: false,
            buffers,
            limit,
            work: None,
            c: Counts::default(),
        })
    }

    /// The echo with `--work` per message (`None`: none), for the connections it serves.
    pub fn with_work(self, work: Option<Work>) -> Echo<R> {
        Echo { work, ..self }
    }

    /// How long the next wait may block: for ever, unless the loop has something to do later
    /// (re-arm an accept after its pause, look for slots other loops freed at `--max-conns`).
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        if self.at_limit {
            return Some(TICK);
        }
        match (self.accepting, self.accept_resume) {
            (Accepting::Idle, Some(t)) => Some(t.saturating_duration_since(now).min(TICK)),
            _ => None,
        }
    }

    /// What to do once a wait's completions are handled: re-arm starved receives if buffers
    /// came back, serve held connections if slots came free, re-arm a paused accept when due.
    pub fn after_wait(&mut self, ring: &mut R, now: Instant) -> io::Result<()> {
        if !self.starved.is_empty() && ring.buffers_in_use() < self.buffers {
            for k in 0..self.starved.len() {
                let t = self.starved[k];
                if let Some(conn) = self.conn_mut(t) {
                    if !conn.receiving && !conn.ending && !conn.stopped {
                        conn.receiving = true;
                        ring.recv(&conn.socket, t)?;
                    }
                }
            }
            self.starved.clear();
        }
        // Slots freed by other loops are noticed here, at the latest one tick later.
        self.resume_at_limit(ring, now)?;
        self.arm_accept(ring, now)
    }

    pub fn complete(
        &mut self,
        ring: &mut R,
        event: Completion<R::Buf, R::Sock>,
        now: Instant,
    ) -> io::Result<()> {
        match event {
            // The loop's one accept is on its listener: the token tells nothing more.
            Completion::Accept { result, more, .. } => self.accept_done(ring, result, more, now),
            Completion::Received {
                token: t,
                buf,
                more,
            } => self.received(ring, t, buf, more),
            Completion::NoBuffers { token: t } => {
                let Some(conn) = self.conn_mut(t) else {
                    return Ok(());
                };
                conn.receiving = false;
                if conn.stopped {
                    // Stopped on purpose: resumed once the echo drains.
                    self.resume_receive(ring, t)
                } else if conn.ending {
                    // (A reset or end-of-file turns into ENOBUFS when the ring is empty.)
                    self.close_if_done(ring, t, now)
                } else {
                    self.starved.push(t);
                    Ok(())
                }
            }
            Completion::Eof { token: t } => {
                if let Some(conn) = self.conn_mut(t) {
                    conn.receiving = false;
                    conn.ending = true;
                    self.close_if_done(ring, t, now)?;
                }
                Ok(())
            }
            Completion::RecvFailed { token: t, errno } => {
                let Some(conn) = self.conn_mut(t) else {
                    return Ok(());
                };
                conn.receiving = false;
                // Cancelled on purpose: resume once the echo drains; anything else ends it.
                if errno == libc::ECANCELED && conn.stopped {
                    self.resume_receive(ring, t)?;
                } else {
                    conn.ending = true;
                }
                self.close_if_done(ring, t, now)
            }
            Completion::Sent {
                token: t,
                buf,
                offset,
                len,
                result,
            } => self.sent(ring, t, buf, offset, len, result, now),
        }
    }

    /// A multishot accept's completion: a connection, or its end.
    fn accept_done(
        &mut self,
        ring: &mut R,
        result: Result<R::Sock, i32>,
        more: bool,
        now: Instant,
    ) -> io::Result<()> {
        let cancelled = self.accepting == Accepting::Cancelling;
        if !more {
            self.accepting = Accepting::Idle;
        }
        match result {
            Ok(socket) => self.accepted(ring, socket)?,
            // The end of the accept cancelled at the limit: not an error.
            Err(libc::ECANCELED) if cancelled => {}
            // EMFILE and friends: pause rather than spin.
            Err(_) if !more => {
                self.c.accept_pauses += 1;
                self.accept_resume = Some(now + ACCEPT_PAUSE);
            }
            Err(_) => {}
        }
        self.arm_accept(ring, now)
    }

    /// Bytes received: queue them for the echo, and stop receiving past the backlog cap.
    fn received(&mut self, ring: &mut R, t: u64, buf: R::Buf, more: bool) -> io::Result<()> {
        if self.conn_mut(t).is_none() {
            ring.recycle(buf); // a closed connection's late data
            return Ok(());
        }
        let len = R::buf_len(&buf);
        self.c.reads += 1;
        self.c.bytes_in += u64::from(len);
        let conn = self.conn_mut(t).expect("open");
        let messages = conn.meter.received(len as usize);
        if messages > 0 {
            ring.work(messages);
        }
        conn.queue.push_back((buf, 0));
        conn.waiting += u64::from(len);
        conn.receiving = more;
        if conn.waiting > BACKLOG_CAP && !conn.ending {
            // Stop receiving until the echo drains; cancel the receive if it goes on.
            if more && !conn.stopped {
                ring.cancel_recv(t)?;
            }
            conn.stopped = true;
        } else if !more && !conn.ending && !conn.stopped {
            conn.receiving = true;
            ring.recv(&conn.socket, t)?;
        }
        self.resume_receive(ring, t)?;
        self.send_next(ring, t)
    }

    /// Close everything: the loop is stopping.
    pub fn close_all(&mut self, ring: &mut R) -> io::Result<()> {
        while let Some(socket) = self.held.pop_front() {
            ring.close(socket)?;
        }
        for slot in 0..self.conns.len() {
            if let Some(conn) = self.conns[slot].take() {
                for (buf, _) in conn.queue {
                    ring.recycle(buf);
                }
                ring.close(conn.socket)?;
                self.c.closed += 1;
                self.limit.release();
            }
        }
        Ok(())
    }

    /// The open connection a completion's token names, if it is still that connection.
    fn conn_mut(&mut self, t: u64) -> Option<&mut Conn<R::Buf, R::Sock>> {
        let slot = (t & 0xffff_ffff) as usize;
        let generation = (t >> 32) as u32;
        self.conns
            .get_mut(slot.checked_sub(1)?)?
            .as_mut()
            .filter(|c| c.generation == generation)
    }

    fn accepted(&mut self, ring: &mut R, socket: R::Sock) -> io::Result<()> {
        if self.at_limit || !self.limit.try_acquire() {
            // At --max-conns: hold it for a free slot, and stop accepting (the rest wait in the
            // kernel's backlog).
            self.held.push_back(socket);
            if !self.at_limit {
                self.at_limit = true;
                self.c.accept_pauses += 1;
            }
            if self.accepting == Accepting::Armed {
                self.accepting = Accepting::Cancelling;
                ring.cancel_accept()?;
            }
            return Ok(());
        }
        self.serve(ring, socket)
    }

    fn serve(&mut self, ring: &mut R, socket: R::Sock) -> io::Result<()> {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        let generation = self.generations[slot];
        let t = token(slot, generation);
        ring.recv(&socket, t)?;
        self.conns[slot] = Some(Conn {
            socket,
            generation,
            queue: VecDeque::with_capacity(8),
            sending: false,
            waiting: 0,
            receiving: true,
            stopped: false,
            ending: false,
            meter: WorkMeter::new(self.work),
        });
        self.c.accepted += 1;
        Ok(())
    }

    /// Arm the accept if none is in flight, the loop is not at the limit, and no pause is on.
    fn arm_accept(&mut self, ring: &mut R, now: Instant) -> io::Result<()> {
        if self.accepting != Accepting::Idle || self.at_limit {
            return Ok(());
        }
        if self.accept_resume.is_some_and(|t| t > now) {
            return Ok(());
        }
        self.accept_resume = None;
        self.accepting = Accepting::Armed;
        ring.accept()
    }

    /// At the limit: serve held connections while slots are free (this loop's or another's:
    /// they share `--max-conns`); once none is held, accept again.
    fn resume_at_limit(&mut self, ring: &mut R, now: Instant) -> io::Result<()> {
        if !self.at_limit {
            return Ok(());
        }
        while !self.held.is_empty() {
            if !self.limit.try_acquire() {
                return Ok(()); // no slot yet
            }
            let socket = self.held.pop_front().expect("held");
            self.serve(ring, socket)?;
        }
        self.at_limit = false;
        // If the cancelled accept has not ended yet, its last completion arms the next one.
        self.arm_accept(ring, now)
    }

    /// Receive again on a connection stopped for not reading, once half its backlog is echoed
    /// and its old receive has ended.
    fn resume_receive(&mut self, ring: &mut R, t: u64) -> io::Result<()> {
        let Some(conn) = self.conn_mut(t) else {
            return Ok(());
        };
        if conn.stopped && !conn.receiving && !conn.ending && conn.waiting <= BACKLOG_CAP / 2 {
            conn.stopped = false;
            conn.receiving = true;
            ring.recv(&conn.socket, t)?;
        }
        Ok(())
    }

    /// Start the send of the connection's next chunk, unless one is in flight.
    fn send_next(&mut self, ring: &mut R, t: u64) -> io::Result<()> {
        let Some(conn) = self.conn_mut(t) else {
            return Ok(());
        };
        if conn.sending {
            return Ok(());
        }
        let Some((buf, offset)) = conn.queue.pop_front() else {
            return Ok(());
        };
        conn.sending = true;
        let len = R::buf_len(&buf) - offset;
        ring.send(&conn.socket, t, buf, offset, len)
    }

    #[allow(clippy::too_many_arguments)] // a Sent completion's fields, taken apart
    fn sent(
        &mut self,
        ring: &mut R,
        t: u64,
        buf: R::Buf,
        offset: u32,
        len: u32,
        result: Result<u32, i32>,
        now: Instant,
    ) -> io::Result<()> {
        if self.conn_mut(t).is_none() {
            ring.recycle(buf); // a closed connection's late send
            return Ok(());
        }
        if let Ok(n) = result {
            self.c.writes += 1;
            self.c.bytes_out += u64::from(n);
        }
        let conn = self.conn_mut(t).expect("open");
        conn.sending = false;
        match result {
            Ok(n) => {
                conn.waiting -= u64::from(n);
                if n < len {
                    conn.queue.push_front((buf, offset + n)); // short: the rest goes next
                } else {
                    ring.recycle(buf);
                }
            }
            Err(_) => {
                // The client is gone (reset, broken pipe): give its buffers back and end it.
                conn.ending = true;
                conn.waiting = 0;
                let receiving = conn.receiving;
                let queue = std::mem::take(&mut conn.queue);
                ring.recycle(buf);
                for (buf, _) in queue {
                    ring.recycle(buf);
                }
                if receiving {
                    ring.cancel_recv(t)?;
                }
                return self.close_if_done(ring, t, now);
            }
        }
        self.resume_receive(ring, t)?;
        self.send_next(ring, t)?;
        self.close_if_done(ring, t, now)
    }

    /// Close a connection that is ending and has nothing left to send or receive.
    fn close_if_done(&mut self, ring: &mut R, t: u64, now: Instant) -> io::Result<()> {
        let done = self
            .conn_mut(t)
            .is_some_and(|c| c.ending && !c.sending && c.queue.is_empty() && !c.receiving);
        if !done {
            return Ok(());
        }
        let slot = (t & 0xffff_ffff) as usize - 1;
        let conn = self.conns[slot].take().expect("open");
        ring.close(conn.socket)?;
        self.generations[slot] = (self.generations[slot] + 1) & GENERATION_MASK;
        self.free.push(slot);
        self.c.closed += 1;
        self.limit.release();
        self.resume_at_limit(ring, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A received buffer of the scripted ring: an id and a length, owned like the real one.
    #[derive(Debug, PartialEq, Eq)]
    struct Buf {
        id: u32,
        len: u32,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Call {
        Accept,
        CancelAccept,
        Recv(u32, u64),
        CancelRecv(u64),
        Send { buf: u32, offset: u32, len: u32 },
        Recycle(u32),
        Close(u32),
        Work(u32),
    }

    /// A ring that records what the echo asks of it; the test plays the kernel.
    #[derive(Default)]
    struct Script {
        calls: Vec<Call>,
        in_use: u32,
        /// Multishot accepts in flight: armed, and their last completion not yet played.
        accepts_in_flight: u32,
    }

    impl Ring for Script {
        type Buf = Buf;
        type Sock = u32;
        fn buf_len(buf: &Buf) -> u32 {
            buf.len
        }
        fn accept(&mut self) -> io::Result<()> {
            self.accepts_in_flight += 1;
            assert_eq!(self.accepts_in_flight, 1, "two multishot accepts in flight");
            self.calls.push(Call::Accept);
            Ok(())
        }
        fn cancel_accept(&mut self) -> io::Result<()> {
            self.calls.push(Call::CancelAccept);
            Ok(())
        }
        fn recv(&mut self, socket: &u32, token: u64) -> io::Result<()> {
            assert!(token <= poller::completion_ring::MAX_TOKEN);
            self.calls.push(Call::Recv(*socket, token));
            Ok(())
        }
        fn cancel_recv(&mut self, token: u64) -> io::Result<()> {
            self.calls.push(Call::CancelRecv(token));
            Ok(())
        }
        fn send(&mut self, _: &u32, _: u64, buf: Buf, offset: u32, len: u32) -> io::Result<()> {
            self.calls.push(Call::Send {
                buf: buf.id,
                offset,
                len,
            });
            Ok(())
        }
        fn recycle(&mut self, buf: Buf) {
            self.in_use -= 1;
            self.calls.push(Call::Recycle(buf.id));
        }
        fn close(&mut self, socket: u32) -> io::Result<()> {
            self.calls.push(Call::Close(socket));
            Ok(())
        }
        fn buffers_in_use(&self) -> u32 {
            self.in_use
        }
        fn work(&mut self, messages: u32) {
            self.calls.push(Call::Work(messages));
        }
    }

    /// An echo on a scripted ring with `--max-conns max`, and the calls it made so far.
    struct Run {
        ring: Script,
        echo: Echo<Script>,
        limit: Arc<ConnLimit>,
        now: Instant,
    }

    impl Run {
        fn new(max_conns: usize) -> Run {
            Run::working(max_conns, None)
        }

        /// The same with `--work` (`None`: none).
        fn working(max_conns: usize, work: Option<Work>) -> Run {
            let mut ring = Script::default();
            let limit = Arc::new(ConnLimit::new(max_conns));
            let echo = Echo::new(&mut ring, 16, limit.clone())
                .unwrap()
                .with_work(work);
            assert_eq!(ring.calls.drain(..).collect::<Vec<_>>(), [Call::Accept]);
            Run {
                ring,
                echo,
                limit,
                now: Instant::now(),
            }
        }

        /// Play one completion and what the loop does after a wait; the calls it made.
        fn play(&mut self, event: Completion<Buf, u32>) -> Vec<Call> {
            if let Completion::Accept { more: false, .. } = event {
                self.ring.accepts_in_flight -= 1;
            }
            if let Completion::Received { .. } = event {
                self.ring.in_use += 1;
            }
            self.echo.complete(&mut self.ring, event, self.now).unwrap();
            self.after_wait()
        }

        /// What the loop does after a wait (also one that brought no completion).
        fn after_wait(&mut self) -> Vec<Call> {
            self.echo.after_wait(&mut self.ring, self.now).unwrap();
            std::mem::take(&mut self.ring.calls)
        }

        /// Accept connection `socket`; its token.
        fn connect(&mut self, socket: u32) -> u64 {
            let calls = self.play(Completion::Accept {
                token: 0,
                result: Ok(socket),
                more: true,
            });
            match calls[..] {
                [Call::Recv(s, t)] if s == socket => t,
                _ => panic!("accepting {socket}: {calls:?}"),
            }
        }

        fn received(&mut self, token: u64, id: u32, len: u32, more: bool) -> Vec<Call> {
            self.play(Completion::Received {
                token,
                buf: Buf { id, len },
                more,
            })
        }

        fn sent(&mut self, token: u64, id: u32, len: u32, result: Result<u32, i32>) -> Vec<Call> {
            self.play(Completion::Sent {
                token,
                buf: Buf { id, len },
                offset: 0,
                len,
                result,
            })
        }

        fn open(&self) -> u64 {
            self.echo.c.active()
        }
    }

    /// Issue 21, 1: more than 64 KiB waiting stops the receive; the send completes in the same
    /// wait as the cancel, before the receive's ECANCELED. The receive must be armed again.
    #[test]
    fn a_receive_stopped_for_a_backlog_resumes_when_its_cancel_ends_after_the_send() {
        let mut run = Run::new(10);
        let t = run.connect(3);
        assert_eq!(
            run.received(t, 0, 70_000, true),
            [
                Call::CancelRecv(t),
                Call::Send {
                    buf: 0,
                    offset: 0,
                    len: 70_000
                }
            ]
        );
        assert_eq!(run.sent(t, 0, 70_000, Ok(70_000)), [Call::Recycle(0)]);
        assert_eq!(
            run.play(Completion::RecvFailed {
                token: t,
                errno: libc::ECANCELED
            }),
            [Call::Recv(3, t)],
            "receiving again"
        );
        // And in the other order: the cancel ends first, the send after.
        assert_eq!(run.received(t, 1, 70_000, true).len(), 2);
        assert_eq!(
            run.play(Completion::RecvFailed {
                token: t,
                errno: libc::ECANCELED
            }),
            [],
            "still 70,000 bytes to echo"
        );
        assert_eq!(
            run.sent(t, 1, 70_000, Ok(70_000)),
            [Call::Recycle(1), Call::Recv(3, t)]
        );
    }

    /// A short send's rest goes next, from the same buffer.
    #[test]
    fn a_short_send_is_continued_from_where_it_stopped() {
        let mut run = Run::new(10);
        let t = run.connect(3);
        run.received(t, 0, 100, true);
        assert_eq!(
            run.sent(t, 0, 100, Ok(60)),
            [Call::Send {
                buf: 0,
                offset: 60,
                len: 40
            }]
        );
        assert_eq!(
            run.play(Completion::Sent {
                token: t,
                buf: Buf { id: 0, len: 100 },
                offset: 60,
                len: 40,
                result: Ok(40)
            }),
            [Call::Recycle(0)]
        );
        assert_eq!(run.ring.in_use, 0);
    }

    /// Issue 21, 2: a send fails (reset) while the receive is armed; the cancelled receive ends
    /// with ENOBUFS (the ring is empty). The connection must be closed and its slot freed.
    #[test]
    fn a_connection_ending_while_out_of_buffers_is_closed() {
        let mut run = Run::new(1);
        let t = run.connect(3);
        run.received(t, 0, 100, true);
        assert_eq!(
            run.sent(t, 0, 100, Err(libc::ECONNRESET)),
            [Call::Recycle(0), Call::CancelRecv(t)]
        );
        assert_eq!(
            run.play(Completion::NoBuffers { token: t }),
            [Call::Close(3)]
        );
        assert_eq!(run.open(), 0);
        assert!(run.limit.try_acquire(), "its --max-conns unit came back");
    }

    /// A receive that ran out of buffers is re-armed once buffers come back; one that was
    /// stopped for a backlog waits for the echo to drain instead.
    #[test]
    fn a_starved_receive_is_rearmed_when_buffers_come_back() {
        let mut run = Run::new(10);
        let t = run.connect(3);
        run.ring.in_use = 16; // every buffer out
        assert_eq!(run.play(Completion::NoBuffers { token: t }), []);
        assert_eq!(run.after_wait(), [], "no buffer back yet");
        run.ring.in_use = 15;
        assert_eq!(run.after_wait(), [Call::Recv(3, t)]);
    }

    /// Issue 21, 3: a slot's generation wraps within the 24 bits its token has, so every token
    /// fits a ring request, and a closed connection's late completions still miss the next one.
    #[test]
    fn generations_wrap_inside_the_token_and_late_completions_miss_the_next_connection() {
        assert_eq!(token(u32::MAX as usize - 1, GENERATION_MASK), MAX_TOKEN);
        let mut run = Run::new(10);
        let first = run.connect(3);
        run.echo.generations[0] = GENERATION_MASK;
        run.echo.conns[0].as_mut().unwrap().generation = GENERATION_MASK;
        let old = token(0, GENERATION_MASK);
        assert_ne!(old, first);
        assert_eq!(run.play(Completion::Eof { token: old }), [Call::Close(3)]);
        let new = run.connect(4);
        assert_eq!(new, token(0, 0), "the generation wrapped to 0");
        assert_eq!(
            run.received(old, 5, 10, true),
            [Call::Recycle(5)],
            "the old connection's late data is dropped"
        );
        assert_eq!(
            run.received(new, 6, 10, true),
            [Call::Send {
                buf: 6,
                offset: 0,
                len: 10
            }]
        );
    }

    /// Issue 21, 4: at the limit the accept is cancelled; the limit clears before the ECANCELED
    /// is read. One accept only is ever in flight (the script panics on a second), the late
    /// ECANCELED arms it again at once (no pause), and nothing makes the wait spin.
    #[test]
    fn a_late_ecanceled_of_a_paused_accept_arms_one_accept_and_no_pause() {
        let mut run = Run::new(1);
        let first = run.connect(3);
        assert_eq!(
            run.play(Completion::Accept {
                token: 0,
                result: Ok(4),
                more: true
            }),
            [Call::CancelAccept],
            "held at the limit"
        );
        assert_eq!(run.echo.timeout(run.now), Some(TICK), "looks for slots");
        assert_eq!(
            run.play(Completion::Eof { token: first }),
            [Call::Close(3), Call::Recv(4, token(0, 1))],
            "the held connection takes the slot; the accept is not armed while cancelling"
        );
        assert_eq!(
            run.play(Completion::Accept {
                token: 0,
                result: Err(libc::ECANCELED),
                more: false
            }),
            [Call::Accept],
            "the cancel's end arms the accept again"
        );
        assert_eq!(run.echo.accept_resume, None);
        assert_eq!(run.echo.c.accept_pauses, 1, "the pause at the limit only");
        assert_eq!(run.echo.timeout(run.now), None, "nothing due: block");
    }

    /// An accept ended by EMFILE is re-armed after a pause, not at once; the wait's timeout
    /// says when, and at the limit a due pause does not make the wait spin.
    #[test]
    fn an_accept_ended_by_an_error_pauses() {
        let mut run = Run::new(1);
        assert_eq!(
            run.play(Completion::Accept {
                token: 0,
                result: Err(libc::EMFILE),
                more: false
            }),
            []
        );
        assert_eq!(run.echo.timeout(run.now), Some(ACCEPT_PAUSE));
        assert_eq!(run.after_wait(), [], "not yet");
        run.now += ACCEPT_PAUSE;
        assert_eq!(run.after_wait(), [Call::Accept]);
        assert_eq!(run.echo.timeout(run.now), None);
    }

    /// A failed receive (reset) ends the connection once its echo is sent; its buffers all
    /// come back.
    #[test]
    fn a_reset_closes_after_the_echo_in_flight() {
        let mut run = Run::new(10);
        let t = run.connect(3);
        run.received(t, 0, 10, true);
        assert_eq!(
            run.play(Completion::RecvFailed {
                token: t,
                errno: libc::ECONNRESET
            }),
            []
        );
        assert_eq!(
            run.sent(t, 0, 10, Ok(10)),
            [Call::Recycle(0), Call::Close(3)]
        );
        assert_eq!((run.open(), run.ring.in_use), (0, 0));
    }

    /// `--work`: a buffer's bytes are counted towards whole messages across buffers, and the
    /// work for what a buffer completes is done before its echo is sent; without `--work`
    /// nothing is (every other test).
    #[test]
    fn work_is_done_per_whole_message_across_buffers_before_the_echo() {
        let mut run = Run::working(
            10,
            Some(Work {
                per_message: Duration::from_micros(200),
                message_size: 64,
            }),
        );
        let t = run.connect(3);
        let send = |buf, len| Call::Send {
            buf,
            offset: 0,
            len,
        };
        assert_eq!(run.received(t, 0, 30, true), [send(0, 30)], "part of one");
        assert_eq!(
            run.received(t, 1, 40, true),
            [Call::Work(1)],
            "30 + 40: one, 6 over"
        );
        assert_eq!(run.sent(t, 0, 30, Ok(30)), [Call::Recycle(0), send(1, 40)]);
        assert_eq!(run.sent(t, 1, 40, Ok(40)), [Call::Recycle(1)]);
        assert_eq!(
            run.received(t, 2, 250, true),
            [Call::Work(4), send(2, 250)],
            "6 + 250: four, 0 over; the work before the send"
        );
        // A second connection counts its own bytes.
        let other = run.connect(4);
        assert_eq!(run.received(other, 3, 63, true), [send(3, 63)]);
    }
}
