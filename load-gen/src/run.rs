//! `load-gen run`: refuse what cannot run here, connect, start the load threads together, watch
//! them to the end of the measured window, and report what they measured.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pollbench_schema::run::Errors;

use crate::cli::{unix_now, RunArgs};
use crate::connect;
use crate::measure::WorkerResult;
use crate::progress::{alive_counters, watch};
use crate::results;
use crate::worker::{self, Plan, WorkerSpec};

/// Run load as `args` say; the exit status.
pub fn run(args: RunArgs) -> i32 {
    // Punctual timers for this thread and every thread it starts (they inherit it); each load
    // thread sets its own too.
    worker::minimal_timer_slack();
    // Refused before any connection is made.
    let plan = match plan(&args) {
        Ok(plan) => Arc::new(plan),
        Err(why) => {
            eprintln!("load-gen: {why}");
            return 2;
        }
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(args.connections);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, stop.clone());
    }

    // Connect: each thread its share, in parallel, paced by --connect-rate.
    let connected = match connect::connect_all(&args, threads, &stop) {
        Ok(c) => c,
        Err(e) => return cannot_start_threads(threads, &e),
    };
    let working: usize = connected.shares.iter().map(Vec::len).sum();
    if working == 0 {
        eprintln!(
            "load-gen: cannot connect to {}: {}",
            args.target,
            connected.first_error.as_deref().unwrap_or("interrupted")
        );
        return 1;
    }

    // Run (together with the other clients, with --start-at).
    wait_for_start(args.start_at, &stop);
    let load = match load(&args, &plan, &stop, connected.shares, threads) {
        Ok(load) => load,
        Err(code) => return code,
    };
    finish(&args, load, connected.idle, connected.errors, working)
}

/// What the load threads measured, and when.
struct Load {
    results: Vec<WorkerResult>,
    /// The wall-clock time the measured window opened.
    window_wall: SystemTime,
    /// How long the measured window lasted (shorter than --duration if the run stopped early).
    measured: Duration,
    /// Why the run stopped before the end of the window, as the watcher saw it.
    stopped_early: Option<String>,
    /// The process's CPU time in the measured window.
    cpu: Duration,
}

/// Start one load thread per share, watch them to the end of the measured window (or until the run
/// stops early), and join them; or the exit status if they could not be started or one failed.
fn load(
    args: &RunArgs,
    plan: &Arc<Plan>,
    stop: &Arc<AtomicBool>,
    shares: Vec<Vec<(usize, TcpStream)>>,
    threads: usize,
) -> Result<Load, i32> {
    let start = Instant::now() + Duration::from_millis(5);
    // The wall-clock time the measured window opens (after the warm-up): the hlog's StartTime, to
    // which its intervals are relative, and what `merge` aligns logs from several clients on.
    let window_wall = SystemTime::now() + Duration::from_millis(5) + args.warmup;
    let cpu_before = pollbench_common::process_cpu_time();
    let progress: Vec<Arc<AtomicU64>> = (0..threads).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let alive = alive_counters(&shares);
    let shared = Shared { plan, start, stop };
    let handles = match spawn_workers(args, shares, &shared, &progress, &alive) {
        Ok(handles) => handles,
        Err(e) => return Err(cannot_start_threads(threads, &e)),
    };
    let mut window_cpu = None;
    let stopped_early = watch(args, start, stop, &progress, &alive, &mut window_cpu);
    stop.store(true, Ordering::Relaxed);
    let results = match join_workers(handles) {
        Ok(results) => results,
        Err(why) => {
            eprintln!("load-gen: {why}");
            return Err(1);
        }
    };
    // The CPU of the measured window (from its opening, through the workers' last messages),
    // for the messages measured in it; the warm-up's when the window never opened.
    let cpu = pollbench_common::process_cpu_time().saturating_sub(window_cpu.unwrap_or(cpu_before));
    let end = Instant::now();
    let measured = end
        .saturating_duration_since(start + args.warmup)
        .min(args.duration);
    Ok(Load {
        results,
        window_wall,
        measured,
        stopped_early,
        cpu,
    })
}

/// Report the run: the summary on stdout, --json and --hlog, with the errors of connecting
/// (`connect_errors`) and of the `idle` connections counted in; the exit status.
fn finish(
    args: &RunArgs,
    load: Load,
    idle: Vec<(usize, TcpStream)>,
    connect_errors: Errors,
    working: usize,
) -> i32 {
    let idle_errors = connect::idle_errors(&idle);
    drop(idle);

    let mut merged = results::merge(load.results);
    merged.errors.add(&connect_errors);
    merged.errors.add(&idle_errors);
    let report = results::report(
        args,
        &merged,
        working,
        (load.window_wall, load.measured),
        load.stopped_early,
        load.cpu,
    );
    if let Some(fatal) = &merged.fatal {
        eprintln!("load-gen: {fatal}");
    }
    print!("{}", results::summary(&report, args.rate.is_some()));
    let outputs = results::write_outputs(args, &report, &merged, load.window_wall, load.measured);
    // A run that completed no message measured nothing: that is a failure, not a result (said
    // unless the run already stopped for a reason given above).
    if report.messages == 0 && merged.fatal.is_none() {
        eprintln!(
            "load-gen: no message completed inside the measured window ({} unfinished)",
            report.unfinished_messages
        );
    }
    let clean = report.failure_summary().is_none();
    i32::from(!(clean && outputs))
}

