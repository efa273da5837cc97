//! What a load thread measures: each echoed message's latency from its intended and its actual
//! send and its send lateness, over the measured window and second by second, and its errors.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pollbench_schema::hlog::new_histogram;
use pollbench_schema::run::Errors;

/// A message issued and not yet echoed: one per scheduled message, the run's only memory that grows
/// with load (see [`crate::worker::in_flight_bound`]).
pub struct InFlight {
    pub intended: Instant,
    pub sent: Option<Instant>,
}

/// One second of measurement.
pub struct Interval {
    pub messages: u64,
    pub latency: Histogram<u64>,
    /// Latency from the actual send of the same messages.
    pub uncorrected: Histogram<u64>,
    /// Open loop: the send lateness of the messages measured in this second (empty in closed
    /// loop).
    pub lateness: Histogram<u64>,
    /// Churn: connect latency of the connections established in this second.
    pub connect: Histogram<u64>,
}

impl Interval {
    pub fn new() -> Interval {
        Interval {
            messages: 0,
            latency: new_histogram(),
            uncorrected: new_histogram(),
            lateness: new_histogram(),
            connect: new_histogram(),
        }
    }
}

/// What a worker measured (after warm-up only).
pub struct WorkerResult {
    pub corrected: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
    /// Open loop: each measured message's actual send minus its intended send time (empty in
    /// closed loop, which has no intended time).
    pub lateness: Histogram<u64>,
    pub intervals: Vec<Interval>,
    pub messages: u64,
    pub errors: Errors,
    /// Connections still alive at the end.
    pub alive: usize,
    /// Messages due inside the measured window but not echoed by its end (a server too slow to
    /// answer them at all); not in `messages` or the histograms, so reported on their own.
    pub unfinished: u64,
    /// Churn: connections established inside the measured window, and connect() to established
    /// of each, in microseconds.
    pub connects: u64,
    pub connect_latency: Histogram<u64>,
    /// Churn: why the run must stop (ports or descriptors exhausted), in one line.
    pub fatal: Option<String>,
}

impl WorkerResult {
    /// Nothing measured yet, over `alive` connections.
    pub fn new(alive: usize) -> WorkerResult {
        WorkerResult {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            lateness: new_histogram(),
            intervals: Vec::new(),
            messages: 0,
            errors: Errors::default(),
            alive,
            unfinished: 0,
            connects: 0,
            connect_latency: new_histogram(),
            fatal: None,
        }
    }
}

/// Count the echo of `f`, arrived at `now`, in the totals and in its second of the window that
/// opened at `measure_from`; send lateness only in open loop, where a message has a due time.
pub fn record(
    result: &mut WorkerResult,
    f: InFlight,
    now: Instant,
    measure_from: Instant,
    open_loop: bool,
) {
    let micros = |d: Duration| (d.as_micros() as u64).clamp(1, 60_000_000);
    let sent = f.sent.unwrap_or(f.intended);
    let corrected = micros(now.saturating_duration_since(f.intended));
    let uncorrected = micros(now.saturating_duration_since(sent));
    // Zero is a lateness (sent within the microsecond it was due), not clamped up like latency.
    let lateness = (sent.saturating_duration_since(f.intended).as_micros() as u64).min(60_000_000);
    result.corrected.saturating_record(corrected);
    result.uncorrected.saturating_record(uncorrected);
    if open_loop {
        result.lateness.saturating_record(lateness);
    }
    result.messages += 1;
    let second = now.saturating_duration_since(measure_from).as_secs() as usize;
    while result.intervals.len() <= second {
        result.intervals.push(Interval::new());
    }
    let interval = &mut result.intervals[second];
    interval.messages += 1;
    interval.latency.saturating_record(corrected);
    interval.uncorrected.saturating_record(uncorrected);
    if open_loop {
        interval.lateness.saturating_record(lateness);
    }
}
