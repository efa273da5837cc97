//! io_uring in completion mode: the kernel accepts, receives and sends, and the caller learns what
//! was done, not what could be done. This is the echo path readiness cannot take: no readiness
//! event, no read or write system call per message; one `io_uring_enter` submits and reaps many.
//!
//! One [`CompletionRing`] per thread (it is not shared), with:
//! - **multishot accept** (Linux 5.19): one request on a listener yields a completion per
//!   connection until the kernel ends it (then [`Completion::Accept`] says `more: false` and the
//!   caller re-arms, after a pause if the error was EMFILE);
//! - **multishot receive** into a **provided buffer ring** (Linux 6.0): one request per
//!   connection; the kernel picks a buffer from the ring for each chunk it receives and says which
//!   ([`Completion::Received`]) and hands it to the caller as a [`RecvBuf`], which the caller owns
//!   until it gives it back with [`CompletionRing::recycle`];
//! - **send** from a received buffer: [`CompletionRing::send`] takes the [`RecvBuf`] and
//!   [`Completion::Sent`] returns it, so a buffer is never recycled while the kernel reads it;
//!   one send per connection at a time (the caller's rule: sends of one connection never race),
//!   continued by the caller when short.
//!
//! Ownership is what keeps this sound from safe code: a [`RecvBuf`] and a [`Socket`] are neither
//! `Copy` nor `Clone`, recycling or sending consumes the buffer and closing consumes the socket, and
//! both carry the id of the ring that made them (using one with another ring panics). So a buffer
//! cannot be handed to the kernel twice or read while the kernel may write it, and a closed
//! connection cannot be sent to or closed again once its descriptor or slot is reused. Dropping
//! one instead leaks it (the buffer is lost to the ring, the descriptor stays open), which is safe.
//!
//! ```no_run
//! # use poller::completion_ring::{CompletionRing, RecvBuf, Socket};
//! fn done_with(ring: &mut CompletionRing, buf: RecvBuf, socket: Socket) -> std::io::Result<()> {
//!     ring.recycle(buf);
//!     ring.close(socket)
//! }
//! ```
//! The same twice does not compile:
//! ```compile_fail,E0382
//! # use poller::completion_ring::{CompletionRing, RecvBuf};
//! fn recycle_twice(ring: &mut CompletionRing, buf: RecvBuf) {
//!     ring.recycle(buf);
//!     ring.recycle(buf); // the kernel would hand one buffer to two receives
//! }
//! ```
//! ```compile_fail,E0382
//! # use poller::completion_ring::{CompletionRing, Socket};
//! fn close_twice(ring: &mut CompletionRing, socket: Socket) -> std::io::Result<()> {
//!     ring.close(socket)?;
//!     ring.close(socket) // the descriptor or slot may be another connection's by now
//! }
//! ```
//!
//! When the buffer ring runs dry the kernel ends the connection's multishot receive with ENOBUFS:
//! [`Completion::NoBuffers`], counted in [`RingStats::enobufs`]; the caller re-arms it once it has
//! recycled buffers. Nothing is lost: the data stays in the socket.
//!
//! The ring is set up with `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (Linux 6.1)
//! where the kernel takes them, else `COOP_TASKRUN` (5.19), else neither; its own descriptor is
//! registered (5.18), so an `io_uring_enter` skips the descriptor lookup; [`RingFeatures`] says
//! which of these the kernel took. With [`RingConfig::fixed_files`] the accepted connections are
//! **fixed files** (direct descriptors in the ring's table, 5.19): no descriptor lookup per request
//! either, and no descriptor in the process's table; a [`Socket`] hides which kind a connection is.
//!
//! A ring is used by the thread that made it (it is not `Send`): single issuer, and a registered
//! ring descriptor belongs to its thread. Another thread can interrupt its wait with a
//! [`RingWaker`]. Nothing here allocates after [`CompletionRing::new`]: the buffers, the buffer
//! ring and the completion list are made once.

use std::alloc::Layout;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::AtomicU32;

use io_uring::{opcode, squeue, types, IoUring};

mod buffers;
mod reap;
mod setup;

