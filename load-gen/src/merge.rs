//! `load-gen merge`: combine the interval logs of several client machines into one summary, exactly
//! (histograms are added, never averaged), aligning intervals on wall-clock seconds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::results::{human_us, IntervalReport, Percentiles};
use crate::worker::new_histogram;

/// The merged view of several logs.
#[derive(Serialize)]
pub struct Merged {
    pub schema: &'static str,
    pub files: Vec<PathBuf>,
    pub messages: u64,
    /// Distinct wall-clock seconds covered by any log.
    pub duration_s: u64,
    pub throughput_msgs_per_s: f64,
    pub latency_us: Percentiles,
    pub intervals: Vec<IntervalReport>,
}

/// Read one log: (absolute start second of each interval, histogram).
fn read_log(path: &Path) -> Result<Vec<(u64, Histogram<u64>)>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut start = Duration::ZERO;
    let mut out = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&text) {
        match entry.map_err(|e| {
            format!(
                "{}: not an HdrHistogram interval log ({e:?})",
                path.display()
            )
        })? {
            LogEntry::StartTime(t) | LogEntry::BaseTime(t) => start = t,
            LogEntry::Interval(h) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(h.encoded_histogram())
                    .map_err(|e| format!("{}: bad histogram encoding: {e}", path.display()))?;
                let hist: Histogram<u64> = deserializer
                    .deserialize(&mut &bytes[..])
                    .map_err(|e| format!("{}: bad histogram: {e:?}", path.display()))?;
                out.push(((start + h.start_timestamp()).as_secs(), hist));
            }
        }
    }
    if out.is_empty() {
        return Err(format!("{}: no interval histograms in it", path.display()));
    }
    Ok(out)
}

/// The whole measured (corrected) histogram of one log: its intervals added up.
pub fn total_of_log(path: &Path) -> Result<Histogram<u64>, String> {
    let mut total = new_histogram();
    for (_, hist) in read_log(path)? {
        total
            .add(&hist)
            .map_err(|e| format!("{}: {e:?}", path.display()))?;
    }
    Ok(total)
}

pub fn merge(files: &[PathBuf]) -> Result<Merged, String> {
    let mut total = new_histogram();
    let mut by_second: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
    for path in files {
        for (second, hist) in read_log(path)? {
            total
                .add(&hist)
                .map_err(|e| format!("{}: {e:?}", path.display()))?;
            by_second
                .entry(second)
                .or_insert_with(new_histogram)
                .add(&hist)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    let first = *by_second.keys().next().expect("at least one interval");
    let intervals: Vec<IntervalReport> = by_second
        .iter()
        .map(|(s, h)| IntervalReport {
            second: (s - first) as usize,
            throughput_msgs_per_s: h.len(),
            p99_us: h.value_at_quantile(0.99),
        })
        .collect();
    let duration_s = by_second.len() as u64;
    Ok(Merged {
        schema: "pollbench.load-gen.merge/1",
        files: files.to_vec(),
        messages: total.len(),
        duration_s,
        throughput_msgs_per_s: total.len() as f64 / duration_s.max(1) as f64,
        latency_us: Percentiles::of(&total),
        intervals,
    })
}

pub fn summary(m: &Merged) -> String {
    let l = &m.latency_us;
    format!(
        "{} logs: {} messages over {} s, {:.0} msgs/s\np50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}\n",
        m.files.len(),
        m.messages,
        m.duration_s,
        m.throughput_msgs_per_s,
        human_us(l.p50 as f64),
        human_us(l.p90 as f64),
        human_us(l.p99 as f64),
        human_us(l.p999 as f64),
        human_us(l.p9999 as f64),
        human_us(l.max as f64),
    )
}
