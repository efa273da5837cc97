//! load-gen: drives thousands of connections against an echo server, verifies every echoed byte,
//! and records latency in HdrHistograms, closed loop or open loop. See `load-gen run --help`.

mod merge;
mod results;
mod stream;
mod worker;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::{Parser, Subcommand};
use pollbench_common::{parse_bytes, parse_count, parse_duration};
use poller::BackendKind;

use pollbench_schema::run::{Errors, Percentiles, RunConfig, RunReport};
use worker::{Plan, WorkerSpec};

/// Load generator for echo servers: thousands of connections, HdrHistogram latency, open and
/// closed loop, every byte verified.
#[derive(Parser)]
#[command(name = "load-gen", version = pollbench_common::VERSION, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run load against one echo server and report throughput, latency and errors.
    ///
    /// Exit status: 0 when the run completed without a single error (connect, mismatch, closed,
    /// reset, timeout); 1 otherwise, after writing all results; 2 for bad arguments.
    Run(Box<RunArgs>),
    /// Merge the --hlog files of several client machines (or runs) into one summary, exactly:
    /// histograms are added, intervals aligned on wall-clock seconds.
    Merge(MergeArgs),
}

#[derive(Parser, Debug)]
struct MergeArgs {
    /// Interval logs written by `load-gen run --hlog`.
    #[arg(required = true, value_name = "HLOG")]
    files: Vec<PathBuf>,

    /// Write the merged results as JSON to FILE (atomically).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn run_merge(args: MergeArgs) -> i32 {
    match merge::merge(&args.files) {
        Err(e) => {
            eprintln!("load-gen: {e}");
            1
        }
        Ok(m) => {
            print!("{}", merge::summary(&m));
            if let Some(note) = &m.note {
                eprintln!("load-gen: {note}");
            }
            if let Some(path) = &args.json {
                if let Err(e) = pollbench_schema::file::write_json_atomically(path, &m) {
                    eprintln!("load-gen: cannot write {}: {e}", path.display());
                    return 1;
                }
            }
            0
        }
    }
}

#[derive(Parser, Debug)]
struct RunArgs {
    /// The echo server, IP:PORT.
    #[arg(long, value_name = "IP:PORT")]
    target: SocketAddr,

    /// Connections that carry load (10k = 10,000).
    #[arg(short = 'c', long, default_value = "1000", value_parser = parse_count, value_name = "N")]
    connections: usize,

    /// Threads, each an event loop over its share of the connections. [default: number of cores]
    #[arg(short = 't', long, value_parser = parse_count, value_name = "N")]
    threads: Option<usize>,

    /// How long to measure, after the warm-up.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    duration: Duration,

    /// Load before measuring, excluded from every figure.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    warmup: Duration,

    /// Message size (64B, 1KiB, ...).
    #[arg(long, default_value = "64B", value_parser = parse_bytes, value_name = "BYTES")]
    size: usize,

    /// Closed loop: messages each connection keeps in flight.
    #[arg(long, default_value = "1", value_parser = parse_count, value_name = "N")]
    pipeline: usize,

    /// Open loop: messages per second over all connections, on a constant schedule (wrk2's model);
    /// latency counts from each message's intended send time. Without it: closed loop.
    #[arg(short = 'R', long, value_parser = parse_count, value_name = "MSGS_PER_S")]
    rate: Option<usize>,

    /// Extra connections that connect and stay silent (the idle-connection experiment).
    #[arg(long, default_value = "0", value_parser = parse_idle, value_name = "N")]
    idle: usize,

    /// Most new connections per second while connecting (0 = as fast as possible).
    #[arg(long, default_value = "0", value_parser = parse_idle, value_name = "N")]
    connect_rate: usize,

    /// Local addresses to bind connections to, round robin (127.0.0.1,127.0.0.2,...), to go past
    /// the ephemeral ports of one address.
    #[arg(long, value_delimiter = ',', value_name = "IP,IP,...")]
    source: Vec<IpAddr>,

