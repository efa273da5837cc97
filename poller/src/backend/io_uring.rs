//! Linux `io_uring` readiness: one `IORING_OP_POLL_ADD` per registration.
//!
//! - `Level`: a single-shot poll, re-armed by the wait that delivers its event; the re-armed poll
//!   checks readiness when the kernel takes it, so a still-ready fd reports again (level semantics).
//! - `Edge`: a multishot poll (`IORING_POLL_ADD_MULTI`, Linux 5.13+), which posts one completion per
//!   wake-up of the fd; re-armed if the kernel ends it.
//! - `Oneshot`, `EdgeOneshot`: a single-shot poll, re-armed only by `modify`.
//!
//! Register and modify only queue submissions; they reach the kernel with the next wait, in the same
//! `io_uring_enter` that waits. Deregister submits at once, so the kernel drops its file reference
//! before the caller closes the fd. Each poll's `user_data` carries the fd and a per-fd generation
//! that changes on every register/modify/deregister, so completions of cancelled polls are dropped.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring as Ring, SubmissionQueue, Submitter};

use super::notify::Notifier;
use crate::api::{Backend, BackendKind, Capabilities, Mechanism, RegisteredFd, Request, Support};
use crate::sys::{check_fd_open, Deadline};
use crate::{Event, Events, Interest, Mode, Token, Waker};

const WAKER_DATA: u64 = u64::MAX;
const CANCEL_DATA: u64 = u64::MAX - 1;
/// `IORING_ENTER_GETEVENTS` from the kernel's uapi header (the io-uring crate keeps its copy private).
const IORING_ENTER_GETEVENTS: u32 = 1;
const RING_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 16 * 1024;

#[derive(Clone, Copy)]
struct Registration {
    token: Token,
    interest: Interest,
    mode: Mode,
    /// A poll request for the current generation is in the kernel (or queued for it).
    in_flight: bool,
}

impl Registration {
    /// Not yet armed: `arm` sends its poll.
    fn new(request: Request) -> Registration {
        Registration {
            token: request.token,
            interest: request.interest,
            mode: request.mode,
            in_flight: false,
        }
    }

    /// The poll request of this registration of `fd`: multishot for edge mode.
    fn poll(&self, fd: RawFd, data: u64) -> squeue::Entry {
        poll_add(fd, poll_mask(self.interest), self.mode == Mode::Edge, data)
    }

    /// Ask the kernel again, unless a poll of this registration is still in flight.
    fn rearm(
        &mut self,
        submitter: &Submitter<'_>,
        sq: &mut SubmissionQueue<'_>,
        fd: RawFd,
        data: u64,
    ) -> io::Result<()> {
        if self.in_flight {
            return Ok(());
        }
        self.in_flight = true;
        push(submitter, sq, &self.poll(fd, data))
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    generation: u32,
    reg: Option<Registration>,
}

/// The Linux `io_uring` backend: one `IORING_OP_POLL_ADD` per registration.
///
/// Needs Linux 5.11+ (`IORING_FEAT_EXT_ARG`, for wait timeouts); edge mode needs multishot polls
/// (5.13+), else it is `Unsupported`. Register and modify are submitted with the next wait. A
/// completion is a snapshot taken when the fd woke up, so it may report data read since (see the
/// crate docs, "Readiness is a hint").
pub struct IoUring {
    ring: Ring,
    /// Indexed by fd.
    slots: Vec<Slot>,
    multishot: bool,
    notifier: Arc<Notifier>,
}

fn user_data(fd: RawFd, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(fd as u32)
}

fn poll_mask(interest: Interest) -> u32 {
    let mut mask = 0;
    if interest.is_readable() {
        mask |= libc::POLLIN | libc::POLLRDHUP;
    }
    if interest.is_writable() {
        mask |= libc::POLLOUT;
    }
    if interest.is_priority() {
        // POLLRDBAND rides along only to be woken: Linux's io_uring ignores a wake-up whose poll
        // asks for nothing but EPOLLPRI (it masks EPOLLPRI out with IO_ASYNC_POLL_COMMON before
        // matching the wake-up's key), so a PRIORITY-only poll would see urgent data only when
        // armed after it arrived. Socket wake-ups carry EPOLLRDBAND, which TCP never reports as
        // readiness, so nothing more is reported: the readiness check after the wake-up still
        // decides, and only POLLPRI becomes `is_priority`.
        mask |= libc::POLLPRI | libc::POLLRDBAND;
    }
    mask as u32
}

/// Is out-of-band data really pending on `fd`? A poll completion woken by a socket carries the
/// wake-up's key, not a fresh readiness check, and every socket wake-up for incoming data says
/// `EPOLLIN | EPOLLPRI | EPOLLRDNORM | EPOLLRDBAND`: so a completion's `POLLPRI` is checked with
/// one `poll` of zero timeout before it is reported (only completions that carry it pay for this).
fn priority_pending(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLPRI,
        revents: 0,
    };
    // SAFETY: one valid pollfd, alive for the call; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & libc::POLLPRI != 0
}

