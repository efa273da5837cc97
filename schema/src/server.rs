//! `bench-server --stats-json`: what the server did in one run — its configuration, the process's
//! own CPU time, and per event loop (or baseline) what it accepted, read, wrote, waited for and
//! which calls it made. Documented in bench-server/README.md; written by bench-server on
//! SIGINT/SIGTERM, through these structs.
//!
//! Every field is required, `null` included: a document that lacks a field (an `Option` too) is an
//! error naming that field, never a silent default. Unknown fields are ignored, so a field added
//! within version 1 does not break an older reader.
//!
//! The exception: fields that committed documents may lack read as `null` when absent, so that
//! every published run still reads: [`ServerStats::cpu`], [`ServerStats::accept_intervals`],
//! [`ServerStats::seconds`], [`ServerConfig::ring`], [`ServerConfig::work_ns`],
//! [`ServerConfig::message_size`], and in every thread and in the totals [`Counters::syscalls`],
//! [`Counters::registrations`], [`Counters::would_block`], [`Counters::listener_wakeups`],
//! [`Counters::listener_wakeups_empty`] and the three `ring_*` counts. bench-server always writes
//! them (`null` where it cannot count: the three call counts of the tokio baseline; the listener
//! wake-ups of the baselines and of the `acceptor` strategy; `accept_intervals` with
//! `--stats-interval 0s`; the ring's for every server but `io_uring_completion`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::file::Versioned;

/// The `schema` string of a stats document, version 1.
pub const SCHEMA: &str = "pollbench.bench-server.stats/1";

/// The whole `--stats-json` document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerStats {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// What ran: the checked command line, defaults filled in.
    pub config: ServerConfig,
    /// The address actually listened on (port 0 resolved).
    pub listen_addr: SocketAddr,
    /// Heap allocations (and reallocations) since start; `null` unless bench-server was built with
    /// the `count-allocs` feature.
    #[serde(deserialize_with = "crate::file::required")]
    pub allocations: Option<u64>,
    /// Seconds from listening to the stop signal.
    pub duration_s: f64,
    /// The process's own CPU time and context switches over its whole life (start-up and shutdown
    /// included, every thread: event loops, baselines' threads, the tokio runtime), read when the
    /// loops have stopped; `null` in documents written before it existed (added within version 1).
    #[serde(default)]
    pub cpu: Option<ProcessCpu>,
    /// Connections accepted per thread in each `--stats-interval`: `accept_intervals[k][i]` is
    /// what thread `i` (the index in [`threads`](Self::threads)) accepted in interval `k`, the
    /// interval of the k-th summary line on stderr; the last row is the part interval from the last
    /// summary line to the stop signal (the loops' final counts), so each column adds up to that
    /// thread's `accepted`. A burst that lands on one loop shows as a row like `[40, 0]`, which
    /// the whole run's [`Totals::accept_spread`] can hide. `null` with `--stats-interval 0s` (no
    /// intervals) and in documents written before it existed (added within version 1).
    #[serde(default)]
    pub accept_intervals: Option<Vec<Vec<u64>>>,
    /// The server's counters (summed over threads) and CPU time at every whole wall-clock second
    /// of its last hour, cumulative from its start: what it did inside a window (load-gen's
    /// measured one, say) is the difference of the two entries that bound it, start-up and
    /// shutdown left out. `null` in documents written before it existed (added within version 1).
    #[serde(default)]
    pub seconds: Option<Vec<ServerSecond>>,
    /// The sum over threads, with derived ratios.
    pub totals: Totals,
    /// One entry per event loop (the baselines have one, for all their threads).
    pub threads: Vec<ThreadStats>,
}

impl Versioned for ServerStats {
    const SCHEMA: &'static str = SCHEMA;
    fn schema(&self) -> &str {
        &self.schema
    }
}

/// One of [`ServerStats::seconds`]: counts and CPU time so far, read at a whole second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerSecond {
    /// When they were read, in Unix seconds (wall clock): just after a whole second.
    pub at_unix_s: f64,
    /// The process's CPU time so far (every thread), user and system, in seconds.
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// Every thread's counts so far, summed.
    pub counters: Counters,
}

