//! The baselines a report compares the event loops with: a blocking thread per connection, and the
//! idiomatic tokio echo server (a task per connection). Same buffer size, same limit, same counters.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slab::Slab;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::Config;
use crate::listener::{bind, ConnLimit};
use crate::running::{pin_plan, Running};
use crate::server::poke;
use crate::stats::{Counts, SharedCounters};
use crate::work::{Work, WorkMeter};

/// Counters are added to the shared ones every this many reads, or once this long has passed since
/// the last time, and at close, so that the baselines do not pay a contended atomic per message
/// (the event loops publish once per wait) while the server's readings of every second
/// (`seconds`) still see a quiet connection's traffic within a tenth of a second.
const FLUSH_EVERY: u64 = 256;
const FLUSH_AFTER: Duration = Duration::from_millis(100);

fn flush(shared: &SharedCounters, local: &mut Counts) {
    shared.add(local);
    *local = Counts::default();
}

/// [`flush`] if enough reads or enough time have gone by since `flushed`.
fn flush_if_due(shared: &SharedCounters, local: &mut Counts, flushed: &mut Instant) {
    if local.reads >= FLUSH_EVERY || flushed.elapsed() >= FLUSH_AFTER {
        flush(shared, local);
        *flushed = Instant::now();
    }
}

/// Count an accepted connection at once (the rest is batched per connection), with the accept
/// call that returned it, and take its slot in the limit; false (counted as rejected) at the limit.
fn accept_counted(shared: &SharedCounters, limit: &ConnLimit) -> bool {
    let acquired = limit.try_acquire();
    shared.add(&Counts {
        accepted: 1,
        rejected: u64::from(!acquired),
        syscalls: 1,
        ..Counts::default()
    });
    acquired
}

/// Refuse an accepted connection that cannot be served (no descriptor or no thread for it): count
/// it as rejected and give its slot in the limit back. The caller drops the socket.
fn refuse(shared: &SharedCounters, limit: &ConnLimit) {
    shared.add(&Counts {
        rejected: 1,
        ..Counts::default()
    });
    limit.release();
}

/// How long shutdown waits for the connection threads to count what they echoed and end.
const THREADS_STOP_GRACE: Duration = Duration::from_secs(1);

/// `--backend threads`: one thread accepts, and each connection gets a blocking thread. Its
/// calls are counted like an event loop's: every accept, read and write call (`registrations`
/// and `would_block` stay 0: no poller, blocking sockets).
///
/// Connection threads block in `read`, where no flag reaches them. Each registers a handle of its
/// socket, so shutdown can shut the sockets down: every blocked read returns, the thread counts what
/// it echoed and ends, and the statistics are complete.
pub fn start_threads(cfg: &Config) -> io::Result<Running> {
    let listener = bind(cfg.addr, false, false)?;
    let addr = listener.local_addr()?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let limit = Arc::new(ConnLimit::new(cfg.max_conns));
    let counters = Arc::new(SharedCounters::new(true, false));
    let open: Arc<Mutex<Slab<TcpStream>>> = Arc::default();
    let (stop, shared, buf_size, work) =
        (shutdown.clone(), counters.clone(), cfg.buf_size, cfg.work);
    let registry = open.clone();
    let acceptor = std::thread::Builder::new()
        .name("acceptor".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let Ok((stream, _)) = listener.accept() else {
                    shared.add(&Counts {
                        syscalls: 1, // the failed accept
                        ..Counts::default()
                    });
                    std::thread::sleep(std::time::Duration::from_millis(10)); // EMFILE: back off
                    continue;
                };
                if stop.load(Ordering::Acquire) {
                    break;
                }
                if !accept_counted(&shared, &limit) {
                    continue;
                }
                let Ok(handle) = stream.try_clone() else {
                    refuse(&shared, &limit); // no descriptor for the handle (EMFILE)
                    continue;
                };
                let key = registry.lock().expect("registry").insert(handle);
                let (conn_limit, conn_shared) = (limit.clone(), shared.clone());
                let conn_registry = registry.clone();
                let spawned = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        let mut stream = stream;
                        let mut c = Counts::default();
                        serve_blocking(&mut stream, buf_size, work, &conn_shared, &mut c);
                        // Count before closing: the client sees the close and may stop the
                        // server at once.
                        c.closed += 1;
                        flush(&conn_shared, &mut c);
                        conn_limit.release();
                        conn_registry.lock().expect("registry").remove(key);
                        drop(stream);
                    });
                if spawned.is_err() {
                    registry.lock().expect("registry").remove(key);
                    refuse(&shared, &limit); // out of threads; the server goes on
                }
            }
            Ok(())
        })?;
    Ok(Running {
        addr,
        counters: vec![counters],
        cores: vec![None],
        shutdown,
        threads: vec![acceptor],
        // A thread blocked in accept, and every connection's thread blocked in a read.
        wake: Box::new(move || {
            poke(addr);
            for (_, s) in open.lock().expect("registry").iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
            let deadline = Instant::now() + THREADS_STOP_GRACE;
            while !open.lock().expect("registry").is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }),
    })
}

