//! The backends, one file each, and the few system-call helpers they share.

pub(crate) mod notify;

pub mod poll;
pub mod select;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod epoll;

#[cfg(target_os = "linux")]
pub mod io_uring;

#[cfg(crate_kqueue)]
pub mod kqueue;

use std::io;
use std::os::fd::RawFd;

/// Fail with `EBADF` now when `fd` is not an open descriptor, for backends whose kernel interface
/// would only notice later (a poll array entry, an io_uring completion), so that registering a
/// closed fd fails the same way everywhere.
pub(crate) fn check_fd_open(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD reads the descriptor flags of `fd`; no memory is passed.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        // Returned as is so callers can match the errno, as with epoll's own EBADF.
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
