//! The portable vocabulary: tokens, interests, trigger modes, events and the event buffer.

use std::fmt;
use std::ops::BitOr;

/// An opaque value that the caller attaches to a registration and gets back in every event for it.
///
/// `Token(usize::MAX)` is reserved for the poller's own waker; registering it is `InvalidInput`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub usize);

impl Token {
    /// The one token value callers may not use.
    pub const RESERVED: Token = Token(usize::MAX);
}

/// Which readiness a registration asks for: readable, writable, priority, or any union of them
/// (`Interest::READABLE | Interest::PRIORITY`). Never empty.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Wake when a read would not block (data, EOF or an error is pending).
    pub const READABLE: Interest = Interest(1);
    /// Wake when a write would not block (send buffer space, or an error).
    pub const WRITABLE: Interest = Interest(2);
    /// Readable and writable.
    pub const BOTH: Interest = Interest(3);
    /// Wake on an exceptional condition: out-of-band (urgent) TCP data is pending. select's
    /// exceptfds, `POLLPRI`, `EPOLLPRI`, kqueue's `EVFILT_EXCEPT` with `NOTE_OOB` where the OS has
    /// it. Where a backend cannot, [`Capabilities::priority`](crate::Capabilities::priority) is
    /// `Support::No` and asking for it is `Unsupported`.
    pub const PRIORITY: Interest = Interest(4);

    /// Does this interest include readability?
    pub const fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// Does this interest include writability?
    pub const fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }

    /// Does this interest include priority (out-of-band data)?
    pub const fn is_priority(self) -> bool {
        self.0 & 4 != 0
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.is_readable(), "READABLE"),
            (self.is_writable(), "WRITABLE"),
            (self.is_priority(), "PRIORITY"),
        ];
        let mut first = true;
        for (_, name) in names.iter().filter(|(on, _)| *on) {
            if !first {
                f.write_str(" | ")?;
            }
            f.write_str(name)?;
            first = false;
        }
        Ok(())
    }
}

/// How readiness is reported for a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Reported by every wait while the descriptor is ready.
    Level,
    /// Reported once per readiness change (new data arriving, buffer space freed), including once at
    /// registration if the descriptor is already ready. The caller must drain until `WouldBlock`.
    Edge,
    /// Reported once, then disarmed until [`crate::Backend::modify`] re-arms it.
    Oneshot,
    /// Edge-triggered and disarmed after one report.
    EdgeOneshot,
}

impl Mode {
    /// Every mode, for tests and command-line help.
    pub const ALL: [Mode; 4] = [Mode::Level, Mode::Edge, Mode::Oneshot, Mode::EdgeOneshot];

    /// Does this mode disarm the registration after one event?
    pub const fn is_oneshot(self) -> bool {
        matches!(self, Mode::Oneshot | Mode::EdgeOneshot)
    }

    /// Is this mode edge-triggered?
    pub const fn is_edge(self) -> bool {
        matches!(self, Mode::Edge | Mode::EdgeOneshot)
    }
}

const READABLE: u8 = 1;
const WRITABLE: u8 = 2;
const ERROR: u8 = 4;
const HANGUP: u8 = 8;
const READ_HANGUP: u8 = 16;
const PRIORITY: u8 = 32;

/// One readiness report: the registration's token and what is ready.
///
/// The flags mean the same on every backend; the per-backend mapping is in the crate docs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Event {
    token: Token,
    flags: u8,
}

impl Event {
    pub(crate) const fn new(token: Token) -> Event {
        Event { token, flags: 0 }
    }

    pub(crate) fn set_readable(mut self, on: bool) -> Self {
        self.flags |= if on { READABLE } else { 0 };
        self
    }
    pub(crate) fn set_writable(mut self, on: bool) -> Self {
        self.flags |= if on { WRITABLE } else { 0 };
        self
    }
    pub(crate) fn set_error(mut self, on: bool) -> Self {
        self.flags |= if on { ERROR } else { 0 };
        self
    }
    pub(crate) fn set_hangup(mut self, on: bool) -> Self {
        self.flags |= if on { HANGUP } else { 0 };
        self
    }
    pub(crate) fn set_read_hangup(mut self, on: bool) -> Self {
        self.flags |= if on { READ_HANGUP } else { 0 };
        self
    }
    pub(crate) fn set_priority(mut self, on: bool) -> Self {
        self.flags |= if on { PRIORITY } else { 0 };
        self
    }

