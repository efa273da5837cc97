//! The command line: `load-gen run` and `load-gen merge`, their options, and the parsers that
//! check each option's value.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use pollbench_common::{parse_bytes, parse_count, parse_duration};
use pollbench_schema::run::RunConfig;
use poller::BackendKind;

/// Load generator for echo servers: thousands of connections, HdrHistogram latency, open and
/// closed loop, every byte verified.
#[derive(Parser)]
#[command(name = "load-gen", version = pollbench_common::VERSION, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
pub struct MergeArgs {
    /// Interval logs written by `load-gen run --hlog`.
    #[arg(required = true, value_name = "HLOG")]
    pub files: Vec<PathBuf>,

    /// Write the merged results as JSON to FILE (atomically).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Parser, Debug)]
pub struct RunArgs {
    /// The echo server, IP:PORT.
    #[arg(long, value_name = "IP:PORT")]
    pub target: SocketAddr,

    /// Connections that carry load (10k = 10,000).
    #[arg(short = 'c', long, default_value = "1000", value_parser = parse_count, value_name = "N")]
    pub connections: usize,

    /// Threads, each an event loop over its share of the connections. [default: number of cores]
    #[arg(short = 't', long, value_parser = parse_count, value_name = "N")]
    pub threads: Option<usize>,

    /// How long to measure, after the warm-up.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,

    /// Load before measuring, excluded from every figure.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub warmup: Duration,

    /// Message size (64B, 1KiB, ...).
    #[arg(long, default_value = "64B", value_parser = parse_bytes, value_name = "BYTES")]
    pub size: usize,

    /// Closed loop: messages each connection keeps in flight.
    #[arg(long, default_value = "1", value_parser = parse_count, value_name = "N")]
    pub pipeline: usize,

    /// Open loop: messages per second over all connections, on a constant schedule (wrk2's model);
    /// latency counts from each message's intended send time. Without it: closed loop.
    #[arg(short = 'R', long, value_parser = parse_count, value_name = "MSGS_PER_S")]
    pub rate: Option<usize>,

    /// Extra connections that connect and stay silent (the idle-connection experiment).
    #[arg(long, default_value = "0", value_parser = parse_idle, value_name = "N")]
    pub idle: usize,

    /// Most new connections per second while connecting (0 = as fast as possible).
    #[arg(long, default_value = "0", value_parser = parse_idle, value_name = "N")]
    pub connect_rate: usize,

    /// Local addresses to bind connections to, round robin (127.0.0.1,127.0.0.2,...), to go past
    /// the ephemeral ports of one address.
    #[arg(long, value_delimiter = ',', value_name = "IP,IP,...")]
    pub source: Vec<IpAddr>,

    /// Pin load thread i to the i-th core of this list (round robin), as taskset writes it: "1",
    /// "2-3", "0,2". Keeps the client off the server's pinned cores. [default: not pinned]
    #[arg(long, value_parser = parse_cpus, value_name = "LIST")]
    pub cpus: Option<CpuList>,

    /// Readiness backend of the client's event loops.
    #[arg(long, default_value = "epoll", value_name = "NAME")]
    pub backend: BackendKind,

    /// A message not echoed within this long of when it was due (sent, in closed loop) counts as a
    /// timeout error and closes its connection. It also bounds the client's memory: open loop holds
    /// at most rate x (timeout + 0.1 s) messages in flight, 32 bytes each (a run that would need
    /// more than 2 GiB is refused).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// How long one connection attempt may take (under churn, each replacement connection's too:
    /// one that takes longer is a connect error).
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// Write the results as JSON to FILE (atomically), schema in load-gen/README.md.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write an HdrHistogram interval log (one histogram per second) to FILE. Open loop also logs
    /// each second's send lateness, as lines tagged `Tag=send_lateness`.
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,

    /// Open loop: wake up this long before each due send and busy-poll (readiness still served)
    /// until it is due, instead of sleeping to the due time and waking late by the scheduler's
    /// wake-up latency, which corrected latency would charge to the server; 0 = never spin. The cost
    /// is client CPU: up to this much per due send, and a whole core per load thread whose sends
    /// are closer together than this (see client CPU per message in the results; measured in
    /// load-gen/README.md). Timer slack is set to 1 ns in every thread regardless (Linux).
    #[arg(long, default_value = "35us", value_parser = parse_spin, value_name = "DURATION")]
    pub spin: Duration,

    /// Connection churn: each connection sends N messages, closes (the client closes first, so
    /// TIME_WAIT is the client's), and is replaced by a new connection at once, keeping -c
    /// connections in flight; connect latency and connections/s are reported. Open loop (--rate)
    /// keeps its schedule: a message due while its connection is being replaced is sent once the
    /// new one is established, and its latency (and send lateness) includes that wait.
    #[arg(long, value_parser = parse_messages_per_connection, value_name = "N")]
    pub messages_per_connection: Option<u64>,

    /// Start the load (the warm-up, then the measured window) at this wall-clock time, in Unix
    /// seconds (`date +%s.%N`), once the connections are made: several clients given the same time
    /// start together (with synchronized clocks), and their intervals line up. At most 120 s
    /// ahead; a time already past when the connections are made starts at once, and says so.
    #[arg(long, value_parser = parse_start_at, value_name = "UNIX_SECONDS")]
    pub start_at: Option<f64>,
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

/// The wall-clock time, in Unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
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
pub struct CpuList(pub Vec<usize>);

impl RunArgs {
    /// The options as the run document records them.
    pub fn config(&self) -> RunConfig {
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