/// The server process's getrusage(RUSAGE_SELF), read at shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessCpu {
    /// CPU seconds in user mode.
    pub user_s: f64,
    /// CPU seconds in the kernel on the process's behalf (system calls, and the network stack's
    /// work the kernel charges to it).
    pub system_s: f64,
    /// Voluntary context switches: a thread blocked (in a wait, a blocking read, a lock).
    pub voluntary_switches: u64,
    /// Involuntary context switches: the scheduler preempted a thread.
    pub involuntary_switches: u64,
}

/// The server's configuration, as it ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// `--addr` as given (port 0: any free port; see [`ServerStats::listen_addr`]).
    pub addr: SocketAddr,
    /// The plain `--backend` name: `select`, `poll`, `epoll`, `kqueue`, `io_uring`, `threads`,
    /// `tokio`. Tools match on it.
    pub backend: String,
    /// What runs it, for readers: the backend's name, except `kqueue (libkqueue)` where kqueue is
    /// libkqueue, the user-space kqueue on epoll (Linux). Reports print it.
    pub mechanism: String,
    /// The `--trigger` value the loops ran with (`level`, `edge`, `oneshot`); `null` for the
    /// baselines, where it does not apply.
    #[serde(deserialize_with = "crate::file::required")]
    pub trigger: Option<String>,
    /// The `--accept` strategy (`reuseport`, `exclusive`, `shared`, `acceptor`); `null` for the
    /// baselines.
    #[serde(deserialize_with = "crate::file::required")]
    pub accept: Option<String>,
    /// Event-loop threads (tokio: worker threads; threads: unused, one thread per connection).
    pub threads: usize,
    /// Whether `--pin` was given (the cores are in [`ThreadStats::core`]).
    pub pinned: bool,
    /// Most connections open at once, over all loops.
    pub max_conns: usize,
    /// Echo buffer per connection, in bytes.
    pub buf_size: usize,
    /// Most events one wait returns.
    pub events: usize,
    /// Busy-poll window in microseconds (0: waits block).
    pub busy_poll_us: u64,
    /// Completion mode (`io_uring_completion`): how its rings were set up. `null` for every other
    /// server, and in documents written before it existed (added within version 1).
    #[serde(default)]
    pub ring: Option<RingSetup>,
    /// `--work`: nanoseconds the server spins per message received, as a request handler's own
    /// work; `null` when off (no `--work`, or `0s`), and in documents written before it existed
    /// (added within version 1).
    #[serde(default)]
    pub work_ns: Option<u64>,
    /// `--message-size` in bytes: what costs one `--work`; `null` when not given, and in documents
    /// written before it existed (added within version 1).
    #[serde(default)]
    pub message_size: Option<usize>,
}

/// How a completion-mode server's rings were set up: what was asked, and what the kernel took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingSetup {
    /// `--fixed-files`: connections are fixed files (direct descriptors) rather than descriptors.
    pub fixed_files: bool,
    /// `--batch`: completions a wait asks for (1: return at the first).
    pub batch: u32,
    /// `--batch-wait` in microseconds: how long a wait may hold out for `batch` completions
    /// before it returns with fewer (0 with a batch of 1).
    pub batch_wait_us: u64,
    /// What the kernel took, by name: `single_issuer`, `defer_taskrun` (else `coop_taskrun`),
    /// `registered_ring` (the ring's descriptor registered), `fixed_files`, `min_wait` (it can
    /// hold out for a batch, Linux 6.12).
    pub features: Vec<String>,
}

