//! Command line: flags with human units, and the check that a combination makes sense.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use clap::ValueEnum;
use pollbench_common::{parse_bytes, parse_count, parse_duration};
use pollbench_schema::server::{RingSetup, ServerConfig};
use poller::{BackendKind, Mode, Support};

use crate::work::{Work, MAX_WORK};

/// A per-core echo server for benchmarking readiness mechanisms.
///
/// Every event loop runs on one thread (optionally pinned to a core) and echoes every byte it
/// reads. The first line on stdout is exactly `listening on <ip>:<port>`; statistics go to stderr
/// every --stats-interval and, on SIGINT/SIGTERM, to --stats-json. Defaults are the fastest correct
/// choice for the backend; a combination the backend cannot do exits with status 2 and one line
/// saying why.
#[derive(Parser, Debug)]
#[command(name = "bench-server", version = pollbench_common::VERSION, max_term_width = 100)]
pub struct Args {
    /// Address to listen on. Loopback by default: exposing the server to a network is your explicit
    /// choice. Port 0 picks a free port (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:7000", value_name = "IP:PORT")]
    pub addr: SocketAddr,

    /// Readiness mechanism of the event loops (select, poll, epoll, kqueue, io_uring); or
    /// io_uring_completion, where the kernel itself accepts, receives and sends (Linux 6.0+, one
    /// SO_REUSEPORT listener per loop, no --trigger); or a baseline: threads (one blocking thread
    /// per connection), tokio (one task per connection). On Linux,
    /// kqueue is libkqueue, a user-space kqueue built on epoll (and needs the cargo feature
    /// `libkqueue`); output calls it `kqueue (libkqueue)` there. [default: epoll on Linux, kqueue on
    /// macOS and the BSDs]
    #[arg(long, value_name = "NAME")]
    pub backend: Option<ServerBackend>,

    /// Event-loop threads (tokio: worker threads). [default: the number of cores]
    #[arg(long, short = 't', value_name = "N", value_parser = parse_count)]
    pub threads: Option<usize>,

    /// Pin each event loop to its own core (round robin over the cores this process may use).
    #[arg(long)]
    pub pin: bool,

    /// How connections reach the loops: reuseport (one SO_REUSEPORT listener per loop), exclusive
    /// (one listener in every loop with EPOLLEXCLUSIVE: epoll only, refused elsewhere), shared (one listener in every loop, no exclusivity: the thundering-herd baseline),
    /// acceptor (one thread accepts and hands sockets to the loops). [default: reuseport]
    #[arg(long, value_name = "STRATEGY")]
    pub accept: Option<AcceptStrategy>,

    /// Readiness mode for connections: level (one read per event), edge (read until drained),
    /// oneshot (re-armed after every event). [default: edge where the backend has it, else level]
    #[arg(long, value_name = "MODE")]
    pub trigger: Option<Trigger>,

    /// Most connections open at once, over all loops. At the limit, accepting pauses; existing
    /// connections keep being served. Units: 10k = 10,000.
    #[arg(long, default_value = "100k", value_name = "N", value_parser = parse_count)]
    pub max_conns: usize,

    /// Echo buffer per connection. It bounds memory per connection whatever clients do: once it is
    /// full and the client does not read, the server stops reading from that client.
    #[arg(long, default_value = "16KiB", value_name = "BYTES", value_parser = parse_bytes)]
    pub buf_size: usize,

    /// Most events one wait returns (the Events capacity of each loop).
    #[arg(long, default_value = "1024", value_name = "N", value_parser = parse_count)]
    pub events: usize,

    /// Busy polling: after the last event, keep polling without blocking for this long before a wait
    /// may sleep. It trades a core's idle time for no sleep/wake-up per batch (a wake-up is a
    /// context switch and, across cores, an inter-processor interrupt). 0s (the default) always
    /// blocks. Event loops only.
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
    pub busy_poll: Duration,