fn poll_add(fd: RawFd, mask: u32, multishot: bool, data: u64) -> squeue::Entry {
    opcode::PollAdd::new(types::Fd(fd), mask)
        .multi(multishot)
        .build()
        .user_data(data)
}

/// Queue an entry; when the submission ring is full, hand what is queued to the kernel first.
fn push(
    submitter: &Submitter<'_>,
    sq: &mut SubmissionQueue<'_>,
    entry: &squeue::Entry,
) -> io::Result<()> {
    loop {
        // SAFETY: poll add/remove entries point at no user memory, so nothing must outlive the call.
        if unsafe { sq.push(entry) }.is_ok() {
            return Ok(());
        }
        sq.sync();
        submitter.submit()?;
        sq.sync();
    }
}

impl IoUring {
    fn queue(&mut self, entry: squeue::Entry) -> io::Result<()> {
        let (submitter, mut sq, _) = self.ring.split();
        push(&submitter, &mut sq, &entry)
    }

    fn arm(&mut self, fd: RawFd) -> io::Result<()> {
        let slot = &mut self.slots[fd as usize];
        let reg = slot.reg.as_mut().expect("arm is called on registered fds");
        reg.in_flight = true;
        let entry = reg.poll(fd, user_data(fd, slot.generation));
        self.queue(entry)
    }

    /// Cancel the in-flight poll of `fd`'s current generation, if any, and start a new generation.
    fn retire(&mut self, fd: RawFd) -> io::Result<()> {
        let slot = &mut self.slots[fd as usize];
        let old = user_data(fd, slot.generation);
        slot.generation = slot.generation.wrapping_add(1);
        if slot.reg.is_some_and(|r| r.in_flight) {
            self.queue(opcode::PollRemove::new(old).build().user_data(CANCEL_DATA))?;
        }
        Ok(())
    }

    fn registration(&self, fd: RawFd) -> Option<Registration> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.reg)
    }

    /// Enter the kernel: submit what is queued and wait for completions as the timeout says.
    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let pending = !self.ring.completion().is_empty();
        let result = match timeout {
            // Nothing to wait for: submit, and run pending task work so completions are posted.
            _ if pending => self.flush(),
            Some(t) if t.is_zero() => self.flush(),
            None => self.ring.submitter().submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                // Timed out, interrupted by a signal, or completions backed up: the caller looks at the
                // completion queue and the clock and decides.
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => Ok(()),
                _ => Err(e),
            },
        }
    }

    fn flush(&mut self) -> io::Result<usize> {
        let queued = self.ring.submission().len() as u32;
        // SAFETY: a plain io_uring_enter on our own ring with no extra argument; GETEVENTS with
        // min_complete 0 returns at once after running pending task work.
        unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(queued, 0, IORING_ENTER_GETEVENTS, None)
        }
    }

    /// Turn completions into events; returns whether the waker fired.
    fn reap(&mut self, events: &mut Events) -> io::Result<bool> {
        let mut woken = false;
        let multishot = self.multishot;
        let (submitter, mut sq, mut cq) = self.ring.split();
        while !events.is_full() {
            let Some(cqe) = cq.next() else { break };
            let data = cqe.user_data();
            let more = cqueue::more(cqe.flags());
            if data == CANCEL_DATA {
                continue;
            }
            if data == WAKER_DATA {
                self.notifier.drain();
                woken = true;
                if !more {
                    let entry = poll_add(
                        self.notifier.read_fd(),
                        libc::POLLIN as u32,
                        multishot,
                        WAKER_DATA,
                    );
                    push(&submitter, &mut sq, &entry)?;
                }
                continue;
            }
            let fd = data as u32 as RawFd;
            let generation = (data >> 32) as u32;
            let Some(slot) = self.slots.get_mut(fd as usize) else {
                continue;
            };
            let Some(reg) = slot.reg.as_mut() else {
                continue;
            };
            if slot.generation != generation {
                continue; // a completion of a poll that was modified or deregistered since
            }
            if !more {
                reg.in_flight = false;
            }
            let res = cqe.result();
            if res == -libc::ECANCELED {
                // The kernel ended the poll by itself (not us: ours carry an old generation).
                if !reg.mode.is_oneshot() {
                    reg.rearm(&submitter, &mut sq, fd, data)?;
                }
                continue;
            }
            let event = if res < 0 {
                // E.g. EBADF: the fd was closed without deregistering. Report it once; do not re-arm.
                reg.mode = Mode::Oneshot;
                Event::new(reg.token).set_error(true)
            } else {
                let mask = res as libc::c_short;
                let has = |f: libc::c_short| mask & f != 0;
                Event::new(reg.token)
                    .set_readable(has(libc::POLLIN))
                    .set_writable(has(libc::POLLOUT))
                    .set_error(has(libc::POLLERR | libc::POLLNVAL))
                    .set_hangup(has(libc::POLLHUP))
                    .set_read_hangup(has(libc::POLLRDHUP))
                    .set_priority(has(libc::POLLPRI) && priority_pending(fd))
            };
            if event.is_empty() {
                // Only the wake-up's key said so (see `priority_pending`): nothing to report. Ask
                // again, in every mode, as if the poll had not fired; the new poll's first check
                // is a real one, so this does not spin.
                reg.rearm(&submitter, &mut sq, fd, data)?;
                continue;
            }
            events.push(event);
            if !reg.mode.is_oneshot() {
                // Level: ask again (reports again while still ready). Edge: the multishot ended.
                reg.rearm(&submitter, &mut sq, fd, data)?;
            }
        }
        Ok(woken)
    }
}