/// Calls the macro `$then` with the list of a thread's counters, in the document's order: each
/// with its docs and serde attributes, its name, its type in the document and what counts it:
/// `always`, or only the threads that count their `calls`, wait on a `listener` or run a
/// completion `ring` (`null` in the document elsewhere). The one list from which [`Counters`]
/// is made here and bench-server makes its own plain counts, so that a counter is added in one
/// place.
#[macro_export]
macro_rules! server_counters {
    ($then:ident) => {
        $then! {
            /// Connections accepted.
            accepted: u64 = always,
            /// Connections closed (by the client, an error, or shutdown).
            closed: u64 = always,
            /// Connections accepted but closed at once: the backend could not watch them (select
            /// above FD_SETSIZE) or registration failed.
            rejected: u64 = always,
            /// Bytes read from clients.
            bytes_in: u64 = always,
            /// Bytes written to clients.
            bytes_out: u64 = always,
            /// read() calls that returned data or end-of-file.
            reads: u64 = always,
            /// write() calls that wrote something.
            writes: u64 = always,
            /// Calls to wait, the zero-timeout polls of `--busy-poll` included.
            waits: u64 = always,
            /// Events returned by all waits.
            events: u64 = always,
            /// Waits that returned events but led to no work (nothing accepted, read or written):
            /// the thundering herd and spurious wake-ups.
            empty_wakeups: u64 = always,
            /// Times accepting was paused (connection limit, or EMFILE/ENFILE).
            accept_pauses: u64 = always,
            /// Every read, write and accept call on sockets and every poller call (wait, register,
            /// modify, deregister), whatever it returned: those that returned WouldBlock (EAGAIN),
            /// an error or nothing included. So `syscalls >= reads + writes + waits + registrations
            /// + would_block`; the rest are accepts that returned a connection (or an error) and
            /// reads and writes that failed. What a poller call costs in system calls depends on
            /// the backend: see [`Counters`]. The threads baseline: its accept, read and write
            /// calls (blocking sockets). `null` for the tokio baseline: its reads and writes go
            /// through tokio, which makes the system calls (and retries those that would block, and
            /// waits in epoll) where bench-server cannot count them; `null` in documents written
            /// before it existed (added within version 1).
            #[serde(default)] syscalls: Option<u64> = calls,
            /// Poller register, modify and deregister calls (failed ones included): connections
            /// registered and deregistered, interest changed (writable while a client does not
            /// read; every re-arm in oneshot mode), the listener paused and resumed. A registration
            /// is a system call on epoll and kqueue, a table change on select and poll, and a
            /// queued submission on io_uring (deregister: submitted at once); see [`Counters`]. 0
            /// for the threads baseline (no poller); `null` for tokio and in documents written
            /// before it existed.
            #[serde(default)] registrations: Option<u64> = calls,
            /// Read, write and accept calls that returned WouldBlock (EAGAIN): counted in
            /// [`syscalls`](Self::syscalls), not in [`reads`](Self::reads) or
            /// [`writes`](Self::writes). E.g. the edge-triggered loop's read that finds a drained
            /// socket, the accept that ends a burst. 0 for the threads baseline (blocking sockets);
            /// `null` for tokio and in documents written before it existed.
            #[serde(default)] would_block: Option<u64> = calls,
            /// Wake-ups (waits that returned) whose events reported this loop's listener readable:
            /// the loop then tried to accept. With `shared`, one connection wakes every loop
            /// blocked in a wait; with `reuseport`, only the loop whose listener the kernel chose;
            /// with `exclusive` (`EPOLLEXCLUSIVE`), one or more. A loop accepts at most 64
            /// connections per wake-up, so `listener_wakeups - listener_wakeups_empty >= accepted /
            /// 64`, and equals `accepted` when connections arrive one after another. `null` where
            /// no loop waits on a listener: the `acceptor` strategy (its acceptor thread blocks in
            /// accept(), one connection per return, so it has no empty wake-ups; its accepts are
            /// the loops' `accepted`), the threads baseline (blocking accept) and tokio (inside
            /// tokio); and in documents written before it existed (added within version 1).
            #[serde(default)] listener_wakeups: Option<u64> = listener,
            /// Of [`listener_wakeups`](Self::listener_wakeups), those that accepted nothing: the
            /// first accept returned WouldBlock (another loop had taken the connection: the
            /// thundering herd), or accepting paused at once (`--max-conns`, EMFILE). Also counted
            /// in [`empty_wakeups`](Self::empty_wakeups) when the wake-up did no other work. `null`
            /// where `listener_wakeups` is.
            #[serde(default)] listener_wakeups_empty: Option<u64> = listener,
            /// Completion mode (`io_uring_completion`): requests submitted to the ring (accepts,
            /// receives, sends, cancels; a multishot request once). Its completions are `events`,
            /// its `io_uring_enter` calls `waits`. `null` for every other server, and in documents
            /// written before it existed (added within version 1).
            #[serde(default)] ring_submissions: Option<u64> = ring,
            /// Completion mode: receives ended because the provided buffer ring was empty
            /// (ENOBUFS), each re-armed once buffers came back. `null` elsewhere.
            #[serde(default)] ring_enobufs: Option<u64> = ring,
            /// Completion mode: provided buffers held by the loop (received, not yet sent back)
            /// when it last published its counts. `null` elsewhere.
            #[serde(default)] ring_buffers_in_use: Option<u64> = ring,
        }
    };
}