    /// No readiness flag at all (io_uring drops such completions).
    #[cfg(target_os = "linux")]
    pub(crate) const fn is_empty(&self) -> bool {
        self.flags == 0
    }

    /// The token given at registration.
    pub const fn token(&self) -> Token {
        self.token
    }
    /// A read will not block: data or end-of-file is pending.
    pub const fn is_readable(&self) -> bool {
        self.flags & READABLE != 0
    }
    /// A write will not block.
    pub const fn is_writable(&self) -> bool {
        self.flags & WRITABLE != 0
    }
    /// An error is pending on the descriptor (read it with `SO_ERROR` or the next I/O call).
    pub const fn is_error(&self) -> bool {
        self.flags & ERROR != 0
    }
    /// Both directions are closed (`POLLHUP`): nothing more can be read or written.
    pub const fn is_hangup(&self) -> bool {
        self.flags & HANGUP != 0
    }
    /// The peer closed its write side: reads will reach end-of-file once buffered data is consumed.
    pub const fn is_read_hangup(&self) -> bool {
        self.flags & READ_HANGUP != 0
    }
    /// An exceptional condition is pending: out-of-band (urgent) data, read with `recv(MSG_OOB)`.
    /// Only reported to registrations with [`Interest::PRIORITY`].
    pub const fn is_priority(&self) -> bool {
        self.flags & PRIORITY != 0
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("token", &self.token.0)
            .field("readable", &self.is_readable())
            .field("writable", &self.is_writable())
            .field("error", &self.is_error())
            .field("hangup", &self.is_hangup())
            .field("read_hangup", &self.is_read_hangup())
            .field("priority", &self.is_priority())
            .finish()
    }
}

/// A preallocated, reusable buffer of events. One wait fills it with at most `capacity` events.
///
/// Waiting never grows it: after the first wait with a given capacity, waits do not allocate.
pub struct Events {
    list: Vec<Event>,
    capacity: usize,
}

impl Events {
    /// A buffer that one wait fills with up to `capacity` events (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        let capacity = capacity.max(1);
        Events {
            list: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// How many events one wait may return.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Did the last wait return no events (timeout or wake-up)?
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The events of the last wait.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.list.iter()
    }

    /// Forget the events of the last wait (every wait does this first).
    pub fn clear(&mut self) {
        self.list.clear();
    }

    pub(crate) fn is_full(&self) -> bool {
        self.list.len() >= self.capacity
    }

    /// Append one event; the caller checks `is_full` first, so this never reallocates.
    pub(crate) fn push(&mut self, event: Event) {
        debug_assert!(!self.is_full());
        self.list.push(event);
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_debug_names_every_combination() {
        let (r, w, p) = (Interest::READABLE, Interest::WRITABLE, Interest::PRIORITY);
        let cases = [
            (r, "READABLE"),
            (w, "WRITABLE"),
            (p, "PRIORITY"),
            (Interest::BOTH, "READABLE | WRITABLE"),
            (r | p, "READABLE | PRIORITY"),
            (w | p, "WRITABLE | PRIORITY"),
            (r | w | p, "READABLE | WRITABLE | PRIORITY"),
        ];
        for (interest, name) in cases {
            assert_eq!(format!("{interest:?}"), name);
        }
        assert!((r | p).is_priority() && (r | p).is_readable() && !(r | p).is_writable());
        assert!(!Interest::BOTH.is_priority());
    }

    #[test]
    fn priority_is_its_own_event_flag() {
        let e = Event::new(Token(1)).set_priority(true);
        assert!(e.is_priority() && !e.is_readable() && !e.is_error());
        assert!(format!("{e:?}").contains("priority: true"));
        assert!(!Event::new(Token(1)).set_readable(true).is_priority());
    }
}
