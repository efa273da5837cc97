//! The conformance suite: the same test bodies run against every backend. Test names carry the
//! backend (`epoll::edge_reports_once_per_arrival`); a backend that is not available prints
//! `skipped: <why>` on stderr instead of passing silently.

mod common;

use std::io::{ErrorKind, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use poller::{Backend, Interest, Mode, Support, Token};

const LONG: Duration = Duration::from_secs(2);
const SHORT: Duration = Duration::from_millis(50);

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        macro_rules! conformance {
            ($module:ident, $backend:ty) => {
                mod $module {
                    $(
                        #[test]
                        fn $case() {
                            let name = concat!(stringify!($module), "::", stringify!($case));
                            if let Some(b) = super::common::backend::<$backend>(name) {
                                super::$case(b);
                            }
                        }
                    )*
                }
            };
        }
        /// When the kqueue backend is not built, each of its tests says so.
        #[cfg(not(crate_kqueue))]
        mod kqueue {
            $(
                #[test]
                fn $case() {
                    super::common::skip(
                        concat!("kqueue::", stringify!($case)),
                        "kqueue is not built: on Linux it needs libkqueue and `--features libkqueue`",
                    );
                }
            )*
        }
    };
}

cases!(
    readable_after_peer_writes,
    writable_with_buffer_space,
    peer_close_reports_read_hangup_then_hangup,
    level_reports_until_drained,
    edge_reports_once_per_arrival,
    oneshot_needs_modify_to_rearm,
    modify_changes_token_and_interest,
    error_table_is_uniform,
    unsupported_requests_name_backend_and_feature,
    waker_interrupts_from_another_thread,
    timeouts_zero_short_and_sub_millisecond,
    signal_during_wait_neither_errors_nor_returns_early,
    high_fd_is_rejected_by_select_only,
    ten_thousand_registered_sockets,
    deregister_then_close_gives_no_stray_events,
    small_event_buffer_batches_fairly,
    connection_refused_reports_error,
    descriptors_are_close_on_exec,
    edge_events_beyond_the_buffer_are_not_lost,
    priority_reports_out_of_band_data,
    priority_in_edge_and_oneshot_modes,
);

conformance!(select, poller::Select);
conformance!(poll, poller::Poll);
#[cfg(target_os = "linux")]
conformance!(epoll, poller::Epoll);
#[cfg(target_os = "linux")]
conformance!(io_uring, poller::IoUring);
#[cfg(crate_kqueue)]
conformance!(kqueue, poller::Kqueue);