impl Backend for IoUring {
    const KIND: BackendKind = BackendKind::IoUring;

    fn new() -> io::Result<IoUring> {
        // Cooperative task running (Linux 5.19+): completions are posted when this thread next
        // enters the kernel, instead of interrupting it on every poll wake-up. Older kernels
        // refuse the flag; then the ring is set up without it.
        let ring = Ring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_coop_taskrun()
            .build(RING_ENTRIES)
            .or_else(|_| Ring::builder().setup_cqsize(CQ_ENTRIES).build(RING_ENTRIES))
            .map_err(|e| {
                io::Error::new(e.kind(), format!("io_uring: io_uring_setup failed: {e}"))
            })?;
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring: the kernel lacks IORING_FEAT_EXT_ARG (wait timeouts, Linux 5.11+)",
            ));
        }
        // Multishot poll came in 5.13 together with resource tagging, which the kernel advertises.
        let multishot = ring.params().is_feature_resource_tagging();
        let notifier = Arc::new(Notifier::new()?);
        let mut backend = IoUring {
            ring,
            slots: Vec::new(),
            multishot,
            notifier,
        };
        let entry = poll_add(
            backend.notifier.read_fd(),
            libc::POLLIN as u32,
            multishot,
            WAKER_DATA,
        );
        backend.queue(entry)?;
        Ok(backend)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edge: if self.multishot {
                Support::Native
            } else {
                Support::No
            },
            oneshot: Support::Native,
            exclusive: Support::No,
            priority: Support::Native,
            reports_hangup: true,
            reports_read_hangup: true,
            reports_error: true,
            max_fd: None,
        }
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        let deadline = Deadline::new(timeout);
        loop {
            self.enter(deadline.remaining())?;
            let woken = self.reap(events)?;
            // Completions of cancelled polls can end a wait with nothing to show: wait out the rest.
            if !events.is_empty() || woken || deadline.expired() {
                return Ok(events.len());
            }
        }
    }

    fn waker(&self) -> Waker {
        Waker::new(self.notifier.clone())
    }
}

/// The table is this backend's own rather than an `FdTable`: a slot's generation outlives the
/// registration, so that completions of an earlier registration of the same fd are told apart.
impl Mechanism for IoUring {
    fn is_registered(&self, fd: RawFd) -> Option<bool> {
        Some(self.registration(fd).is_some())
    }

    fn add(&mut self, request: Request) -> io::Result<()> {
        let fd = request.fd;
        // The kernel would only say EBADF in a completion; say it now, as epoll does.
        check_fd_open(fd)?;
        if self.slots.len() <= fd as usize {
            self.slots.resize(fd as usize + 1, Slot::default());
        }
        let slot = &mut self.slots[fd as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.reg = Some(Registration::new(request));
        self.arm(fd)
    }

    fn update(&mut self, request: Request) -> io::Result<()> {
        self.retire(request.fd)?;
        self.slots[request.fd as usize].reg = Some(Registration::new(request));
        self.arm(request.fd)
    }

    fn remove(&mut self, RegisteredFd(fd): RegisteredFd) -> io::Result<()> {
        let in_flight = self.registration(fd).is_some_and(|reg| reg.in_flight);
        self.retire(fd)?;
        self.slots[fd as usize].reg = None;
        if in_flight {
            // Submit the removal now: an in-flight poll holds a reference to the file, which would
            // otherwise keep the socket open after the caller closes it, until the next wait.
            self.ring.submit()?;
        }
        Ok(())
    }
}