    /// Work per message, as a request handler's own: for every --message-size bytes a connection
    /// sends, the server spins this long before echoing them (a busy wait on the monotonic clock,
    /// not a sleep: the core is busy, as with real work). It makes the echo server one with a known
    /// cost per request, and lets a benchmark plant a known cost difference to see whether it
    /// resolves it. A message split over reads is counted when its last byte comes; a read of
    /// several messages spins once for each. Every backend (tokio: the task spins on its worker
    /// thread). At most 1s (e.g. 200us, 250ns: a planted cost can be a few percent of a message's
    /// few microseconds); needs --message-size. [default: 0s, off]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub work: Option<Duration>,

    /// With --work: the size of a message, what costs one --work. Same units as load-gen's --size
    /// (64B, 1KiB); give the size the clients send. bench-server frames nothing, so it cannot find
    /// messages in the byte stream itself; required with a non-zero --work rather than assumed to
    /// be load-gen's default (64B), since a wrong size would silently scale the work.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub message_size: Option<usize>,

    /// io_uring_completion only: accepted connections become fixed files (direct descriptors in
    /// each ring's table): no descriptor lookup per request and none in the process's table. The
    /// kernel caps a table at the open-files limit, and closes a connection it accepted when the
    /// table was full; so --max-conns is lowered to leave room in the table for a burst of
    /// accepts past the limit (half the table, at most 4,096 slots): with 20,000 open files, to
    /// 15,904. The stats JSON's max_conns is the limit that ran.
    #[arg(long)]
    pub fixed_files: bool,

    /// io_uring_completion only: while completions come at least N/2 per --batch-wait (measured
    /// over spans of at least --batch-wait), each wait asks for N and holds out for them up to
    /// --batch-wait, then returns with what came (at least one): fewer io_uring_enter calls per
    /// message under load. Below that rate a wait returns at the first completion, so a moderate
    /// load pays no batch wait in latency. Needs Linux 6.12 (IORING_FEAT_MIN_TIMEOUT). [default: 1, every wait
    /// returns at the first completion]
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub batch: Option<usize>,

    /// io_uring_completion with --batch: how long a wait may hold out for its batch. Units: us, ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub batch_wait: Option<Duration>,

    /// Interval of the one-line statistics summary on stderr; 0s turns it off.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub stats_interval: Duration,

    /// On exit, write the full statistics as JSON to FILE (atomically: a temporary file, then rename).
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,

    /// Print what this binary can run here as JSON (schema pollbench.capabilities/1) and exit:
    /// every --backend, whether it is available (and why not), the --trigger and --accept values it
    /// takes, whether it takes --pin and --busy-poll, its descriptor limit, and the open-files
    /// limit. Derived from the same checks that accept or refuse the other flags. Takes no other
    /// flag.
    #[arg(long, exclusive = true)]
    pub capabilities: bool,
}

/// What runs the connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerBackend {
    /// An event loop per thread on this poller backend.
    Poller(BackendKind),
    /// One blocking thread per connection.
    Threads,
    /// One tokio task per connection.
    Tokio,
    /// An io_uring per thread in completion mode: the kernel accepts, receives and sends.
    IoUringCompletion,
}

impl ServerBackend {
    /// Every value of `--backend`, built here or not, in `--help` order.
    pub const ALL: [ServerBackend; 8] = [
        ServerBackend::Poller(BackendKind::Select),
        ServerBackend::Poller(BackendKind::Poll),
        ServerBackend::Poller(BackendKind::Epoll),
        ServerBackend::Poller(BackendKind::Kqueue),
        ServerBackend::Poller(BackendKind::IoUring),
        ServerBackend::IoUringCompletion,
        ServerBackend::Threads,
        ServerBackend::Tokio,
    ];
}

impl FromStr for ServerBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "threads" => Ok(ServerBackend::Threads),
            "tokio" => Ok(ServerBackend::Tokio),
            "io_uring_completion" => Ok(ServerBackend::IoUringCompletion),
            _ => s.parse().map(ServerBackend::Poller).map_err(|_| {
                format!("unknown backend '{s}' (expected select, poll, epoll, kqueue, io_uring, io_uring_completion, threads or tokio)")
            }),
        }
    }
}