fn readable_after_peer_writes<B: Backend>(mut p: B) {
    let (a, mut b) = tcp_pair();
    p.register(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(
        wait_once(&mut p, Some(Duration::ZERO)).is_empty(),
        "nothing is ready yet"
    );
    b.write_all(b"x").unwrap();
    let r = wait_for(&mut p, Token(1), LONG).expect("readable after the peer wrote");
    assert!(
        r.readable && !r.writable && !r.hangup && !r.read_hangup && !r.error,
        "{r:?}"
    );
}

fn writable_with_buffer_space<B: Backend>(mut p: B) {
    let (a, _b) = tcp_pair();
    p.register(a.as_raw_fd(), Token(7), Interest::WRITABLE, Mode::Level)
        .unwrap();
    let r = wait_for(&mut p, Token(7), LONG).expect("a fresh socket is writable");
    assert!(r.writable && !r.readable, "{r:?}");
}

fn peer_close_reports_read_hangup_then_hangup<B: Backend>(mut p: B) {
    let caps = p.capabilities();
    let (a, b) = tcp_pair();
    p.register(a.as_raw_fd(), Token(3), Interest::BOTH, Mode::Level)
        .unwrap();
    drop(b);
    let r = wait_for(&mut p, Token(3), LONG).expect("peer close is reported");
    assert!(r.readable, "EOF reads as readable: {r:?}");
    assert_eq!(
        r.read_hangup, caps.reports_read_hangup,
        "read-hangup as the capabilities say: {r:?}"
    );
    assert!(!r.hangup, "our write side is still open: {r:?}");
    assert_eq!(drain(&a), 0, "the read sees end-of-file");
    a.shutdown(std::net::Shutdown::Write).unwrap();
    // Both directions closed now: hangup, where the backend reports it.
    let deadline = Instant::now() + LONG;
    let mut last = None;
    while Instant::now() < deadline {
        last = wait_for(&mut p, Token(3), SHORT);
        if last.is_some_and(|r| r.hangup) {
            break;
        }
    }
    let r = last.expect("still reported after shutdown");
    assert_eq!(
        r.hangup, caps.reports_hangup,
        "hangup as the capabilities say: {r:?}"
    );
}

fn level_reports_until_drained<B: Backend>(mut p: B) {
    let (a, mut b) = unix_pair();
    p.register(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    b.write_all(b"abc").unwrap();
    for round in 0..3 {
        let r = wait_for(&mut p, Token(1), LONG);
        assert!(
            r.is_some_and(|r| r.readable),
            "round {round}: level re-reports undrained data"
        );
    }
    assert_eq!(drain(&a), 3);
    assert!(
        wait_once(&mut p, Some(SHORT)).is_empty(),
        "drained: no more reports"
    );
}

fn edge_reports_once_per_arrival<B: Backend>(mut p: B) {
    let (a, mut b) = unix_pair();
    if !p.capabilities().edge.is_supported() {
        let err = p
            .register(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        return;
    }
    p.register(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Edge)
        .unwrap();
    for arrival in 0..3 {
        b.write_all(b"x").unwrap();
        let r = wait_for(&mut p, Token(1), LONG);
        assert!(
            r.is_some_and(|r| r.readable),
            "arrival {arrival} is reported"
        );
        assert!(
            wait_once(&mut p, Some(SHORT)).is_empty(),
            "arrival {arrival}: reported once, though not drained"
        );
    }
    assert_eq!(drain(&a), 3);
}

fn oneshot_needs_modify_to_rearm<B: Backend>(mut p: B) {
    let caps = p.capabilities();
    for mode in [Mode::Oneshot, Mode::EdgeOneshot] {
        let (a, mut b) = unix_pair();
        let fd = a.as_raw_fd();
        if mode.is_edge() && !caps.edge.is_supported() {
            let err = p
                .register(fd, Token(1), Interest::READABLE, mode)
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
            continue;
        }
        p.register(fd, Token(1), Interest::READABLE, mode).unwrap();
        b.write_all(b"x").unwrap();
        assert!(
            wait_for(&mut p, Token(1), LONG).is_some(),
            "{mode:?}: first report"
        );
        b.write_all(b"y").unwrap();
        assert!(
            wait_once(&mut p, Some(SHORT)).is_empty(),
            "{mode:?}: disarmed after one report"
        );
        p.modify(fd, Token(2), Interest::READABLE, mode).unwrap();
        let r = wait_for(&mut p, Token(2), LONG);
        assert!(r.is_some_and(|r| r.readable), "{mode:?}: modify re-arms");
        assert!(
            wait_once(&mut p, Some(SHORT)).is_empty(),
            "{mode:?}: disarmed again"
        );
        p.deregister(fd).unwrap();
    }
}

fn modify_changes_token_and_interest<B: Backend>(mut p: B) {
    let (a, mut b) = unix_pair();
    let fd = a.as_raw_fd();
    p.register(fd, Token(1), Interest::WRITABLE, Mode::Level)
        .unwrap();
    assert!(wait_for(&mut p, Token(1), LONG).is_some_and(|r| r.writable));
    p.modify(fd, Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    let got = wait_once(&mut p, Some(SHORT));
    assert!(
        got.is_empty(),
        "not readable yet, and writable is no longer asked: {got:?}"
    );
    b.write_all(b"x").unwrap();
    let got = wait_once(&mut p, Some(LONG));
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        vec![Token(2)],
        "{got:?}"
    );
    assert!(got[&Token(2)].readable && !got[&Token(2)].writable);
}

fn error_table_is_uniform<B: Backend>(mut p: B) {
    let (a, _b) = unix_pair();
    let (other, _o) = unix_pair();
    let fd = a.as_raw_fd();
    let kind = |r: std::io::Result<()>| r.unwrap_err().kind();
    p.register(fd, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    assert_eq!(
        kind(p.register(fd, Token(1), Interest::READABLE, Mode::Level)),
        ErrorKind::AlreadyExists
    );
    let unknown = other.as_raw_fd();
    assert_eq!(
        kind(p.modify(unknown, Token(2), Interest::READABLE, Mode::Level)),
        ErrorKind::NotFound
    );
    assert_eq!(kind(p.deregister(unknown)), ErrorKind::NotFound);
    p.deregister(fd).unwrap();
    assert_eq!(
        kind(p.deregister(fd)),
        ErrorKind::NotFound,
        "deregistered twice"
    );
    assert_eq!(
        kind(p.modify(fd, Token(1), Interest::READABLE, Mode::Level)),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(p.register(-1, Token(1), Interest::READABLE, Mode::Level)),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(p.register(fd, Token::RESERVED, Interest::READABLE, Mode::Level)),
        ErrorKind::InvalidInput
    );
    // A closed descriptor fails at register, with EBADF, on every backend.
    // A high number (below FD_SETSIZE for select) so parallel tests do not reuse it meanwhile.
    // Below the open-files limit too, or the dup fails with EINVAL (`ulimit -n 256`).
    let soft = open_files_limit().min(1 << 20) as RawFd;
    let target = p
        .capabilities()
        .max_fd
        .map_or(soft - 1, |m| (m - 20).min(soft - 1));
    let closed =
        nix::fcntl::fcntl(a.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(target)).unwrap();
    nix::unistd::close(closed).unwrap();
    let err = p
        .register(closed, Token(1), Interest::READABLE, Mode::Level)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
    // Registering again after deregister works.
    p.register(fd, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
}

fn unsupported_requests_name_backend_and_feature<B: Backend>(mut p: B) {
    let caps = p.capabilities();
    let (a, _b) = unix_pair();
    let fd = a.as_raw_fd();
    let name = B::KIND.name();
    if caps.edge == Support::No {
        let err = p
            .register(fd, Token(1), Interest::READABLE, Mode::Edge)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains("edge"), "{msg}");
    }
    if caps.exclusive == Support::No {
        let err = p
            .register_exclusive(fd, Token(1), Interest::READABLE, Mode::Level)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.contains("EPOLLEXCLUSIVE"),
            "{msg}"
        );
        return;
    }
    // Exclusive is supported: two pollers share a listener; a connection wakes at least one, and the
    // registration cannot be modified (a kernel rule, said clearly).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let lfd = listener.as_raw_fd();
    let mut q = B::new().unwrap();
    p.register_exclusive(lfd, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    q.register_exclusive(lfd, Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let woke =
        wait_for(&mut p, Token(1), LONG).is_some() || wait_for(&mut q, Token(1), LONG).is_some();
    assert!(woke, "an exclusive waiter is woken");
    let err = p
        .modify(lfd, Token(2), Interest::READABLE, Mode::Level)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let err = p
        .register_exclusive(fd, Token(2), Interest::READABLE, Mode::Oneshot)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}

fn waker_interrupts_from_another_thread<B: Backend>(mut p: B) {
    let waker = p.waker();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        waker.wake().unwrap();
    });
    let start = Instant::now();
    let got = wait_once(&mut p, Some(Duration::from_secs(10)));
    let took = start.elapsed();
    t.join().unwrap();
    assert!(got.is_empty(), "a wake-up is not an event: {got:?}");
    assert!(
        took >= Duration::from_millis(40) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Wakes coalesce and are consumed: several wakes end one blocking wait, then nothing is left.
    let w = p.waker();
    for _ in 0..3 {
        w.wake().unwrap();
    }
    let start = Instant::now();
    assert!(wait_once(&mut p, None).is_empty());
    assert!(start.elapsed() < Duration::from_secs(1));
    let start = Instant::now();
    assert!(wait_once(&mut p, Some(SHORT)).is_empty());
    assert!(
        start.elapsed() >= Duration::from_millis(45),
        "no wake-up left over"
    );
}

fn timeouts_zero_short_and_sub_millisecond<B: Backend>(mut p: B) {
    let (a, _b) = unix_pair();
    p.register(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let timed = |p: &mut B, t: Option<Duration>| {
        let start = Instant::now();
        assert!(wait_once(p, t).is_empty());
        start.elapsed()
    };
    let zero = timed(&mut p, Some(Duration::ZERO));
    assert!(
        zero < Duration::from_millis(100),
        "zero polls without blocking: {zero:?}"
    );
    let ten = timed(&mut p, Some(Duration::from_millis(10)));
    assert!(
        ten >= Duration::from_millis(10) && ten < Duration::from_millis(500),
        "10 ms: {ten:?}"
    );
    let sub = timed(&mut p, Some(Duration::from_micros(200)));
    assert!(
        sub >= Duration::from_micros(200),
        "200 us is not rounded down to 0: {sub:?}"
    );
    // None blocks until woken.
    let waker = p.waker();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        waker.wake().unwrap();
    });
    let none = timed(&mut p, None);
    t.join().unwrap();
    assert!(
        none >= Duration::from_millis(25),
        "None blocked until the wake: {none:?}"
    );
}

fn signal_during_wait_neither_errors_nor_returns_early<B: Backend>(mut p: B) {
    static DELIVERED: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    let flag = DELIVERED.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, flag.clone()).unwrap();
        flag
    });
    let me = nix::sys::pthread::pthread_self();
    let (a, _b) = unix_pair();
    p.register(a.as_raw_fd(), Token(1), Interest::READABLE, Mode::Level)
        .unwrap();
    let t = std::thread::spawn(move || {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(40));
            nix::sys::pthread::pthread_kill(me, nix::sys::signal::Signal::SIGUSR1).unwrap();
        }
    });
    let start = Instant::now();
    let mut events = poller::Events::with_capacity(8);
    let n = p
        .wait(&mut events, Some(Duration::from_millis(300)))
        .expect("EINTR is not an error");
    let took = start.elapsed();
    t.join().unwrap();
    assert_eq!(n, 0);
    assert!(
        flag.load(Ordering::SeqCst),
        "the signal was delivered during the wait"
    );
    assert!(
        took >= Duration::from_millis(295),
        "resumed with the remaining time: {took:?}"
    );
}

