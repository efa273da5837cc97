//! bench-server: a per-core echo server on every poller backend, with thread-per-connection and
//! tokio baselines. See `bench-server --help` and bench-server/README.md.

mod baselines;
mod capabilities;
mod cli;
#[cfg(target_os = "linux")]
mod completion_batch;
#[cfg(target_os = "linux")]
mod completion_echo;
#[cfg(target_os = "linux")]
mod completion_loop;
#[cfg(not(target_os = "linux"))]
#[path = "completion_unavailable.rs"]
mod completion_loop;
mod event_loop;
mod listener;
mod probes;
mod running;
mod seconds;
mod server;
mod stats;
mod work;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use signal_hook::consts::{SIGINT, SIGTERM};

use cli::{Args, Config, ServerBackend};
use pollbench_schema::server::{ProcessCpu, ServerStats, ThreadStats, Totals};
use running::Running;

#[cfg(feature = "count-allocs")]
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Heap allocations since start (feature `count-allocs`), else `None`.
fn allocations() -> Option<u64> {
    #[cfg(feature = "count-allocs")]
    {
        let s = GLOBAL.stats();
        Some((s.allocations + s.reallocations) as u64)
    }
    #[cfg(not(feature = "count-allocs"))]
    None
}

fn main() -> ExitCode {
    let args: Args = pollbench_common::parse_args_or_exit("bench-server");
    if args.capabilities {
        return print_capabilities();
    }
    let config = match args.into_config() {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("bench-server: {msg}");
            return ExitCode::from(2);
        }
    };
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--capabilities`: the document on stdout, pretty; exit 0.
fn print_capabilities() -> ExitCode {
    let caps = match capabilities::capabilities() {
        Ok(caps) => caps,
        Err(e) => {
            eprintln!("bench-server: --capabilities: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut json = serde_json::to_string_pretty(&caps).expect("the document serializes");
    json.push('\n');
    let mut out = std::io::stdout().lock();
    match out.write_all(json.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-server: --capabilities: cannot write: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> std::io::Result<()> {
    // Signals are turned into a message; the loops are stopped through their wakers.
    let (signal_tx, signal_rx) = crossbeam_channel::bounded(1);
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let signals_handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                let _ = signal_tx.try_send(());
            }
        })?;

    let running = match config.backend {
        ServerBackend::Poller(kind) => server::start_loops(kind, &config)?,
        ServerBackend::Threads => baselines::start_threads(&config)?,
        ServerBackend::Tokio => baselines::start_tokio(&config)?,
        ServerBackend::IoUringCompletion => completion_loop::start(&config)?,
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", running.addr)?;
        out.flush()?;
    }
    let started = Instant::now();
    let Waited {
        failed,
        seconds,
        intervals,
    } = wait_for_signal(&running, &config, &signal_rx, started);

    let ended = Ended {
        at_shutdown: running.counters.iter().map(|c| c.load()).collect(),
        cores: running.cores.clone(),
        listen_addr: running.addr,
        counters: running.counters.clone(),
        duration: started.elapsed(),
    };
    let stopped = running.stop();
    signals_handle.close();

    if let Some(path) = &config.stats_json {
        let document = stats_document(&config, ended, seconds, intervals);
        pollbench_schema::file::write_json_atomically(path, &document).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
        })?;
    }
    stopped?;
    if failed {
        return Err(std::io::Error::other("an event loop stopped unexpectedly"));
    }
    Ok(())
}

/// What the server was when the stop signal came: the threads' counts then, their cores and
/// counters (read again once they have stopped), the address, and how long it served.
struct Ended {
    at_shutdown: Vec<stats::Counts>,
    cores: Vec<Option<usize>>,
    listen_addr: std::net::SocketAddr,
    counters: Vec<std::sync::Arc<stats::SharedCounters>>,
    duration: Duration,
}

/// The `--stats-json` document, once every thread has stopped.
fn stats_document(
    config: &Config,
    ended: Ended,
    seconds: Option<Vec<pollbench_schema::server::ServerSecond>>,
    intervals: Option<(stats::Intervals, Vec<stats::Counts>)>,
) -> ServerStats {
    let Ended {
        at_shutdown,
        cores,
        listen_addr,
        counters,
        duration,
    } = ended;
    // The last part interval ends at the loops' final counts, as the threads' entries do.
    let accept_intervals = intervals.map(|(intervals, before)| {
        let last: Vec<_> = counters.iter().map(|c| c.load()).collect();
        intervals.finish(&last, &before)
    });
    let threads: Vec<ThreadStats> = counters
        .iter()
        .enumerate()
        .map(|(id, c)| ThreadStats {
            id,
            core: cores.get(id).copied().flatten(),
            active: at_shutdown[id].active(),
            counters: c.counters(),
        })
        .collect();
    // Read once every thread has stopped, so that what they spent stopping is in it too.
    let usage = pollbench_common::process_usage();
    ServerStats {
        schema: pollbench_schema::server::SCHEMA.to_owned(),
        config: config.stats_config(),
        listen_addr,
        allocations: allocations(),
        duration_s: duration.as_secs_f64(),
        cpu: Some(ProcessCpu {
            user_s: usage.user.as_secs_f64(),
            system_s: usage.system.as_secs_f64(),
            voluntary_switches: usage.voluntary_switches,
            involuntary_switches: usage.involuntary_switches,
        }),
        accept_intervals,
        seconds,
        totals: Totals::of(&threads),
        threads,
    }
}

/// Print the summary every interval and read the counters every whole second (with
/// `--stats-json`) until SIGINT/SIGTERM. Returns true if a thread died first, the readings, and
/// (unless `--stats-interval 0s`) each interval's accepts per thread with the threads' snapshot at
/// the last summary line, where the last part interval starts.
fn wait_for_signal(
    running: &Running,
    config: &Config,
    signals: &crossbeam_channel::Receiver<()>,
    started: Instant,
) -> Waited {
    let interval = config.stats_interval;
    let snapshot = || -> Vec<stats::Counts> { running.counters.iter().map(|c| c.load()).collect() };
    // From zero, not from a first snapshot: what was accepted before this thread got here is in
    // the first interval, so the intervals add up to the totals.
    let mut before = vec![stats::Counts::default(); running.counters.len()];
    let mut intervals = stats::Intervals::default();
    let mut seconds = config.stats_json.is_some().then(seconds::Seconds::new);
    let mut next_line = started + interval;
    let failed = loop {
        // Also look at the threads' health now and then.
        let mut timeout = Duration::from_millis(500);
        if !interval.is_zero() {
            timeout = timeout.min(next_line.saturating_duration_since(Instant::now()));
        }
        if let Some(seconds) = &seconds {
            timeout = timeout.min(seconds.until_next());
        }
        match signals.recv_timeout(timeout) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break false,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if running.failed() {
            break true;
        }
        if let Some(seconds) = &mut seconds {
            seconds.record_if_due(&running.counters);
        }
        if !interval.is_zero() && Instant::now() >= next_line {
            let now = snapshot();
            eprintln!(
                "{}",
                stats::summary_line(&now, &before, interval, started.elapsed())
            );
            intervals.push(stats::accepted_per_thread(&now, &before));
            before = now;
            // After a stall, the next line an interval from now rather than a burst of lines.
            next_line = (next_line + interval).max(Instant::now());
        }
    };
    Waited {
        failed,
        seconds: seconds.map(seconds::Seconds::into_rows),
        intervals: (!interval.is_zero()).then_some((intervals, before)),
    }
}

/// How the wait for the stop signal ended, and what was read while waiting.
struct Waited {
    /// A thread died before the signal.
    failed: bool,
    /// The readings of every whole second (with `--stats-json`).
    seconds: Option<Vec<pollbench_schema::server::ServerSecond>>,
    /// Each summary interval's accepts per thread, and the snapshot of the last summary line.
    intervals: Option<(stats::Intervals, Vec<stats::Counts>)>,
}
