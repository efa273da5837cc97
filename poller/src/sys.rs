//! The operating-system details every backend shares, in one place: raw system-call results
//! turned into `io::Result`, descriptor checks and flags, and the wait helpers (deadlines, `EINTR`
//! retries, timeout conversions). Each backend file keeps only its own mechanism.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// A raw system-call return value: negative (-1) means failure, with the reason in `errno`.
pub(crate) trait SysResult: Copy {
    /// Did the call fail?
    fn failed(self) -> bool;
}

macro_rules! sys_result {
    ($($t:ty),*) => {$(
        impl SysResult for $t {
            fn failed(self) -> bool {
                self < 0
            }
        }
    )*};
}

// `c_int` (most calls) is i32 and `ssize_t` (`read`, `write`) is isize on every target.
sys_result!(i32, isize);

/// `Err(errno)` when a raw system call failed, else its result: the one place that reads `errno`
/// after a call (`io::Error::last_os_error`, which does not allocate).
pub(crate) fn cvt<T: SysResult>(rc: T) -> io::Result<T> {
    if rc.failed() {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Fail with `EBADF` now when `fd` is not an open descriptor, for backends whose kernel interface
/// would only notice later (a poll array entry, an io_uring completion), so that registering a
/// closed fd fails the same way everywhere. The error is the raw errno, so callers can match it as
/// they would epoll's own `EBADF`.
pub(crate) fn check_fd_open(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD only reads the descriptor flags of `fd` (any int is allowed: an invalid one
    // is EBADF); no memory is passed.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }).map(drop)
}

/// Make `fd` close-on-exec, for descriptors that cannot be created with the flag (kqueue, `pipe`).
/// Replaces the descriptor flags: `FD_CLOEXEC` is the only one there is.
#[cfg(any(crate_kqueue, not(target_os = "linux")))]
pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD takes an int argument and touches no memory; `fd` is a descriptor the caller
    // owns, so no other owner's flags change.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// Make `fd` non-blocking, for descriptors that cannot be created so (`pipe`). Replaces the file
/// status flags: the caller's descriptor is fresh, with none set.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFL takes an int argument and touches no memory; `fd` is a fresh descriptor the
    // caller owns.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) }).map(drop)
}

/// Tracks the time left of a wait so that a wait interrupted by a signal resumes with what remains.
pub(crate) struct Deadline {
    timeout: Option<Duration>,
    start: Option<Instant>,
}

impl Deadline {
    /// Reading the clock only for positive, finite timeouts keeps zero-timeout polls cheap.
    pub(crate) fn new(timeout: Option<Duration>) -> Deadline {
        let start = match timeout {
            Some(t) if !t.is_zero() => Some(Instant::now()),
            _ => None,
        };
        Deadline { timeout, start }
    }

    /// The time left: `None` for no timeout, zero once expired.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        match (self.timeout, self.start) {
            (Some(t), Some(start)) => Some(t.saturating_sub(start.elapsed())),
            (t, _) => t,
        }
    }

    /// Has a finite timeout run out?
    pub(crate) fn expired(&self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }
}

/// Run a kernel wait with the time that is left, again after every signal (`EINTR`), until it
/// returns or the deadline passes (then 0 events). `call` gets the time left (`None`: no limit) and
/// returns the system call's result through [`cvt`]: the number of events, or the error.
pub(crate) fn wait_retrying(
    timeout: Option<Duration>,
    mut call: impl FnMut(Option<Duration>) -> io::Result<libc::c_int>,
) -> io::Result<usize> {
    let deadline = Deadline::new(timeout);
    loop {
        match call(deadline.remaining()) {
            Ok(n) => return Ok(n as usize),
            Err(err) if err.kind() != io::ErrorKind::Interrupted => return Err(err),
            Err(_) if deadline.expired() => return Ok(0),
            Err(_) => {}
        }
    }
}

/// A pointer for system calls that take an optional `timespec`: null for "no limit".
pub(crate) fn timespec_ptr(ts: &Option<libc::timespec>) -> *const libc::timespec {
    ts.as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec)
}

/// Milliseconds for `epoll_wait` (and `poll` where there is no `ppoll`), rounded up so that 0.1 ms
/// does not become a busy poll; -1 = forever. Built only where one of them is, and for tests.
#[cfg(any(test, target_os = "linux", target_os = "android", not(has_ppoll)))]
pub(crate) fn ceil_millis(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

/// A `timespec` for ppoll/pselect/kevent; saturates instead of overflowing.
pub(crate) fn timespec(t: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as _,
    }
}