fn high_fd_is_rejected_by_select_only<B: Backend>(mut p: B) {
    const HIGH: RawFd = 1500;
    let name = format!("{}::high_fd_is_rejected_by_select_only", B::KIND);
    // Descriptor number 1500 exists only under a limit above it.
    if !descriptors_fit(&name, HIGH as u64 + 1) {
        return;
    }
    let (a, mut b) = unix_pair();
    let high = match nix::fcntl::fcntl(a.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(HIGH)) {
        Ok(fd) => fd,
        Err(e) => return skip(&name, &format!("cannot open fd >= {HIGH} here: {e}")),
    };
    let result = p.register(high, Token(1), Interest::READABLE, Mode::Level);
    match p.capabilities().max_fd {
        Some(max) => {
            let err = result.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(
                err.to_string()
                    .contains(&format!("FD_SETSIZE ({})", max + 1)),
                "{err}"
            );
        }
        None => {
            result.unwrap();
            b.write_all(b"x").unwrap();
            assert!(wait_for(&mut p, Token(1), LONG).is_some_and(|r| r.readable));
            p.deregister(high).unwrap();
        }
    }
    nix::unistd::close(high).unwrap();
}

fn ten_thousand_registered_sockets<B: Backend>(mut p: B) {
    use rand::{seq::SliceRandom, SeedableRng};
    const PAIRS: usize = 5_000;
    if let Some(max) = p.capabilities().max_fd {
        return skip(
            &format!("{}::ten_thousand_registered_sockets", B::KIND),
            &format!("{} cannot watch descriptors above {max}", B::KIND),
        );
    }
    let name = format!("{}::ten_thousand_registered_sockets", B::KIND);
    if !descriptors_fit(&name, 2 * PAIRS as u64) {
        return;
    }
    let pairs: Vec<_> = (0..PAIRS).map(|_| unix_pair()).collect();
    for (i, (x, y)) in pairs.iter().enumerate() {
        p.register(x.as_raw_fd(), Token(2 * i), Interest::READABLE, Mode::Level)
            .unwrap();
        p.register(
            y.as_raw_fd(),
            Token(2 * i + 1),
            Interest::READABLE,
            Mode::Level,
        )
        .unwrap();
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut chosen: Vec<usize> = (0..PAIRS).collect();
    chosen.shuffle(&mut rng);
    chosen.truncate(100);
    for &i in &chosen {
        (&pairs[i].0).write_all(b"x").unwrap(); // makes pairs[i].1 (token 2i+1) readable
    }
    let mut expected: Vec<Token> = chosen.iter().map(|&i| Token(2 * i + 1)).collect();
    expected.sort();
    let got = wait_once(&mut p, Some(LONG));
    let mut seen: Vec<Token> = got.keys().copied().collect();
    seen.sort();
    assert_eq!(
        seen, expected,
        "exactly the 100 written-to sockets are readable"
    );
}

fn deregister_then_close_gives_no_stray_events<B: Backend>(mut p: B) {
    for round in 0..20 {
        let (a, mut b) = unix_pair();
        let fd = a.as_raw_fd();
        p.register(fd, Token(1000 + round), Interest::BOTH, Mode::Level)
            .unwrap();
        if round % 2 == 0 {
            let _ = wait_once(&mut p, Some(Duration::ZERO)); // let the registration reach the kernel
        }
        b.write_all(b"pending").unwrap();
        p.deregister(fd).unwrap();
        drop(a);
        drop(b);
        // A new pair likely reuses the numbers; its events must carry only its own token.
        let (c, _d) = unix_pair();
        p.register(c.as_raw_fd(), Token(1), Interest::WRITABLE, Mode::Level)
            .unwrap();
        let got = wait_once(&mut p, Some(SHORT));
        assert!(
            got.keys().all(|t| *t == Token(1)),
            "round {round}: stray event {got:?}"
        );
        p.deregister(c.as_raw_fd()).unwrap();
    }
    assert!(wait_once(&mut p, Some(SHORT)).is_empty());
}

fn small_event_buffer_batches_fairly<B: Backend>(mut p: B) {
    let pairs: Vec<_> = (0..10).map(|_| unix_pair()).collect();
    for (i, (a, b)) in pairs.iter().enumerate() {
        p.register(a.as_raw_fd(), Token(i), Interest::READABLE, Mode::Level)
            .unwrap();
        (&*b).write_all(b"x").unwrap();
    }
    let mut events = poller::Events::with_capacity(4);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let n = p.wait(&mut events, Some(LONG)).unwrap();
        assert!(n <= 4 && n == events.len(), "never more than the capacity");
        seen.extend(events.iter().map(|e| e.token()));
    }
    assert_eq!(
        seen.len(),
        10,
        "every ready fd is reported within 5 waits of 4: {seen:?}"
    );
}

