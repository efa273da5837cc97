//! Per-thread counters and the periodic one-line summary. The JSON written on exit is
//! `pollbench_schema::server::ServerStats`, whose [`Counters`] the loops count in.
//!
//! Each loop counts in plain integers and publishes them with relaxed stores once per iteration, so
//! the hot path has no atomic read-modify-write; the main thread reads them for the summary and
//! the JSON.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The counters, as plain numbers (a loop's own copy, or a snapshot): the stats document's own
/// struct, so what a loop counts is what the JSON has.
pub use pollbench_schema::server::Counters;

/// How many counters there are: [`to_array`] and [`from_array`] name each once.
const FIELDS: usize = 11;

fn to_array(c: Counters) -> [u64; FIELDS] {
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

fn from_array(a: [u64; FIELDS]) -> Counters {
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

/// The published copy of one thread's counters.
#[derive(Default)]
pub struct SharedCounters {
    fields: [AtomicU64; FIELDS],
}

impl SharedCounters {
    /// Publish a thread's current counters (only that thread writes).
    pub fn publish(&self, c: &Counters) {
        for (field, v) in self.fields.iter().zip(to_array(*c)) {
            field.store(v, Relaxed);
        }
    }

    /// Add to the counters from any thread (the baselines, where connections share them).
    pub fn add(&self, c: &Counters) {
        for (field, v) in self.fields.iter().zip(to_array(*c)) {
            if v != 0 {
                field.fetch_add(v, Relaxed);
            }
        }
    }

    /// A snapshot.
    pub fn load(&self) -> Counters {
        from_array(self.fields.each_ref().map(|f| f.load(Relaxed)))
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
