//! BSD/macOS `kqueue(2)`; on Linux the same code runs against libkqueue (feature `libkqueue`).
//!
//! Each interest is its own filter (`EVFILT_READ`, `EVFILT_WRITE`), so one fd can produce two events
//! with the same token. Registration changes are applied at once with `EV_RECEIPT`, so an error in
//! any one change is seen (never lost among pending events). Modes: `EV_CLEAR` for edge,
//! `EV_DISPATCH` for oneshot; when one filter of a oneshot registration fires, the other is disabled
//! with the next `kevent` call, so the registration as a whole reports once, as on epoll.
//!
//! kqueue itself accepts `EV_ADD` of a registered fd (it modifies) and knows nothing of tokens, so
//! the registrations are kept in an fd-indexed table, from which `Backend` gives the uniform
//! `AlreadyExists` / `NotFound` errors.
//!
//! Priority interest is a third filter, `EVFILT_EXCEPT` with `NOTE_OOB` (out-of-band data), on the
//! OSes whose libc-crate bindings have both: macOS, iOS, OpenBSD and DragonFly. FreeBSD, NetBSD and
//! libkqueue have no such filter: there `Capabilities::priority` is `No` and asking is
//! `Unsupported`. (On those systems this code is compiled, not tested: the tests run on Linux,
//! against libkqueue.)

// kevent field and flag types differ between macOS, the BSDs and libkqueue; the casts that are
// no-ops on one are needed on another.
#![allow(clippy::unnecessary_cast)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use super::fd_table::FdTable;
use super::notify::Notifier;
use crate::api::{Backend, BackendKind, Capabilities, Mechanism, RegisteredFd, Request, Support};
use crate::sys::{cvt, set_cloexec, timespec, timespec_ptr, wait_retrying};
use crate::{Event, Events, Interest, Mode, Waker};

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

/// The exceptional-condition filter and the `fflags` that ask it for out-of-band data.
#[cfg(has_kqueue_except)]
const EXCEPT: Option<(i16, u32)> = Some((libc::EVFILT_EXCEPT as i16, libc::NOTE_OOB as u32));
/// No `EVFILT_EXCEPT`/`NOTE_OOB` in the libc crate for this OS (FreeBSD, NetBSD) or in libkqueue.
#[cfg(not(has_kqueue_except))]
const EXCEPT: Option<(i16, u32)> = None;

/// At most this many changes go to the kernel at once: delete three filters, add three.
const MAX_CHANGES: usize = 6;

/// The filters (with their `fflags`) that an interest needs, in a fixed order; `.1` is the count.
fn filters(interest: Interest) -> ([(i16, u32); 3], usize) {
    let mut out = [(0, 0); 3];
    let mut n = 0;
    if interest.is_readable() {
        out[n] = (EVFILT_READ as i16, 0);
        n += 1;
    }
    if interest.is_writable() {
        out[n] = (EVFILT_WRITE as i16, 0);
        n += 1;
    }
    if let (true, Some(except)) = (interest.is_priority(), EXCEPT) {
        out[n] = except;
        n += 1;
    }
    (out, n)
}

/// Every filter this backend may have added for an fd.
fn all_filters() -> ([(i16, u32); 3], usize) {
    filters(Interest::BOTH | Interest::PRIORITY)
}

/// The `kqueue(2)` backend: native on macOS and the BSDs, through libkqueue on Linux (cargo feature
/// `libkqueue`).
///
/// Each interest is its own filter, so an fd that is readable and writable gives two events with
/// the same token. Edge is `EV_CLEAR`, oneshot `EV_DISPATCH` (a oneshot report disables the
/// sibling filters too). Priority interest is `EVFILT_EXCEPT` with `NOTE_OOB` where the OS has it
/// (macOS, iOS, OpenBSD, DragonFly), `Unsupported` elsewhere.
pub struct Kqueue {
    kq: OwnedFd,
    /// Kernel-filled buffer, sized to the largest `Events` capacity seen (allocated once).
    native: Vec<ffi::kevent>,
    /// Sibling-filter disables owed by oneshot reports, applied with the next wait's `kevent`.
    pending: Vec<ffi::kevent>,
    /// The request each fd was registered or last modified with.
    regs: FdTable<Request>,
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
        let mut receipts = [change(0, 0, 0); MAX_CHANGES];
        let n = changes.len();
        assert!(n <= MAX_CHANGES, "at most {MAX_CHANGES} changes at once");
        let ts = timespec(Duration::ZERO);
        // SAFETY: `changes` and `receipts` are valid for `n` (<= MAX_CHANGES) elements; ts lives for
        // the call.
        let rc = cvt(unsafe {
            ffi::kevent(
                self.kq.as_raw_fd(),
                changes.as_ptr(),
                n as _,
                receipts.as_mut_ptr(),
                n as _,
                &ts,
            )
        })?;
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

