//! Merging the workers' measurements, and what a run reports from them: the run document (JSON),
//! the human summary and the hlog.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use pollbench_common::human_us;
use pollbench_schema::hlog::{Tagged, SEND_LATENESS_TAG};
use pollbench_schema::run::{IntervalReport, Percentiles, RunReport};

use crate::cli::RunArgs;
use crate::measure::{Interval, WorkerResult};

/// Everything merged over workers: what one worker measures, added up.
pub type Merged = WorkerResult;

pub fn merge(results: Vec<WorkerResult>) -> Merged {
    let mut m = WorkerResult::new(0);
    for r in results {
        m.corrected.add(&r.corrected).expect("same bounds");
        m.uncorrected.add(&r.uncorrected).expect("same bounds");
        m.lateness.add(&r.lateness).expect("same bounds");
        m.messages += r.messages;
        m.errors.add(&r.errors);
        m.alive += r.alive;
        m.unfinished += r.unfinished;
        m.connects += r.connects;
        m.connect_latency
            .add(&r.connect_latency)
            .expect("same bounds");
        if m.fatal.is_none() {
            m.fatal = r.fatal;
        }
        for (i, iv) in r.intervals.into_iter().enumerate() {
            while m.intervals.len() <= i {
                m.intervals.push(Interval::new());
            }
            let into = &mut m.intervals[i];
            into.messages += iv.messages;
            into.latency.add(&iv.latency).expect("same bounds");
            into.uncorrected.add(&iv.uncorrected).expect("same bounds");
            into.lateness.add(&iv.lateness).expect("same bounds");
            into.connect.add(&iv.connect).expect("same bounds");
        }
    }
    m
}

/// Intervals as reported: whole seconds only (a last partial second would understate throughput).
pub fn interval_reports(m: &Merged, measured: Duration) -> Vec<IntervalReport> {
    let whole = measured.as_secs() as usize;
    m.intervals
        .iter()
        .take(whole)
        .enumerate()
        .map(|(second, iv)| IntervalReport {
            second,
            throughput_msgs_per_s: iv.messages,
            p99_us: if iv.latency.is_empty() {
                0
            } else {
                iv.latency.value_at_quantile(0.99)
            },
        })
        .collect()
}

/// The run document: the options, and what the load threads measured (`merged`) in the measured
/// window (opened at `window_wall`, `measured` long) over `connections` connections, with the client's CPU time `cpu` in
/// it. Why the run stopped early is the watcher's reason `stopped_early`, unless a load thread's
/// fatal cause says more: when the watcher saw nothing, or only the stop that cause set.
pub fn report(
    args: &RunArgs,
    merged: &Merged,
    connections: usize,
    (window_wall, measured): (SystemTime, Duration),
    stopped_early: Option<String>,
    cpu: Duration,
) -> RunReport {
    let secs = measured.as_secs_f64().max(1e-9);
    let churn = args.messages_per_connection.is_some();
    let stopped_early = match &merged.fatal {
        Some(f) if stopped_early.is_none() || stopped_early.as_deref() == Some("interrupted") => {
            Some(f.clone())
        }
        _ => stopped_early,
    };
    RunReport {
        schema: pollbench_schema::run::SCHEMA.into(),
        config: args.config(),
        connections,
        connections_alive_at_end: merged.alive,
        messages: merged.messages,
        unfinished_messages: merged.unfinished,
        bytes: merged.messages * args.size as u64,
        duration_s: measured.as_secs_f64(),
        window_start_unix_s: window_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64()),
        throughput_msgs_per_s: merged.messages as f64 / secs,
        throughput_bytes_per_s: (merged.messages * args.size as u64) as f64 / secs,
        latency_us: Percentiles::of(&merged.corrected),
        latency_uncorrected_us: Percentiles::of(&merged.uncorrected),
        send_lateness_us: args
            .rate
            .is_some()
            .then(|| Percentiles::of(&merged.lateness)),
        errors: merged.errors,
        intervals: interval_reports(merged, measured),
        stopped_early,
        client_cpu_us_per_msg: (merged.messages > 0)
            .then(|| cpu.as_secs_f64() * 1e6 / merged.messages as f64),
        connects: churn.then_some(merged.connects),
        connections_per_s: churn.then(|| merged.connects as f64 / secs),
        connect_latency_us: churn.then(|| Percentiles::of(&merged.connect_latency)),
        clients: None,
    }
}

