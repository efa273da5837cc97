//! `select(2)` (as `pselect`, for nanosecond timeouts): preallocated interest `fd_set`s, copied into
//! working sets on every wait; only descriptors below `FD_SETSIZE` can be watched.
//!
//! Level-triggered only; oneshot is emulated by clearing the descriptor from the interest sets once
//! it is reported. select has no hangup, read-hangup or error bits: a closed peer shows as readable,
//! an error as readable and writable (see `Capabilities`). Priority interest is the exceptfds set
//! (out-of-band data pending).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use super::fd_table::FdTable;
use super::notify::Notifier;
use super::scan_wrapping;
use crate::api::{
    invalid_input, Backend, BackendKind, Capabilities, Mechanism, RegisteredFd, Request, Support,
};
use crate::sys::{check_fd_open, cvt, timespec, timespec_ptr, wait_retrying};
use crate::{Event, Events, Interest, Token, Waker};

// FD_SETSIZE is usize on some targets and c_int on others.
#[allow(clippy::unnecessary_cast)]
const SETSIZE: usize = libc::FD_SETSIZE as usize;

#[derive(Clone, Copy)]
struct Registration {
    token: Token,
    oneshot: bool,
    /// Index of this fd in `Select::fds`.
    pos: u32,
}

/// The `select(2)` backend (as `pselect`, for nanosecond timeouts).
///
/// Watches descriptors below `FD_SETSIZE` (1024) only: a higher one is `InvalidInput` naming the
/// limit. Level-triggered; oneshot is emulated; priority interest is the exceptfds set. select has
/// no hangup, read-hangup or error bits: a closed peer shows as readable, an error as readable and
/// writable (see [`Capabilities`]). Each wait costs time in proportion to the highest registered fd.
pub struct Select {
    read_interest: libc::fd_set,
    write_interest: libc::fd_set,
    /// exceptfds: priority interest.
    except_interest: libc::fd_set,
    read_ready: libc::fd_set,
    write_ready: libc::fd_set,
    except_ready: libc::fd_set,
    /// Indexed by fd, `FD_SETSIZE` long, allocated once.
    regs: FdTable<Registration>,
    /// The registered fds, densely, so a wait scans only them.
    fds: Vec<RawFd>,
    max_fd: RawFd,
    cursor: usize,
    notifier: Arc<Notifier>,
}

fn empty_set() -> libc::fd_set {
    let mut set = MaybeUninit::<libc::fd_set>::uninit();
    // SAFETY: FD_ZERO initializes every byte of the set it is given.
    unsafe {
        libc::FD_ZERO(set.as_mut_ptr());
        set.assume_init()
    }
}

// The FD_* helpers below are only called with 0 <= fd < FD_SETSIZE, which a checked `Request`
// (through `max_fd` in the capabilities) guarantees for every registered fd, and `new` for the waker.
fn set(fd: RawFd, s: &mut libc::fd_set) {
    // SAFETY: fd is within 0..FD_SETSIZE (see above) and `s` is an initialized set.
    unsafe { libc::FD_SET(fd, s) }
}
fn clear(fd: RawFd, s: &mut libc::fd_set) {
    // SAFETY: as for `set`.
    unsafe { libc::FD_CLR(fd, s) }
}
fn is_set(fd: RawFd, s: &libc::fd_set) -> bool {
    // SAFETY: as for `set`.
    unsafe { libc::FD_ISSET(fd, s) }
}

impl Select {
    fn arm(&mut self, fd: RawFd, interest: Interest) {
        self.disarm(fd);
        if interest.is_readable() {
            set(fd, &mut self.read_interest);
        }
        if interest.is_writable() {
            set(fd, &mut self.write_interest);
        }
        if interest.is_priority() {
            set(fd, &mut self.except_interest);
        }
    }

    fn disarm(&mut self, fd: RawFd) {
        clear(fd, &mut self.read_interest);
        clear(fd, &mut self.write_interest);
        clear(fd, &mut self.except_interest);
    }
}

impl Backend for Select {
    const KIND: BackendKind = BackendKind::Select;