/// Makes [`Counters`] and its sum from the list of [`server_counters!`].
macro_rules! counters_struct {
    ($($(#[$attr:meta])* $name:ident: $ty:ty = $counted:ident,)*) => {
        /// What a thread counted. (bench-server counts in plain integers of its own and writes them
        /// here; the call counts are `null` where it could not count them.)
        ///
        /// The call counts — [`syscalls`](Self::syscalls), [`registrations`](Self::registrations),
        /// [`would_block`](Self::would_block) — count calls bench-server makes: each call of read,
        /// write or accept on a socket, and of the poller's wait, register, modify and deregister,
        /// is one. On epoll each is exactly one system call. Elsewhere a poller call is not always
        /// one:
        ///
        /// - select, poll: register, modify and deregister change a table in user space (no system
        ///   call); the wait hands the whole table to the kernel.
        /// - io_uring (readiness: one `IORING_OP_POLL_ADD` per registration): register and modify
        ///   queue a submission that the next wait's `io_uring_enter` carries (no system call of
        ///   their own); a deregister of an armed poll submits its cancellation at once (one
        ///   `io_uring_enter`); a wait is one `io_uring_enter` or more (it waits again when only
        ///   completions of cancelled polls arrived), and re-arming level polls rides on it.
        /// - kqueue: each registration change is one `kevent` call; on Linux, libkqueue implements
        ///   `kevent` in user space with epoll calls of its own.
        /// - Any backend: a wait interrupted by a signal is retried inside the poller, and draining
        ///   the waker's descriptor is a read inside the wait; neither is seen here.
        ///
        /// Not counted anywhere: per-connection setup and teardown (`setsockopt(TCP_NODELAY)`,
        /// making a socket non-blocking, `close`; the threads baseline's `dup` and thread
        /// creation), the accept and wake-up calls of the `acceptor` strategy's thread, and the
        /// process's own housekeeping (signals, the summary line, the stats file). They are a few
        /// per connection, against the counted calls per message.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Counters {
            $($(#[$attr])* pub $name: $ty,)*
        }

        impl Counters {
            /// Add `other`'s counts to these. A count that is `null` on one side is the other
            /// side's (`null` + n = n): the threads of one document all count calls, or none does.
            pub fn add(&mut self, other: &Counters) {
                $(self.$name = Count::plus(self.$name, other.$name);)*
            }
        }
    };
}

server_counters!(counters_struct);

/// A counter of the document, summed over threads.
trait Count: Copy {
    fn plus(self, other: Self) -> Self;
}

impl Count for u64 {
    fn plus(self, other: u64) -> u64 {
        self + other
    }
}

impl Count for Option<u64> {
    fn plus(self, other: Option<u64>) -> Option<u64> {
        match (self, other) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        }
    }
}

impl Counters {
    /// Open connections: accepted minus closed and rejected.
    pub fn active(&self) -> u64 {
        self.accepted.saturating_sub(self.closed + self.rejected)
    }
}

/// One thread's section: an event loop, or a baseline's threads together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadStats {
    /// The loop's index, from 0.
    pub id: usize,
    /// The core the loop was pinned to; `null` when not pinned.
    #[serde(deserialize_with = "crate::file::required")]
    pub core: Option<usize>,
    /// Connections open when shutdown began.
    pub active: u64,
    /// Its counts, as fields of this object.
    #[serde(flatten)]
    pub counters: Counters,
}

/// The sum over threads, with derived ratios.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Connections open when shutdown began, over all threads.
    pub active: u64,
    /// The threads' counts added up, as fields of this object.
    #[serde(flatten)]
    pub counters: Counters,
    /// Events per wait (0 when there was no wait).
    pub events_per_wait: f64,
    /// Spread of accepted connections over threads: (max - min) / mean; 0 = perfectly even (or
    /// nothing accepted).
    pub accept_spread: f64,
}