/// The summary's latency table: percentiles from the intended send (corrected, in open loop) and
/// from the actual send, side by side.
fn latency_table(s: &mut String, r: &RunReport, open_loop: bool) {
    let label = if open_loop {
        "corrected (from intended send)"
    } else {
        "latency"
    };
    let _ = writeln!(
        s,
        "{:<32} {:>10} {:>10}",
        "percentile",
        label.split(' ').next().unwrap(),
        "uncorrected"
    );
    let rows: [(&str, u64, u64); 6] = [
        ("p50", r.latency_us.p50, r.latency_uncorrected_us.p50),
        ("p90", r.latency_us.p90, r.latency_uncorrected_us.p90),
        ("p99", r.latency_us.p99, r.latency_uncorrected_us.p99),
        ("p99.9", r.latency_us.p999, r.latency_uncorrected_us.p999),
        ("p99.99", r.latency_us.p9999, r.latency_uncorrected_us.p9999),
        ("max", r.latency_us.max, r.latency_uncorrected_us.max),
    ];
    for (name, a, b) in rows {
        let _ = writeln!(
            s,
            "{:<32} {:>10} {:>10}",
            name,
            human_us(a as f64),
            human_us(b as f64)
        );
    }
}

/// The human summary (stdout).
pub fn summary(r: &RunReport, open_loop: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} messages in {:.2} s: {:.0} msgs/s, {:.2} MB/s over {} connections ({} alive at the end)",
        r.messages,
        r.duration_s,
        r.throughput_msgs_per_s,
        r.throughput_bytes_per_s / 1e6,
        r.connections,
        r.connections_alive_at_end
    );
    latency_table(&mut s, r, open_loop);
    let e = &r.errors;
    let _ = writeln!(
        s,
        "errors: {} (connect {}, mismatch {}, closed {}, reset {}, timeout {})",
        e.total(),
        e.connect,
        e.mismatch,
        e.closed,
        e.reset,
        e.timeout
    );
    if let Some(l) = &r.send_lateness_us {
        let _ = writeln!(
            s,
            "send lateness (actual send - intended): p50 {}  p99 {}  max {}  (client CPU {} per message)",
            human_us(l.p50 as f64),
            human_us(l.p99 as f64),
            human_us(l.max as f64),
            r.client_cpu_us_per_msg
                .map_or_else(|| "-".to_string(), human_us)
        );
    }
    if let (Some(connects), Some(per_s), Some(connect)) =
        (r.connects, r.connections_per_s, &r.connect_latency_us)
    {
        let _ = writeln!(
            s,
            "churn: {connects} connections made ({per_s:.0}/s), connect p50 {}  p99 {}  max {}",
            human_us(connect.p50 as f64),
            human_us(connect.p99 as f64),
            human_us(connect.max as f64)
        );
    }
    if r.unfinished_messages > 0 {
        let _ = writeln!(
            s,
            "unfinished: {} messages were due in the window and not echoed by its end (not in the figures above)",
            r.unfinished_messages
        );
    }
    if let Some(why) = &r.stopped_early {
        let _ = writeln!(s, "stopped early: {why}");
    }
    s
}

/// The interval log of a run: one histogram of corrected latency per whole or partial measured
/// second, from the measured window's start (`window_start`, wall clock), untagged; the same
/// messages' uncorrected latency, tagged `uncorrected`; in open loop also their send lateness,
/// tagged [`SEND_LATENESS_TAG`]; under churn the connect latency, tagged `connect`.
pub fn write_hlog(
    path: &Path,
    m: &Merged,
    window_start: SystemTime,
    measured: Duration,
    open_loop: bool,
    churn: bool,
) -> std::io::Result<()> {
    let n = (measured.as_secs_f64().ceil() as usize).min(m.intervals.len());
    let shown = &m.intervals[..n];
    let latency: Vec<&Histogram<u64>> = shown.iter().map(|iv| &iv.latency).collect();
    let uncorrected: Vec<&Histogram<u64>> = shown.iter().map(|iv| &iv.uncorrected).collect();
    let lateness: Vec<&Histogram<u64>> = shown.iter().map(|iv| &iv.lateness).collect();
    let connect: Vec<&Histogram<u64>> = shown.iter().map(|iv| &iv.connect).collect();
    let mut tagged = vec![Tagged {
        tag: pollbench_schema::hlog::UNCORRECTED_TAG,
        intervals: &uncorrected,
    }];
    if open_loop {
        tagged.push(Tagged {
            tag: SEND_LATENESS_TAG,
            intervals: &lateness,
        });
    }
    if churn {
        tagged.push(Tagged {
            tag: pollbench_schema::hlog::CONNECT_TAG,
            intervals: &connect,
        });
    }
    let tagged: &[Tagged] = &tagged;
    pollbench_schema::hlog::write_series(path, &latency, tagged, window_start)
}

/// Write --json and --hlog (each atomically); false if either could not be written.
pub fn write_outputs(
    args: &RunArgs,
    report: &RunReport,
    merged: &Merged,
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
        if let Err(e) = write_hlog(
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
