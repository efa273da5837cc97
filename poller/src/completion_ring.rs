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

use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

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

/// `struct io_uring_getevents_arg` (include/uapi/linux/io_uring.h): what an enter with
/// `IORING_ENTER_EXT_ARG` waits with.
#[repr(C)]
struct GetEventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    /// `pad` before 6.12; only set where the kernel has `IORING_FEAT_MIN_TIMEOUT`.
    min_wait_usec: u32,
    ts: u64,
}

/// `struct io_uring_rsrc_update`, for registering the ring's own descriptor.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;
const IORING_REGISTER_RING_FDS: u32 = 20;
const IORING_UNREGISTER_RING_FDS: u32 = 21;

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

impl Buffers {
    /// `count` buffers of `size` bytes (both at least 1) and their ring, all written once.
    fn allocate(count: u16, size: u32) -> io::Result<Buffers> {
        let (ring_layout, data_layout) = buffer_layouts(count, size)?;
        // SAFETY: both layouts have a non-zero size (buffers >= 1, buffer_size >= 1).
        let (ring_entries, data) = unsafe { (alloc_zeroed(ring_layout), alloc(data_layout)) };
        if ring_entries.is_null() || data.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        // Written once here, so every page of the buffers is resident from the start: the ring's
        // memory is what it will stay (not growing as receives first touch pages), and no
        // first-touch page fault lands on the echo path. (This is what a big ring costs at
        // start-up: the caller sizes it.)
        // SAFETY: `data` is a fresh allocation of `data_layout.size()` bytes.
        unsafe { std::ptr::write_bytes(data, 0, data_layout.size()) };
        Ok(Buffers {
            entries: ring_entries.cast(),
            entries_layout: ring_layout,
            data,
            data_layout,
            count,
            size,
            tail: 0,
        })
    }

    /// A receive's completion, from its result and flags; a buffer that came back with nothing in
    /// it goes straight back to the ring.
    fn received(&mut self, ring: u32, token: u64, res: i32, flags: u32, more: bool) -> Completion {
        match (res, cqueue::buffer_select(flags)) {
            (n, Some(id)) if n > 0 => Completion::Received {
                token,
                buf: RecvBuf {
                    ring,
                    id,
                    len: n as u32,
                },
                more,
            },
            (0, buffer) => {
                if let Some(b) = buffer {
                    self.push(b);
                    self.publish();
                }
                Completion::Eof { token }
            }
            (n, _) if n == -libc::ENOBUFS => Completion::NoBuffers { token },
            (n, _) => Completion::RecvFailed { token, errno: -n },
        }
    }

    fn ptr(&self, buffer: u16) -> *mut u8 {
        debug_assert!(buffer < self.count);
        // SAFETY: buffer < count, so the offset is inside `data`.
        unsafe { self.data.add(usize::from(buffer) * self.size as usize) }
    }

