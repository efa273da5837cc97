//! Waiting for completions and reaping them: one `io_uring_enter` submits what is queued and
//! waits, then every ready completion queue entry becomes a [`Completion`] in the ring's list.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::cqueue;

use super::{
    Completion, CompletionRing, RecvBuf, Socket, OP_ACCEPT, OP_RECV, OP_SEND, OP_SHIFT, OP_WAKE,
    TOKEN_MASK,
};

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

const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;

impl CompletionRing {
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
    /// completion, at up to `min_wait` of added latency. Needs
    /// [`RingFeatures::min_wait`](super::RingFeatures::min_wait) (Linux 6.12): `Unsupported`
    /// without it.
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

    pub(super) fn enter_and_reap(
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

    pub(super) fn reap(&mut self) -> io::Result<()> {
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
}
