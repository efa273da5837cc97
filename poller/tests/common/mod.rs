//! Helpers shared by the poller's integration tests: socket pairs, event collection, visible skips.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use poller::{Backend, Event, Events, Token};

/// Print a skip line that test-output capture does not swallow, so it is seen in CI logs.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(io::stderr(), "skipped: {test}: {why}");
}

/// The soft open-files limit (`RLIMIT_NOFILE`); `u64::MAX` when unlimited.
pub fn open_files_limit() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid rlimit for getrlimit to fill.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
    if rl.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    // rlim_t is u64 on Linux and macOS, i64 on FreeBSD.
    #[allow(clippy::unnecessary_cast)]
    let soft = rl.rlim_cur as u64;
    soft
}

/// Descriptors kept free beyond what a test itself opens: stdio, the harness, the backends' own
/// descriptors and whatever the tests running in parallel hold (at most a few hundred).
pub const HEADROOM: u64 = 256;

/// Whether a test that opens `needed` descriptors fits under the open-files limit (with
/// [`HEADROOM`] to spare). If not, prints `skipped: <test>: needs N descriptors, open-files limit
/// is L` so the skip is seen, instead of failing on `EMFILE` halfway through.
pub fn descriptors_fit(test: &str, needed: u64) -> bool {
    let limit = open_files_limit();
    if needed.saturating_add(HEADROOM) <= limit {
        return true;
    }
    skip(
        test,
        &format!("needs {needed} descriptors, open-files limit is {limit} (raise `ulimit -n`)"),
    );
    false
}

/// A backend instance, or `None` after printing why it is unavailable here.
pub fn backend<B: Backend>(test: &str) -> Option<B> {
    match B::new() {
        Ok(b) => Some(b),
        Err(e) => {
            skip(test, &format!("{} is not available here: {e}", B::KIND));
            None
        }
    }
}

/// A connected loopback TCP pair, both ends non-blocking, Nagle off.
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let a = TcpStream::connect(listener.local_addr().unwrap()).expect("connect loopback");
    let (b, _) = listener.accept().expect("accept");
    for s in [&a, &b] {
        s.set_nonblocking(true).unwrap();
        s.set_nodelay(true).unwrap();
    }
    (a, b)
}

/// A connected Unix stream pair, non-blocking.
pub fn unix_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// Readiness of one token, merged over all its events of one wait (kqueue reports the read and
/// write filters of an fd as separate events).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    pub error: bool,
    pub hangup: bool,
    pub read_hangup: bool,
    pub priority: bool,
}

impl Ready {
    pub fn merge(&mut self, e: &Event) {
        self.readable |= e.is_readable();
        self.writable |= e.is_writable();
        self.error |= e.is_error();
        self.hangup |= e.is_hangup();
        self.read_hangup |= e.is_read_hangup();
        self.priority |= e.is_priority();
    }
}

/// One wait, its events merged per token.
pub fn wait_once<B: Backend>(b: &mut B, timeout: Option<Duration>) -> BTreeMap<Token, Ready> {
    let mut events = Events::with_capacity(256);
    b.wait(&mut events, timeout).expect("wait");
    let mut out = BTreeMap::new();
    for e in &events {
        out.entry(e.token()).or_insert_with(Ready::default).merge(e);
    }
    out
}

/// Wait until `token` is reported (or `limit` passes); returns its merged readiness.
pub fn wait_for<B: Backend>(b: &mut B, token: Token, limit: Duration) -> Option<Ready> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let got = wait_once(b, Some(left));
        if let Some(r) = got.get(&token) {
            return Some(*r);
        }
        if left.is_zero() {
            return None;
        }
    }
}

/// Read everything available from a non-blocking stream; returns the byte count (EOF stops too).
pub fn drain(mut s: impl Read) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("read: {e}"),
        }
    }
}
