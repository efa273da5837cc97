//! Merging the workers' measurements, the human summary, the JSON document and the hlog.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::worker::{new_histogram, Errors, WorkerResult};

/// Percentiles in microseconds.
#[derive(Serialize, Debug)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// One second of the run.
#[derive(Serialize, Debug)]
pub struct IntervalReport {
    pub second: usize,
    pub throughput_msgs_per_s: u64,
    pub p99_us: u64,
}

/// The `--json` document; its schema is documented in load-gen/README.md.
#[derive(Serialize)]
pub struct Report<'a, C: Serialize> {
    pub schema: &'static str,
    pub config: &'a C,
    pub connections: usize,
    pub connections_alive_at_end: usize,
    pub messages: u64,
    /// Messages due inside the measured window that were not echoed by its end.
    pub unfinished_messages: u64,
    pub bytes: u64,
    pub duration_s: f64,
    pub throughput_msgs_per_s: f64,
    pub throughput_bytes_per_s: f64,
    pub latency_us: Percentiles,
    pub latency_uncorrected_us: Percentiles,
    pub errors: Errors,
    pub intervals: Vec<IntervalReport>,
    /// The run ended before its duration (Ctrl-C, or every connection gone).
    pub stopped_early: Option<String>,
    /// CPU time load-gen itself used per message, in microseconds (user + system).
    pub client_cpu_us_per_msg: Option<f64>,
}

pub const SCHEMA: &str = "pollbench.load-gen.run/1";

/// Everything merged over workers.
pub struct Merged {
    pub corrected: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
    pub intervals: Vec<(u64, Histogram<u64>)>,
    pub messages: u64,
    pub errors: Errors,
    pub alive: usize,
    pub unfinished: u64,
}

pub fn merge(results: Vec<WorkerResult>) -> Merged {
    let mut m = Merged {
        corrected: new_histogram(),
        uncorrected: new_histogram(),
        intervals: Vec::new(),
        messages: 0,
        errors: Errors::default(),
        alive: 0,
        unfinished: 0,
    };
    for r in results {
        m.corrected.add(&r.corrected).expect("same bounds");
        m.uncorrected.add(&r.uncorrected).expect("same bounds");
        m.messages += r.messages;
        m.errors.add(&r.errors);
        m.alive += r.alive;
        m.unfinished += r.unfinished;
        for (i, iv) in r.intervals.into_iter().enumerate() {
            while m.intervals.len() <= i {
                m.intervals.push((0, new_histogram()));
            }
            m.intervals[i].0 += iv.messages;
            m.intervals[i].1.add(&iv.latency).expect("same bounds");
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
        .map(|(second, (count, h))| IntervalReport {
            second,
            throughput_msgs_per_s: *count,
            p99_us: if h.is_empty() {
                0
            } else {
                h.value_at_quantile(0.99)
            },
        })
        .collect()
}

pub fn human_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

/// The human summary (stdout).
pub fn summary<C: Serialize>(r: &Report<'_, C>, open_loop: bool) -> String {
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

/// An HdrHistogram interval log (V2 compressed, with the version and legend lines) that
/// HdrHistogram's HistogramLogProcessor reads; values in microseconds. Written atomically.
/// `window_start` is the wall-clock time the measured window opened (after the warm-up): the log's
/// StartTime, from which its intervals count.
pub fn write_hlog(
    path: &Path,
    m: &Merged,
    window_start: SystemTime,
    measured: Duration,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let start_secs = window_start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    writeln!(
        buf,
        "#[Logged with pollbench load-gen {}]",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(buf, "#[Histogram log format version 1.3]")?;
    writeln!(buf, "#[StartTime: {start_secs:.3} (seconds since epoch)]")?;
    writeln!(
        buf,
        "#[Values are latencies in microseconds, corrected for coordinated omission]"
    )?;
    writeln!(
        buf,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut buf, &mut serializer)
            .map_err(std::io::Error::other)?;
        let n = (measured.as_secs_f64().ceil() as usize).min(m.intervals.len());
        for (i, (_, h)) in m.intervals.iter().take(n).enumerate() {
            writer
                .write_histogram(
                    h,
                    Duration::from_secs(i as u64),
                    Duration::from_secs(1),
                    None,
                )
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
    }
    pollbench_common::write_atomically(path, &buf)
}