impl Totals {
    /// The totals of these threads.
    pub fn of(threads: &[ThreadStats]) -> Totals {
        let mut counters = Counters::default();
        for t in threads {
            counters.add(&t.counters);
        }
        let accepted: Vec<u64> = threads.iter().map(|t| t.counters.accepted).collect();
        let mean = accepted.iter().sum::<u64>() as f64 / accepted.len().max(1) as f64;
        let spread = match (accepted.iter().max(), accepted.iter().min()) {
            (Some(&max), Some(&min)) if mean > 0.0 => (max - min) as f64 / mean,
            _ => 0.0,
        };
        Totals {
            active: threads.iter().map(|t| t.active).sum(),
            counters,
            events_per_wait: if counters.waits == 0 {
                0.0
            } else {
                counters.events as f64 / counters.waits as f64
            },
            accept_spread: spread,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::read_json;

    /// A document as bench-server writes it today (`--backend epoll --threads 2 --pin`, one
    /// second of load-gen, 4 connections of 64 B messages). Only `duration_s` is shortened (it
    /// was 1.5124393170000001):
    /// serde_json without its `float_roundtrip` feature may read a float one ulp off, and the test
    /// compares the document written back byte for byte. `accept_intervals` and the listener
    /// wake-ups are written by hand, consistent with the rest: each column of `accept_intervals`
    /// adds up to that thread's `accepted`.
    const CURRENT: &str = r#"{
  "schema": "pollbench.bench-server.stats/1",
  "config": {
    "addr": "127.0.0.1:0",
    "backend": "epoll",
    "mechanism": "epoll",
    "trigger": "edge",
    "accept": "reuseport",
    "threads": 2,
    "pinned": true,
    "max_conns": 100000,
    "buf_size": 16384,
    "events": 1024,
    "busy_poll_us": 0,
    "ring": null,
    "work_ns": null,
    "message_size": null
  },
  "listen_addr": "127.0.0.1:33313",
  "allocations": null,
  "duration_s": 1.512439317,
  "cpu": {
    "user_s": 0.217545,
    "system_s": 0.326318,
    "voluntary_switches": 32144,
    "involuntary_switches": 114
  },
  "accept_intervals": [
    [
      3,
      0
    ],
    [
      0,
      1
    ]
  ],
  "seconds": [
    {
      "at_unix_s": 1764662401.0021,
      "cpu_user_s": 0.141,
      "cpu_system_s": 0.213,
      "counters": {
        "accepted": 4,
        "closed": 0,
        "rejected": 0,
        "bytes_in": 1521920,
        "bytes_out": 1521920,
        "reads": 23780,
        "writes": 23780,
        "waits": 22950,
        "events": 23784,
        "empty_wakeups": 0,
        "accept_pauses": 0,
        "syscalls": 70510,
        "registrations": 8,
        "would_block": 0,
        "listener_wakeups": 5,
        "listener_wakeups_empty": 1,
        "ring_submissions": null,
        "ring_enobufs": null,
        "ring_buffers_in_use": null
      }
    }
  ],
  "totals": {
    "active": 0,
    "accepted": 4,
    "closed": 4,
    "rejected": 0,
    "bytes_in": 2281856,
    "bytes_out": 2281856,
    "reads": 35658,
    "writes": 35654,
    "waits": 34399,
    "events": 35660,
    "empty_wakeups": 0,
    "accept_pauses": 0,
    "syscalls": 105727,
    "registrations": 10,
    "would_block": 2,
    "listener_wakeups": 5,
    "listener_wakeups_empty": 1,
    "ring_submissions": null,
    "ring_enobufs": null,
    "ring_buffers_in_use": null,
    "events_per_wait": 1.036658042384953,
    "accept_spread": 1.0
  },
  "threads": [
    {
      "id": 0,
      "core": 0,
      "active": 0,
      "accepted": 3,
      "closed": 3,
      "rejected": 0,
      "bytes_in": 1641600,
      "bytes_out": 1641600,
      "reads": 25653,
      "writes": 25650,
      "waits": 24392,
      "events": 25654,
      "empty_wakeups": 0,
      "accept_pauses": 0,
      "syscalls": 75706,
      "registrations": 7,
      "would_block": 1,
      "listener_wakeups": 3,
      "listener_wakeups_empty": 0,
      "ring_submissions": null,
      "ring_enobufs": null,
      "ring_buffers_in_use": null
    },
    {
      "id": 1,
      "core": 1,
      "active": 0,
      "accepted": 1,
      "closed": 1,
      "rejected": 0,
      "bytes_in": 640256,
      "bytes_out": 640256,
      "reads": 10005,
      "writes": 10004,
      "waits": 10007,
      "events": 10006,
      "empty_wakeups": 0,
      "accept_pauses": 0,
      "syscalls": 30021,
      "registrations": 3,
      "would_block": 1,
      "listener_wakeups": 2,
      "listener_wakeups_empty": 1,
      "ring_submissions": null,
      "ring_enobufs": null,
      "ring_buffers_in_use": null
    }
  ]
}
"#;

    /// Write `text` to a file of its own and read it as a stats document.
    fn read(name: &str, text: &str) -> Result<ServerStats, String> {
        let dir = std::env::temp_dir().join(format!("schema-server-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.server.json"));
        std::fs::write(&path, text).unwrap();
        let result = read_json::<ServerStats>(&path);
        std::fs::remove_file(&path).unwrap();
        result
    }

    /// The current document with `edit` applied to its JSON.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(CURRENT).unwrap();
        edit(&mut v);
        v.to_string()
    }

