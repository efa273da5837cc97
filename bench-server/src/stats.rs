//! Per-thread counters and the periodic one-line summary. The JSON written on exit is
//! `pollbench_schema::server::ServerStats`, whose [`Counters`] the loops' [`Counts`] become.
//!
//! Each loop counts in plain integers ([`Counts`]) and publishes them with relaxed stores once per
//! iteration, so the hot path has no atomic read-modify-write and no `Option` to test; the main
//! thread reads them for the summary and the JSON. [`Counts`] has every field of [`Counters`], as
//! a plain number: the document's call counts and listener wake-ups are `Option`s (`null` where
//! they are not counted: the tokio baseline's calls; the listener wake-ups of the baselines and of
//! the `acceptor` strategy's loops), and which threads count them is said once, by
//! [`SharedCounters::new`]. The counters are listed once, by
//! [`pollbench_schema::server_counters!`], from which [`Counts`] and its conversions are made here.
//!
//! The periodic summary also keeps each thread's `accepted` at every line, for the document's
//! `accept_intervals` (see [`Intervals`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use pollbench_schema::server::Counters;

/// Makes [`Counts`], [`FIELDS`], [`to_array`], [`from_array`] and [`Counts::counters`] from the
/// list of the document's counters.
macro_rules! counts {
    ($($(#[$attr:meta])* $name:ident: $ty:ty = $counted:ident,)*) => {
        /// A thread's counts, as plain numbers (a loop's own copy, or a snapshot): the fields of
        /// the stats document's [`Counters`], documented there.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counts {
            $(pub $name: u64,)*
        }

        impl Counts {
            /// The document's counters; the call counts only if `calls`, the listener wake-ups
            /// only if `listener`, the ring's counts only if `ring` (else `null`).
            pub fn counters(&self, calls: bool, listener: bool, ring: bool) -> Counters {
                let counted = Counted {
                    always: true,
                    calls,
                    listener,
                    ring,
                };
                Counters {
                    $($name: Document::of(self.$name, counted.$counted),)*
                }
            }
        }

        /// How many counters there are.
        const FIELDS: usize = [$(stringify!($name)),*].len();

        fn to_array(c: Counts) -> [u64; FIELDS] {
            [$(c.$name),*]
        }

        fn from_array(a: [u64; FIELDS]) -> Counts {
            let [$($name),*] = a;
            Counts { $($name),* }
        }
    };
}

pollbench_schema::server_counters!(counts);

/// Which groups of counters a thread counts (named as in the list of counters).
#[derive(Clone, Copy)]
struct Counted {
    always: bool,
    calls: bool,
    listener: bool,
    ring: bool,
}

/// A count as the document's field: a number, or `null` where the thread does not count it.
trait Document {
    fn of(count: u64, counted: bool) -> Self;
}

impl Document for u64 {
    fn of(count: u64, _counted: bool) -> u64 {
        count
    }
}

impl Document for Option<u64> {
    fn of(count: u64, counted: bool) -> Option<u64> {
        counted.then_some(count)
    }
}

impl Counts {
    /// Open connections: accepted minus closed and rejected.
    pub fn active(&self) -> u64 {
        self.accepted.saturating_sub(self.closed + self.rejected)
    }
}

/// The published copy of one thread's counters.
pub struct SharedCounters {
    fields: [AtomicU64; FIELDS],
    /// The thread counts its calls (`syscalls`, `registrations`, `would_block`).
    calls: bool,
    /// The thread waits on a listener and counts its wake-ups (`listener_wakeups`,
    /// `listener_wakeups_empty`).
    listener: bool,
    /// The thread runs an io_uring in completion mode and publishes its counts (`ring_*`).
    ring: bool,
}

impl SharedCounters {
    /// Counters of a thread that counts its calls (`calls`: the event loops, the threads
    /// baseline) or does not (tokio, whose calls happen inside tokio), and that waits on a listener
    /// and counts those wake-ups (`listener`: the event loops of `reuseport`, `exclusive` and
    /// `shared`) or does not (the `acceptor` strategy's loops, whose sockets are handed over by a
    /// thread blocked in accept; the threads baseline's blocking accept; tokio): the document has
    /// `null` for what a thread does not count; the ring's counts are only a completion loop's
    /// ([`SharedCounters::completion`]).
    pub fn new(calls: bool, listener: bool) -> SharedCounters {
        SharedCounters {
            fields: Default::default(),
            calls,
            listener,
            ring: false,
        }
    }

    /// Counters of a completion-mode loop: its calls and its ring's counts; no listener
    /// wake-ups (the kernel accepts).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // io_uring is Linux's
    pub fn completion() -> SharedCounters {
        SharedCounters {
            ring: true,
            ..SharedCounters::new(true, false)
        }
    }

    /// Publish a thread's current counts (only that thread writes).
    pub fn publish(&self, c: &Counts) {
        for (field, v) in self.fields.iter().zip(to_array(*c)) {
            field.store(v, Relaxed);
        }
    }

    /// Add to the counts from any thread (the baselines, where connections share them).
    pub fn add(&self, c: &Counts) {
        for (field, v) in self.fields.iter().zip(to_array(*c)) {
            if v != 0 {
                field.fetch_add(v, Relaxed);
            }
        }
    }

    /// A snapshot.
    pub fn load(&self) -> Counts {
        from_array(self.fields.each_ref().map(|f| f.load(Relaxed)))
    }

    /// A snapshot as the document's counters (call counts and listener wake-ups `null` unless this
    /// thread counts them).
    pub fn counters(&self) -> Counters {
        self.load().counters(self.calls, self.listener, self.ring)
    }
}

/// The sum of all threads' counts.
pub fn total(threads: &[Counts]) -> Counts {
    let mut sum = [0u64; FIELDS];
    for c in threads {
        for (s, v) in sum.iter_mut().zip(to_array(*c)) {
            *s += v;
        }
    }
    from_array(sum)
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    now.saturating_sub(before) as f64 / secs.max(1e-9)
}

/// What each thread accepted between two snapshots (`now` and `before`, thread by thread).
pub fn accepted_per_thread(now: &[Counts], before: &[Counts]) -> Vec<u64> {
    now.iter()
        .zip(before)
        .map(|(n, b)| n.accepted.saturating_sub(b.accepted))
        .collect()
}

/// The document's `accept_intervals`: what each thread accepted in each summary interval.
#[derive(Debug, Default)]
pub struct Intervals {
    rows: Vec<Vec<u64>>,
}

impl Intervals {
    /// One interval's accepts per thread (from [`accepted_per_thread`]).
    pub fn push(&mut self, accepted: Vec<u64>) {
        self.rows.push(accepted);
    }

    /// The rows, with the last part interval: from `before` (the snapshot of the last summary)
    /// to `last` (the threads' final counts), so that each column adds up to that thread's total.
    pub fn finish(mut self, last: &[Counts], before: &[Counts]) -> Vec<Vec<u64>> {
        self.rows.push(accepted_per_thread(last, before));
        self.rows
    }
}

/// The periodic stderr line: totals over the last interval, and what each thread accepted in it
/// (`now` and `before` are the threads' snapshots at this line and the last).
pub fn summary_line(
    now_threads: &[Counts],
    before_threads: &[Counts],
    interval: Duration,
    elapsed: Duration,
) -> String {
    let (now, before) = (&total(now_threads), &total(before_threads));
    let s = interval.as_secs_f64();
    let waits = now.waits.saturating_sub(before.waits);
    let events = now.events.saturating_sub(before.events);
    let empty = now.empty_wakeups.saturating_sub(before.empty_wakeups);
    let per_thread = accepted_per_thread(now_threads, before_threads);
    let per_thread = per_thread
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("/");
    let listener = now.listener_wakeups.saturating_sub(before.listener_wakeups);
    let listener_empty = now
        .listener_wakeups_empty
        .saturating_sub(before.listener_wakeups_empty);
    format!(
        "[{:>6.1}s] conns {} (+{} -{}) | in {}B/s out {}B/s | {} reads/s {} writes/s | {:.2} events/wait, {:.1}% empty | accepts per loop {} | listener wake-ups {} ({} empty)",
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
        per_thread,
        listener,
        listener_empty,
    ) + &ring_part(now)
}

/// The interval line's end for a completion server (one whose rings submitted anything): its
/// buffers out of the rings, which a soak watches for leaks.
fn ring_part(now: &Counts) -> String {
    if now.ring_submissions == 0 {
        return String::new();
    }
    format!(" | ring buffers in use {}", now.ring_buffers_in_use)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field a different number, in declaration order.
    fn distinct() -> Counts {
        from_array(std::array::from_fn(|i| i as u64 + 1))
    }

    #[test]
    fn every_count_reaches_its_own_field_of_the_document() {
        let c = distinct();
        assert_eq!(from_array(to_array(c)), c);
        let shared = SharedCounters::new(true, true);
        shared.publish(&c);
        shared.add(&c);
        assert_eq!(shared.load(), total(&[c, c]));
        // The document's field of each name has the count of the same name.
        let json = serde_json::to_value(c.counters(true, true, true)).unwrap();
        let expected = [
            ("accepted", c.accepted),
            ("closed", c.closed),
            ("rejected", c.rejected),
            ("bytes_in", c.bytes_in),
            ("bytes_out", c.bytes_out),
            ("reads", c.reads),
            ("writes", c.writes),
            ("waits", c.waits),
            ("events", c.events),
            ("empty_wakeups", c.empty_wakeups),
            ("accept_pauses", c.accept_pauses),
            ("syscalls", c.syscalls),
            ("registrations", c.registrations),
            ("would_block", c.would_block),
            ("listener_wakeups", c.listener_wakeups),
            ("listener_wakeups_empty", c.listener_wakeups_empty),
            ("ring_submissions", c.ring_submissions),
            ("ring_enobufs", c.ring_enobufs),
            ("ring_buffers_in_use", c.ring_buffers_in_use),
        ];
        assert_eq!(json.as_object().unwrap().len(), FIELDS);
        for (name, v) in expected {
            assert_eq!(json[name], v, "{name}");
        }
        assert_eq!(c.syscalls, 12, "declaration order");
    }

    #[test]
    fn a_thread_that_does_not_count_calls_writes_null_for_them() {
        let shared = SharedCounters::new(false, false);
        shared.add(&distinct());
        let c = shared.counters();
        assert_eq!(
            (c.syscalls, c.registrations, c.would_block),
            (None, None, None)
        );
        assert_eq!((c.listener_wakeups, c.listener_wakeups_empty), (None, None));
        assert_eq!(c.reads, 6);
        let c = SharedCounters::new(true, false).counters();
        assert_eq!((c.syscalls, c.listener_wakeups), (Some(0), None));
        let c = SharedCounters::new(true, true).counters();
        assert_eq!(c.listener_wakeups_empty, Some(0));
        assert_eq!(
            c.ring_submissions, None,
            "only completion loops have a ring"
        );
        let c = SharedCounters::completion().counters();
        assert_eq!((c.ring_enobufs, c.listener_wakeups), (Some(0), None));
    }

    #[test]
    fn the_summary_shows_each_loops_accepts_and_the_intervals_add_up() {
        let at = |accepted: [u64; 2], wakeups: u64, empty: u64| {
            accepted.map(|a| Counts {
                accepted: a,
                listener_wakeups: wakeups,
                listener_wakeups_empty: empty,
                ..Counts::default()
            })
        };
        let (start, first, last) = (at([0, 0], 0, 0), at([12, 0], 12, 5), at([12, 3], 15, 6));
        let line = summary_line(&first, &start, Duration::from_secs(1), Duration::ZERO);
        assert!(line.contains("accepts per loop 12/0"), "{line}");
        assert!(line.contains("listener wake-ups 24 (10 empty)"), "{line}");
        let mut intervals = Intervals::default();
        intervals.push(accepted_per_thread(&first, &start));
        assert_eq!(
            intervals.finish(&last, &first),
            vec![vec![12, 0], vec![0, 3]]
        );
    }
}
