//! BSD/macOS `kqueue(2)`; on Linux the same code runs against libkqueue (feature `libkqueue`).
//!
//! Each interest is its own filter (`EVFILT_READ`, `EVFILT_WRITE`), so one fd can produce two events
//! with the same token. Registration changes are applied at once with `EV_RECEIPT`, so an error in
//! any one change is seen (never lost among pending events). Modes: `EV_CLEAR` for edge,
//! `EV_DISPATCH` for oneshot; when one filter of a oneshot registration fires, the other is disabled
//! with the next `kevent` call, so the registration as a whole reports once, as on epoll.
//!
//! kqueue itself accepts `EV_ADD` of a registered fd (it modifies) and knows nothing of tokens, so an
//! fd-indexed table gives the uniform `AlreadyExists` / `NotFound` errors.

// kevent field and flag types differ between macOS, the BSDs and libkqueue; the casts that are
// no-ops on one are needed on another.
#![allow(clippy::unnecessary_cast)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use super::notify::Notifier;
use crate::api::{
    already_exists, check_request, not_found, timespec, timespec_ptr, wait_retrying, Backend,
    BackendKind, Capabilities, Support,
};
use crate::{Event, Events, Interest, Mode, Token, Waker};

#[cfg(target_os = "linux")]
#[allow(non_camel_case_types)]
mod ffi {
    //! libkqueue's `<sys/event.h>` (the FreeBSD layout), declared here so that no bindgen is needed.
    use libc::{c_int, c_short, c_uint, c_ushort, c_void, intptr_t, timespec, uintptr_t};

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct kevent {
        pub ident: uintptr_t,
        pub filter: c_short,
        pub flags: c_ushort,
        pub fflags: c_uint,
        pub data: intptr_t,
        pub udata: *mut c_void,
    }

    pub const EVFILT_READ: c_short = -1;
    pub const EVFILT_WRITE: c_short = -2;
    pub const EV_ADD: c_ushort = 0x0001;
    pub const EV_DELETE: c_ushort = 0x0002;
    pub const EV_ENABLE: c_ushort = 0x0004;
    pub const EV_DISABLE: c_ushort = 0x0008;
    pub const EV_CLEAR: c_ushort = 0x0020;
    pub const EV_RECEIPT: c_ushort = 0x0040;
    pub const EV_DISPATCH: c_ushort = 0x0080;
    pub const EV_ERROR: c_ushort = 0x4000;
    pub const EV_EOF: c_ushort = 0x8000;

    #[link(name = "kqueue")]
    extern "C" {
        pub fn kqueue() -> c_int;
        pub fn kevent(
            kq: c_int,
            changelist: *const kevent,
            nchanges: c_int,
            eventlist: *mut kevent,
            nevents: c_int,
            timeout: *const timespec,
        ) -> c_int;
    }
}

#[cfg(not(target_os = "linux"))]
mod ffi {
    pub use libc::{
        kevent, kqueue, EVFILT_READ, EVFILT_WRITE, EV_ADD, EV_CLEAR, EV_DELETE, EV_DISABLE,
        EV_DISPATCH, EV_ENABLE, EV_EOF, EV_ERROR, EV_RECEIPT,
    };
}

use ffi::{EVFILT_READ, EVFILT_WRITE};

#[derive(Clone, Copy)]
struct Registration {
    token: Token,
    interest: Interest,
    mode: Mode,
}

/// The kqueue backend.
pub struct Kqueue {
    kq: OwnedFd,
    /// Kernel-filled buffer, sized to the largest `Events` capacity seen (allocated once).
    native: Vec<ffi::kevent>,
    /// Sibling-filter disables owed by oneshot reports, applied with the next wait's `kevent`.
    pending: Vec<ffi::kevent>,
    /// Indexed by fd.
    regs: Vec<Option<Registration>>,
    notifier: Arc<Notifier>,
}

// SAFETY: the raw `udata` pointers in the buffers are never dereferenced (they carry nothing).
unsafe impl Send for Kqueue {}