    /// Put buffer `id` in the ring's next slot (not visible to the kernel until published).
    fn push(&mut self, id: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: slot < count: inside the entries we allocated; the kernel reads only the slots
        // before the published tail, and this one is after it.
        let entry = unsafe { &mut *self.entries.add(slot) };
        entry.set_addr(self.ptr(id) as u64);
        entry.set_len(self.size);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Let the kernel see every buffer pushed so far.
    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of our buffer ring, which is allocated
        // and aligned; the kernel reads it concurrently, hence the atomic release store (the
        // entries written before become visible first).
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl CompletionRing {
    /// Set up a ring, its buffer ring and its buffers. A kernel without what this needs gives an
    /// `Unsupported` error naming the feature and the Linux version that has it.
    pub fn new(config: &RingConfig) -> io::Result<CompletionRing> {
        if !config.buffers.is_power_of_two() || config.buffers > 32768 || config.buffer_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "provided buffers: a power of two up to 32768, of at least 1 byte",
            ));
        }
        require_kernel(6, 0, "multishot receive with provided buffer rings")?;
        let (ring, features) = build_ring(config.entries)?;
        let bufs = Buffers::allocate(config.buffers, config.buffer_size)?;
        // SAFETY: plain eventfd creation; the descriptor is checked and then owned.
        let wake_fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake_fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let wake_fd = std::sync::Arc::new(unsafe { std::os::fd::OwnedFd::from_raw_fd(wake_fd) });
        let mut this = CompletionRing {
            ring,
            id: NEXT_RING_ID.fetch_add(1, Ordering::Relaxed),
            features,
            stats: RingStats::default(),
            bufs,
            in_flight: 0,
            completions: VecDeque::with_capacity(4 * config.entries as usize),
            sends: vec![SendInFlight::default(); usize::from(config.buffers)],
            ring_index: None,
            wake_fd,
            wake_word: Box::into_raw(Box::new(0u64)),
            closing: false,
        };
        this.features.min_wait = this.ring.params().is_feature_min_timeout();
        // SAFETY: the entries are ours, page-aligned, `buffers` long, and stay allocated until
        // Drop unregisters them (after the ring's requests have finished).
        unsafe {
            this.ring.submitter().register_buf_ring_with_flags(
                this.bufs.entries as u64,
                this.bufs.count,
                GROUP,
                0,
            )
        }
        .map_err(|e| {
            unsupported_or(
                e,
                "provided buffer rings (IORING_REGISTER_PBUF_RING)",
                "5.19",
            )
        })?;
        for id in 0..this.bufs.count {
            this.bufs.push(id);
        }
        this.bufs.publish();
        if config.fixed_files > 0 {
            this.ring
                .submitter()
                .register_files_sparse(config.fixed_files)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EMFILE) => io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "a table of {} fixed files is more than the open-files limit allows: {e}",
                            config.fixed_files
                        ),
                    ),
                    _ => unsupported_or(e, "sparse fixed-file tables", "5.19"),
                })?;
            this.features.fixed_files = true;
        }
        this.ring_index = register_ring_fd(this.ring.as_raw_fd());
        this.features.registered_ring = this.ring_index.is_some();
        this.arm_waker()?;
        Ok(this)
    }

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

    /// Submit what is queued and wait until at least `min` completions are ready or `timeout`
    /// passes (`None`: no limit), in one `io_uring_enter`; then reap every ready completion, for
    /// [`next_completion`](Self::next_completion) to hand out. Returns how many wait there. Take
    /// them all before the next wait: the list holds the completion queue's size without
    /// allocating.
    pub fn wait(&mut self, min: usize, timeout: Option<Duration>) -> io::Result<usize> {
        self.enter_and_reap(min, timeout, 0)
    }

    /// Like [`wait`](Self::wait), but for a batch: wait up to `min_wait` for `min` completions;
    /// after that, return as soon as there is one (or `timeout` passes). Fewer enters per
    /// completion, at up to `min_wait` of added latency. Needs [`RingFeatures::min_wait`]
    /// (Linux 6.12): `Unsupported` without it.
    pub fn wait_batched(
        &mut self,
        min: usize,
        min_wait: Duration,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        if !self.features.min_wait {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "batched waits need IORING_FEAT_MIN_TIMEOUT (Linux 6.12+)",
            ));
        }
        let usec = u32::try_from(min_wait.as_micros())
            .unwrap_or(u32::MAX)
            .max(1);
        self.enter_and_reap(min, timeout, usec)
    }

    fn enter_and_reap(
        &mut self,
        min: usize,
        timeout: Option<Duration>,
        min_wait_usec: u32,
    ) -> io::Result<usize> {
        let queued = self.ring.submission().len() as u64;
        // Saturated: a huge timeout must not wrap into a negative one (ETIME at once: a spin).
        let ts = timeout.map(crate::sys::timespec);
        let arg = GetEventsArg {
            sigmask: 0,
            sigmask_sz: 0, // no signal mask
            min_wait_usec,
            ts: ts
                .as_ref()
                .map_or(0, |ts| ts as *const libc::timespec as u64),
        };
        let (fd, registered) = match self.ring_index {
            Some(i) => (i as libc::c_int, IORING_ENTER_REGISTERED_RING),
            None => (self.ring.as_raw_fd(), 0),
        };
        let flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG | registered;
        // SAFETY: io_uring_enter on our ring (its descriptor, or its registered index with the
        // flag saying so); `arg` and the timespec it points to live until the call returns, and
        // the size passed is `arg`'s. The submission queue entries were checked when pushed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                queued as libc::c_uint,
                min as libc::c_uint,
                flags,
                &arg as *const GetEventsArg,
                std::mem::size_of::<GetEventsArg>(),
            )
        };
        let result = if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        self.stats.enters += 1;
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.stats.submissions += queued - self.ring.submission().len() as u64;
        self.reap()?;
        Ok(self.completions.len())
    }

    /// The next completion a wait reaped, oldest first; now the caller's (with any buffer or
    /// socket in it).
    pub fn next_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }

    fn reap(&mut self) -> io::Result<()> {
        let before = self.completions.len();
        let mut ended = 0;
        let mut enobufs = 0;
        let mut buffers = 0;
        let mut wake_rearm = false;
        for cqe in self.ring.completion() {
            let data = cqe.user_data();
            let (op, token) = (data >> OP_SHIFT, data & TOKEN_MASK);
            let (res, flags) = (cqe.result(), cqe.flags());
            let more = cqueue::more(flags);
            if !more {
                ended += 1; // a one-shot request's only completion, or a multishot one's last
            }
            let completion = match op {
                OP_ACCEPT => Completion::Accept {
                    token,
                    result: if res >= 0 {
                        Ok(Socket {
                            ring: self.id,
                            index: res as u32,
                            fixed: self.features.fixed_files,
                        })
                    } else {
                        Err(-res)
                    },
                    more,
                },
                OP_RECV => self.bufs.received(self.id, token, res, flags, more),
                OP_SEND => {
                    // The token of a send is its buffer's id.
                    let id = token as u16;
                    let send = self.sends[usize::from(id)];
                    Completion::Sent {
                        token: send.token,
                        buf: RecvBuf {
                            ring: self.id,
                            id,
                            len: send.buf_len,
                        },
                        offset: send.offset,
                        len: send.len,
                        result: if res >= 0 { Ok(res as u32) } else { Err(-res) },
                    }
                }
                OP_WAKE => {
                    wake_rearm = true;
                    continue;
                }
                // A cancel's or a fixed file's close: the target reports its own end.
                _ => continue,
            };
            match completion {
                Completion::Received { .. } => buffers += 1,
                Completion::NoBuffers { .. } => enobufs += 1,
                _ => {}
            }
            self.completions.push_back(completion);
        }
        if wake_rearm && !self.closing {
            // After the loop, where the completion queue is no longer borrowed.
            self.arm_waker()?;
        }
        self.stats.completions += (self.completions.len() - before) as u64;
        self.stats.enobufs += enobufs;
        self.stats.buffers_in_use += buffers;
        self.in_flight = self.in_flight.saturating_sub(ended);
        Ok(())
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

impl Drop for CompletionRing {
    fn drop(&mut self) {
        // Every request must be over before the buffers are freed: cancel them all, and reap
        // until none is in flight (bounded: a kernel that never answers leaks rather than hangs).
        self.closing = true;
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(user_data(OP_CANCEL, 0));
        let _ = self.push(&entry);
        for _ in 0..100 {
            // Connections accepted in the meantime are nobody's: close their descriptors (a
            // fixed file goes with the ring's table).
            while let Some(completion) = self.completions.pop_front() {
                if let Completion::Accept {
                    result: Ok(socket), ..
                } = completion
                {
                    if let Some(fd) = socket.raw_fd() {
                        // SAFETY: a descriptor the kernel accepted for us that no one else holds.
                        unsafe { libc::close(fd) };
                    }
                }
            }
            if self.in_flight == 0 || self.wait(1, Some(Duration::from_millis(10))).is_err() {
                break;
            }
        }
        if let Some(index) = self.ring_index {
            let mut update = RsrcUpdate {
                offset: index,
                resv: 0,
                data: 0,
            };
            ring_fds(
                self.ring.as_raw_fd(),
                IORING_UNREGISTER_RING_FDS,
                &mut update,
            );
        }
        if self.in_flight > 0 {
            return; // leak the memory: the kernel may still write to it
        }
        let _ = self.ring.submitter().unregister_buf_ring(GROUP);
        // SAFETY: allocated in `new` with these layouts (the word by Box); no request uses them
        // any more.
        unsafe {
            dealloc(self.bufs.entries.cast(), self.bufs.entries_layout);
            dealloc(self.bufs.data, self.bufs.data_layout);
            drop(Box::from_raw(self.wake_word));
        }
    }
}

/// The layouts of `count` buffer-ring entries (page-aligned, as the kernel wants them) and of
/// `count` buffers of `size` bytes; `InvalidInput` where they do not fit in the address space.
fn buffer_layouts(count: u16, size: u32) -> io::Result<(Layout, Layout)> {
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "provided buffers: too many bytes",
        )
    };
    let page = 4096;
    let ring_bytes = usize::from(count)
        .checked_mul(std::mem::size_of::<types::BufRingEntry>())
        .and_then(|b| b.checked_next_multiple_of(page))
        .ok_or_else(too_big)?;
    let data_bytes = usize::try_from(size)
        .ok()
        .and_then(|size| size.checked_mul(usize::from(count)))
        .ok_or_else(too_big)?;
    Ok((
        Layout::from_size_align(ring_bytes, page).map_err(|_| too_big())?,
        Layout::from_size_align(data_bytes, 64).map_err(|_| too_big())?,
    ))
}