impl fmt::Display for ServerBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerBackend::Poller(k) => k.fmt(f),
            ServerBackend::Threads => f.write_str("threads"),
            ServerBackend::Tokio => f.write_str("tokio"),
            ServerBackend::IoUringCompletion => f.write_str("io_uring_completion"),
        }
    }
}

/// How connections reach the event loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AcceptStrategy {
    /// One SO_REUSEPORT listener per loop; the kernel spreads connections.
    Reuseport,
    /// One listener in every loop with EPOLLEXCLUSIVE.
    Exclusive,
    /// One listener in every loop; every loop is woken (thundering herd).
    Shared,
    /// A dedicated accept thread hands sockets to the loops.
    Acceptor,
}

/// Readiness mode for connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Trigger {
    /// Level-triggered, one read per event.
    Level,
    /// Edge-triggered, read until drained.
    Edge,
    /// Level-triggered oneshot, re-armed after every event.
    Oneshot,
}

impl Trigger {
    /// The poller mode for connection sockets.
    pub fn mode(self) -> Mode {
        match self {
            Trigger::Level => Mode::Level,
            Trigger::Edge => Mode::Edge,
            Trigger::Oneshot => Mode::Oneshot,
        }
    }
}

/// A checked configuration: every field is what will run.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    /// The plain backend name (`kqueue` on libkqueue too).
    pub backend: ServerBackend,
    /// What runs it, for readers: `kqueue (libkqueue)` where kqueue is libkqueue on epoll.
    pub mechanism: &'static str,
    /// `None` for the baselines, where it does not apply.
    pub trigger: Option<Trigger>,
    /// `None` for the baselines.
    pub accept: Option<AcceptStrategy>,
    pub threads: usize,
    pub pinned: bool,
    pub max_conns: usize,
    pub buf_size: usize,
    pub events: usize,
    /// Busy-poll window (zero: waits block).
    pub busy_poll: Duration,
    /// Completion mode's setup; `None` for every other server.
    pub ring: Option<RingOptions>,
    /// `--work` per `--message-size` bytes; `None` when off.
    pub work: Option<Work>,
    /// `--message-size` as given (with `--work 0s` too, which is off).
    pub message_size: Option<usize>,
    pub stats_interval: Duration,
    pub stats_json: Option<PathBuf>,
}

/// The size of a ring's fixed-file table: the open-files limit (the kernel refuses a bigger
/// one), at most the kernel's most (2^20). Each loop's table must hold every connection the loop
/// may get; `--max-conns` is kept below it ([`fixed_files_max_conns`]). Linux only, where there is
/// io_uring; sized here because the limit it sets on `--max-conns` is a command-line decision.
pub fn fixed_table() -> u32 {
    let limit = pollbench_common::open_files_limit().unwrap_or(1024);
    limit.clamp(2, 1 << 20) as u32
}

/// The most connections `--fixed-files` serves: the kernel closes a connection it accepts into a
/// full table, so half the table (at most 4,096 slots) stays free for a burst of accepts past
/// the limit.
pub fn fixed_files_max_conns() -> usize {
    let table = fixed_table() as usize;
    table - (table / 2).min(4096)
}

/// How `--backend io_uring_completion` sets up its rings, and what the kernel took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingOptions {
    /// `--fixed-files`.
    pub fixed_files: bool,
    /// `--batch` (1: no batching).
    pub batch: u32,
    /// `--batch-wait` (zero with a batch of 1).
    pub batch_wait: Duration,
    /// The features a ring set up this way got here (names as in the stats JSON).
    pub features: Vec<String>,
}

