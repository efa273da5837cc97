//! Starting the event loops for an accept strategy, and stopping them.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pollbench_common::cores;
use poller::{BackendKind, Waker};

use crate::cli::{AcceptStrategy, Config};
use crate::event_loop::{Handoff, Intake, LoopSpec};
use crate::listener::{bind, ConnLimit};
use crate::stats::SharedCounters;

/// A running server of any kind: event loops or a baseline.
pub struct Running {
    /// The address it listens on (port 0 resolved).
    pub addr: SocketAddr,
    /// One per thread (the baselines have one).
    pub counters: Vec<Arc<SharedCounters>>,
    /// The core each thread is pinned to.
    pub cores: Vec<Option<usize>>,
    /// Set on stop; every thread checks it when woken.
    pub shutdown: Arc<AtomicBool>,
    /// One per event loop, in loop order: wakes the loop from its wait.
    pub wakers: Vec<Waker>,
    /// Every thread started (loops, acceptor); one ending before stop means the server failed.
    pub threads: Vec<JoinHandle<io::Result<()>>>,
    /// Stops what `wakers` cannot reach (a thread blocked in accept, a tokio runtime).
    pub extra_stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Running {
    /// A thread ended before shutdown: the server cannot go on.
    pub fn failed(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }

    /// Ask every thread to stop and wait for them; the first error, if any.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown.store(true, Ordering::Release);
        for w in &self.wakers {
            let _ = w.wake();
        }
        if let Some(stop) = self.extra_stop.take() {
            stop();
        }
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_) => result = result.and(Err(io::Error::other("an event loop panicked"))),
            }
        }
        result
    }
}

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

/// The core to pin each of `threads` threads to, with `--pin`: thread i on the i-th core this
/// process may run on, round robin ([`pollbench_common::cores::server_cores`]); `None` without
/// `--pin`, or when no core is known.
pub fn pin_plan(threads: usize, pin: bool) -> Vec<Option<usize>> {
    let cores = if pin {
        cores::server_cores(threads)
    } else {
        Vec::new()
    };
    (0..threads).map(|i| cores.get(i).copied()).collect()
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
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(n);
    let mut threads = Vec::with_capacity(n + 1);
    for (i, intake) in intakes.into_iter().enumerate() {
        let spec = LoopSpec {
            id: i,
            intake,
            mode,
            buf_size: cfg.buf_size,
            events: cfg.events,
            busy_poll: cfg.busy_poll,
            limit: limit.clone(),
            counters: counters[i].clone(),
            shutdown: shutdown.clone(),
            ready: ready_tx.clone(),
        };
        threads.push(spawn_loop(kind, spec, cores[i])?);
    }
    let wakers = wait_until_ready(&ready_rx, n)?;

    let mut extra_stop: Option<Box<dyn FnOnce() + Send>> = None;
    if let Some(acceptor) = acceptor {
        threads.push(spawn_acceptor(
            acceptor,
            wakers.clone(),
            limit.clone(),
            shutdown.clone(),
        )?);
        extra_stop = Some(Box::new(move || poke(addr)));
    }
    Ok(Running {
        addr,
        counters,
        cores,
        shutdown,
        wakers,
        threads,
        extra_stop,
    })
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

/// Spawn the thread of one event loop, pinned to `core` if any.
fn spawn_loop(
    kind: BackendKind,
    spec: LoopSpec,
    core: Option<usize>,
) -> io::Result<JoinHandle<io::Result<()>>> {
    std::thread::Builder::new()
        .name(format!("loop-{}", spec.id))
        .spawn(move || {
            if let Some(core) = core {
                cores::pin_current(core);
            }
            kind.with(spec)?
        })
}

/// Wait until each of the `n` loops reports ready; their wakers, in loop order (loops become ready
/// in any order; wakers[i] must be loop i's). The first loop that failed to start is the error.
fn wait_until_ready(
    ready: &crossbeam_channel::Receiver<(usize, io::Result<Waker>)>,
    n: usize,
) -> io::Result<Vec<Waker>> {
    let mut wakers: Vec<Option<Waker>> = vec![None; n];
    for _ in 0..n {
        match ready.recv() {
            Ok((i, Ok(w))) => wakers[i] = Some(w),
            Ok((_, Err(e))) => return Err(e),
            Err(_) => return Err(io::Error::other("an event loop ended before it was ready")),
        }
    }
    Ok(wakers
        .into_iter()
        .map(|w| w.expect("every loop reported"))
        .collect())
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