fn connection_refused_reports_error<B: Backend>(mut p: B) {
    let caps = p.capabilities();
    // A port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let socket = nonblocking_tcp_socket();
    match connect_loopback(&socket, port) {
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            return skip("connection_refused", "refused synchronously")
        }
        other => panic!("unexpected connect result {other:?}"),
    }
    p.register(socket.as_raw_fd(), Token(9), Interest::BOTH, Mode::Level)
        .unwrap();
    let r = wait_for(&mut p, Token(9), LONG).expect("a refused connect is reported");
    if caps.reports_error {
        assert!(r.error, "error flag on a refused connect: {r:?}");
    } else {
        assert!(
            r.readable || r.writable,
            "select shows the error as readiness: {r:?}"
        );
    }
    p.deregister(socket.as_raw_fd()).unwrap();
}

fn descriptors_are_close_on_exec<B: Backend>(p: B) {
    // Every OS: each descriptor a new instance opens has FD_CLOEXEC. A descriptor without it must
    // have been open without it before the instance was made (cargo's jobserver pipe is inherited
    // on purpose); other tests' descriptors, opened meanwhile, are close-on-exec (std and this
    // suite open every descriptor so).
    let before = fds_without_cloexec();
    let q = B::new().expect("a second instance");
    let after = fds_without_cloexec();
    let leaked: Vec<RawFd> = after.difference(&before).copied().collect();
    assert!(
        leaked.is_empty(),
        "{}: descriptors without FD_CLOEXEC: {leaked:?}",
        B::KIND
    );
    drop(q);
    exec_leaves_no_anon_inode(p);
}