fn change(fd: RawFd, filter: i16, flags: u16) -> ffi::kevent {
    // SAFETY: kevent is a plain C struct for which all-zero bytes are a valid value.
    let mut ev: ffi::kevent = unsafe { std::mem::zeroed() };
    ev.ident = fd as _;
    ev.filter = filter as _;
    ev.flags = flags as _;
    ev
}

fn mode_flags(mode: Mode) -> u16 {
    let mut flags = 0;
    if mode.is_edge() {
        flags |= ffi::EV_CLEAR as u16;
    }
    if mode.is_oneshot() {
        flags |= ffi::EV_DISPATCH as u16;
    }
    flags
}

impl Kqueue {
    /// Apply changes now with `EV_RECEIPT`; returns the first error (missing filters on delete are
    /// expected and ignored).
    fn apply(&mut self, changes: &[ffi::kevent]) -> io::Result<()> {
        let mut receipts = [change(0, 0, 0); 4];
        let n = changes.len();
        let ts = timespec(Duration::ZERO);
        // SAFETY: `changes` and `receipts` are valid for `n` (<= 4) elements; ts lives for the call.
        let rc = unsafe {
            ffi::kevent(
                self.kq.as_raw_fd(),
                changes.as_ptr(),
                n as _,
                receipts.as_mut_ptr(),
                n as _,
                &ts,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        for (r, c) in receipts[..rc as usize].iter().zip(changes) {
            let deleting = c.flags as u16 & ffi::EV_DELETE as u16 != 0;
            if r.flags as u16 & ffi::EV_ERROR as u16 != 0 && r.data != 0 {
                let errno = r.data as i32;
                if !(deleting && errno == libc::ENOENT) {
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
        }
        Ok(())
    }

    fn registration(&self, fd: RawFd) -> Option<Registration> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.regs.get(i).copied().flatten())
    }

    /// Delete both filters (missing ones are fine), then add the wanted ones, in one call.
    fn install(
        &mut self,
        fd: RawFd,
        interest: Interest,
        mode: Mode,
        fresh: bool,
    ) -> io::Result<()> {
        let mut changes = [change(fd, 0, 0); 4];
        let mut n = 0;
        let receipt = ffi::EV_RECEIPT as u16;
        if !fresh {
            for filter in [EVFILT_READ, EVFILT_WRITE] {
                changes[n] = change(fd, filter as i16, ffi::EV_DELETE as u16 | receipt);
                n += 1;
            }
        }
        let add = ffi::EV_ADD as u16 | ffi::EV_ENABLE as u16 | receipt | mode_flags(mode);
        if interest.is_readable() {
            changes[n] = change(fd, EVFILT_READ as i16, add);
            n += 1;
        }
        if interest.is_writable() {
            changes[n] = change(fd, EVFILT_WRITE as i16, add);
            n += 1;
        }
        self.pending.retain(|c| c.ident != fd as usize);
        self.apply(&changes[..n])
    }
}

impl Backend for Kqueue {
    const KIND: BackendKind = BackendKind::Kqueue;

    fn new() -> io::Result<Kqueue> {
        // SAFETY: kqueue takes no arguments; the result is checked.
        let fd = unsafe { ffi::kqueue() };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nothing else.
        let kq = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: fcntl with integer arguments on our own descriptor.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let notifier = Arc::new(Notifier::new()?);
        let mut kqueue = Kqueue {
            kq,
            native: Vec::new(),
            pending: Vec::new(),
            regs: Vec::new(),
            notifier,
        };
        let waker = change(
            kqueue.notifier.read_fd(),
            EVFILT_READ as i16,
            ffi::EV_ADD as u16 | ffi::EV_RECEIPT as u16,
        );
        kqueue.apply(&[waker])?;
        Ok(kqueue)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edge: Support::Native,
            oneshot: Support::Native,
            exclusive: Support::No,
            reports_hangup: true,
            reports_read_hangup: true,
            reports_error: true,
            max_fd: None,
        }
    }

    fn register(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        check_request(Self::KIND, &self.capabilities(), fd, token, mode)?;
        if self.registration(fd).is_some() {
            return Err(already_exists(Self::KIND, fd));
        }
        self.install(fd, interest, mode, true)?;
        if self.regs.len() <= fd as usize {
            self.regs.resize(fd as usize + 1, None);
        }
        self.regs[fd as usize] = Some(Registration {
            token,
            interest,
            mode,
        });
        Ok(())
    }

    fn modify(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        check_request(Self::KIND, &self.capabilities(), fd, token, mode)?;
        if self.registration(fd).is_none() {
            return Err(not_found(Self::KIND, fd));
        }
        self.install(fd, interest, mode, false)?;
        self.regs[fd as usize] = Some(Registration {
            token,
            interest,
            mode,
        });
        Ok(())
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        if self.registration(fd).is_none() {
            return Err(not_found(Self::KIND, fd));
        }
        self.regs[fd as usize] = None;
        self.pending.retain(|c| c.ident != fd as usize);
        let delete = ffi::EV_DELETE as u16 | ffi::EV_RECEIPT as u16;
        self.apply(&[
            change(fd, EVFILT_READ as i16, delete),
            change(fd, EVFILT_WRITE as i16, delete),
        ])
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        if self.native.len() < events.capacity() {
            // Only when a larger `Events` than ever before is passed: not in a steady loop.
            self.native.resize(events.capacity(), change(0, 0, 0));
            self.pending.reserve(events.capacity());
        }
        let max = events.capacity().min(libc::c_int::MAX as usize) as libc::c_int;
        let n = wait_retrying(timeout, |left| {
            let ts = left.map(timespec);
            // SAFETY: pending holds `len` valid changes; native has room for `max` events; the
            // timespec pointer is null or points to `ts`, which outlives the call.
            let n = unsafe {
                ffi::kevent(
                    self.kq.as_raw_fd(),
                    self.pending.as_ptr(),
                    self.pending.len() as _,
                    self.native.as_mut_ptr(),
                    max as _,
                    timespec_ptr(&ts),
                )
            };
            // The changes were applied before the kernel waited, whatever the outcome.
            self.pending.clear();
            n
        })?;
        let waker_fd = self.notifier.read_fd() as usize;
        for i in 0..n {
            let ev = self.native[i];
            if ev.ident == waker_fd {
                self.notifier.drain();
                continue;
            }
            let fd = ev.ident as RawFd;
            // Entries for fds deregistered since (or failed sibling disables) carry nothing.
            let Some(reg) = self.registration(fd) else {
                continue;
            };
            let flags = ev.flags as u16;
            if flags & ffi::EV_ERROR as u16 != 0 {
                if ev.data != 0 && ev.data as i32 != libc::ENOENT {
                    events.push(Event::new(reg.token).set_error(true));
                }
                continue;
            }
            let eof = flags & ffi::EV_EOF as u16 != 0;
            // With EV_EOF, fflags holds the socket error, if any (e.g. ECONNREFUSED).
            let error = eof && ev.fflags != 0;
            let event = if ev.filter == EVFILT_READ as _ {
                Event::new(reg.token)
                    .set_readable(true)
                    .set_read_hangup(eof)
            } else {
                Event::new(reg.token).set_writable(true).set_hangup(eof)
            };
            events.push(event.set_error(error));
            if reg.mode.is_oneshot() && reg.interest == Interest::BOTH {
                let sibling = if ev.filter == EVFILT_READ as _ {
                    EVFILT_WRITE
                } else {
                    EVFILT_READ
                };
                self.pending
                    .push(change(fd, sibling as i16, ffi::EV_DISABLE as u16));
            }
        }
        Ok(events.len())
    }

    fn waker(&self) -> Waker {
        Waker::new(self.notifier.clone())
    }
}
