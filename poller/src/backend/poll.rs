//! `poll(2)`: a dense `pollfd` array that the kernel scans on every call, plus an fd-indexed slot
//! table for O(1) modify and swap-remove deregister.
//!
//! Level-triggered only. Oneshot is emulated: a delivered oneshot entry is disarmed by negating its
//! fd (poll ignores negative fds) until `modify` re-arms it.
//!
//! Per OS, as the libc crate declares them: `ppoll` (nanosecond timeouts) on Linux, Android,
//! FreeBSD, DragonFly, NetBSD and OpenBSD; plain `poll` (milliseconds, rounded up) on macOS/iOS and
//! anywhere else. `POLLRDHUP` (read-hangup reports) on Linux, Android, FreeBSD and illumos; where it
//! is missing the peer's close shows as readable (end-of-file) only.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use super::fd_table::FdTable;
use super::notify::Notifier;
use super::scan_wrapping;
use crate::api::{Backend, BackendKind, Capabilities, Mechanism, RegisteredFd, Request, Support};
use crate::sys::{check_fd_open, cvt, wait_retrying};
use crate::{Event, Events, Interest, Token, Waker};

/// `POLLRDHUP`, where the libc crate's bindings have it (`has_pollrdhup`, from build.rs): there the
/// peer's close of its write side is reported as read-hangup.
#[cfg(has_pollrdhup)]
const POLLRDHUP: libc::c_short = libc::POLLRDHUP;
/// No `POLLRDHUP` here (macOS, iOS, NetBSD, OpenBSD, DragonFly): nothing is asked or reported.
#[cfg(not(has_pollrdhup))]
const POLLRDHUP: libc::c_short = 0;

/// One `ppoll` call: nanosecond timeouts, where the libc crate's bindings have it (`has_ppoll`,
/// from build.rs).
#[cfg(has_ppoll)]
fn poll_call(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> libc::c_int {
    use crate::sys::{timespec, timespec_ptr};
    let ts = timeout.map(timespec);
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd; the timespec pointer is null
    // or points to `ts`, which outlives the call; a null sigmask leaves the mask alone.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timespec_ptr(&ts),
            std::ptr::null(),
        )
    }
}

/// Where there is no `ppoll` (macOS, iOS), plain `poll`.
#[cfg(not(has_ppoll))]
fn poll_call(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> libc::c_int {
    poll_millis(fds, timeout)
}

/// One plain `poll` call: the timeout in milliseconds, rounded up so that a short positive timeout
/// never becomes a busy poll. Built on every OS for tests, so this machine runs the macOS path too.
#[cfg(any(test, not(has_ppoll)))]
fn poll_millis(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> libc::c_int {
    // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd for the kernel to update.
    unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            crate::sys::ceil_millis(timeout),
        )
    }
}

/// What the backend remembers of a registration, parallel to its `pollfd`.
#[derive(Clone, Copy)]
struct Entry {
    fd: RawFd,
    token: Token,
    oneshot: bool,
}

impl Entry {
    fn new(request: Request) -> Entry {
        Entry {
            fd: request.fd,
            token: request.token,
            oneshot: request.mode.is_oneshot(),
        }
    }
}

/// The `poll(2)` backend (as `ppoll`, for nanosecond timeouts, where the OS has it).
///
/// Level-triggered; oneshot is emulated. Read-hangup is reported where the OS has `POLLRDHUP`
/// (Linux, Android, FreeBSD, illumos); elsewhere a peer's close shows as readable only. macOS and
/// iOS have no `ppoll`: there plain `poll` takes milliseconds, rounded up. The kernel scans every
/// registered descriptor on every wait.
pub struct Poll {
    /// `pollfds[0]` is the waker; registrations follow in no particular order.
    pollfds: Vec<libc::pollfd>,
    /// `entries[i]` describes `pollfds[i]` (entry 0 is the waker's placeholder).
    entries: Vec<Entry>,
    /// fd -> index into `pollfds`.
    slots: FdTable<u32>,
    /// Where the next scan starts, so that a small `Events` does not starve high indexes.
    cursor: usize,
    notifier: Arc<Notifier>,
}