    /// Pin load thread i to the i-th core of this list (round robin), as taskset writes it: "1",
    /// "2-3", "0,2". Keeps the client off the server's pinned cores. [default: not pinned]
    #[arg(long, value_parser = parse_cpus, value_name = "LIST")]
    cpus: Option<CpuList>,

    /// Readiness backend of the client's event loops.
    #[arg(long, default_value = "epoll", value_name = "NAME")]
    backend: BackendKind,

    /// A message not echoed within this long of when it was due (sent, in closed loop) counts as a
    /// timeout error and closes its connection. It also bounds the client's memory: open loop holds
    /// at most rate x (timeout + 0.1 s) messages in flight, 32 bytes each (a run that would need
    /// more than 2 GiB is refused).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,

    /// How long one connection attempt may take (under churn, each replacement connection's too:
    /// one that takes longer is a connect error).
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    connect_timeout: Duration,

    /// Write the results as JSON to FILE (atomically), schema in load-gen/README.md.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Write an HdrHistogram interval log (one histogram per second) to FILE. Open loop also logs
    /// each second's send lateness, as lines tagged `Tag=send_lateness`.
    #[arg(long, value_name = "FILE")]
    hlog: Option<PathBuf>,

    /// Open loop: wake up this long before each due send and busy-poll (readiness still served)
    /// until it is due, instead of sleeping to the due time and waking late by the scheduler's
    /// wake-up latency, which corrected latency would charge to the server; 0 = never spin. The cost
    /// is client CPU: up to this much per due send, and a whole core per load thread whose sends
    /// are closer together than this (see client CPU per message in the results; measured in
    /// load-gen/README.md). Timer slack is set to 1 ns in every thread regardless (Linux).
    #[arg(long, default_value = "35us", value_parser = parse_spin, value_name = "DURATION")]
    spin: Duration,

    /// Connection churn: each connection sends N messages, closes (the client closes first, so
    /// TIME_WAIT is the client's), and is replaced by a new connection at once, keeping -c
    /// connections in flight; connect latency and connections/s are reported. Open loop (--rate)
    /// keeps its schedule: a message due while its connection is being replaced is sent once the
    /// new one is established, and its latency (and send lateness) includes that wait.
    #[arg(long, value_parser = parse_messages_per_connection, value_name = "N")]
    messages_per_connection: Option<u64>,

    /// Start the load (the warm-up, then the measured window) at this wall-clock time, in Unix
    /// seconds (`date +%s.%N`), once the connections are made: several clients given the same time
    /// start together (with synchronized clocks), and their intervals line up. At most 120 s
    /// ahead; a time already past when the connections are made starts at once, and says so.
    #[arg(long, value_parser = parse_start_at, value_name = "UNIX_SECONDS")]
    start_at: Option<f64>,
}

