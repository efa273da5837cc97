//! `poll(2)` (as `ppoll`, for nanosecond timeouts): a dense `pollfd` array that the kernel scans on
//! every call, plus an fd-indexed slot table for O(1) modify and swap-remove deregister.
//!
//! Level-triggered only. Oneshot is emulated: a delivered oneshot entry is disarmed by negating its
//! fd (poll ignores negative fds) until `modify` re-arms it.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use super::check_fd_open;
use super::notify::Notifier;
use crate::api::{
    already_exists, check_request, not_found, timespec, timespec_ptr, wait_retrying, Backend,
    BackendKind, Capabilities, Support,
};
use crate::{Event, Events, Interest, Mode, Token, Waker};

const NO_SLOT: u32 = u32::MAX;

/// What the backend remembers of a registration, parallel to its `pollfd`.
#[derive(Clone, Copy)]
struct Entry {
    fd: RawFd,
    token: Token,
    oneshot: bool,
}

/// The poll backend.
pub struct Poll {
    /// `pollfds[0]` is the waker; registrations follow in no particular order.
    pollfds: Vec<libc::pollfd>,
    /// `entries[i]` describes `pollfds[i]` (entry 0 is the waker's placeholder).
    entries: Vec<Entry>,
    /// fd -> index into `pollfds`, or `NO_SLOT`.
    slots: Vec<u32>,
    /// Where the next scan starts, so that a small `Events` does not starve high indexes.
    cursor: usize,
    notifier: Arc<Notifier>,
}

fn poll_events(interest: Interest) -> libc::c_short {
    let mut ev = 0;
    if interest.is_readable() {
        ev |= libc::POLLIN | libc::POLLRDHUP;
    }
    if interest.is_writable() {
        ev |= libc::POLLOUT;
    }
    ev
}

impl Poll {
    fn slot(&self, fd: RawFd) -> Option<usize> {
        match self.slots.get(fd as usize) {
            Some(&i) if fd >= 0 && i != NO_SLOT => Some(i as usize),
            _ => None,
        }
    }
}

impl Backend for Poll {
    const KIND: BackendKind = BackendKind::Poll;

    fn new() -> io::Result<Poll> {
        let notifier = Arc::new(Notifier::new()?);
        let waker = libc::pollfd {
            fd: notifier.read_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let placeholder = Entry {
            fd: notifier.read_fd(),
            token: Token::RESERVED,
            oneshot: false,
        };
        Ok(Poll {
            pollfds: vec![waker],
            entries: vec![placeholder],
            slots: Vec::new(),
            cursor: 1,
            notifier,
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edge: Support::No,
            oneshot: Support::Emulated,
            exclusive: Support::No,
            reports_hangup: true,
            reports_read_hangup: cfg!(any(target_os = "linux", target_os = "android")),
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
        if self.slot(fd).is_some() {
            return Err(already_exists(Self::KIND, fd));
        }
        // poll would report POLLNVAL forever and select would fail every wait: refuse it now.
        check_fd_open(fd)?;
        if self.slots.len() <= fd as usize {
            // Grows once per new high-water fd, never in wait or modify.
            self.slots.resize(fd as usize + 1, NO_SLOT);
        }
        self.slots[fd as usize] = self.pollfds.len() as u32;
        self.pollfds.push(libc::pollfd {
            fd,
            events: poll_events(interest),
            revents: 0,
        });
        self.entries.push(Entry {
            fd,
            token,
            oneshot: mode.is_oneshot(),
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
        let i = self.slot(fd).ok_or_else(|| not_found(Self::KIND, fd))?;
        self.pollfds[i] = libc::pollfd {
            fd,
            events: poll_events(interest),
            revents: 0,
        };
        self.entries[i] = Entry {
            fd,
            token,
            oneshot: mode.is_oneshot(),
        };
        Ok(())
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let i = self.slot(fd).ok_or_else(|| not_found(Self::KIND, fd))?;
        self.pollfds.swap_remove(i);
        self.entries.swap_remove(i);
        self.slots[fd as usize] = NO_SLOT;
        if let Some(moved) = self.entries.get(i) {
            self.slots[moved.fd as usize] = i as u32;
        }
        Ok(())
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        let mut ready = wait_retrying(timeout, |left| {
            let ts = left.map(timespec);
            // SAFETY: pollfds is a valid array of `len` pollfd; the timespec pointer is null or
            // points to `ts`, which outlives the call; a null sigmask leaves the mask alone.
            unsafe {
                libc::ppoll(
                    self.pollfds.as_mut_ptr(),
                    self.pollfds.len() as libc::nfds_t,
                    timespec_ptr(&ts),
                    std::ptr::null(),
                )
            }
        })?;
        if ready > 0 && self.pollfds[0].revents != 0 {
            self.notifier.drain();
            ready -= 1;
        }
        let len = self.pollfds.len();
        if len <= 1 {
            return Ok(0);
        }
        // Scan from the cursor, wrapping, until all `ready` entries are seen or `events` is full.
        let mut i = self.cursor.clamp(1, len - 1);
        let mut scanned = 0;
        while ready > 0 && scanned < len - 1 && !events.is_full() {
            let pfd = &mut self.pollfds[i];
            let rev = pfd.revents;
            if rev != 0 {
                ready -= 1;
                pfd.revents = 0;
                let has = |f: libc::c_short| rev & f != 0;
                let entry = self.entries[i];
                events.push(
                    Event::new(entry.token)
                        .set_readable(has(libc::POLLIN))
                        .set_writable(has(libc::POLLOUT))
                        .set_error(has(libc::POLLERR | libc::POLLNVAL))
                        .set_hangup(has(libc::POLLHUP))
                        .set_read_hangup(has(libc::POLLRDHUP)),
                );
                if entry.oneshot {
                    // Disarm: poll skips negative fds (and reports nothing for them, not even HUP).
                    pfd.fd = !entry.fd;
                }
            }
            scanned += 1;
            i = if i + 1 == len { 1 } else { i + 1 };
        }
        self.cursor = i;
        Ok(events.len())
    }

    fn waker(&self) -> Waker {
        Waker::new(self.notifier.clone())
    }
}
