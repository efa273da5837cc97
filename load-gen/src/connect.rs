//! Connecting: the connections a run opens before it starts, each load thread's share, the idle
//! ones checked at the end, and the sockets that churn opens without blocking.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pollbench_schema::run::Errors;

use crate::cli::RunArgs;

/// What one connector thread opened, and what failed.
struct Connected {
    conns: Vec<(usize, TcpStream)>,
    errors: Errors,
    first_error: Option<String>,
}

/// A connected (blocking) TCP socket, or the error of the attempt; at most `timeout` long.
fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let socket = client_socket(target, source)?;
    socket.connect_timeout(&target.into(), timeout)?;
    Ok(socket.into())
}

/// Open every connection (busy and idle), each of `threads` threads its share, paced by
/// --connect-rate, and sort them. Fails only when a thread cannot be started; the ones started are
/// stopped first.
pub fn connect_all(
    args: &RunArgs,
    threads: usize,
    stop: &AtomicBool,
) -> std::io::Result<Connections> {
    let total = args.connections + args.idle;
    let pace = (args.connect_rate > 0)
        .then(|| Duration::from_secs_f64(threads as f64 / args.connect_rate as f64));
    let connect_share = |t: usize| {
        let mut conns = Vec::new();
        let mut errors = Errors::default();
        let mut first_error = None;
        for index in (t..total).step_by(threads) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let source = (!args.source.is_empty()).then(|| args.source[index % args.source.len()]);
            match connect(args.target, source, args.connect_timeout) {
                Ok(stream) => conns.push((index, stream)),
                Err(e) => {
                    errors.connect += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
            if let Some(p) = pace {
                std::thread::sleep(p);
            }
        }
        Connected {
            conns,
            errors,
            first_error,
        }
    };
    std::thread::scope(|s| {
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let spawned = std::thread::Builder::new()
                .name(format!("connect-{t}"))
                .spawn_scoped(s, move || connect_share(t));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // The scope joins the threads already started once they see the stop flag.
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        let connected = handles
            .into_iter()
            .map(|h| h.join().expect("a connector thread does not panic"))
            .collect();
        Ok(Connections::sort(connected, args.connections))
    })
}

/// The connections opened, sorted: each load thread's busy share, and the idle ones.
pub struct Connections {
    pub shares: Vec<Vec<(usize, TcpStream)>>,
    pub idle: Vec<(usize, TcpStream)>,
    pub errors: Errors,
    pub first_error: Option<String>,
}

impl Connections {
    /// Connections with an index below `busy` carry load; the rest stay silent.
    fn sort(connected: Vec<Connected>, busy: usize) -> Connections {
        let mut out = Connections {
            shares: Vec::with_capacity(connected.len()),
            idle: Vec::new(),
            errors: Errors::default(),
            first_error: None,
        };
        for c in connected {
            out.errors.add(&c.errors);
            out.first_error = out.first_error.or(c.first_error);
            let (share, silent): (Vec<_>, Vec<_>) =
                c.conns.into_iter().partition(|(i, _)| *i < busy);
            out.shares.push(share);
            out.idle.extend(silent);
        }
        out
    }
}

/// Idle connections must still be open at the end: a server that closed them (select cannot watch
/// descriptors above FD_SETSIZE) did not really hold them, and the run must say so.
pub fn idle_errors(idle: &[(usize, TcpStream)]) -> Errors {
    let mut errors = Errors::default();
    for (_, stream) in idle {
        let _ = stream.set_nonblocking(true);
        match std::io::Read::read(&mut &*stream, &mut [0u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(0) => errors.closed += 1,
            Ok(_) => errors.mismatch += 1, // the server sent something nobody asked for
            Err(_) => errors.reset += 1,
        }
    }
    errors
}

/// A TCP socket of `target`'s address family, not yet connected, bound to `source` if given.
fn client_socket(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        None,
    )?;
    if let Some(ip) = source {
        bind_address_no_port(&socket);
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    Ok(socket)
}

/// A non-blocking TCP socket whose connect() to `target` has begun.
pub fn start_connect(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = client_socket(target, source)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// Let connect(), not bind(), pick the local port of a socket bound to a source address, so the
/// port is chosen for the 4-tuple and TIME_WAIT ports can be reused (bind(ip, 0) alone reserves a
/// port for every destination, and under churn slows connect() to a crawl). Best effort.
fn bind_address_no_port(socket: &socket2::Socket) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: the descriptor is the socket's own, open for this call; the option value points
        // to a live c_int whose size is passed with it.
        let _ = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket; // IP_BIND_ADDRESS_NO_PORT is Linux's: bind(ip, 0) as it is
}
