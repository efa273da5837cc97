//! Starting the event loops of a poller backend for an accept strategy, and the acceptor thread.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use poller::{BackendKind, Waker};

use crate::cli::{AcceptStrategy, Config};
use crate::event_loop::{Handoff, Intake, LoopSpec};
use crate::listener::{bind, ConnLimit};
use crate::running::{pin_plan, spawn_loops, LoopWaker, Running};
use crate::stats::SharedCounters;

/// Wake a thread blocked in `accept` on `addr` by connecting to it (it checks the flag first).
pub fn poke(addr: SocketAddr) {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let _ = TcpStream::connect_timeout(&target, Duration::from_millis(200));
}

/// Start `cfg.threads` event loops on backend `kind`: their intakes for the accept strategy, one
/// thread per loop (pinned by [`pin_plan`]), and the acceptor thread if the strategy has one.
/// Returns once every loop is ready to accept.
pub fn start_loops(kind: BackendKind, cfg: &Config) -> io::Result<Running> {
    let accept = cfg
        .accept
        .expect("checked: event loops have an accept strategy");
    let mode = cfg
        .trigger
        .expect("checked: event loops have a trigger")
        .mode();
    let shutdown = Arc::new(AtomicBool::new(false));
    let limit = Arc::new(ConnLimit::new(cfg.max_conns));
    let n = cfg.threads;

    let Intakes {
        addr,
        intakes,
        acceptor,
    } = intakes(accept, cfg.addr, n)?;
    let cores = pin_plan(n, cfg.pinned);
    // The acceptor strategy's loops wait on no listener: their listener wake-ups are `null`.
    let listens = accept != AcceptStrategy::Acceptor;
    let counters: Vec<_> = (0..n)
        .map(|_| Arc::new(SharedCounters::new(true, listens)))
        .collect();
    let starts: Vec<_> = intakes
        .into_iter()
        .zip(&counters)
        .map(|(intake, counters)| {
            let (limit, counters, shutdown) = (limit.clone(), counters.clone(), shutdown.clone());
            let (buf_size, events, busy_poll) = (cfg.buf_size, cfg.events, cfg.busy_poll);
            let work = cfg.work;
            move |id, ready| {
                kind.with(LoopSpec {
                    id,
                    intake,
                    mode,
                    buf_size,
                    events,
                    busy_poll,
                    work,
                    limit,
                    counters,
                    shutdown,
                    ready,
                })?
            }
        })
        .collect();
    let mut loops = spawn_loops(starts, cores, shutdown.clone())?;

    let acceptor = match acceptor {
        Some(acceptor) => {
            loops.threads.push(spawn_acceptor(
                acceptor,
                loops.wakers.clone(),
                limit.clone(),
                shutdown.clone(),
            )?);
            true
        }
        None => false,
    };
    // The loops wait on their wakers; the acceptor in accept(), until a connection comes.
    let poke_acceptor = move || {
        if acceptor {
            poke(addr);
        }
    };
    Ok(Running::of_loops(addr, counters, loops, poke_acceptor))
}

impl LoopWaker for Waker {
    fn wake_loop(&self) {
        let _ = self.wake();
    }
}

/// How connections reach the loops: one intake per loop, the address they listen on (port 0
/// resolved), and the acceptor thread's part when the strategy has one.
struct Intakes {
    addr: SocketAddr,
    intakes: Vec<Intake>,
    acceptor: Option<Acceptor>,
}

/// The `acceptor` strategy's listener, and a channel to each loop in loop order.
struct Acceptor {
    listener: TcpListener,
    senders: Vec<crossbeam_channel::Sender<Handoff>>,
}

/// Bind the listeners of `n` loops for `accept` on `addr`.
fn intakes(accept: AcceptStrategy, addr: SocketAddr, n: usize) -> io::Result<Intakes> {
    match accept {
        AcceptStrategy::Reuseport => reuseport_intakes(addr, n),
        // Checked with the arguments: exclusive only on a backend that has it (never a silent
        // shared listener under the name exclusive).
        AcceptStrategy::Exclusive => shared_intakes(addr, n, true),
        AcceptStrategy::Shared => shared_intakes(addr, n, false),
        AcceptStrategy::Acceptor => acceptor_intakes(addr, n),
    }
}