/// How big a ring to make.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Submission queue entries (the completion queue is 4 times as many).
    pub entries: u32,
    /// Provided buffers: a power of two, at most 32,768.
    pub buffers: u16,
    /// Bytes per provided buffer.
    pub buffer_size: u32,
    /// 0: accepted connections are ordinary descriptors. Otherwise the size of a table of fixed
    /// files the accepts fill (at most the open-files limit: the kernel counts the table against
    /// it).
    pub fixed_files: u32,
}

impl Default for RingConfig {
    fn default() -> RingConfig {
        RingConfig {
            entries: 256,
            buffers: 1024,
            buffer_size: 4096,
            fixed_files: 0,
        }
    }
}

/// Which setup flags the kernel took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingFeatures {
    /// `IORING_SETUP_SINGLE_ISSUER` (6.0).
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN` (6.1): completions are processed only when this thread waits.
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN` (5.19), the fallback: no interrupt to run completions.
    pub coop_taskrun: bool,
    /// The ring's own descriptor is registered (`IORING_REGISTER_RING_FDS`, 5.18).
    pub registered_ring: bool,
    /// Accepted connections are fixed files ([`RingConfig::fixed_files`]).
    pub fixed_files: bool,
    /// The kernel can wait for a batch of completions for a bounded time
    /// ([`CompletionRing::wait_batched`], `IORING_FEAT_MIN_TIMEOUT`, 6.12).
    pub min_wait: bool,
}

/// A connection the ring accepted: an ordinary descriptor, or a slot in the ring's table of fixed
/// files. The caller owns it from its [`Completion::Accept`] until it hands it to
/// [`CompletionRing::close`]; there is one of it (not `Clone`), so nothing can use it after.
/// Dropped instead, it stays open (a leak, not a fault).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an accepted connection stays open until it is given to CompletionRing::close"]
pub struct Socket {
    ring: u32,
    index: u32,
    fixed: bool,
}

impl Socket {
    /// Its descriptor, or None for a fixed file (which has none in the process's table).
    pub fn raw_fd(&self) -> Option<RawFd> {
        (!self.fixed).then_some(self.index as RawFd)
    }

    /// Whether it is a slot in the ring's table of fixed files.
    pub fn is_fixed(&self) -> bool {
        self.fixed
    }
}

/// A provided buffer the kernel filled and handed over ([`Completion::Received`]): the caller owns
/// it, and only the caller, until it gives it back with [`CompletionRing::recycle`] or sends from it
/// with [`CompletionRing::send`] (which returns it with [`Completion::Sent`]). Read it with
/// [`CompletionRing::buffer`]. Dropped instead, the buffer is lost to the ring (a leak, not a
/// fault).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a received buffer goes back to the ring with recycle, or is sent from"]
pub struct RecvBuf {
    ring: u32,
    id: u16,
    len: u32,
}

impl RecvBuf {
    /// Bytes received into it.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether it holds nothing (never, for a buffer a receive handed out).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's id in the ring (for logs and tests).
    pub fn id(&self) -> u16 {
        self.id
    }
}

/// What the ring has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Requests submitted to the kernel.
    pub submissions: u64,
    /// Completions reaped.
    pub completions: u64,
    /// `io_uring_enter` calls made (every submit and wait is one).
    pub enters: u64,
    /// Multishot receives ended because the buffer ring was empty.
    pub enobufs: u64,
    /// Provided buffers handed out by the kernel and not recycled yet.
    pub buffers_in_use: u32,
}

