//! Per-thread counters, the periodic one-line summary, and the JSON written on exit.
//!
//! Each loop counts in plain integers and publishes them with relaxed stores once per iteration, so
//! the hot path has no atomic read-modify-write; the main thread reads them for the summary.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

use crate::cli::Config;

/// The counters, as plain numbers (a loop's own copy, or a snapshot).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed (by the client, an error, or shutdown).
    pub closed: u64,
    /// Connections accepted but closed at once: the backend could not watch them (select above
    /// FD_SETSIZE) or registration failed.
    pub rejected: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// read() calls that returned data or end-of-file.
    pub reads: u64,
    /// write() calls that wrote something.
    pub writes: u64,
    /// Calls to wait.
    pub waits: u64,
    /// Events returned by all waits.
    pub events: u64,
    /// Waits that returned events but led to no work (nothing accepted, read or written): the
    /// thundering herd and spurious wake-ups.
    pub empty_wakeups: u64,
    /// Times accepting was paused (connection limit, or EMFILE/ENFILE).
    pub accept_pauses: u64,
}

impl Counters {
    const FIELDS: usize = 11;

    fn to_array(self) -> [u64; Self::FIELDS] {
        let c = self;
        [
            c.accepted,
            c.closed,
            c.rejected,
            c.bytes_in,
            c.bytes_out,
            c.reads,
            c.writes,
            c.waits,
            c.events,
            c.empty_wakeups,
            c.accept_pauses,
        ]
    }

    fn from_array(a: [u64; Self::FIELDS]) -> Counters {
        let [accepted, closed, rejected, bytes_in, bytes_out, reads, writes, waits, events, empty_wakeups, accept_pauses] =
            a;
        Counters {
            accepted,
            closed,
            rejected,
            bytes_in,
            bytes_out,
            reads,
            writes,
            waits,
            events,
            empty_wakeups,
            accept_pauses,
        }
    }

    fn add(&mut self, o: &Counters) {
        let (a, b) = (self.to_array(), o.to_array());
        *self = Counters::from_array(std::array::from_fn(|i| a[i] + b[i]));
    }

    /// Open connections: accepted minus closed and rejected.
    pub fn active(&self) -> u64 {
        self.accepted.saturating_sub(self.closed + self.rejected)
    }
}

/// The published copy of one thread's counters.
#[derive(Default)]
pub struct SharedCounters {
    fields: [AtomicU64; Counters::FIELDS],
}

impl SharedCounters {
    /// Publish a thread's current counters (only that thread writes).
    pub fn publish(&self, c: &Counters) {
        for (field, v) in self.fields.iter().zip(c.to_array()) {
            field.store(v, Relaxed);
        }
    }

    /// Add to the counters from any thread (the baselines, where connections share them).
    pub fn add(&self, c: &Counters) {
        for (field, v) in self.fields.iter().zip(c.to_array()) {
            if v != 0 {
                field.fetch_add(v, Relaxed);
            }
        }
    }

    /// A snapshot.
    pub fn load(&self) -> Counters {
        Counters::from_array(self.fields.each_ref().map(|f| f.load(Relaxed)))
    }
}

/// The sum of all threads' counters.
pub fn total(threads: &[Counters]) -> Counters {
    let mut t = Counters::default();
    for c in threads {
        t.add(c);
    }
    t
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    now.saturating_sub(before) as f64 / secs.max(1e-9)
}

/// The periodic stderr line: totals over the last interval.
pub fn summary_line(
    now: &Counters,
    before: &Counters,
    interval: Duration,
    elapsed: Duration,
) -> String {
    let s = interval.as_secs_f64();
    let waits = now.waits.saturating_sub(before.waits);
    let events = now.events.saturating_sub(before.events);
    let empty = now.empty_wakeups.saturating_sub(before.empty_wakeups);
    format!(
        "[{:>6.1}s] conns {} (+{} -{}) | in {}B/s out {}B/s | {} reads/s {} writes/s | {:.2} events/wait, {:.1}% empty",
        elapsed.as_secs_f64(),
        now.active(),
        now.accepted.saturating_sub(before.accepted),
        (now.closed + now.rejected).saturating_sub(before.closed + before.rejected),
        pollbench_common::human_count(rate(now.bytes_in, before.bytes_in, s)),
        pollbench_common::human_count(rate(now.bytes_out, before.bytes_out, s)),
        pollbench_common::human_count(rate(now.reads, before.reads, s)),
        pollbench_common::human_count(rate(now.writes, before.writes, s)),
        if waits == 0 { 0.0 } else { events as f64 / waits as f64 },
        if waits == 0 { 0.0 } else { 100.0 * empty as f64 / waits as f64 },
    )
}

/// One thread's section of the JSON.
#[derive(Serialize)]
pub struct ThreadReport {
    pub id: usize,
    /// The core the loop was pinned to, if pinned.
    pub core: Option<usize>,
    /// Connections open when shutdown began.
    pub active: u64,
    #[serde(flatten)]
    pub counters: Counters,
}

/// The whole JSON document (schema documented in bench-server/README.md).
#[derive(Serialize)]
pub struct Report<'a> {
    pub schema: &'static str,
    pub config: &'a Config,
    /// The address actually listened on (port 0 resolved).
    pub listen_addr: std::net::SocketAddr,
    /// Heap allocations (and reallocations) since start; only with the `count-allocs` feature.
    pub allocations: Option<u64>,
    pub duration_s: f64,
    pub totals: Totals,
    pub threads: Vec<ThreadReport>,
}

/// The sum over threads, with derived ratios.
#[derive(Serialize)]
pub struct Totals {
    pub active: u64,
    #[serde(flatten)]
    pub counters: Counters,
    pub events_per_wait: f64,
    /// Spread of accepted connections over threads: (max - min) / mean; 0 = perfectly even.
    pub accept_spread: f64,
}

impl Totals {
    pub fn new(threads: &[ThreadReport]) -> Totals {
        let counters = total(&threads.iter().map(|t| t.counters).collect::<Vec<_>>());
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

/// The schema identifier written into every stats file.
pub const SCHEMA: &str = "pollbench.bench-server.stats/1";