/// `reuseport`: an SO_REUSEPORT listener per loop, all on the first one's port.
fn reuseport_intakes(addr: SocketAddr, n: usize) -> io::Result<Intakes> {
    let first = bind(addr, true, true)?;
    let addr = first.local_addr()?; // port 0 resolved once; the others share it
    let mut intakes = Vec::with_capacity(n);
    intakes.push(Intake::Listener {
        listener: Arc::new(first),
        exclusive: false,
    });
    for _ in 1..n {
        intakes.push(Intake::Listener {
            listener: Arc::new(bind(addr, true, true)?),
            exclusive: false,
        });
    }
    Ok(Intakes {
        addr,
        intakes,
        acceptor: None,
    })
}

/// `exclusive` and `shared`: one listener registered in every loop, exclusively or not.
fn shared_intakes(addr: SocketAddr, n: usize, exclusive: bool) -> io::Result<Intakes> {
    let listener = Arc::new(bind(addr, false, true)?);
    let intakes = (0..n)
        .map(|_| Intake::Listener {
            listener: listener.clone(),
            exclusive,
        })
        .collect();
    Ok(Intakes {
        addr: listener.local_addr()?,
        intakes,
        acceptor: None,
    })
}

/// `acceptor`: a blocking listener for the acceptor thread, and a channel into every loop.
fn acceptor_intakes(addr: SocketAddr, n: usize) -> io::Result<Intakes> {
    let listener = bind(addr, false, false)?;
    let addr = listener.local_addr()?;
    let (senders, intakes) = (0..n)
        .map(|_| {
            let (tx, rx) = crossbeam_channel::unbounded();
            (tx, Intake::Handoff(rx))
        })
        .unzip();
    Ok(Intakes {
        addr,
        intakes,
        acceptor: Some(Acceptor { listener, senders }),
    })
}

/// Spawn the acceptor thread of the `acceptor` strategy (see [`run_acceptor`]).
fn spawn_acceptor(
    acceptor: Acceptor,
    wakers: Vec<Waker>,
    limit: Arc<ConnLimit>,
    shutdown: Arc<AtomicBool>,
) -> io::Result<JoinHandle<io::Result<()>>> {
    std::thread::Builder::new()
        .name("acceptor".into())
        .spawn(move || {
            run_acceptor(acceptor.listener, acceptor.senders, wakers, limit, shutdown);
            Ok(())
        })
}

/// The `acceptor` strategy: accept here (blocking) and hand sockets round robin to the loops,
/// each with the system calls made for it (see [`Handoff`]).
fn run_acceptor(
    listener: TcpListener,
    senders: Vec<crossbeam_channel::Sender<Handoff>>,
    wakers: Vec<Waker>,
    limit: Arc<ConnLimit>,
    shutdown: Arc<AtomicBool>,
) {
    let mut next = 0;
    // accept() calls since the last connection handed over.
    let mut calls = 0;
    while !shutdown.load(Ordering::Acquire) {
        if !limit.try_acquire() {
            std::thread::sleep(Duration::from_millis(10)); // at --max-conns: leave them in the backlog
            continue;
        }
        calls += 1;
        match listener.accept() {
            Ok((stream, _)) => {
                if shutdown.load(Ordering::Acquire) {
                    break;
                }
                let i = next % senders.len();
                next += 1;
                // The wake-up below is one more call: a write to the loop's eventfd (or pipe).
                let handoff = Handoff {
                    stream,
                    calls: calls + 1,
                };
                calls = 0;
                if senders[i].send(handoff).is_err() {
                    limit.release();
                    break;
                }
                let _ = wakers[i].wake();
            }
            Err(e) => {
                limit.release();
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) {
                    std::thread::sleep(Duration::from_millis(50)); // EMFILE and friends: back off
                }
            }
        }
    }
}