/// A ring with the best task-running flags the kernel takes.
fn build_ring(entries: u32) -> io::Result<(IoUring, RingFeatures)> {
    let cq = entries.saturating_mul(4);
    if let Ok(ring) = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(cq)
        .build(entries)
    {
        let features = RingFeatures {
            single_issuer: true,
            defer_taskrun: true,
            ..RingFeatures::default()
        };
        return Ok((ring, features));
    }
    if let Ok(ring) = IoUring::builder()
        .setup_coop_taskrun()
        .setup_cqsize(cq)
        .build(entries)
    {
        let features = RingFeatures {
            coop_taskrun: true,
            ..RingFeatures::default()
        };
        return Ok((ring, features));
    }
    let ring = IoUring::builder()
        .setup_cqsize(cq)
        .build(entries)
        .map_err(|e| unsupported_or(e, "io_uring", "5.1"))?;
    Ok((ring, RingFeatures::default()))
}

/// Register the ring's descriptor with the calling thread, so its enters skip the descriptor
/// lookup: its index, or None where the kernel (before 5.18) cannot.
fn register_ring_fd(ring_fd: RawFd) -> Option<u32> {
    let mut update = RsrcUpdate {
        offset: u32::MAX, // any free index: the kernel writes the one it chose
        resv: 0,
        data: ring_fd as u64,
    };
    (ring_fds(ring_fd, IORING_REGISTER_RING_FDS, &mut update) == 1).then_some(update.offset)
}

