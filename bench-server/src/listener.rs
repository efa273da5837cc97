//! Listening sockets: one per loop with SO_REUSEPORT, or one shared, via socket2.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog: deep enough that connection bursts of benchmarks are not refused.
const BACKLOG: i32 = 4096;

/// A listening socket (close-on-exec, as socket2 makes every socket), non-blocking unless the
/// caller accepts in a thread of its own.
pub fn bind(addr: SocketAddr, reuse_port: bool, nonblocking: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
    }
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(nonblocking)?;
    Ok(socket.into())
}

/// The global connection limit (--max-conns), shared by every loop and the acceptor.
pub struct ConnLimit {
    open: AtomicUsize,
    max: usize,
}

impl ConnLimit {
    pub fn new(max: usize) -> ConnLimit {
        ConnLimit {
            open: AtomicUsize::new(0),
            max,
        }
    }

    /// Take a slot for a new connection; false at the limit.
    pub fn try_acquire(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Give a slot back when a connection closes.
    pub fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}