/// A Unix time at most 120 s from now.
fn parse_start_at(s: &str) -> Result<f64, String> {
    let at: f64 = s
        .parse()
        .ok()
        .filter(|t: &f64| t.is_finite() && *t > 0.0)
        .ok_or_else(|| format!("'{s}' is not a time in Unix seconds (date +%s.%N)"))?;
    let now = unix_now();
    if at > now + 120.0 {
        return Err(format!("{s} is {:.0} s from now: at most 120 s", at - now));
    }
    Ok(at)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
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

fn parse_messages_per_connection(s: &str) -> Result<u64, String> {
    let n = parse_count(s)? as u64;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// Core ids to pin load threads to, round robin.
#[derive(Clone, Debug)]
struct CpuList(Vec<usize>);

impl RunArgs {
    /// The options as the run document records them.
    fn config(&self) -> RunConfig {
        RunConfig {
            target: self.target.to_string(),
            connections: self.connections,
            threads: self.threads,
            duration: self.duration.as_secs_f64(),
            warmup: self.warmup.as_secs_f64(),
            size: self.size,
            pipeline: self.pipeline,
            rate: self.rate,
            idle: self.idle,
            connect_rate: self.connect_rate,
            source: self.source.clone(),
            cpus: self.cpus.as_ref().map(|c| c.0.clone()),
            backend: self.backend.to_string(),
            timeout: self.timeout.as_secs_f64(),
            connect_timeout: self.connect_timeout.as_secs_f64(),
            json: self.json.clone(),
            hlog: self.hlog.clone(),
            spin: Some(self.spin.as_secs_f64()),
            messages_per_connection: self.messages_per_connection,
            start_at: self.start_at,
        }
    }
}

/// A CPU list whose every core this process may run on.
fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let ids = pollbench_common::parse_cpu_list(s)?;
    let allowed = pollbench_common::cores::allowed();
    match ids.iter().find(|id| !allowed.contains(id)) {
        Some(id) => Err(format!(
            "core {id} is not one this process may use ({allowed:?})"
        )),
        None => Ok(CpuList(ids)),
    }
}

/// The most --spin takes: longer spins only burn more of the client's core.
const MAX_SPIN: Duration = Duration::from_secs(1);

fn parse_spin(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > MAX_SPIN {
        return Err(format!(
            "'{s}' is too long to spin (at most 1s; spinning burns the client's core)"
        ));
    }
    Ok(d)
}

fn parse_idle(s: &str) -> Result<usize, String> {
    if s == "0" {
        Ok(0)
    } else {
        parse_count(s)
    }
}

fn main() {
    let cli: Cli = pollbench_common::parse_args_or_exit("load-gen");
    let code = match cli.command {
        Command::Run(args) => run(*args),
        Command::Merge(args) => run_merge(args),
    };
    std::process::exit(code);
}

/// The most memory a run may need for its in-flight messages (see `worker::in_flight_bound`).
const MAX_IN_FLIGHT_BYTES: u64 = 2 << 30;

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
    let socket = worker::client_socket(target, source)?;
    socket.connect_timeout(&target.into(), timeout)?;
    Ok(socket.into())
}

/// Open every connection (busy and idle), each of `threads` threads its share, paced by
/// --connect-rate. Fails only when a thread cannot be started; the ones started are stopped first.
fn connect_all(
    args: &RunArgs,
    threads: usize,
    stop: &AtomicBool,
) -> std::io::Result<Vec<Connected>> {
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
        Ok(handles
            .into_iter()
            .map(|h| h.join().expect("a connector thread does not panic"))
            .collect())
    })
}

/// A thread could not be started (too many for this machine's memory or process limits): a
/// one-line error and exit status 2, as for any option this machine cannot honour.
fn cannot_start_threads(threads: usize, e: &std::io::Error) -> i32 {
    eprintln!("load-gen: cannot start {threads} threads ({e}); ask for fewer with --threads");
    2
}