/// `io_uring_register(ring_fd, op, update, 1)` for `IORING_(UN)REGISTER_RING_FDS`: the number of
/// entries done, or -1.
fn ring_fds(ring_fd: RawFd, op: u32, update: &mut RsrcUpdate) -> libc::c_long {
    // SAFETY: a register call on our own ring with one `io_uring_rsrc_update` that lives across
    // the call (the kernel writes the chosen index into it when registering).
    unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd,
            op,
            update as *mut RsrcUpdate,
            1,
        )
    }
}

/// `Unsupported` naming the feature where the kernel refused it as unknown, else `e` as it is.
fn unsupported_or(e: io::Error, feature: &str, version: &str) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring completion mode needs {feature} (Linux {version}+): {e}"),
        ),
        _ => e,
    }
}

/// `Unsupported`, naming `feature` and the version, on a kernel older than `major.minor`.
fn require_kernel(major: u32, minor: u32, feature: &str) -> io::Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    kernel_has(release.trim(), major, minor, feature)
}

/// The check of [`require_kernel`] against a given release string (`uname -r`).
fn kernel_has(release: &str, major: u32, minor: u32, feature: &str) -> io::Result<()> {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let running = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if running < (major, minor) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "io_uring completion mode needs {feature}, Linux {major}.{minor}+; this is {release}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An older kernel gets one line naming the feature, the version that has it and its own.
    #[test]
    fn an_older_kernel_is_told_which_feature_and_version() {
        let err = kernel_has("5.15.0-91-generic", 6, 0, "multishot receive").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert_eq!(
            err.to_string(),
            "io_uring completion mode needs multishot receive, Linux 6.0+; this is 5.15.0-91-generic"
        );
        assert!(kernel_has("5.19.17", 6, 0, "x").is_err());
        assert!(kernel_has("6.0.0", 6, 0, "x").is_ok());
        assert!(kernel_has("6.18.44-fc-v782", 6, 0, "x").is_ok());
        assert!(kernel_has("10.1", 6, 12, "x").is_ok());
        assert!(
            kernel_has("", 6, 0, "x").is_err(),
            "an unreadable release is not assumed new"
        );
    }
}