    fn new() -> io::Result<Select> {
        let notifier = Arc::new(Notifier::new()?);
        if notifier.read_fd() as usize >= SETSIZE {
            return Err(invalid_input(
                Self::KIND,
                format!(
                    "the waker's descriptor ({}) is >= FD_SETSIZE ({SETSIZE}): too many files open",
                    notifier.read_fd()
                ),
            ));
        }
        let mut select = Select {
            read_interest: empty_set(),
            write_interest: empty_set(),
            except_interest: empty_set(),
            read_ready: empty_set(),
            write_ready: empty_set(),
            except_ready: empty_set(),
            regs: FdTable::with_len(SETSIZE),
            fds: Vec::new(),
            max_fd: notifier.read_fd(),
            cursor: 0,
            notifier,
        };
        set(select.notifier.read_fd(), &mut select.read_interest);
        Ok(select)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edge: Support::No,
            oneshot: Support::Emulated,
            exclusive: Support::No,
            priority: Support::Native,
            reports_hangup: false,
            reports_read_hangup: false,
            reports_error: false,
            max_fd: Some(SETSIZE as RawFd - 1),
        }
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        let mut ready = wait_retrying(timeout, |left| {
            self.read_ready = self.read_interest;
            self.write_ready = self.write_interest;
            self.except_ready = self.except_interest;
            let ts = left.map(timespec);
            // SAFETY: the sets are initialized fd_sets owned by self; nfds is at most FD_SETSIZE;
            // the timespec pointer is null or points to `ts`, alive for the call; a null sigmask
            // is allowed.
            cvt(unsafe {
                libc::pselect(
                    self.max_fd + 1,
                    &mut self.read_ready,
                    &mut self.write_ready,
                    &mut self.except_ready,
                    timespec_ptr(&ts),
                    std::ptr::null(),
                )
            })
        })?;
        if ready > 0 && is_set(self.notifier.read_fd(), &self.read_ready) {
            self.notifier.drain();
            ready -= 1;
        }
        // `ready` counts set bits over the three sets, so an fd both readable and writable counts twice.
        let len = self.fds.len();
        let first = if self.cursor < len { self.cursor } else { 0 };
        self.cursor = scan_wrapping(0..len, first, |k| {
            if ready == 0 || events.is_full() {
                return false;
            }
            let fd = self.fds[k];
            let r = is_set(fd, &self.read_ready);
            let w = is_set(fd, &self.write_ready);
            let x = is_set(fd, &self.except_ready);
            if r || w || x {
                ready = ready.saturating_sub(r as usize + w as usize + x as usize);
                if let Some(reg) = self.regs.get(fd) {
                    events.push(
                        Event::new(reg.token)
                            .set_readable(r)
                            .set_writable(w)
                            .set_priority(x),
                    );
                    if reg.oneshot {
                        self.disarm(fd);
                    }
                }
            }
            true
        });
        Ok(events.len())
    }

    fn waker(&self) -> Waker {
        Waker::new(self.notifier.clone())
    }
}

impl Mechanism for Select {
    fn is_registered(&self, fd: RawFd) -> Option<bool> {
        Some(self.regs.contains(fd))
    }

    fn add(&mut self, request: Request) -> io::Result<()> {
        let fd = request.fd;
        // A closed fd in the sets would make every pselect fail with EBADF: refuse it now.
        check_fd_open(fd)?;
        let registration = Registration {
            token: request.token,
            oneshot: request.mode.is_oneshot(),
            pos: self.fds.len() as u32,
        };
        self.regs.insert(fd, registration);
        self.fds.push(fd);
        self.max_fd = self.max_fd.max(fd);
        self.arm(fd, request.interest);
        Ok(())
    }

    fn update(&mut self, request: Request) -> io::Result<()> {
        let reg = self.regs.registered(request.fd);
        reg.token = request.token;
        reg.oneshot = request.mode.is_oneshot();
        self.arm(request.fd, request.interest);
        Ok(())
    }

    fn remove(&mut self, RegisteredFd(fd): RegisteredFd) -> io::Result<()> {
        let reg = self.regs.remove(fd);
        self.disarm(fd);
        let pos = reg.pos as usize;
        self.fds.swap_remove(pos);
        if let Some(&moved) = self.fds.get(pos) {
            self.regs.registered(moved).pos = pos as u32;
        }
        if fd == self.max_fd {
            self.max_fd = self
                .fds
                .iter()
                .copied()
                .fold(self.notifier.read_fd(), RawFd::max);
        }
        Ok(())
    }
}