/// The real property: after an exec, none of the crate's descriptors survive. With the backend
/// alive, a child lists its own fds; anon inodes (eventfd, eventpoll, io_uring; libkqueue's too)
/// must not be among them. Pipes are left out: on Linux the crate creates none, and cargo's
/// jobserver pipe is inherited on purpose.
#[cfg(target_os = "linux")]
fn exec_leaves_no_anon_inode<B: Backend>(p: B) {
    let anon = |listing: &str| {
        listing
            .lines()
            .filter(|l| l.contains("anon_inode:"))
            .count()
    };
    let Ok(ours) = std::process::Command::new("ls")
        .args(["-l", "/proc/self/fd"])
        .output()
    else {
        return skip("close_on_exec", "cannot run `ls` here");
    };
    let parent: String = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .map(|e| format!("{:?}\n", std::fs::read_link(e.path()).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        anon(&parent) >= 1,
        "the backend's descriptors are open in this process: {parent}"
    );
    let child = String::from_utf8_lossy(&ours.stdout);
    assert_eq!(anon(&child), 0, "descriptors leaked through exec:\n{child}");
    drop(p);
}

#[cfg(not(target_os = "linux"))]
fn exec_leaves_no_anon_inode<B: Backend>(p: B) {
    drop(p);
    skip(
        &format!("{}::descriptors_are_close_on_exec", B::KIND),
        "the check across exec lists /proc/self/fd, which this OS does not have \
         (the FD_CLOEXEC check ran)",
    );
}

fn edge_events_beyond_the_buffer_are_not_lost<B: Backend>(mut p: B) {
    // More ready registrations (each readable and writable) than one wait can return: edge events
    // that do not fit must come in later waits, not be dropped.
    if !p.capabilities().edge.is_supported() {
        return;
    }
    if B::KIND == poller::BackendKind::Kqueue && cfg!(target_os = "linux") {
        // libkqueue 2.7 (src/linux/platform.c, linux_kevent_copyout): an fd with both filters is
        // one epoll registration; when its two kevents do not fit the eventlist, the copy-out stops
        // and drops the epoll events already taken, which EV_CLEAR never reports again.
        return skip(
            "kqueue::edge_events_beyond_the_buffer_are_not_lost",
            "libkqueue drops EV_CLEAR events of fds with both filters when the eventlist is full \
             (a libkqueue defect; native kqueue runs this test)",
        );
    }
    const N: usize = 100;
    let pairs: Vec<_> = (0..N).map(|_| unix_pair()).collect();
    for (i, (a, b)) in pairs.iter().enumerate() {
        p.register(a.as_raw_fd(), Token(i), Interest::BOTH, Mode::Edge)
            .unwrap();
        (&*b).write_all(b"x").unwrap();
    }
    let mut events = poller::Events::with_capacity(8);
    let mut readable = std::collections::BTreeSet::new();
    let deadline = Instant::now() + LONG;
    while readable.len() < N && Instant::now() < deadline {
        p.wait(&mut events, Some(SHORT)).unwrap();
        readable.extend(events.iter().filter(|e| e.is_readable()).map(|e| e.token()));
    }
    assert_eq!(
        readable.len(),
        N,
        "every fd reported readable, 8 events per wait"
    );
}

/// A non-blocking, close-on-exec IPv4 TCP socket (flags set with fcntl: macOS has no
/// `SOCK_NONBLOCK`/`SOCK_CLOEXEC`).
fn nonblocking_tcp_socket() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: socket takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor owned by nothing else.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: fcntl on our own descriptor, with integer arguments only.
    let ok = unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) >= 0
            && libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) >= 0
    };
    assert!(ok, "fcntl: {}", std::io::Error::last_os_error());
    socket
}