/// One finished piece of work. `token` is always the caller's, from the request.
///
/// A ring's completions carry its [`RecvBuf`]s and [`Socket`]s (the defaults); the types are
/// parameters so that code that handles completions can be driven, in its tests, by completions
/// with stand-ins of its own.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion<Buf = RecvBuf, Sock = Socket> {
    /// A multishot accept's result.
    Accept {
        /// The request's token.
        token: u64,
        /// A new connection (now the caller's), or the errno (ENFILE: the fixed-file table is
        /// full).
        result: Result<Sock, i32>,
        /// false: the request ended; re-arm it (after a pause if the errno was EMFILE).
        more: bool,
    },
    /// Bytes received into a provided buffer, now the caller's: read them with
    /// [`CompletionRing::buffer`], then [`recycle`](CompletionRing::recycle) it or send from it.
    Received {
        /// The request's token.
        token: u64,
        /// The buffer and how much it holds.
        buf: Buf,
        /// false: the multishot receive ended; re-arm it to go on receiving.
        more: bool,
    },
    /// The peer closed its side: no more data will come (the receive has ended).
    Eof {
        /// The request's token.
        token: u64,
    },
    /// The buffer ring was empty: the receive ended; recycle buffers, then re-arm it.
    NoBuffers {
        /// The request's token.
        token: u64,
    },
    /// The receive failed and has ended.
    RecvFailed {
        /// The request's token.
        token: u64,
        /// ECONNRESET, ECANCELED (after [`CompletionRing::cancel_recv`]), ...
        errno: i32,
    },
    /// A send finished; its buffer is the caller's again.
    Sent {
        /// The request's token.
        token: u64,
        /// The buffer sent from.
        buf: Buf,
        /// Where in it the send started.
        offset: u32,
        /// How many bytes it asked to send.
        len: u32,
        /// Bytes sent (maybe fewer than asked: send the rest), or the errno.
        result: Result<u32, i32>,
    },
}

const OP_SHIFT: u32 = 56;
const TOKEN_MASK: u64 = (1 << OP_SHIFT) - 1;
/// The largest token a request can carry: the top 8 bits of a request's `user_data` say which
/// operation it is. A request with a larger token is refused (`InvalidInput`), never cut short.
pub const MAX_TOKEN: u64 = TOKEN_MASK;
const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_CANCEL: u64 = 4;
const OP_CLOSE: u64 = 5;
const OP_WAKE: u64 = 6;
/// The buffer group id of this ring's provided buffers.
const GROUP: u16 = 0;

fn user_data(op: u64, token: u64) -> u64 {
    debug_assert!(token <= MAX_TOKEN);
    (op << OP_SHIFT) | token
}

/// `token`, if a request can carry it whole.
fn checked(token: u64) -> io::Result<u64> {
    if token > MAX_TOKEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("token {token:#x} is over {MAX_TOKEN:#x} (56 bits)"),
        ));
    }
    Ok(token)
}

/// Each ring's id, so a buffer or socket of one ring is never taken for another's.
static NEXT_RING_ID: AtomicU32 = AtomicU32::new(1);

/// A send in flight, by the id of the buffer it sends from (a buffer has one owner, so at most
/// one send each): what [`Completion::Sent`] gives back.
#[derive(Clone, Copy, Default)]
struct SendInFlight {
    token: u64,
    buf_len: u32,
    offset: u32,
    len: u32,
}

/// One io_uring used in completion mode, with its provided buffers. See the module docs.
pub struct CompletionRing {
    ring: IoUring,
    /// This ring's id, carried by its buffers and sockets.
    id: u32,
    features: RingFeatures,
    stats: RingStats,
    bufs: Buffers,
    /// Requests the kernel has not finished (a multishot one until its last completion).
    in_flight: u64,
    /// Completions reaped and not yet taken by the caller.
    completions: VecDeque<Completion>,
    /// Sends in flight, by buffer id.
    sends: Vec<SendInFlight>,
    /// The registered index of the ring's descriptor, if it is registered.
    ring_index: Option<u32>,
    /// The eventfd a [`RingWaker`] writes; a read of it is always in flight.
    wake_fd: std::sync::Arc<std::os::fd::OwnedFd>,
    /// Where that read puts the count (heap, so it never moves; freed with the buffers).
    wake_word: *mut u64,
    /// Being dropped: requests ending now are not re-armed.
    closing: bool,
}

/// Interrupts a [`CompletionRing`]'s wait from another thread (the wait returns, maybe with no
/// completion). Cheap to clone.
#[derive(Clone, Debug)]
pub struct RingWaker {
    fd: std::sync::Arc<std::os::fd::OwnedFd>,
}

