//! The descriptor behind every backend's waker: an eventfd on Linux, a pipe elsewhere.
//!
//! Each backend watches `read_fd()` like any other descriptor (under a reserved key) and calls
//! `drain()` when it fires, so the waker works the same with select, poll, epoll, kqueue and io_uring.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::cvt;

/// An eventfd (Linux) or a non-blocking pipe (elsewhere); close-on-exec either way.
#[derive(Debug)]
pub(crate) struct Notifier {
    read: OwnedFd,
    /// The write end of the pipe; `None` for an eventfd, which is written through `read`.
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    write: Option<OwnedFd>,
}

impl Notifier {
    #[cfg(target_os = "linux")]
    pub(crate) fn new() -> io::Result<Notifier> {
        // SAFETY: eventfd takes no pointers, only flags; a failure is an error (cvt), not a fd.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let read = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Notifier { read, write: None })
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn new() -> io::Result<Notifier> {
        let mut fds = [-1; 2];
        // SAFETY: fds is a valid array of two ints for pipe to fill.
        cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        // SAFETY: pipe succeeded, so both descriptors are fresh, open and owned only here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [fds[0], fds[1]] {
            crate::sys::set_cloexec(fd)?;
            crate::sys::set_nonblocking(fd)?;
        }
        Ok(Notifier {
            read,
            write: Some(write),
        })
    }

    /// The descriptor a backend watches for readability.
    pub(crate) fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    fn write_fd(&self) -> RawFd {
        self.write.as_ref().unwrap_or(&self.read).as_raw_fd()
    }

    /// Make `read_fd()` readable. A full pipe or counter already means "woken", so EAGAIN is success.
    pub(crate) fn notify(&self) -> io::Result<()> {
        let one: u64 = 1;
        // Eventfd takes an 8-byte counter increment; for a pipe any byte will do.
        let len = if self.write.is_some() { 1 } else { 8 };
        // SAFETY: `one` lives across the call and is at least `len` (1 or 8) bytes long; the
        // descriptor is ours and open for as long as `self` is.
        match cvt(unsafe { libc::write(self.write_fd(), (&one as *const u64).cast(), len) }) {
            Err(err) if err.kind() != io::ErrorKind::WouldBlock => Err(err),
            _ => Ok(()),
        }
    }

    /// Consume pending wake-ups so the descriptor is no longer readable.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: buf is a writable stack buffer of the length passed.
            let n = unsafe { libc::read(self.read_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            // An eventfd is emptied by one read; a pipe may need several. Errors (EAGAIN) end it.
            if n <= 0 || self.write.is_none() || (n as usize) < buf.len() {
                break;
            }
        }
    }
}
