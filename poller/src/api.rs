//! The `Backend` trait, what each backend can do, and run-time backend selection.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::str::FromStr;
use std::time::Duration;

use crate::event::{Events, Interest, Mode, Token};
use crate::waker::Waker;

/// One readiness mechanism (select, poll, epoll, kqueue, io_uring).
///
/// Every backend has the same semantics (see the crate docs); hot loops are written once, generic over
/// `B: Backend`, and monomorphized per backend. A backend is used from one thread; its [`Waker`] may
/// be used from any thread.
///
/// The checks and errors of registration are made here, once, before a backend touches the kernel,
/// so that every backend refuses the same requests with the same errors; the backends implement
/// only the mechanism (a sealed trait: the backends are this crate's own).
pub trait Backend: Sized + Send + Mechanism {
    /// Which mechanism this is.
    const KIND: BackendKind;

    /// Create an instance (its kernel object, preallocated tables and waker). Every descriptor it
    /// creates is close-on-exec.
    fn new() -> io::Result<Self>;

    /// What this instance can do on this kernel.
    fn capabilities(&self) -> Capabilities;

    /// Start watching `fd`. Registering an already registered fd is `AlreadyExists`; a mode or option
    /// the backend cannot do is `Unsupported`.
    fn register(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        self.add(Request::checked(self, fd, token, interest, mode, false)?)
    }

    /// Like [`register`](Backend::register), but when several pollers watch the same descriptor
    /// (a shared listening socket), a readiness change wakes only one of them (`EPOLLEXCLUSIVE`).
    /// Exclusive registrations cannot be modified (a kernel rule): deregister and register again.
    fn register_exclusive(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        if !self.capabilities().exclusive.is_supported() {
            return Err(unsupported(
                Self::KIND,
                "exclusive wake-ups (EPOLLEXCLUSIVE)",
            ));
        }
        self.add_exclusive(Request::checked(self, fd, token, interest, mode, false)?)
    }

    /// Change the token, interest or mode of a registered fd, and re-arm a oneshot registration.
    /// An fd that is not registered is `NotFound`.
    fn modify(
        &mut self,
        fd: RawFd,
        token: Token,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        self.update(Request::checked(self, fd, token, interest, mode, true)?)
    }

    /// Stop watching `fd`; no event for it is reported afterwards. Call it before closing the fd.
    /// An fd that is not registered is `NotFound`.
    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        if fd < 0 || self.is_registered(fd) == Some(false) {
            return Err(not_found(Self::KIND, fd));
        }
        self.remove(RegisteredFd(fd))
    }

    /// Wait for readiness and fill `events` (cleared first) with at most `events.capacity()` events.
    ///
    /// `Some(Duration::ZERO)` polls without blocking; `None` blocks until an event or a wake-up; a
    /// positive timeout is never rounded down to zero. A signal does not end the wait early: it is
    /// resumed with the remaining time. Returns the number of events; 0 means timeout or wake-up.
    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize>;

    /// A handle that interrupts a blocked [`wait`](Backend::wait) from any thread.
    fn waker(&self) -> Waker;
}

/// What a backend implements of registration: the kernel side only. [`Backend`]'s methods call
/// these after their checks, so the arguments say what was checked: a [`Request`] passed
/// `check_request`, and the fd is not registered (`add`) or is registered (`update`, `remove`)
/// wherever `is_registered` knows.
pub trait Mechanism {
    /// Whether `fd` is registered, where the backend keeps the registrations; `None` where the
    /// kernel keeps them and itself refuses a second registration or an unknown fd (epoll).
    fn is_registered(&self, fd: RawFd) -> Option<bool>;

    /// Start watching `request.fd`.
    fn add(&mut self, request: Request) -> io::Result<()>;