/// `connect` to 127.0.0.1:`port`, as the kernel answers it (`EINPROGRESS` on a non-blocking socket).
fn connect_loopback(socket: &std::os::fd::OwnedFd, port: u16) -> std::io::Result<()> {
    // SAFETY: sockaddr_in is a plain C struct; all-zero bytes are a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "netbsd",
        target_os = "openbsd"
    ))]
    {
        addr.sin_len = std::mem::size_of::<libc::sockaddr_in>() as u8;
    }
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = port.to_be();
    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    // SAFETY: `addr` is a valid sockaddr_in of the length passed, alive for the call.
    let rc = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The open descriptors of this process that lack `FD_CLOEXEC` (found with `fcntl(F_GETFD)` on
/// every number below the open-files limit, so it works without `/proc`).
fn fds_without_cloexec() -> std::collections::BTreeSet<RawFd> {
    let top = open_files_limit().min(1 << 16) as RawFd;
    (0..top)
        .filter(|&fd| {
            // SAFETY: F_GETFD reads descriptor flags; no memory is passed.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect()
}

/// Send one byte of TCP out-of-band (urgent) data.
fn send_oob(s: &std::net::TcpStream, byte: u8) {
    // SAFETY: `byte` is a readable one-byte buffer that outlives the call.
    let n = unsafe { libc::send(s.as_raw_fd(), (&byte as *const u8).cast(), 1, libc::MSG_OOB) };
    assert_eq!(n, 1, "send MSG_OOB: {}", std::io::Error::last_os_error());
}

/// Read the pending urgent byte (`recv(MSG_OOB)`), if there is one.
fn recv_oob(s: &std::net::TcpStream) -> Option<u8> {
    let mut byte = 0u8;
    // SAFETY: `byte` is a writable one-byte buffer that outlives the call.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_OOB,
        )
    };
    (n == 1).then_some(byte)
}

/// A backend without priority support says so, naming itself and the feature.
fn priority_is_unsupported<B: Backend>(p: &mut B, fd: RawFd) {
    for interest in [Interest::PRIORITY, Interest::READABLE | Interest::PRIORITY] {
        let err = p.register(fd, Token(1), interest, Mode::Level).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(B::KIND.name()) && msg.contains("priority"),
            "{msg}"
        );
    }
}