impl Config {
    /// The configuration as the stats JSON records it: flags by the values they take, the
    /// busy-poll window in microseconds; the output options are not recorded.
    pub fn stats_config(&self) -> ServerConfig {
        ServerConfig {
            addr: self.addr,
            backend: self.backend.to_string(),
            mechanism: self.mechanism.to_owned(),
            trigger: self.trigger.as_ref().map(flag_value),
            accept: self.accept.as_ref().map(flag_value),
            threads: self.threads,
            pinned: self.pinned,
            max_conns: self.max_conns,
            buf_size: self.buf_size,
            events: self.events,
            busy_poll_us: self.busy_poll.as_micros() as u64,
            ring: self.ring.as_ref().map(|r| RingSetup {
                fixed_files: r.fixed_files,
                batch: r.batch,
                batch_wait_us: r.batch_wait.as_micros() as u64,
                features: r.features.clone(),
            }),
            work_ns: self.work.map(|w| w.per_message.as_nanos() as u64),
            message_size: self.message_size,
        }
    }
}

/// The name clap parses for a value of `--trigger` or `--accept` (`reuseport`, `oneshot`).
pub fn flag_value<V: ValueEnum>(v: &V) -> String {
    v.to_possible_value()
        .expect("no value is hidden")
        .get_name()
        .to_owned()
}

fn default_backend() -> ServerBackend {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        ServerBackend::Poller(BackendKind::Epoll)
    } else {
        ServerBackend::Poller(BackendKind::Kqueue)
    }
}

/// What the check of a command line asks of the machine, passed in so that the check depends on
/// no server module: an event-loop backend's capabilities (or why it cannot run here), and the
/// features a completion ring with `--fixed-files` and a batch gets here (or why it cannot run).
/// [`crate::probes`] has this machine's; `--capabilities` remembers their answers, as it checks
/// many command lines.
pub struct Probes<'a> {
    pub poller: &'a dyn Fn(BackendKind) -> Result<poller::Capabilities, String>,
    pub completion: &'a dyn Fn(bool, bool) -> Result<Vec<String>, String>,
}

