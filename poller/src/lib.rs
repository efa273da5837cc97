//! One readiness API over `select`, `poll`, `epoll`, `kqueue` and `io_uring`, with the same semantics
//! on every backend and no heap allocation in the wait loop.
//!
//! ```no_run
//! use poller::{Backend, Epoll, Events, Interest, Mode, Token};
//! use std::os::fd::AsRawFd;
//! use std::time::Duration;
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! listener.set_nonblocking(true)?;
//! let mut poller = Epoll::new()?;
//! poller.register(listener.as_raw_fd(), Token(0), Interest::READABLE, Mode::Level)?;
//! let mut events = Events::with_capacity(1024); // preallocated once, reused by every wait
//! poller.wait(&mut events, Some(Duration::from_millis(10)))?;
//! for event in &events {
//!     assert_eq!(event.token(), Token(0));
//! }
//! # std::io::Result::Ok(())
//! ```
//!
//! Event loops are written once, generic over [`Backend`], and a binary picks the backend at run
//! time with [`BackendKind::with`], which runs a monomorphized copy (no dynamic dispatch per call).
//!
//! # Modes
//!
//! | mode | reported | select | poll | epoll | kqueue | io_uring |
//! |---|---|---|---|---|---|---|
//! | `Level` | every wait while ready | native | native | native | native | poll re-armed after each event |
//! | `Edge` | once per readiness change | `Unsupported` | `Unsupported` | `EPOLLET` | `EV_CLEAR` | multishot poll (5.13+) |
//! | `Oneshot` | once, until `modify` | emulated | emulated | `EPOLLONESHOT` | `EV_DISPATCH` | single-shot poll |
//! | `EdgeOneshot` | once, until `modify` | `Unsupported` | `Unsupported` | `EPOLLET\|EPOLLONESHOT` | `EV_CLEAR\|EV_DISPATCH` | single-shot poll |
//! | exclusive | one waiter woken | `Unsupported` | `Unsupported` | `EPOLLEXCLUSIVE` | `Unsupported` | `Unsupported` |
//!
//! Emulated oneshot: the backend stops asking the kernel about the fd after reporting it, exactly as
//! a native oneshot would. select and poll are level-triggered by nature; asking them for an edge
//! mode is an `Unsupported` error naming the backend, never a silent downgrade.
//! [`Backend::capabilities`] tells which applies ([`Support::Native`], `Emulated`, `No`).
//!
//! # Errors: the raw mechanisms against this crate
//!
//! | situation | raw mechanism | this crate, every backend |
//! |---|---|---|
//! | register an fd twice | epoll: `EEXIST`; poll: accepted (duplicate entry); kqueue: `EV_ADD` silently modifies | `AlreadyExists` |
//! | modify an unknown fd | epoll: `ENOENT`; Python's `poll.modify`: `ENOENT`; kqueue: `EV_ADD` silently adds | `NotFound` |
//! | deregister an unknown fd | epoll: `ENOENT`; Python's `poll.unregister`: `KeyError`; `/dev/poll`: ignored | `NotFound` |
//! | fd >= `FD_SETSIZE` with select | `FD_SET` writes out of bounds (undefined behaviour) | `InvalidInput` naming the limit |
//! | register a closed fd | epoll, kqueue: `EBADF`; poll: `POLLNVAL` forever; select: every call fails `EBADF`; io_uring: an error completion | `EBADF` at register |
//! | edge, exclusive or priority where the kernel has none | (not expressible) | `Unsupported` naming backend and feature |
//! | modify an `EPOLLEXCLUSIVE` registration | epoll: `EINVAL` | `Unsupported` with the reason |
//! | `Token(usize::MAX)` | | `InvalidInput`: reserved for the waker |
//!
//! # Event flags per backend
//!
//! | flag | select | poll / io_uring (`revents`) | epoll | kqueue |
//! |---|---|---|---|---|
//! | readable | in read set | `POLLIN` | `EPOLLIN` | `EVFILT_READ` |
//! | writable | in write set | `POLLOUT` | `EPOLLOUT` | `EVFILT_WRITE` |
//! | error | not reported (shows as readable+writable) | `POLLERR`, `POLLNVAL` | `EPOLLERR` | `EV_ERROR`, or `EV_EOF` with an error in `fflags` |
//! | hangup | not reported | `POLLHUP` | `EPOLLHUP` | `EV_EOF` on `EVFILT_WRITE` (needs writable interest) |
//! | read-hangup | not reported (EOF shows as readable) | `POLLRDHUP` (poll: Linux, FreeBSD; see below) | `EPOLLRDHUP` | `EV_EOF` on `EVFILT_READ` |
//! | priority | in exceptfds | `POLLPRI` | `EPOLLPRI` | `EVFILT_EXCEPT` with `NOTE_OOB` (macOS, iOS, OpenBSD, DragonFly); `Unsupported` on FreeBSD, NetBSD and libkqueue |
//!
//! Priority ([`Interest::PRIORITY`], [`Event::is_priority`]) is the third readiness kind:
//! out-of-band (urgent) TCP data is pending, to be read with `recv(MSG_OOB)`. It is reported only
//! to registrations that ask for it, in every mode, and [`Capabilities::priority`] says where it
//! exists. io_uring asks for `POLLPRI | POLLRDBAND` (the kernel does not wake a poll that asks for
//! `EPOLLPRI` alone) and checks a completion's `POLLPRI` with one zero-timeout `poll`, because a
//! completion carries the wake-up's key, which says `EPOLLPRI` for any incoming socket data. epoll
//! refuses priority with `EPOLLEXCLUSIVE` (`Unsupported`: the kernel does not allow `EPOLLPRI`
//! there).
//!
//! Read-hangup is asked for whenever readability is, on every backend that has it. kqueue reports the
//! read and write filters of one fd as separate events with the same token; callers that want one
//! event per fd merge by token (readiness is a set of flags, so merging is an OR).
//!
//! # Readiness is a hint
//!
//! An event says the fd was ready when the kernel looked; by the time the caller acts it may not be
//! (another thread read, a spurious wake-up), so callers treat `WouldBlock` as "wait again". One
//! mechanism difference shows here: epoll, poll, select and kqueue look at the fd during the wait,
//! while an io_uring poll completion is a snapshot taken when the fd woke up. So with io_uring, data
//! read between that wake-up and the wait may still be reported once (spurious, never missed), and a
//! second direction that became ready after the completion (writable after readable) is reported by
//! the next wait instead of this one. The property test holds io_uring to exactly that, and the
//! other backends to the exact answer.
//!
//! # Timeouts and signals
//!
//! `Some(Duration::ZERO)` never blocks; `None` blocks until an event or a [`Waker`] wake-up; positive
//! timeouts are never rounded down to a busy poll. All backends take nanosecond timeouts (epoll
//! through `epoll_pwait2`, Linux 5.11+; on older kernels `epoll_wait` takes milliseconds, rounded
//! up, so 0.1 ms waits 1 ms), except poll on macOS and iOS, which have no `ppoll`: plain `poll`
//! takes milliseconds, rounded up the same way. A wait interrupted by a signal (`EINTR`) is resumed
//! with the time that remains, so it neither fails nor returns early.
//!
//! # Operating systems
//!
//! | | Linux | macOS, iOS | FreeBSD | NetBSD, OpenBSD | DragonFly |
//! |---|---|---|---|---|---|
//! | select | yes | yes | yes | yes | yes |
//! | poll | `ppoll` | `poll` (millisecond timeouts) | `ppoll` | `ppoll` | `ppoll` |
//! | poll's read-hangup (`POLLRDHUP`) | yes | no | yes (kernels since 2021) | no | no |
//! | epoll, io_uring | yes | no | no | no | no |
//! | kqueue | through libkqueue (feature `libkqueue`) | native | native | native | native |
//! | waker | eventfd | pipe | pipe | pipe | pipe |
//!
//! Where poll has no `POLLRDHUP`, a peer's close shows as readable (end-of-file) only, and
//! [`Capabilities::reports_read_hangup`] says so. Every OS-specific item is gated against the libc
//! crate's own definitions for that OS (libc 0.2.191).
//!
//! The library, its tests and the benchmark build without warnings for Linux, macOS (x86_64 and
//! aarch64), iOS, FreeBSD and NetBSD on stable Rust, and for OpenBSD and DragonFly on nightly with
//! `-Zbuild-std` (they have no prebuilt standard library): `cargo clippy -p poller --all-targets
//! --target TRIPLE` checks a target. The Android gates (epoll, poll) and the illumos gate
//! (`POLLRDHUP`) follow libc's source and are not compiled. The tests run on Linux (kqueue
//! there through libkqueue); on the other systems the crate compiles, and its tests are not run.
//!
//! # Completion mode
//!
//! [`completion_ring`] (Linux) is io_uring used the other way: the kernel accepts, receives into
//! provided buffers and sends, and the caller reaps what was done. It is not a [`Backend`]: its
//! unit is an operation, not a readiness event.
//!
//! # Not covered
//!
//! `/dev/poll` (Solaris, illumos) and Windows IOCP/AFD are out of scope for now.

#![warn(missing_docs)]

mod api;
mod backend;
#[cfg(target_os = "linux")]
pub mod completion_ring;
mod event;
mod sys;
mod waker;

pub use api::{Backend, BackendKind, Capabilities, Support, WithBackend};
pub use event::{Event, Events, Interest, Mode, Token};
pub use waker::Waker;

pub use backend::{Poll, Select};

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use backend::Epoll;

#[cfg(target_os = "linux")]
pub use backend::IoUring;

#[cfg(crate_kqueue)]
pub use backend::Kqueue;