fn run(args: RunArgs) -> i32 {
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
    let connected = match connect_all(&args, threads, &stop) {
        Ok(c) => Connections::sort(c, args.connections),
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
    let start = Instant::now() + Duration::from_millis(5);
    // The wall-clock time the measured window opens (after the warm-up): the hlog's StartTime, to
    // which its intervals are relative, and what `merge` aligns logs from several clients on.
    let window_wall = SystemTime::now() + Duration::from_millis(5) + args.warmup;
    let cpu_before = pollbench_common::process_cpu_time();
    let progress: Vec<Arc<AtomicU64>> = (0..threads).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let alive = alive_counters(&connected.shares);
    let shared = Shared {
        plan: &plan,
        start,
        stop: &stop,
    };
    let handles = match spawn_workers(&args, connected.shares, &shared, &progress, &alive) {
        Ok(handles) => handles,
        Err(e) => return cannot_start_threads(threads, &e),
    };
    let mut window_cpu = None;
    let stopped_early = watch(&args, start, &stop, &progress, &alive, &mut window_cpu);
    stop.store(true, Ordering::Relaxed);
    let results = match join_workers(handles) {
        Ok(results) => results,
        Err(why) => {
            eprintln!("load-gen: {why}");
            return 1;
        }
    };
    // The CPU of the measured window (from its opening, through the workers' last messages),
    // for the messages measured in it; the warm-up's when the window never opened.
    let cpu = pollbench_common::process_cpu_time().saturating_sub(window_cpu.unwrap_or(cpu_before));
    let end = Instant::now();
    let idle_errors = idle_errors(&connected.idle);
    drop(connected.idle);

    // Report.
    let measured = end
        .saturating_duration_since(start + args.warmup)
        .min(args.duration);
    let mut merged = results::merge(results);
    merged.errors.add(&connected.errors);
    merged.errors.add(&idle_errors);
    let secs = measured.as_secs_f64().max(1e-9);
    let churn = args.messages_per_connection.is_some();
    let stopped_early = match &merged.fatal {
        Some(f) if stopped_early.is_none() || stopped_early.as_deref() == Some("interrupted") => {
            Some(f.clone())
        }
        _ => stopped_early,
    };
    let report = RunReport {
        schema: pollbench_schema::run::SCHEMA.into(),
        config: args.config(),
        connections: working,
        connections_alive_at_end: merged.alive,
        messages: merged.messages,
        unfinished_messages: merged.unfinished,
        bytes: merged.messages * args.size as u64,
        duration_s: measured.as_secs_f64(),
        throughput_msgs_per_s: merged.messages as f64 / secs,
        throughput_bytes_per_s: (merged.messages * args.size as u64) as f64 / secs,
        latency_us: Percentiles::of(&merged.corrected),
        latency_uncorrected_us: Percentiles::of(&merged.uncorrected),
        send_lateness_us: args
            .rate
            .is_some()
            .then(|| Percentiles::of(&merged.lateness)),
        errors: merged.errors,
        intervals: results::interval_reports(&merged, measured),
        stopped_early,
        client_cpu_us_per_msg: (merged.messages > 0)
            .then(|| cpu.as_secs_f64() * 1e6 / merged.messages as f64),
        connects: churn.then_some(merged.connects),
        connections_per_s: churn.then(|| merged.connects as f64 / secs),
        connect_latency_us: churn.then(|| Percentiles::of(&merged.connect_latency)),
        clients: None,
    };
    if let Some(fatal) = &merged.fatal {
        eprintln!("load-gen: {fatal}");
    }
    print!("{}", results::summary(&report, args.rate.is_some()));
    let outputs = write_outputs(&args, &report, &merged, window_wall, measured);
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

/// The connections opened, sorted: each load thread's busy share, and the idle ones.
struct Connections {
    shares: Vec<Vec<(usize, TcpStream)>>,
    idle: Vec<(usize, TcpStream)>,
    errors: Errors,
    first_error: Option<String>,
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
) -> std::io::Result<Vec<std::thread::JoinHandle<std::io::Result<worker::WorkerResult>>>> {
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
    handles: Vec<std::thread::JoinHandle<std::io::Result<worker::WorkerResult>>>,
) -> Result<Vec<worker::WorkerResult>, String> {
    handles
        .into_iter()
        .map(|h| match h.join() {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(format!("a worker failed: {e}")),
            Err(_) => Err("a worker panicked".into()),
        })
        .collect()
}

/// Idle connections must still be open at the end: a server that closed them (select cannot watch
/// descriptors above FD_SETSIZE) did not really hold them, and the run must say so.
fn idle_errors(idle: &[(usize, TcpStream)]) -> Errors {
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

/// Write --json and --hlog (each atomically); false if either could not be written.
fn write_outputs(
    args: &RunArgs,
    report: &RunReport,
    merged: &results::Merged,
    window_wall: SystemTime,
    measured: Duration,
) -> bool {
    let mut ok = true;
    if let Some(path) = &args.json {
        if let Err(e) = pollbench_schema::file::write_json_atomically(path, report) {
            eprintln!("load-gen: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    if let Some(path) = &args.hlog {
        if let Err(e) = results::write_hlog(
            path,
            merged,
            window_wall,
            measured,
            args.rate.is_some(),
            args.messages_per_connection.is_some(),
        ) {
            eprintln!("load-gen: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    ok
}

/// One counter per worker of its connections still alive, each starting at the worker's share, so
/// the watcher's sum is the number of live connections from the first moment, before any worker
/// has started (a counter that started at a sentinel made the sum overflow, or wrap to 0 and end
/// the run as if every connection were gone).
fn alive_counters(shares: &[Vec<(usize, TcpStream)>]) -> Vec<Arc<AtomicU64>> {
    shares
        .iter()
        .map(|share| Arc::new(AtomicU64::new(share.len() as u64)))
        .collect()
}

/// Clears the progress bar however `watch` returns.
struct FinishBar(Option<indicatif::ProgressBar>);
impl Drop for FinishBar {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Wait out the run, printing progress each second; the reason if it ended early.
fn watch(
    args: &RunArgs,
    start: Instant,
    stop: &AtomicBool,
    progress: &[Arc<AtomicU64>],
    alive: &[Arc<AtomicU64>],
    window_cpu: &mut Option<Duration>,
) -> Option<String> {
    let window = start + args.warmup;
    let end = window + args.duration;
    let mut last = (Instant::now(), 0u64);
    let mut next_print = Instant::now() + Duration::from_secs(1);
    // A progress bar with the time left on a terminal; plain lines (for logs) otherwise.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new((args.warmup + args.duration).as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {eta} left  {msg}",
            )
            .expect("valid template"),
        );
        bar
    });
    let _finish = FinishBar(bar.clone());
    loop {
        // Wake at the window's opening to read the process's CPU time there.
        let tick = Duration::from_millis(20);
        std::thread::sleep(match window_cpu {
            None => tick.min(window.saturating_duration_since(Instant::now())),
            Some(_) => tick,
        });
        let now = Instant::now();
        if window_cpu.is_none() && now >= window {
            *window_cpu = Some(pollbench_common::process_cpu_time());
        }
        if stop.load(Ordering::Relaxed) {
            return Some("interrupted".into());
        }
        let alive_now: u64 = alive.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        if alive_now == 0 {
            return Some("every connection is gone (did the server die?)".into());
        }
        if now >= end {
            return None;
        }
        if now >= next_print {
            let done: u64 = progress.iter().map(|p| p.load(Ordering::Relaxed)).sum();
            let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            let phase = if now < start + args.warmup {
                "warm-up"
            } else {
                "measuring"
            };
            match &bar {
                Some(bar) => {
                    bar.set_position(now.duration_since(start).as_millis() as u64);
                    bar.set_message(format!(
                        "{phase}: {rate:.0} msgs/s, {alive_now} connections alive"
                    ));
                }
                None => eprintln!(
                    "[{:>5.1}s] {phase}: {:.0} msgs/s, {} connections alive",
                    now.duration_since(start).as_secs_f64(),
                    rate,
                    alive_now
                ),
            }
            last = (now, done);
            next_print += Duration::from_secs(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_counters_sum_to_the_connections_before_any_worker_runs() {
        // The watcher sums these from the moment the workers are spawned. Starting each at a
        // sentinel (u64::MAX) overflowed that sum in debug builds and wrapped it in release: one
        // worker at 1 and one not yet started summed to 0, "every connection is gone".
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = |i| (i, TcpStream::connect(addr).unwrap());
        let shares = vec![vec![conn(0), conn(2)], vec![conn(1)], Vec::new()];
        let alive = alive_counters(&shares);
        let loads: Vec<u64> = alive.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        assert_eq!(loads, vec![2, 1, 0]);
        let total = alive
            .iter()
            .try_fold(0u64, |sum, a| sum.checked_add(a.load(Ordering::Relaxed)));
        assert_eq!(total, Some(3));
    }
}
