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
//!   ([`Completion::Received`]); the caller hands the buffer back with [`CompletionRing::recycle`]
//!   once done with it (for an echo server: when the send from it completed);
//! - **send** from a received buffer, one per connection at a time (the caller's rule: sends of one
//!   connection never race), continued by the caller when short.
//!
//! When the buffer ring runs dry the kernel ends the connection's multishot receive with ENOBUFS:
//! [`Completion::NoBuffers`], counted in [`RingStats::enobufs`]; the caller re-arms it once it has
//! recycled buffers. Nothing is lost: the data stays in the socket.
//!
//! The ring is set up with `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` (Linux 6.1)
//! where the kernel takes them, else `COOP_TASKRUN` (5.19), else neither; [`RingFeatures`] says
//! which. Nothing here allocates after [`CompletionRing::new`]: the buffers, the buffer ring and
//! the completion list are made once.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
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
}

impl Default for RingConfig {
    fn default() -> RingConfig {
        RingConfig {
            entries: 256,
            buffers: 1024,
            buffer_size: 4096,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// A multishot accept's result.
    Accept {
        /// The request's token.
        token: u64,
        /// A new connection's descriptor (now the caller's), or the errno.
        result: Result<RawFd, i32>,
        /// false: the request ended; re-arm it (after a pause if the errno was EMFILE).
        more: bool,
    },
    /// Bytes received into a provided buffer: read them with [`CompletionRing::buffer`], then
    /// [`recycle`](CompletionRing::recycle) it.
    Received {
        /// The request's token.
        token: u64,
        /// The buffer's id.
        buffer: u16,
        /// Bytes in it.
        len: u32,
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
    /// A send finished.
    Sent {
        /// The request's token.
        token: u64,
        /// Bytes sent (maybe fewer than asked: send the rest), or the errno.
        result: Result<u32, i32>,
    },
}

const OP_SHIFT: u32 = 56;
const TOKEN_MASK: u64 = (1 << OP_SHIFT) - 1;
const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_CANCEL: u64 = 4;
/// The buffer group id of this ring's provided buffers.
const GROUP: u16 = 0;

fn user_data(op: u64, token: u64) -> u64 {
    (op << OP_SHIFT) | (token & TOKEN_MASK)
}

/// One io_uring used in completion mode, with its provided buffers. See the module docs.
pub struct CompletionRing {
    ring: IoUring,
    features: RingFeatures,
    stats: RingStats,
    bufs: Buffers,
    /// Requests the kernel has not finished (a multishot one until its last completion).
    in_flight: u64,
    /// Completions reaped by the last wait.
    completions: Vec<Completion>,
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

impl Buffers {
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
        let page = 4096;
        let ring_bytes = (usize::from(config.buffers) * std::mem::size_of::<types::BufRingEntry>())
            .next_multiple_of(page);
        let ring_layout = Layout::from_size_align(ring_bytes, page).expect("valid layout");
        let data_bytes = usize::from(config.buffers) * config.buffer_size as usize;
        let data_layout = Layout::from_size_align(data_bytes, 64).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size (buffers >= 1, buffer_size >= 1).
        let (ring_entries, data) =
            unsafe { (alloc_zeroed(ring_layout), alloc_zeroed(data_layout)) };
        if ring_entries.is_null() || data.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut this = CompletionRing {
            ring,
            features,
            stats: RingStats::default(),
            bufs: Buffers {
                entries: ring_entries.cast(),
                entries_layout: ring_layout,
                data,
                data_layout,
                count: config.buffers,
                size: config.buffer_size,
                tail: 0,
            },
            in_flight: 0,
            completions: Vec::with_capacity(4 * config.entries as usize),
        };
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
        Ok(this)
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
    pub fn accept_multishot(&mut self, listener: RawFd, token: u64) -> io::Result<()> {
        let entry = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(OP_ACCEPT, token));
        self.push(&entry)
    }

    /// Receive on `fd` into provided buffers until the request ends.
    pub fn recv_multishot(&mut self, fd: RawFd, token: u64) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(types::Fd(fd), GROUP)
            .build()
            .user_data(user_data(OP_RECV, token));
        self.push(&entry)
    }

    /// Send `len` bytes of provided buffer `buffer` from `offset` on `fd`. The buffer must be one
    /// the kernel handed out and not yet recycled, and stay so until the send's completion.
    pub fn send(
        &mut self,
        fd: RawFd,
        token: u64,
        buffer: u16,
        offset: u32,
        len: u32,
    ) -> io::Result<()> {
        if buffer >= self.bufs.count
            || u64::from(offset) + u64::from(len) > u64::from(self.bufs.size)
        {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: in bounds of the buffer (checked above), inside `data`, which lives until Drop.
        let ptr = unsafe { self.bufs.ptr(buffer).add(offset as usize) };
        let entry = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(OP_SEND, token));
        self.push(&entry)
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
        let entry =
            opcode::AsyncCancel2::new(types::CancelBuilder::user_data(user_data(op, token)))
                .build()
                .user_data(user_data(OP_CANCEL, token));
        self.push(&entry)
    }

    /// Close a connection this ring accepted (a descriptor from a [`Completion::Accept`]): the
    /// caller owns it from the accept until this call, and must not use it after. A close(2) now;
    /// requests still in flight on it end with an error completion.
    pub fn close(&mut self, fd: RawFd) {
        // SAFETY: closing touches no memory of ours; by this method's contract the descriptor is
        // an accepted connection the caller owns and hands over here, once.
        unsafe { libc::close(fd) };
    }

    /// The bytes of provided buffer `buffer` (its first `len` are what was received).
    pub fn buffer(&self, buffer: u16) -> &[u8] {
        assert!(buffer < self.bufs.count, "no buffer {buffer}");
        // SAFETY: the buffer is inside `data`, which lives as long as `self`; the kernel writes a
        // buffer only while it is in the ring, and a buffer the caller reads was handed out.
        unsafe { std::slice::from_raw_parts(self.bufs.ptr(buffer), self.bufs.size as usize) }
    }

    /// Give buffer `buffer` back to the kernel.
    pub fn recycle(&mut self, buffer: u16) {
        assert!(buffer < self.bufs.count, "no buffer {buffer}");
        self.bufs.push(buffer);
        self.bufs.publish();
        self.stats.buffers_in_use = self.stats.buffers_in_use.saturating_sub(1);
    }

    /// Submit what is queued and wait until at least `min` completions are ready or `timeout`
    /// passes (`None`: no limit), in one `io_uring_enter`; then reap every ready completion into
    /// the list [`completions`](Self::completions) returns. Returns how many were reaped.
    pub fn wait(&mut self, min: usize, timeout: Option<Duration>) -> io::Result<usize> {
        let queued = self.ring.submission().len() as u64;
        let result = match timeout {
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(min, &args)
            }
            None => self.ring.submitter().submit_and_wait(min),
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
        self.reap();
        Ok(self.completions.len())
    }

    /// The completions the last [`wait`](Self::wait) reaped.
    pub fn completions(&self) -> &[Completion] {
        &self.completions
    }

    fn reap(&mut self) {
        self.completions.clear();
        let mut ended = 0;
        let mut enobufs = 0;
        let mut buffers = 0;
        for cqe in self.ring.completion() {
            let data = cqe.user_data();
            let (op, token) = (data >> OP_SHIFT, data & TOKEN_MASK);
            let (res, flags) = (cqe.result(), cqe.flags());
            let more = cqueue::more(flags);
            if !more || op == OP_SEND || op == OP_CANCEL {
                ended += 1;
            }
            let completion = match op {
                OP_ACCEPT => Completion::Accept {
                    token,
                    result: if res >= 0 { Ok(res) } else { Err(-res) },
                    more,
                },
                OP_RECV => match (res, cqueue::buffer_select(flags)) {
                    (n, Some(buffer)) if n > 0 => {
                        buffers += 1;
                        Completion::Received {
                            token,
                            buffer,
                            len: n as u32,
                            more,
                        }
                    }
                    (0, buffer) => {
                        if let Some(b) = buffer {
                            // A buffer with nothing in it: straight back to the ring.
                            self.bufs.push(b);
                            self.bufs.publish();
                        }
                        Completion::Eof { token }
                    }
                    (n, _) if n == -libc::ENOBUFS => {
                        enobufs += 1;
                        Completion::NoBuffers { token }
                    }
                    (n, _) => Completion::RecvFailed { token, errno: -n },
                },
                OP_SEND => Completion::Sent {
                    token,
                    result: if res >= 0 { Ok(res as u32) } else { Err(-res) },
                },
                _ => continue, // a cancel's own completion: its target reports the end
            };
            self.completions.push(completion);
        }
        self.stats.completions += self.completions.len() as u64;
        self.stats.enobufs += enobufs;
        self.stats.buffers_in_use += buffers;
        self.in_flight = self.in_flight.saturating_sub(ended);
    }

    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: accept, receive and cancel entries point at no memory of ours; a send's
            // buffer is inside `data`, which outlives every request (Drop waits for them).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.in_flight += 1;
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
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(user_data(OP_CANCEL, 0));
        let _ = self.push(&entry);
        for _ in 0..100 {
            if self.in_flight == 0 || self.wait(1, Some(Duration::from_millis(10))).is_err() {
                break;
            }
        }
        if self.in_flight > 0 {
            return; // leak the memory: the kernel may still write to it
        }
        let _ = self.ring.submitter().unregister_buf_ring(GROUP);
        // SAFETY: allocated in `new` with these layouts; no request uses them any more.
        unsafe {
            dealloc(self.bufs.entries.cast(), self.bufs.entries_layout);
            dealloc(self.bufs.data, self.bufs.data_layout);
        }
    }
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
            coop_taskrun: false,
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
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let running = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if running < (major, minor) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "io_uring completion mode needs {feature}, Linux {major}.{minor}+; this is {}",
                release.trim()
            ),
        ));
    }
    Ok(())
}