impl RingWaker {
    /// Make the ring's current or next wait return.
    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own (the Arc keeps it open).
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        // EAGAIN: the counter is full, so a wake-up is already pending.
        if n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The provided buffers and the ring the kernel takes them from (both ours, made once).
struct Buffers {
    /// The buffer ring: `count` entries, page-aligned.
    entries: *mut types::BufRingEntry,
    entries_layout: Layout,
    /// The buffers themselves, `count * size` bytes, never moved.
    data: *mut u8,
    data_layout: Layout,
    count: u16,
    size: u32,
    /// Our copy of the buffer ring's tail (the kernel reads the shared one).
    tail: u16,
}

impl CompletionRing {
    /// A waker for this ring's waits, for another thread.
    pub fn waker(&self) -> RingWaker {
        RingWaker {
            fd: self.wake_fd.clone(),
        }
    }

    /// Keep a read of the waker's eventfd in flight: its completion ends a wait.
    fn arm_waker(&mut self) -> io::Result<()> {
        let entry = opcode::Read::new(
            types::Fd(self.wake_fd.as_raw_fd()),
            self.wake_word.cast(),
            8,
        )
        .build()
        .user_data(user_data(OP_WAKE, 0));
        self.push(&entry)
    }

    /// Which setup flags the kernel took.
    pub fn features(&self) -> RingFeatures {
        self.features
    }

    /// What the ring has done so far.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Accept connections on `listener` until the request ends (one completion each).
    /// `InvalidInput` for a token over [`MAX_TOKEN`].
    pub fn accept_multishot(&mut self, listener: RawFd, token: u64) -> io::Result<()> {
        let token = checked(token)?;
        // A fixed file has no descriptor to close on exec (the kernel refuses the flag for one).
        let flags = if self.features.fixed_files {
            0
        } else {
            libc::SOCK_CLOEXEC
        };
        let entry = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(flags)
            .allocate_file_index(self.features.fixed_files)
            .build()
            .user_data(user_data(OP_ACCEPT, token));
        self.push(&entry)
    }

    /// Receive on `socket` into provided buffers until the request ends. `InvalidInput` for a
    /// token over [`MAX_TOKEN`].
    pub fn recv_multishot(&mut self, socket: &Socket, token: u64) -> io::Result<()> {
        let token = checked(token)?;
        let entry = if self.own(socket).fixed {
            opcode::RecvMulti::new(types::Fixed(socket.index), GROUP).build()
        } else {
            opcode::RecvMulti::new(types::Fd(socket.index as RawFd), GROUP).build()
        };
        self.push(&entry.user_data(user_data(OP_RECV, token)))
    }

