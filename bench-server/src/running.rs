//! A running server, whatever its kind (poller event loops, completion loops, a baseline): its
//! threads and how to stop them; and the one way loop threads are started.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use pollbench_common::cores;

use crate::stats::SharedCounters;

/// A running server of any kind.
pub struct Running {
    /// The address it listens on (port 0 resolved).
    pub addr: SocketAddr,
    /// One per thread (the baselines have one).
    pub counters: Vec<Arc<SharedCounters>>,
    /// The core each thread is pinned to.
    pub cores: Vec<Option<usize>>,
    /// Set on stop; every thread checks it when woken.
    pub shutdown: Arc<AtomicBool>,
    /// Every thread started (loops, acceptor); one ending before stop means the server failed.
    pub threads: Vec<JoinHandle<io::Result<()>>>,
    /// Wakes every thread of this kind once `shutdown` is set: each loop's waker, a thread
    /// blocked in accept, a tokio runtime's stop signal.
    pub wake: Box<dyn FnOnce() + Send>,
}

impl Running {
    /// A server of loop threads: stopping wakes each loop with its waker, then runs `also`
    /// (what else waits and must be woken: a thread blocked in accept).
    pub fn of_loops<W: LoopWaker>(
        addr: SocketAddr,
        counters: Vec<Arc<SharedCounters>>,
        loops: Loops<W>,
        also: impl FnOnce() + Send + 'static,
    ) -> Running {
        let Loops {
            cores,
            shutdown,
            wakers,
            threads,
        } = loops;
        Running {
            addr,
            counters,
            cores,
            shutdown,
            threads,
            wake: Box::new(move || {
                for w in &wakers {
                    w.wake_loop();
                }
                also();
            }),
        }
    }

    /// A thread ended before shutdown: the server cannot go on.
    pub fn failed(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }

    /// Ask every thread to stop and wait for them; the first error, if any.
    pub fn stop(self) -> io::Result<()> {
        self.shutdown.store(true, Ordering::Release);
        (self.wake)();
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

/// What wakes a loop blocked in its wait: its poller's waker, or its ring's.
pub trait LoopWaker: Send + 'static {
    /// Wake the loop. A failed wake is not reported: it is only ever asked for on the way to
    /// stopping, which goes on either way.
    fn wake_loop(&self);
}

/// Where loop `i` says it is ready to serve, with what wakes it (`W`), or why it cannot start.
pub type Ready<W> = Sender<(usize, io::Result<W>)>;

/// Report on `ready` whether loop `id` could be built, and hand the loop back to run if it could.
pub fn announce<L, W>(id: usize, ready: &Ready<W>, built: io::Result<(L, W)>) -> io::Result<L> {
    match built {
        Ok((event_loop, waker)) => {
            let _ = ready.send((id, Ok(waker)));
            Ok(event_loop)
        }
        Err(e) => {
            let _ = ready.send((id, Err(io::Error::new(e.kind(), e.to_string()))));
            Err(e)
        }
    }
}

/// The loop threads [`spawn_loops`] started, and what stops them.
pub struct Loops<W> {
    /// The core each loop is pinned to.
    pub cores: Vec<Option<usize>>,
    /// Set on stop; every loop checks it when woken.
    pub shutdown: Arc<AtomicBool>,
    /// What wakes each loop, in loop order.
    pub wakers: Vec<W>,
    /// The threads, in loop order (a server may add its own: an acceptor).
    pub threads: Vec<JoinHandle<io::Result<()>>>,
}

/// Start a thread per loop (`loop-i`, pinned to `cores[i]` if any) running `starts[i](i, ready)`,
/// which builds the loop, [`announce`]s it and runs it. Returns once every loop is ready (they
/// become ready in any order). If one cannot
/// start, those that did are stopped (`shutdown` set, then each woken) and its error returned.
pub fn spawn_loops<W, S>(
    starts: Vec<S>,
    cores: Vec<Option<usize>>,
    shutdown: Arc<AtomicBool>,
) -> io::Result<Loops<W>>
where
    W: LoopWaker,
    S: FnOnce(usize, Ready<W>) -> io::Result<()> + Send + 'static,
{
    let n = starts.len();
    let (ready, reports) = crossbeam_channel::bounded(n);
    let mut threads = Vec::with_capacity(n + 1);
    for (i, start) in starts.into_iter().enumerate() {
        let (ready, core) = (ready.clone(), cores.get(i).copied().flatten());
        threads.push(
            std::thread::Builder::new()
                .name(format!("loop-{i}"))
                .spawn(move || {
                    if let Some(core) = core {
                        cores::pin_current(core);
                    }
                    start(i, ready)
                })?,
        );
    }
    drop(ready); // so that loops that all ended unannounced end the wait below
    let mut wakers: Vec<Option<W>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let failure = match reports.recv() {
            Ok((i, Ok(w))) => {
                wakers[i] = Some(w);
                continue;
            }
            Ok((_, Err(e))) => e,
            Err(_) => io::Error::other("an event loop ended before it was ready"),
        };
        shutdown.store(true, Ordering::Release);
        for w in wakers.iter().flatten() {
            w.wake_loop();
        }
        return Err(failure);
    }
    let wakers = wakers
        .into_iter()
        .map(|w| w.expect("every loop reported"))
        .collect();
    Ok(Loops {
        cores,
        shutdown,
        wakers,
        threads,
    })
}
