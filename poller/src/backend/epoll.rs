//! Linux `epoll(7)`: every mode natively, `EPOLLRDHUP`, and `EPOLLEXCLUSIVE` for shared listeners.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use super::notify::Notifier;
use crate::api::{
    already_exists, not_found, unsupported, Backend, BackendKind, Capabilities, Mechanism,
    RegisteredFd, Request, Support,
};
use crate::sys::{ceil_millis, cvt, timespec, timespec_ptr, wait_retrying};
use crate::{Event, Events, Token, Waker};

/// The `epoll_event.u64` of the waker; callers cannot use it because `Token::RESERVED` is refused.
const WAKER_KEY: u64 = u64::MAX;

/// The Linux `epoll(7)` backend.
///
/// Every mode natively (`EPOLLET`, `EPOLLONESHOT`), read-hangup (`EPOLLRDHUP`) whenever readability
/// is asked, and [`register_exclusive`](Backend::register_exclusive) (`EPOLLEXCLUSIVE`) for
/// listeners shared by several loops. Waits take nanoseconds through `epoll_pwait2` (Linux 5.11+),
/// else `epoll_wait`'s milliseconds, rounded up.
pub struct Epoll {
    epfd: OwnedFd,
    /// Kernel-filled buffer, sized to the largest `Events` capacity seen (allocated once).
    native: Vec<libc::epoll_event>,
    notifier: Arc<Notifier>,
    /// `epoll_pwait2` (Linux 5.11+) takes a nanosecond timeout; without it, `epoll_wait` takes
    /// milliseconds, rounded up. Turned off at the first `ENOSYS`.
    pwait2: bool,
}

impl Epoll {
    fn ctl(&self, op: libc::c_int, fd: RawFd, flags: u32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: flags,
            u64: key,
        };
        // SAFETY: epfd is our epoll descriptor; ev is a valid epoll_event for the duration of the call
        // (the kernel ignores it for EPOLL_CTL_DEL).
        let rc = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) };
        cvt(rc)
            .map(drop)
            .map_err(|err| match (err.raw_os_error(), op) {
                (Some(libc::EEXIST), _) => already_exists(Self::KIND, fd),
                (Some(libc::ENOENT), _) => not_found(Self::KIND, fd),
                (Some(libc::EPERM), _) => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("epoll: fd {fd} cannot be polled (a regular file or directory?)"),
                ),
                (Some(libc::EINVAL), libc::EPOLL_CTL_MOD) => io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "epoll: fd {fd} was registered with EPOLLEXCLUSIVE, which the kernel does \
                         not allow to be modified; deregister and register it again"
                    ),
                ),
                _ => err,
            })
    }

    /// Add or modify the registration `request` describes, with these flags.
    fn ctl_request(&self, op: libc::c_int, request: Request, flags: u32) -> io::Result<()> {
        self.ctl(op, request.fd, flags, request.token.0 as u64)
    }
}

/// The epoll flags for a request's interest and mode. `EPOLLRDHUP` goes with readability, as on
/// every backend.
fn epoll_flags(request: Request) -> u32 {
    let Request { interest, mode, .. } = request;
    let mut flags = 0;
    if interest.is_readable() {
        flags |= libc::EPOLLIN | libc::EPOLLRDHUP;
    }
    if interest.is_writable() {
        flags |= libc::EPOLLOUT;
    }
    if interest.is_priority() {
        flags |= libc::EPOLLPRI;
    }
    if mode.is_edge() {
        flags |= libc::EPOLLET;
    }
    if mode.is_oneshot() {
        flags |= libc::EPOLLONESHOT;
    }
    flags as u32
}