fn priority_reports_out_of_band_data<B: Backend>(mut p: B) {
    // a <- b carries urgent data to a PRIORITY registration; c <- d to a READABLE-only one.
    let (a, b) = tcp_pair();
    let (c, mut d) = tcp_pair();
    if !p.capabilities().priority.is_supported() {
        return priority_is_unsupported(&mut p, a.as_raw_fd());
    }
    p.register(a.as_raw_fd(), Token(1), Interest::PRIORITY, Mode::Level)
        .unwrap();
    p.register(c.as_raw_fd(), Token(2), Interest::READABLE, Mode::Level)
        .unwrap();
    assert!(
        wait_once(&mut p, Some(Duration::ZERO)).is_empty(),
        "nothing is pending yet"
    );
    send_oob(&b, b'!');
    send_oob(&d, b'?');
    d.write_all(b"x").unwrap(); // ordinary data too, so the READABLE-only registration reports
    let r = wait_for(&mut p, Token(1), LONG).expect("out-of-band data is reported");
    assert!(r.priority, "priority on urgent data: {r:?}");
    assert!(!r.readable && !r.writable, "only what was asked: {r:?}");
    let r = wait_for(&mut p, Token(2), LONG).expect("the ordinary byte is readable");
    assert!(
        r.readable && !r.priority,
        "READABLE-only never reports priority: {r:?}"
    );
    // Ordinary data is not priority, even where priority is asked (io_uring's wake-up key says
    // EPOLLPRI for any incoming data: caught by the model test).
    let (e, mut f) = tcp_pair();
    let both = Interest::READABLE | Interest::PRIORITY;
    p.register(e.as_raw_fd(), Token(3), both, Mode::Level)
        .unwrap();
    let _ = wait_once(&mut p, Some(Duration::ZERO)); // armed before the data comes
    f.write_all(b"y").unwrap();
    let r = wait_for(&mut p, Token(3), LONG).expect("ordinary data is readable");
    assert!(r.readable && !r.priority, "ordinary data only: {r:?}");
    // Level: reported again while the urgent byte is unread.
    let r = wait_for(&mut p, Token(1), LONG);
    assert!(r.is_some_and(|r| r.priority), "level re-reports: {r:?}");
    assert_eq!(recv_oob(&a), Some(b'!'));
    // Read: no longer reported. (Linux clears its urgent-data flag when the byte is read. BSD
    // kernels may report the mark until ordinary data past it is read, so this is Linux's rule.)
    let got = wait_once(&mut p, Some(SHORT));
    if cfg!(target_os = "linux") {
        assert!(
            !got.get(&Token(1)).is_some_and(|r| r.priority),
            "no priority once the urgent byte is read: {got:?}"
        );
    } else {
        skip(
            &format!("{}::priority_reports_out_of_band_data", B::KIND),
            "not reported after recv(MSG_OOB) is asserted on Linux only",
        );
    }
    assert_eq!(recv_oob(&c), Some(b'?'));
}