/// Echo until end-of-file or an error, counting every read and write call (each write, not each
/// echo: a partial write is one call, and the rest another). `--work` is spun on the connection's
/// own thread, before the echo of what completed a message.
fn serve_blocking(
    stream: &mut TcpStream,
    buf_size: usize,
    work: Option<Work>,
    shared: &SharedCounters,
    c: &mut Counts,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; buf_size];
    let mut flushed = Instant::now();
    let mut meter = WorkMeter::new(work);
    loop {
        c.syscalls += 1;
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                c.reads += 1; // end-of-file counts, as in the event loops
                return;
            }
            Err(_) => return,
            Ok(n) => n,
        };
        c.reads += 1;
        c.bytes_in += n as u64;
        meter.charge(n);
        let mut done = 0;
        while done < n {
            c.syscalls += 1;
            match stream.write(&buf[done..n]) {
                Ok(0) | Err(_) => return,
                Ok(w) => {
                    c.writes += 1;
                    c.bytes_out += w as u64;
                    done += w;
                }
            }
        }
        flush_if_due(shared, c, &mut flushed);
    }
}

/// `--backend tokio`: the idiomatic tokio echo server on a multi-threaded runtime. Its calls are
/// not counted (`syscalls`, `registrations`, `would_block` are `null`): a read or write through
/// tokio is zero system calls or more (one that would block returns Pending, and tokio retries it
/// after its own epoll wait), and tokio's registrations and waits happen inside the runtime.
pub fn start_tokio(cfg: &Config) -> io::Result<Running> {
    let listener = bind(cfg.addr, false, true)?;
    let addr = listener.local_addr()?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let limit = Arc::new(ConnLimit::new(cfg.max_conns));
    let counters = Arc::new(SharedCounters::new(false, false));
    let cores = pin_plan(cfg.threads, cfg.pinned);
    let next_core = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pin_cores = cores.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_io()
        .enable_time()
        .on_thread_start(move || {
            let i = next_core.fetch_add(1, Ordering::Relaxed);
            if let Some(Some(core)) = pin_cores.get(i) {
                pollbench_common::cores::pin_current(*core);
            }
        })
        .build()?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (shared, buf_size, work) = (counters.clone(), cfg.buf_size, cfg.work);
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    runtime.spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop_rx.changed() => return,
                a = listener.accept() => a,
            };
            let Ok((mut stream, _)) = accepted else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await; // EMFILE: back off
                continue;
            };
            if !accept_counted(&shared, &limit) {
                continue;
            }
            let task = TaskCounters {
                c: Counts::default(),
                shared: shared.clone(),
                limit: limit.clone(),
            };
            tokio::spawn(async move {
                let mut task = task;
                serve_tokio(&mut stream, buf_size, work, &mut task).await;
                task.c.closed += 1;
                // Count before closing: the client sees the close and may stop the server at once.
                drop(task);
                drop(stream);
            });
        }
    });
    // This thread owns the runtime until stop; then it ends the accept loop and shuts the runtime
    // down: every connection task is dropped at its next await, and its TaskCounters add what it
    // counted. The second is for the worker threads to finish dropping them.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::Builder::new()
        .name("tokio-runtime".into())
        .spawn(move || {
            let _ = done_rx.recv();
            let _ = stop_tx.send(true);
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            Ok(())
        })?;
    Ok(Running {
        addr,
        counters: vec![counters],
        cores,
        shutdown,
        threads: vec![holder],
        // The runtime's holder thread waits for this channel to close.
        wake: Box::new(move || drop(done_tx)),
    })
}

/// A tokio connection task's counters. They are added to the shared ones as [`flush_if_due`] says
/// and when the task ends, however it ends: on `Drop`, so that the tasks the runtime's shutdown
/// drops at an await (connections still open at SIGTERM) are counted too, with nothing added per
/// read. Dropping also gives the connection's slot in the limit back.
struct TaskCounters {
    c: Counts,
    shared: Arc<SharedCounters>,
    limit: Arc<ConnLimit>,
}

impl Drop for TaskCounters {
    fn drop(&mut self) {
        flush(&self.shared, &mut self.c);
        self.limit.release();
    }
}

/// Echo until end-of-file or an error. Every read and every write is counted as soon as it returns,
/// before the next await, so the counts are exact wherever the task is dropped. (`write_all` would
/// lose a partly written echo's bytes if dropped between its writes.) `--work` is spun in the
/// task, on its worker thread, as a CPU-bound handler would: that worker serves nothing else
/// meanwhile.
async fn serve_tokio(
    stream: &mut tokio::net::TcpStream,
    buf_size: usize,
    work: Option<Work>,
    task: &mut TaskCounters,
) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; buf_size];
    let mut flushed = Instant::now();
    let mut meter = WorkMeter::new(work);
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => {
                task.c.reads += 1; // end-of-file counts, as in the event loops
                return;
            }
            Err(_) => return,
            Ok(n) => n,
        };
        task.c.reads += 1;
        task.c.bytes_in += n as u64;
        meter.charge(n);
        let mut done = 0;
        while done < n {
            match stream.write(&buf[done..n]).await {
                Ok(0) | Err(_) => return,
                Ok(w) => {
                    task.c.writes += 1;
                    task.c.bytes_out += w as u64;
                    done += w;
                }
            }
        }
        flush_if_due(&task.shared, &mut task.c, &mut flushed);
    }
}