    #[test]
    fn a_current_document_reads_typed_and_writes_back_unchanged() {
        let stats = read("current", CURRENT).unwrap();
        assert_eq!(stats.config.mechanism, "epoll");
        assert_eq!(stats.config.accept.as_deref(), Some("reuseport"));
        assert_eq!(stats.allocations, None);
        assert_eq!(stats.totals.counters.reads, 35658);
        assert_eq!(stats.threads[1].core, Some(1));
        assert_eq!(stats.threads[0].counters.accepted, 3);
        let cpu = stats.cpu.expect("cpu");
        assert_eq!((cpu.user_s, cpu.system_s), (0.217545, 0.326318));
        assert_eq!(cpu.voluntary_switches, 32144);
        assert_eq!(stats.totals.counters.syscalls, Some(105727));
        assert_eq!(stats.threads[1].counters.registrations, Some(3));
        assert_eq!(stats.threads[0].counters.would_block, Some(1));
        assert_eq!(stats.accept_intervals, Some(vec![vec![3, 0], vec![0, 1]]));
        let second = &stats.seconds.as_ref().expect("seconds")[0];
        assert_eq!(
            (second.counters.bytes_out, second.counters.syscalls),
            (1521920, Some(70510))
        );
        assert_eq!(stats.totals.counters.listener_wakeups, Some(5));
        assert_eq!(stats.threads[1].counters.listener_wakeups_empty, Some(1));
        // Same keys, same order, same values: the struct is the document.
        let mut written = serde_json::to_string_pretty(&stats).unwrap();
        written.push('\n');
        assert_eq!(written, CURRENT);
        // The totals are what Totals::of derives from the threads.
        assert_eq!(Totals::of(&stats.threads), stats.totals);
    }

    /// `--work` and `--message-size` came within version 1: a document without them reads as work
    /// off, and a document with them writes back what it read.
    #[test]
    fn work_reads_as_off_when_absent_and_round_trips_when_given() {
        let older = edited(|v| {
            let config = v["config"].as_object_mut().unwrap();
            config.remove("work_ns").unwrap();
            config.remove("message_size").unwrap();
        });
        assert!(!older.contains("work_ns") && !older.contains("message_size"));
        let stats = read("before-work", &older).unwrap();
        assert_eq!(
            (stats.config.work_ns, stats.config.message_size),
            (None, None)
        );
        let worked = edited(|v| {
            v["config"]["work_ns"] = 200_000.into();
            v["config"]["message_size"] = 64.into();
        });
        let stats = read("work", &worked).unwrap();
        assert_eq!(
            (stats.config.work_ns, stats.config.message_size),
            (Some(200_000), Some(64))
        );
        let back: serde_json::Value = serde_json::to_value(&stats).unwrap();
        assert_eq!(back["config"]["work_ns"], 200_000);
        assert_eq!(back["config"]["message_size"], 64);
    }