    /// Send `len` bytes of `buf` from `offset` on `socket`. The buffer is the ring's until the
    /// send's [`Completion::Sent`] gives it back. On an error (bytes outside what `buf` holds,
    /// a token over [`MAX_TOKEN`], a failed submit) the buffer goes back to the ring.
    pub fn send(
        &mut self,
        socket: &Socket,
        token: u64,
        buf: RecvBuf,
        offset: u32,
        len: u32,
    ) -> io::Result<()> {
        self.own_buf(&buf);
        let id = buf.id;
        let fits = u64::from(offset) + u64::from(len) <= u64::from(buf.len);
        let token = checked(token).and_then(|t| {
            fits.then_some(t).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bytes {offset}..+{len} of a buffer that holds {}", buf.len),
                )
            })
        });
        let token = match token {
            Ok(t) => t,
            Err(e) => {
                self.recycle(buf);
                return Err(e);
            }
        };
        self.sends[usize::from(id)] = SendInFlight {
            token,
            buf_len: buf.len,
            offset,
            len,
        };
        // SAFETY: in bounds of the buffer (checked above), inside `data`, which lives until Drop.
        let ptr = unsafe { self.bufs.ptr(id).add(offset as usize) };
        let entry = if self.own(socket).fixed {
            opcode::Send::new(types::Fixed(socket.index), ptr, len)
        } else {
            opcode::Send::new(types::Fd(socket.index as RawFd), ptr, len)
        };
        let entry = entry
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(OP_SEND, u64::from(id)));
        // The buffer now belongs to the send in flight (which gives it back with its completion);
        // a failed push hands it back to the ring.
        drop(buf);
        self.push(&entry).inspect_err(|_| self.give_back(id))
    }

    /// End the multishot receive of `token` (its last completion follows).
    pub fn cancel_recv(&mut self, token: u64) -> io::Result<()> {
        self.cancel(OP_RECV, token)
    }

    /// End the multishot accept of `token` (its last completion follows, `more: false`, with
    /// ECANCELED): to stop accepting for a while.
    pub fn cancel_accept(&mut self, token: u64) -> io::Result<()> {
        self.cancel(OP_ACCEPT, token)
    }

    fn cancel(&mut self, op: u64, token: u64) -> io::Result<()> {
        let target = user_data(op, checked(token)?);
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(target))
            .build()
            .user_data(user_data(OP_CANCEL, 0));
        self.push(&entry)
    }

    /// Close a connection this ring accepted, which the caller hands over here. Every request
    /// still in flight on it is cancelled first (a request holds its own reference to the socket,
    /// so without the cancel a multishot receive would go on receiving): those end with their own
    /// completions (ECANCELED, or what they had done), after this call. The cancel and the close
    /// are requests that go with the next wait, which runs them: the descriptor or slot is free
    /// after it (the close itself completes unseen).
    pub fn close(&mut self, socket: Socket) -> io::Result<()> {
        let socket = self.own(&socket);
        let (cancel, close) = if socket.fixed {
            let target = types::Fixed(socket.index);
            (
                opcode::AsyncCancel2::new(types::CancelBuilder::fd(target).all()).build(),
                opcode::Close::new(target).build(),
            )
        } else {
            let target = types::Fd(socket.index as RawFd);
            (
                opcode::AsyncCancel2::new(types::CancelBuilder::fd(target).all()).build(),
                opcode::Close::new(target).build(),
            )
        };
        // Hard-linked: the close runs after the cancel, even when it found nothing to cancel.
        let entries = [
            cancel
                .flags(squeue::Flags::IO_HARDLINK)
                .user_data(user_data(OP_CANCEL, 0)),
            close.user_data(user_data(OP_CLOSE, 0)),
        ];
        self.push_all(&entries)
    }

    /// The bytes received into `buf`.
    pub fn buffer(&self, buf: &RecvBuf) -> &[u8] {
        self.own_buf(buf);
        // SAFETY: the buffer is inside `data`, which lives as long as `self`; the kernel writes a
        // buffer only while it is in the ring, and this one was handed out and is held by the
        // caller (a `RecvBuf` exists once, and recycling or sending consumes it).
        unsafe { std::slice::from_raw_parts(self.bufs.ptr(buf.id), buf.len as usize) }
    }

    /// Give `buf` back to the kernel.
    pub fn recycle(&mut self, buf: RecvBuf) {
        self.own_buf(&buf);
        self.give_back(buf.id);
    }

    /// Buffer `id`, held by the caller or a send, back in the ring.
    fn give_back(&mut self, id: u16) {
        self.bufs.push(id);
        self.bufs.publish();
        self.stats.buffers_in_use = self.stats.buffers_in_use.saturating_sub(1);
    }

    /// `socket`, checked to be this ring's.
    fn own<'s>(&self, socket: &'s Socket) -> &'s Socket {
        assert_eq!(socket.ring, self.id, "a socket of another ring");
        socket
    }

    /// Panics unless `buf` is this ring's.
    fn own_buf(&self, buf: &RecvBuf) {
        assert_eq!(buf.ring, self.id, "a buffer of another ring");
    }

    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        self.push_all(std::slice::from_ref(entry))
    }

    /// Queue `entries` together (a linked pair must reach the kernel in one submit).
    fn push_all(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        loop {
            // SAFETY: accept, receive, cancel and close entries point at no memory of ours; a
            // send's buffer is inside `data` and a wake's word is ours, both outliving every
            // request (Drop waits for them).
            if unsafe { self.ring.submission().push_multiple(entries) }.is_ok() {
                self.in_flight += entries.len() as u64;
                return Ok(());
            }
            // The submission queue is full: hand it to the kernel first.
            let queued = self.ring.submission().len() as u64;
            self.ring.submit()?;
            self.stats.enters += 1;
            self.stats.submissions += queued - self.ring.submission().len() as u64;
        }
    }
}