impl Backend for Epoll {
    const KIND: BackendKind = BackendKind::Epoll;

    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes only flags, no memory; a failure is an error (cvt), not a fd.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd is a fresh descriptor owned by nothing else.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let notifier = Arc::new(Notifier::new()?);
        let epoll = Epoll {
            epfd,
            native: Vec::new(),
            notifier,
            pwait2: cfg!(target_pointer_width = "64"),
        };
        epoll.ctl(
            libc::EPOLL_CTL_ADD,
            epoll.notifier.read_fd(),
            libc::EPOLLIN as u32,
            WAKER_KEY,
        )?;
        Ok(epoll)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edge: Support::Native,
            oneshot: Support::Native,
            exclusive: Support::Native,
            priority: Support::Native,
            reports_hangup: true,
            reports_read_hangup: true,
            reports_error: true,
            max_fd: None,
        }
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        if self.native.len() < events.capacity() {
            // Only when a larger `Events` than ever before is passed: not in a steady loop.
            self.native
                .resize(events.capacity(), libc::epoll_event { events: 0, u64: 0 });
        }
        let max = events.capacity().min(libc::c_int::MAX as usize) as libc::c_int;
        let n = wait_retrying(timeout, |left| {
            if self.pwait2 {
                let ts = left.map(timespec);
                // SAFETY: native holds at least `max` writable epoll_event slots; the timespec
                // pointer is null or points to `ts` (on 64-bit targets libc::timespec is the
                // kernel's __kernel_timespec), alive for the call; a null sigmask makes the kernel
                // ignore sigsetsize.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait2,
                        self.epfd.as_raw_fd(),
                        self.native.as_mut_ptr(),
                        max,
                        timespec_ptr(&ts),
                        std::ptr::null::<libc::sigset_t>(),
                        0usize,
                    )
                } as libc::c_int;
                match cvt(rc) {
                    // A kernel before 5.11 (or a seccomp filter): milliseconds from now on.
                    Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => self.pwait2 = false,
                    result => return result,
                }
            }
            // SAFETY: native holds at least `max` writable epoll_event slots.
            cvt(unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    self.native.as_mut_ptr(),
                    max,
                    ceil_millis(left),
                )
            })
        })?;
        for ev in &self.native[..n] {
            let (flags, key) = (ev.events, ev.u64);
            if key == WAKER_KEY {
                self.notifier.drain();
                continue;
            }
            let has = |f: libc::c_int| flags & f as u32 != 0;
            events.push(
                Event::new(Token(key as usize))
                    .set_readable(has(libc::EPOLLIN))
                    .set_writable(has(libc::EPOLLOUT))
                    .set_error(has(libc::EPOLLERR))
                    .set_hangup(has(libc::EPOLLHUP))
                    .set_read_hangup(has(libc::EPOLLRDHUP))
                    .set_priority(has(libc::EPOLLPRI)),
            );
        }
        Ok(events.len())
    }

    fn waker(&self) -> Waker {
        Waker::new(self.notifier.clone())
    }
}

/// The kernel keeps the registrations: `EEXIST` and `ENOENT` become `AlreadyExists` and `NotFound`
/// in `ctl`.
impl Mechanism for Epoll {
    fn is_registered(&self, _fd: RawFd) -> Option<bool> {
        None
    }

    fn add(&mut self, request: Request) -> io::Result<()> {
        self.ctl_request(libc::EPOLL_CTL_ADD, request, epoll_flags(request))
    }

    fn add_exclusive(&mut self, request: Request) -> io::Result<()> {
        if request.mode.is_oneshot() {
            // The kernel rejects EPOLLEXCLUSIVE | EPOLLONESHOT with a bare EINVAL.
            return Err(unsupported(Self::KIND, "oneshot mode with EPOLLEXCLUSIVE"));
        }
        if request.interest.is_priority() {
            // EPOLLPRI is not among the flags the kernel allows beside EPOLLEXCLUSIVE (EINVAL).
            return Err(unsupported(
                Self::KIND,
                "priority interest (EPOLLPRI) with EPOLLEXCLUSIVE",
            ));
        }
        // The kernel allows only IN, OUT, WAKEUP and ET beside EPOLLEXCLUSIVE: no read-hangup
        // reports for exclusive registrations (they are meant for listening sockets).
        let flags =
            (epoll_flags(request) & !(libc::EPOLLRDHUP as u32)) | libc::EPOLLEXCLUSIVE as u32;
        self.ctl_request(libc::EPOLL_CTL_ADD, request, flags)
    }

    fn update(&mut self, request: Request) -> io::Result<()> {
        self.ctl_request(libc::EPOLL_CTL_MOD, request, epoll_flags(request))
    }

    fn remove(&mut self, RegisteredFd(fd): RegisteredFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }
}