/// With `--start-at`, sleep until then (until `stop`, at the latest); a time already past is
/// said on stderr.
fn wait_for_start(start_at: Option<f64>, stop: &AtomicBool) {
    let Some(at) = start_at else {
        return;
    };
    let late = unix_now() - at;
    if late > 0.0 {
        eprintln!(
            "load-gen: --start-at was {:.0} ms ago once connected: starting now",
            late * 1e3
        );
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        let left = at - unix_now();
        if left <= 0.0 {
            return;
        }
        std::thread::sleep(Duration::from_secs_f64(left.min(0.05)));
    }
}

/// A thread could not be started (too many for this machine's memory or process limits): a
/// one-line error and exit status 2, as for any option this machine cannot honour.
fn cannot_start_threads(threads: usize, e: &std::io::Error) -> i32 {
    eprintln!("load-gen: cannot start {threads} threads ({e}); ask for fewer with --threads");
    2
}

/// The most memory a run may need for its in-flight messages (see `worker::in_flight_bound`).
const MAX_IN_FLIGHT_BYTES: u64 = 2 << 30;

/// The run's plan, or why these options cannot run here: a backend this machine lacks, or more
/// memory for in-flight messages than the limit.
fn plan(args: &RunArgs) -> Result<Plan, String> {
    args.backend
        .probe()
        .map_err(|why| format!("--backend {}: {why}", args.backend))?;
    let plan = Plan {
        size: args.size,
        pipeline: args.pipeline,
        rate: args.rate.map(|r| r as f64),
        connections: args.connections,
        warmup: args.warmup,
        duration: args.duration,
        timeout: args.timeout,
        spin: args.spin,
        messages_per_connection: args.messages_per_connection,
        connect_timeout: args.connect_timeout,
        target: args.target,
        source: args.source.clone(),
    };
    let in_flight_bytes = worker::in_flight_bound(&plan).saturating_mul(worker::IN_FLIGHT_BYTES);
    if in_flight_bytes > MAX_IN_FLIGHT_BYTES {
        return Err(format!(
            "this run could hold {} MiB of messages in flight (connections x pipeline, plus rate x timeout in open loop), over the {} MiB limit: lower --pipeline, --rate or --timeout",
            in_flight_bytes >> 20,
            MAX_IN_FLIGHT_BYTES >> 20
        ));
    }
    Ok(plan)
}

/// What every load thread shares.
struct Shared<'a> {
    plan: &'a Arc<Plan>,
    start: Instant,
    stop: &'a Arc<AtomicBool>,
}

/// One load thread per share, each pinned to its core of --cpus if given. Fails only when a thread
/// cannot be started; the ones started are then stopped and joined.
fn spawn_workers(
    args: &RunArgs,
    shares: Vec<Vec<(usize, TcpStream)>>,
    shared: &Shared,
    progress: &[Arc<AtomicU64>],
    alive: &[Arc<AtomicU64>],
) -> std::io::Result<Vec<std::thread::JoinHandle<std::io::Result<WorkerResult>>>> {
    let mut handles = Vec::with_capacity(shares.len());
    for (i, conns) in shares.into_iter().enumerate() {
        let spec = WorkerSpec {
            conns,
            plan: shared.plan.clone(),
            start: shared.start,
            stop: shared.stop.clone(),
            progress: progress[i].clone(),
            alive: alive[i].clone(),
        };
        let backend = args.backend;
        let core = args
            .cpus
            .as_ref()
            .map(|c| pollbench_common::cores::round_robin(&c.0, i));
        let spawned = std::thread::Builder::new()
            .name(format!("load-{i}"))
            .spawn(move || {
                worker::minimal_timer_slack();
                if let Some(id) = core {
                    if !pollbench_common::cores::pin_current(id) {
                        return Err(std::io::Error::other(format!("cannot pin to core {id}")));
                    }
                }
                backend.with(spec)?
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    Ok(handles)
}

/// Every load thread's measurements, or why one has none.
fn join_workers(
    handles: Vec<std::thread::JoinHandle<std::io::Result<WorkerResult>>>,
) -> Result<Vec<WorkerResult>, String> {
    handles
        .into_iter()
        .map(|h| match h.join() {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(format!("a worker failed: {e}")),
            Err(_) => Err("a worker panicked".into()),
        })
        .collect()
}