    /// Delete both filters (missing ones are fine), then add the wanted ones, in one call.
    fn install(
        &mut self,
        fd: RawFd,
        interest: Interest,
        mode: Mode,
        fresh: bool,
    ) -> io::Result<()> {
        let mut changes = [change(fd, 0, 0); MAX_CHANGES];
        let mut n = 0;
        let receipt = ffi::EV_RECEIPT as u16;
        if !fresh {
            let (all, k) = all_filters();
            for &(filter, _) in &all[..k] {
                changes[n] = change(fd, filter, ffi::EV_DELETE as u16 | receipt);
                n += 1;
            }
        }
        let add = ffi::EV_ADD as u16 | ffi::EV_ENABLE as u16 | receipt | mode_flags(mode);
        let (wanted, k) = filters(interest);
        for &(filter, fflags) in &wanted[..k] {
            changes[n] = change(fd, filter, add);
            changes[n].fflags = fflags as _;
            n += 1;
        }
        self.pending.retain(|c| c.ident != fd as usize);
        self.apply(&changes[..n])
    }
}

impl Backend for Kqueue {
    const KIND: BackendKind = BackendKind::Kqueue;

    fn new() -> io::Result<Kqueue> {
        // SAFETY: kqueue takes no arguments and touches no memory; a failure is an error (cvt).
        let fd = cvt(unsafe { ffi::kqueue() })?;
        // SAFETY: fd is a fresh descriptor owned by nothing else.
        let kq = unsafe { OwnedFd::from_raw_fd(fd) };
        set_cloexec(fd)?;
        let notifier = Arc::new(Notifier::new()?);
        let mut kqueue = Kqueue {
            kq,
            native: Vec::new(),
            pending: Vec::new(),
            regs: FdTable::new(),
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
            priority: if EXCEPT.is_some() {
                Support::Native
            } else {
                Support::No
            },
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
            self.native.resize(events.capacity(), change(0, 0, 0));
            // A oneshot report owes at most two sibling disables.
            self.pending.reserve(2 * events.capacity());
        }
        let max = events.capacity().min(libc::c_int::MAX as usize) as libc::c_int;
        let n = wait_retrying(timeout, |left| {
            let ts = left.map(timespec);
            // SAFETY: `pending` holds `pending.len()` valid changes; `native` has room for `max`
            // (<= its length) events; the timespec pointer is null or points to `ts`, which
            // outlives the call.
            let n = cvt(unsafe {
                ffi::kevent(
                    self.kq.as_raw_fd(),
                    self.pending.as_ptr(),
                    self.pending.len() as _,
                    self.native.as_mut_ptr(),
                    max as _,
                    timespec_ptr(&ts),
                )
            });
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
            let Some(reg) = self.regs.get(fd) else {
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
            let filter = ev.filter as i16;
            let event = if ev.filter == EVFILT_READ as _ {
                // With EV_EOF, fflags holds the socket error, if any (e.g. ECONNREFUSED).
                Event::new(reg.token)
                    .set_readable(true)
                    .set_read_hangup(eof)
                    .set_error(eof && ev.fflags != 0)
            } else if ev.filter == EVFILT_WRITE as _ {
                Event::new(reg.token)
                    .set_writable(true)
                    .set_hangup(eof)
                    .set_error(eof && ev.fflags != 0)
            } else if EXCEPT.is_some_and(|(except, _)| except == filter) {
                Event::new(reg.token).set_priority(true)
            } else {
                continue;
            };
            events.push(event);
            if reg.mode.is_oneshot() {
                // The registration as a whole reports once: disable its other filters too.
                let (wanted, k) = filters(reg.interest);
                for &(sibling, _) in wanted[..k].iter().filter(|(f, _)| *f != filter) {
                    self.pending
                        .push(change(fd, sibling, ffi::EV_DISABLE as u16));
                }
            }
        }
        Ok(events.len())
    }

    fn waker(&self) -> Waker {
        Waker::new(self.notifier.clone())
    }
}

impl Mechanism for Kqueue {
    fn is_registered(&self, fd: RawFd) -> Option<bool> {
        Some(self.regs.contains(fd))
    }

    fn add(&mut self, request: Request) -> io::Result<()> {
        self.install(request.fd, request.interest, request.mode, true)?;
        self.regs.insert(request.fd, request);
        Ok(())
    }

    fn update(&mut self, request: Request) -> io::Result<()> {
        self.install(request.fd, request.interest, request.mode, false)?;
        self.regs.insert(request.fd, request);
        Ok(())
    }

    fn remove(&mut self, RegisteredFd(fd): RegisteredFd) -> io::Result<()> {
        self.regs.remove(fd);
        self.pending.retain(|c| c.ident != fd as usize);
        let delete = ffi::EV_DELETE as u16 | ffi::EV_RECEIPT as u16;
        let mut changes = [change(fd, 0, 0); 3];
        let (all, k) = all_filters();
        for (c, &(filter, _)) in changes.iter_mut().zip(&all[..k]) {
            *c = change(fd, filter, delete);
        }
        self.apply(&changes[..k])
    }
}