    /// Start watching `request.fd` with exclusive wake-ups; called only where the capabilities say
    /// `exclusive` is supported.
    fn add_exclusive(&mut self, request: Request) -> io::Result<()> {
        let _ = request;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Replace the token, interest and mode of `request.fd`, re-arming it.
    fn update(&mut self, request: Request) -> io::Result<()>;

    /// Stop watching the fd.
    fn remove(&mut self, fd: RegisteredFd) -> io::Result<()>;
}

/// A register or modify request that passed the checks every backend shares: only
/// [`Request::checked`] makes one, so no mechanism sees an fd, token or mode its backend refuses
/// (a negative fd, or one at or above select's `FD_SETSIZE`).
#[derive(Clone, Copy)]
pub struct Request {
    pub(crate) fd: RawFd,
    pub(crate) token: Token,
    pub(crate) interest: Interest,
    pub(crate) mode: Mode,
}

impl Request {
    /// The request, if `backend` takes it: the shared checks, then `fd` must be `registered`
    /// already (modify) or not (register), where the backend keeps the registrations.
    fn checked<B: Backend>(
        backend: &B,
        fd: RawFd,
        token: Token,
        interest: Interest,
        mode: Mode,
        registered: bool,
    ) -> io::Result<Request> {
        check_request(B::KIND, &backend.capabilities(), fd, token, interest, mode)?;
        match backend.is_registered(fd) {
            Some(true) if !registered => Err(already_exists(B::KIND, fd)),
            Some(false) if registered => Err(not_found(B::KIND, fd)),
            _ => Ok(Request {
                fd,
                token,
                interest,
                mode,
            }),
        }
    }
}

/// An fd that `deregister` found registered (where the backend keeps the registrations) and not
/// negative.
#[derive(Clone, Copy)]
pub struct RegisteredFd(pub(crate) RawFd);

/// Whether a backend can do a thing, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// The kernel mechanism does it.
    Native,
    /// The backend does it in user space with the same observable semantics.
    Emulated,
    /// Not possible: asking for it is an `Unsupported` error.
    No,
}

impl Support {
    /// `Native` or `Emulated`.
    pub fn is_supported(self) -> bool {
        self != Support::No
    }
}

/// What a backend instance can do. Asking for a `Support::No` feature is an `Unsupported` error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Edge-triggered registrations (`Mode::Edge`, `Mode::EdgeOneshot`).
    pub edge: Support,
    /// Oneshot registrations (`Mode::Oneshot`, `Mode::EdgeOneshot`).
    pub oneshot: Support,
    /// [`Backend::register_exclusive`].
    pub exclusive: Support,
    /// [`Interest::PRIORITY`](crate::Interest::PRIORITY): out-of-band data reported as
    /// [`Event::is_priority`](crate::Event::is_priority).
    pub priority: Support,
    /// Events carry [`Event::is_hangup`](crate::Event::is_hangup).
    pub reports_hangup: bool,
    /// Events carry [`Event::is_read_hangup`](crate::Event::is_read_hangup).
    pub reports_read_hangup: bool,
    /// Events carry [`Event::is_error`](crate::Event::is_error) (select shows errors as readable
    /// and writable instead).
    pub reports_error: bool,
    /// The highest descriptor number that can be registered, if the mechanism has a limit.
    pub max_fd: Option<RawFd>,
}

/// The mechanisms, for choosing one at run time (`"epoll".parse()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// `select(2)` (`pselect`): fd_set bitmaps, descriptors below `FD_SETSIZE` only.
    Select,
    /// `poll(2)` (`ppoll`): an array of `pollfd`, scanned by the kernel on every call.
    Poll,
    /// Linux `epoll(7)`.
    Epoll,
    /// BSD/macOS `kqueue(2)`; on Linux through libkqueue (cargo feature `libkqueue`).
    Kqueue,
    /// Linux `io_uring` readiness polls (`IORING_OP_POLL_ADD`).
    IoUring,
}

impl BackendKind {
    /// Every mechanism the crate knows, whether or not it is built here.
    pub const ALL: [BackendKind; 5] = [
        BackendKind::Select,
        BackendKind::Poll,
        BackendKind::Epoll,
        BackendKind::Kqueue,
        BackendKind::IoUring,
    ];