fn priority_in_edge_and_oneshot_modes<B: Backend>(mut p: B) {
    let caps = p.capabilities();
    if !caps.priority.is_supported() {
        let (a, _b) = tcp_pair();
        return priority_is_unsupported(&mut p, a.as_raw_fd());
    }
    for mode in [Mode::Edge, Mode::Oneshot, Mode::EdgeOneshot] {
        let (a, b) = tcp_pair();
        let fd = a.as_raw_fd();
        if mode.is_edge() && !caps.edge.is_supported() {
            let err = p
                .register(fd, Token(1), Interest::PRIORITY, mode)
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
            continue;
        }
        p.register(fd, Token(1), Interest::PRIORITY, mode).unwrap();
        send_oob(&b, b'1');
        let r = wait_for(&mut p, Token(1), LONG);
        assert!(
            r.is_some_and(|r| r.priority),
            "{mode:?}: first report {r:?}"
        );
        let got = wait_once(&mut p, Some(SHORT));
        assert!(
            got.is_empty(),
            "{mode:?}: reported once, though unread: {got:?}"
        );
        if mode.is_oneshot() {
            p.modify(fd, Token(2), Interest::PRIORITY, mode).unwrap();
            let r = wait_for(&mut p, Token(2), LONG);
            assert!(
                r.is_some_and(|r| r.priority),
                "{mode:?}: modify re-arms, still unread: {r:?}"
            );
            assert!(
                wait_once(&mut p, Some(SHORT)).is_empty(),
                "{mode:?}: disarmed"
            );
        } else {
            // Edge: a new arrival is a new report.
            assert_eq!(recv_oob(&a), Some(b'1'));
            send_oob(&b, b'2');
            let r = wait_for(&mut p, Token(1), LONG);
            assert!(
                r.is_some_and(|r| r.priority),
                "{mode:?}: second arrival {r:?}"
            );
        }
        p.deregister(fd).unwrap();
    }
}