    /// Fields added within version 1 after results were committed (`cpu`, and the call counts of
    /// the threads and totals) read as `None` from a document written before them, such as the
    /// reference run's; and a document can say `null` for them (tokio's call counts).
    #[test]
    fn fields_added_within_version_1_read_as_none_when_absent_or_null() {
        const ADDED: [&str; 8] = [
            "syscalls",
            "registrations",
            "would_block",
            "listener_wakeups",
            "listener_wakeups_empty",
            "ring_submissions",
            "ring_enobufs",
            "ring_buffers_in_use",
        ];
        // Apply `f` to the totals and to every thread.
        fn each_counters(v: &mut serde_json::Value, f: impl Fn(&mut serde_json::Value)) {
            f(&mut v["totals"]);
            v["threads"].as_array_mut().unwrap().iter_mut().for_each(f);
        }
        let older = edited(|v| {
            v.as_object_mut().unwrap().remove("cpu").unwrap();
            v["config"].as_object_mut().unwrap().remove("ring").unwrap();
            v.as_object_mut()
                .unwrap()
                .remove("accept_intervals")
                .unwrap();
            v.as_object_mut().unwrap().remove("seconds").unwrap();
            each_counters(v, |o| {
                for field in ADDED {
                    o.as_object_mut().unwrap().remove(field).unwrap();
                }
            });
        });
        assert!(
            !older.contains("syscalls")
                && !older.contains("\"cpu\"")
                && !older.contains("listener_wakeups")
                && !older.contains("accept_intervals")
        );
        let stats = read("older", &older).unwrap();
        assert_eq!(stats.cpu, None);
        assert_eq!(stats.config.ring, None);
        assert_eq!(stats.accept_intervals, None);
        assert_eq!(stats.seconds, None);
        for c in
            std::iter::once(&stats.totals.counters).chain(stats.threads.iter().map(|t| &t.counters))
        {
            assert_eq!(
                (c.syscalls, c.registrations, c.would_block),
                (None, None, None)
            );
            assert_eq!((c.listener_wakeups, c.listener_wakeups_empty), (None, None));
        }
        // Everything else as before, and the totals still those of the threads.
        assert_eq!(stats.totals.counters.reads, 35658);
        assert_eq!(Totals::of(&stats.threads), stats.totals);

        let tokio = edited(|v| {
            each_counters(v, |o| {
                for field in ADDED {
                    o[field] = serde_json::Value::Null;
                }
            });
        });
        let stats = read("nulls", &tokio).unwrap();
        assert_eq!(stats.totals.counters.syscalls, None);
        assert_eq!(stats.totals.counters.listener_wakeups, None);
        assert_eq!(Totals::of(&stats.threads), stats.totals);
        // Written back, `null` is written, not left out.
        let written = serde_json::to_value(&stats).unwrap();
        assert!(written["threads"][0]["syscalls"].is_null());
        assert!(written["totals"]
            .as_object()
            .unwrap()
            .contains_key("would_block"));
    }

    #[test]
    fn a_missing_field_is_an_error_naming_the_file_and_the_field() {
        // (the object, as a JSON pointer, and the field removed from it): plain fields, `Option`s
        // (which serde alone would read as `None`), nested and flattened ones.
        let cases = [
            ("", "duration_s"),
            ("", "allocations"),
            ("/config", "mechanism"),
            ("/config", "trigger"),
            ("/threads/1", "core"),
            ("/threads/0", "waits"),
            ("/totals", "reads"),
            ("/totals", "accept_spread"),
        ];
        for (object, field) in cases {
            let text = edited(|v| {
                v.pointer_mut(object)
                    .and_then(|o| o.as_object_mut())
                    .and_then(|o| o.remove(field))
                    .expect("the sample has the field");
            });
            let err = read(field, &text).unwrap_err();
            assert!(
                err.contains(&format!("{field}.server.json"))
                    && err.contains(&format!("missing field `{field}`")),
                "{object}/{field}: {err}"
            );
        }
        let err = read(
            "mistyped",
            &edited(|v| v["threads"][0]["core"] = "zero".into()),
        )
        .unwrap_err();
        assert!(err.contains("threads[0].core"), "{err}");
    }

    #[test]
    fn another_schema_is_refused() {
        let err = read(
            "other",
            &edited(|v| v["schema"] = "pollbench.bench-server.stats/2".into()),
        )
        .unwrap_err();
        assert!(
            err.contains("other.server.json")
                && err.contains("pollbench.bench-server.stats/2")
                && err.contains(SCHEMA),
            "{err}"
        );
        let err = read(
            "run",
            &edited(|v| v["schema"] = "pollbench.load-gen.run/1".into()),
        )
        .unwrap_err();
        assert!(err.contains("pollbench.load-gen.run/1"), "{err}");
    }
}