impl Args {
    /// Check the combination against what `probes` find (each asked at most once); the error is
    /// the one line printed before exiting with status 2.
    pub fn into_config_with(self, probes: &Probes) -> Result<Config, String> {
        let backend = self.backend.unwrap_or_else(default_backend);
        let work = check_work(self.work, self.message_size)?;
        let threads = match self.threads {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let completion = backend == ServerBackend::IoUringCompletion;
        if !completion {
            for (given, flag) in [
                (self.fixed_files, "--fixed-files"),
                (self.batch.is_some(), "--batch"),
                (self.batch_wait.is_some(), "--batch-wait"),
            ] {
                if given {
                    return Err(format!("{flag} applies to --backend io_uring_completion only, not to --backend {backend}"));
                }
            }
        }
        let mut ring = None;
        let mut max_conns = self.max_conns;
        let (trigger, accept) = match backend {
            ServerBackend::Threads | ServerBackend::Tokio => {
                if let Some(t) = self.trigger {
                    return Err(format!("--trigger {t:?} does not apply to --backend {backend}: it has no event loop of ours").to_lowercase());
                }
                if self.accept.is_some() {
                    return Err(format!(
                        "--accept does not apply to --backend {backend}: it accepts on its own"
                    ));
                }
                if !self.busy_poll.is_zero() {
                    return Err(format!(
                        "--busy-poll does not apply to --backend {backend}: it has no event loop of ours"
                    ));
                }
                if backend == ServerBackend::Threads && self.pin {
                    return Err("--pin does not apply to --backend threads: there is a thread per connection".into());
                }
                (None, None)
            }
            ServerBackend::IoUringCompletion => {
                let options = self.ring_options(probes)?;
                if options.fixed_files {
                    max_conns = max_conns.min(fixed_files_max_conns());
                }
                ring = Some(options);
                (None, Some(AcceptStrategy::Reuseport))
            }
            ServerBackend::Poller(kind) => {
                let caps = (probes.poller)(kind)?;
                let (trigger, accept) = check_poller(kind, &caps, self.trigger, self.accept)?;
                (Some(trigger), Some(accept))
            }
        };
        Ok(Config {
            addr: self.addr,
            backend,
            mechanism: mechanism(backend),
            trigger,
            accept,
            threads,
            pinned: self.pin,
            max_conns,
            buf_size: self.buf_size,
            events: self.events,
            busy_poll: self.busy_poll,
            ring,
            work,
            message_size: self.message_size,
            stats_interval: self.stats_interval,
            stats_json: self.stats_json,
        })
    }

    /// `--backend io_uring_completion`'s flags, checked in this order: how its rings are set up.
    fn ring_options(&self, probes: &Probes) -> Result<RingOptions, String> {
        let name = "--backend io_uring_completion";
        let batch = self.batch.unwrap_or(1);
        let batch = u32::try_from(batch)
            .ok()
            .filter(|b| (1..=65536).contains(b))
            .ok_or_else(|| format!("--batch {batch}: from 1 to 65536 completions"))?;
        let batch_wait = match (batch, self.batch_wait) {
            (1, None) => Duration::ZERO,
            (1, Some(_)) => {
                return Err("--batch-wait needs --batch N, N > 1: a wait for one completion has nothing to hold out for".into())
            }
            (_, None) => {
                return Err(format!("--batch {batch} needs --batch-wait: how long a wait may hold out for its batch (e.g. 50us)"))
            }
            (_, Some(w)) if w.is_zero() || w > Duration::from_secs(1) => {
                return Err("--batch-wait: more than 0s, at most 1s".into())
            }
            (_, Some(w)) => w,
        };
        let features = (probes.completion)(self.fixed_files, batch > 1)?;
        if let Some(t) = self.trigger {
            return Err(format!("--trigger {t:?} does not apply to {name}: completion mode has no readiness to trigger on").to_lowercase());
        }
        match self.accept {
            None | Some(AcceptStrategy::Reuseport) => {}
            Some(a) => {
                return Err(format!(
                    "--accept {} does not apply to {name}: each loop accepts on its own SO_REUSEPORT listener with a multishot accept (only reuseport)",
                    flag_value(&a)
                ))
            }
        }
        if !self.busy_poll.is_zero() {
            return Err(format!("--busy-poll does not apply to {name} yet"));
        }
        Ok(RingOptions {
            fixed_files: self.fixed_files,
            batch,
            batch_wait,
            features,
        })
    }
}

/// `--work` and `--message-size`, checked: the work (`None` when off), or the one-line reason
/// they make no sense. Every server kind does the work, so no backend refuses it.
pub fn check_work(
    work: Option<Duration>,
    message_size: Option<usize>,
) -> Result<Option<Work>, String> {
    let per_message = match work {
        None if message_size.is_some() => {
            return Err(
                "--message-size applies with --work only: it is what costs one --work".into(),
            )
        }
        None => return Ok(None),
        Some(d) if d > MAX_WORK => return Err(format!("--work {d:?}: at most 1s per message")),
        Some(d) if d.is_zero() => return Ok(None),
        Some(d) => d,
    };
    let message_size = message_size.ok_or("--work needs --message-size: bench-server frames nothing, so it must be told how many bytes make a message (e.g. --message-size 64B, load-gen's default)")?;
    Ok(Some(Work {
        per_message,
        message_size,
    }))
}

/// The trigger and accept strategy an event loop on `kind` runs with (the defaults filled in), or the
/// one-line reason it cannot do what was asked. `caps` is what `kind` can do: a pure decision, so
/// it is tested for every backend's capabilities, built here or not.
pub fn check_poller(
    kind: BackendKind,
    caps: &poller::Capabilities,
    trigger: Option<Trigger>,
    accept: Option<AcceptStrategy>,
) -> Result<(Trigger, AcceptStrategy), String> {
    let name = mechanism(ServerBackend::Poller(kind));
    let trigger = match trigger {
        Some(Trigger::Edge) if !caps.edge.is_supported() => {
            return Err(format!(
                "--trigger edge: {name} is level-triggered only (use level or oneshot)"
            ));
        }
        Some(Trigger::Oneshot) if caps.oneshot == Support::No => {
            return Err(format!("--trigger oneshot: {name} has no oneshot mode"));
        }
        Some(t) => t,
        None if caps.edge.is_supported() => Trigger::Edge,
        None => Trigger::Level,
    };
    let accept = accept.unwrap_or(AcceptStrategy::Reuseport);
    if accept == AcceptStrategy::Exclusive && !caps.exclusive.is_supported() {
        return Err(format!(
            "--accept exclusive: {name} has no exclusive wake-up (EPOLLEXCLUSIVE is epoll's; \
             use reuseport, shared or acceptor)"
        ));
    }
    if accept == AcceptStrategy::Reuseport && !cfg!(unix) {
        return Err("--accept reuseport needs SO_REUSEPORT".into());
    }
    Ok((trigger, accept))
}

/// Whether kqueue here is libkqueue, a user-space kqueue built on epoll (Linux), rather than the
/// kernel's own (macOS and the BSDs).
const KQUEUE_IS_LIBKQUEUE: bool = cfg!(not(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)));