fn poll_events(interest: Interest) -> libc::c_short {
    let mut ev = 0;
    if interest.is_readable() {
        ev |= libc::POLLIN | POLLRDHUP;
    }
    if interest.is_writable() {
        ev |= libc::POLLOUT;
    }
    if interest.is_priority() {
        ev |= libc::POLLPRI;
    }
    ev
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
            slots: FdTable::new(),
            cursor: 1,
            notifier,
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edge: Support::No,
            oneshot: Support::Emulated,
            exclusive: Support::No,
            priority: Support::Native,
            reports_hangup: true,
            reports_read_hangup: POLLRDHUP != 0,
            reports_error: true,
            max_fd: None,
        }
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        let mut ready = wait_retrying(timeout, |left| cvt(poll_call(&mut self.pollfds, left)))?;
        if ready > 0 && self.pollfds[0].revents != 0 {
            self.notifier.drain();
            ready -= 1;
        }
        let len = self.pollfds.len();
        if len <= 1 {
            return Ok(0);
        }
        // Scan from the cursor until all `ready` entries are seen or `events` is full.
        let first = self.cursor.clamp(1, len - 1);
        self.cursor = scan_wrapping(1..len, first, |i| {
            if ready == 0 || events.is_full() {
                return false;
            }
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
                        .set_read_hangup(has(POLLRDHUP))
                        .set_priority(has(libc::POLLPRI)),
                );
                if entry.oneshot {
                    // Disarm: poll skips negative fds (and reports nothing for them, not even HUP).
                    pfd.fd = !entry.fd;
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

impl Mechanism for Poll {
    fn is_registered(&self, fd: RawFd) -> Option<bool> {
        Some(self.slots.contains(fd))
    }

    fn add(&mut self, request: Request) -> io::Result<()> {
        // poll would report POLLNVAL forever and select would fail every wait: refuse it now.
        check_fd_open(request.fd)?;
        self.slots.insert(request.fd, self.pollfds.len() as u32);
        self.pollfds.push(pollfd(request));
        self.entries.push(Entry::new(request));
        Ok(())
    }

    fn update(&mut self, request: Request) -> io::Result<()> {
        let i = *self.slots.registered(request.fd) as usize;
        self.pollfds[i] = pollfd(request);
        self.entries[i] = Entry::new(request);
        Ok(())
    }

    fn remove(&mut self, RegisteredFd(fd): RegisteredFd) -> io::Result<()> {
        let i = self.slots.remove(fd) as usize;
        self.pollfds.swap_remove(i);
        self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            self.slots.insert(moved.fd, i as u32);
        }
        Ok(())
    }
}

fn pollfd(request: Request) -> libc::pollfd {
    libc::pollfd {
        fd: request.fd,
        events: poll_events(request.interest),
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The plain-`poll` path that macOS and iOS take (they have no `ppoll`), run here: a short
    /// timeout is rounded up, not down to a busy poll, and readiness is seen.
    #[test]
    fn plain_poll_fallback_rounds_timeouts_up_and_sees_readiness() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut fds = [libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&a),
            events: libc::POLLIN | POLLRDHUP,
            revents: 0,
        }];
        let start = Instant::now();
        let n = poll_millis(&mut fds, Some(Duration::from_micros(200)));
        assert_eq!(n, 0);
        assert!(
            start.elapsed() >= Duration::from_micros(200),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(poll_millis(&mut fds, Some(Duration::ZERO)), 0);
        std::io::Write::write_all(&mut &b, b"x").unwrap();
        assert_eq!(poll_millis(&mut fds, None), 1);
        assert_ne!(fds[0].revents & libc::POLLIN, 0);
    }
}