    /// The name used on command lines and in result files.
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::Select => "select",
            BackendKind::Poll => "poll",
            BackendKind::Epoll => "epoll",
            BackendKind::Kqueue => "kqueue",
            BackendKind::IoUring => "io_uring",
        }
    }

    /// `Ok` when this backend is built and works here, else the reason it is not available
    /// (not built for this OS, feature off, kernel refused it).
    pub fn probe(self) -> Result<(), String> {
        self.capabilities().map(drop).map_err(|e| e.to_string())
    }

    /// What an instance of this backend can do here (one is created and dropped to find out), or
    /// why it cannot run here.
    pub fn capabilities(self) -> io::Result<Capabilities> {
        struct Caps;
        impl WithBackend for Caps {
            type Output = io::Result<Capabilities>;
            fn run<B: Backend>(self) -> io::Result<Capabilities> {
                B::new().map(|b| b.capabilities())
            }
        }
        self.with(Caps)?
    }

    /// The backends that work on this machine with this build.
    pub fn available() -> Vec<BackendKind> {
        Self::ALL
            .into_iter()
            .filter(|k| k.probe().is_ok())
            .collect()
    }

    /// Run `visitor` monomorphized for this backend: how a binary turns a `--backend` flag into a
    /// statically dispatched event loop. `Unsupported` when the backend is not built here.
    pub fn with<V: WithBackend>(self, visitor: V) -> io::Result<V::Output> {
        match self {
            BackendKind::Select => Ok(visitor.run::<crate::Select>()),
            BackendKind::Poll => Ok(visitor.run::<crate::Poll>()),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            BackendKind::Epoll => Ok(visitor.run::<crate::Epoll>()),
            #[cfg(target_os = "linux")]
            BackendKind::IoUring => Ok(visitor.run::<crate::IoUring>()),
            #[cfg(crate_kqueue)]
            BackendKind::Kqueue => Ok(visitor.run::<crate::Kqueue>()),
            #[allow(unreachable_patterns)]
            other => Err(not_built(other)),
        }
    }
}

fn not_built(kind: BackendKind) -> io::Error {
    let why = match kind {
        BackendKind::Kqueue if cfg!(target_os = "linux") => {
            "not built: on Linux it needs libkqueue and the cargo feature `libkqueue`"
        }
        _ => "not available on this operating system",
    };
    io::Error::new(io::ErrorKind::Unsupported, format!("{kind}: {why}"))
}

/// A computation generic over the backend, run by [`BackendKind::with`].
pub trait WithBackend {
    /// What the computation returns.
    type Output;
    /// Run it with backend `B`.
    fn run<B: Backend>(self) -> Self::Output;
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "select" => Ok(BackendKind::Select),
            "poll" => Ok(BackendKind::Poll),
            "epoll" => Ok(BackendKind::Epoll),
            "kqueue" => Ok(BackendKind::Kqueue),
            "io_uring" | "io-uring" | "iouring" | "uring" => Ok(BackendKind::IoUring),
            _ => Err(format!(
                "unknown backend '{s}' (expected one of: select, poll, epoll, kqueue, io_uring)"
            )),
        }
    }
}

// ----- errors and checks shared by the backends -----

pub(crate) fn unsupported(kind: BackendKind, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{kind}: {what} is not supported by this backend"),
    )
}

pub(crate) fn already_exists(kind: BackendKind, fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{kind}: fd {fd} is already registered"),
    )
}

pub(crate) fn not_found(kind: BackendKind, fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{kind}: fd {fd} is not registered"),
    )
}

pub(crate) fn invalid_input(kind: BackendKind, what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{kind}: {what}"))
}

/// The checks every backend makes before touching the kernel, so errors are the same everywhere.
fn check_request(
    kind: BackendKind,
    caps: &Capabilities,
    fd: RawFd,
    token: Token,
    interest: Interest,
    mode: Mode,
) -> io::Result<()> {
    if fd < 0 {
        return Err(invalid_input(kind, format!("fd {fd} is negative")));
    }
    if let Some(max) = caps.max_fd {
        if fd > max {
            return Err(invalid_input(
                kind,
                format!(
                    "fd {fd} is >= FD_SETSIZE ({}); select can only watch descriptors below it \
                     (use poll, epoll, kqueue or io_uring)",
                    max + 1
                ),
            ));
        }
    }
    if token == Token::RESERVED {
        return Err(invalid_input(
            kind,
            "Token(usize::MAX) is reserved for the waker".to_string(),
        ));
    }
    if mode.is_edge() && !caps.edge.is_supported() {
        return Err(unsupported(
            kind,
            "edge-triggered mode (it is level-triggered only)",
        ));
    }
    if mode.is_oneshot() && !caps.oneshot.is_supported() {
        return Err(unsupported(kind, "oneshot mode"));
    }
    if interest.is_priority() && !caps.priority.is_supported() {
        return Err(unsupported(
            kind,
            "priority interest (out-of-band data: there is no EVFILT_EXCEPT/NOTE_OOB here)",
        ));
    }
    Ok(())
}