/// What waits for readiness, as output names it for readers: the backend's name, except that
/// kqueue on libkqueue is `kqueue (libkqueue)`, so nobody takes it for the kernel's kqueue.
pub fn mechanism(backend: ServerBackend) -> &'static str {
    match backend {
        ServerBackend::Poller(BackendKind::Kqueue) if KQUEUE_IS_LIBKQUEUE => "kqueue (libkqueue)",
        ServerBackend::Poller(kind) => kind.name(),
        ServerBackend::Threads => "threads",
        ServerBackend::Tokio => "tokio",
        ServerBackend::IoUringCompletion => "io_uring_completion",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poller::Capabilities;

    /// kqueue's capabilities as its backend reports them (poller/src/backend/kqueue.rs), so the
    /// decision is tested where kqueue is not built (Linux without libkqueue). What the decision
    /// reads (edge, oneshot, exclusive, max_fd) is kqueue's; the rest, which it does not read, is
    /// select's, so this keeps building when poller adds a capability.
    fn kqueue_caps() -> Capabilities {
        Capabilities {
            edge: Support::Native,
            oneshot: Support::Native,
            exclusive: Support::No,
            max_fd: None,
            ..BackendKind::Select
                .capabilities()
                .expect("select is built everywhere")
        }
    }

    /// `--fixed-files` keeps `--max-conns` below a ring's table (the open-files limit), leaving
    /// half of it, at most 4,096 slots, for a burst of accepts past the limit; the setup and what
    /// the kernel took are in the stats config.
    #[test]
    fn fixed_files_keep_max_conns_below_the_table() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["bench-server", "--backend", "io_uring_completion"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).unwrap().into_config()
        };
        let config = match parse(&["--fixed-files"]) {
            Ok(c) => c,
            Err(why) => {
                eprintln!("skipped: --fixed-files: {why}");
                return;
            }
        };
        let table = fixed_table() as usize;
        assert_eq!(config.max_conns, 100_000.min(table - (table / 2).min(4096)));
        let json = config.stats_config();
        let ring = json.ring.expect("a ring setup");
        assert!(ring.fixed_files && ring.features.iter().any(|f| f == "fixed_files"));
        assert_eq!((ring.batch, ring.batch_wait_us), (1, 0));
        // A limit already below the table is kept; without --fixed-files nothing is lowered.
        assert_eq!(
            parse(&["--fixed-files", "--max-conns", "10"])
                .unwrap()
                .max_conns,
            10
        );
        assert_eq!(parse(&[]).unwrap().max_conns, 100_000);
        assert!(!parse(&[]).unwrap().stats_config().ring.unwrap().fixed_files);
    }

    #[test]
    fn kqueue_refuses_exclusive_accept_with_the_reason() {
        let err = check_poller(
            BackendKind::Kqueue,
            &kqueue_caps(),
            None,
            Some(AcceptStrategy::Exclusive),
        )
        .expect_err("kqueue has no exclusive wake-up: refused, not run as shared");
        assert!(
            err.contains("--accept exclusive") && err.contains("kqueue"),
            "names the flag and the backend: {err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
        for accept in [
            AcceptStrategy::Reuseport,
            AcceptStrategy::Shared,
            AcceptStrategy::Acceptor,
        ] {
            assert_eq!(
                check_poller(BackendKind::Kqueue, &kqueue_caps(), None, Some(accept)),
                Ok((Trigger::Edge, accept)),
                "kqueue with {accept:?}"
            );
        }
    }

    #[test]
    fn kqueue_is_labelled_libkqueue_where_it_is_not_native() {
        let native = cfg!(any(
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "openbsd",
            target_os = "dragonfly"
        ));
        let kqueue = mechanism(ServerBackend::Poller(BackendKind::Kqueue));
        if native {
            assert_eq!(kqueue, "kqueue");
        } else {
            assert_eq!(kqueue, "kqueue (libkqueue)");
        }
        assert_eq!(
            mechanism(ServerBackend::Poller(BackendKind::Epoll)),
            "epoll"
        );
        assert_eq!(
            mechanism(ServerBackend::Poller(BackendKind::IoUring)),
            "io_uring"
        );
        assert_eq!(mechanism(ServerBackend::Tokio), "tokio");
        // Refusals name it the same way.
        let err = check_poller(
            BackendKind::Kqueue,
            &kqueue_caps(),
            None,
            Some(AcceptStrategy::Exclusive),
        )
        .unwrap_err();
        assert!(err.contains(kqueue), "{err}");
    }

    /// `--work`: at most 1s a message, any number of nanoseconds, 0 off; `--message-size` with it and
    /// only with it; the stats config records both.
    #[test]
    fn work_is_checked_and_recorded() {
        let us = Duration::from_micros;
        assert_eq!(
            check_work(Some(us(200)), Some(64)),
            Ok(Some(Work {
                per_message: us(200),
                message_size: 64
            }))
        );
        assert_eq!(
            check_work(Some(MAX_WORK), Some(1))
                .unwrap()
                .unwrap()
                .per_message,
            MAX_WORK
        );
        assert_eq!(check_work(None, None), Ok(None));
        assert_eq!(check_work(Some(Duration::ZERO), None), Ok(None), "0 is off");
        assert_eq!(check_work(Some(Duration::ZERO), Some(64)), Ok(None));
        let planted = check_work(Some(Duration::from_nanos(250)), Some(64));
        assert_eq!(planted.unwrap().unwrap().per_message.as_nanos(), 250);
        for (d, size) in [
            (Some(MAX_WORK + us(1)), Some(64)),
            (Some(us(200)), None),
            (None, Some(64)),
        ] {
            let err = check_work(d, size).expect_err("refused");
            assert!(!err.contains('\n') && err.starts_with("--"), "{err}");
        }
        let args = Args::try_parse_from([
            "bench-server",
            "--backend",
            "tokio",
            "--work",
            "200us",
            "--message-size",
            "1KiB",
        ])
        .unwrap();
        let json = args.into_config().unwrap().stats_config();
        assert_eq!(
            (json.work_ns, json.message_size),
            (Some(200_000), Some(1024))
        );
    }

    /// The stats JSON's config keeps `backend` as the plain name and adds `mechanism`.
    #[test]
    fn config_json_has_backend_and_mechanism() {
        let args = Args::try_parse_from(["bench-server", "--backend", "epoll"]).unwrap();
        let json = serde_json::to_value(args.into_config().unwrap().stats_config()).unwrap();
        assert_eq!(json["backend"], "epoll");
        assert_eq!(json["mechanism"], "epoll");
    }

    /// For every backend built here, exclusive is accepted exactly when its capabilities have it.
    #[test]
    fn exclusive_accept_follows_the_capabilities_of_every_available_backend() {
        for kind in BackendKind::available() {
            let caps = kind.capabilities().unwrap();
            let checked = check_poller(kind, &caps, None, Some(AcceptStrategy::Exclusive));
            assert_eq!(
                checked.is_ok(),
                caps.exclusive.is_supported(),
                "{kind}: {checked:?}"
            );
        }
    }
}
