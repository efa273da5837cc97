//! `load-gen merge`: combine the interval logs of several client machines into one summary, exactly
//! (histograms are added, never averaged), aligning intervals on wall-clock seconds. Send lateness
//! (the logs' `Tag=send_lateness` series) is merged the same way, apart from latency.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hdrhistogram::Histogram;
use pollbench_common::human_us;
use pollbench_schema::hlog::{new_histogram, read_log, CONNECT_TAG, SEND_LATENESS_TAG};
use pollbench_schema::run::{IntervalReport, Percentiles};
use serde::Serialize;

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
    /// Send lateness over every log (open-loop runs log it); null unless every log has it, since
    /// a figure over some clients' messages only would pass for all of them.
    pub send_lateness_us: Option<Percentiles>,
    /// Connection churn: connect() to established over every log's `Tag=connect` series; null
    /// unless every log has it.
    pub connect_latency_us: Option<Percentiles>,
    /// Why send lateness is null although some logs have it.
    #[serde(skip)]
    pub note: Option<String>,
}

pub fn merge(files: &[PathBuf]) -> Result<Merged, String> {
    let mut total = new_histogram();
    let mut lateness = new_histogram();
    let mut without_lateness = Vec::new();
    let mut connect = new_histogram();
    let mut with_connect = 0;
    let mut by_second: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
    for path in files {
        let log = read_log(path)?;
        for (second, hist) in log.latency {
            total
                .add(&hist)
                .map_err(|e| format!("{}: {e:?}", path.display()))?;
            by_second
                .entry(second)
                .or_insert_with(new_histogram)
                .add(&hist)
                .map_err(|e| format!("{e:?}"))?;
        }
        if let Some(series) = log.tagged.get(CONNECT_TAG) {
            with_connect += 1;
            for (_, hist) in series {
                connect
                    .add(hist)
                    .map_err(|e| format!("{}: {e:?}", path.display()))?;
            }
        }
        match log.tagged.get(SEND_LATENESS_TAG) {
            Some(series) => {
                for (_, hist) in series {
                    lateness
                        .add(hist)
                        .map_err(|e| format!("{}: {e:?}", path.display()))?;
                }
            }
            None => without_lateness.push(path.display().to_string()),
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
    let (send_lateness_us, note) = if without_lateness.is_empty() {
        (Some(Percentiles::of(&lateness)), None)
    } else if without_lateness.len() == files.len() {
        (None, None)
    } else {
        let note = format!(
            "send lateness left out: not in {} (closed loop, or written before load-gen logged it)",
            without_lateness.join(", ")
        );
        (None, Some(note))
    };
    Ok(Merged {
        schema: "pollbench.load-gen.merge/1",
        files: files.to_vec(),
        messages: total.len(),
        duration_s,
        throughput_msgs_per_s: total.len() as f64 / duration_s.max(1) as f64,
        latency_us: Percentiles::of(&total),
        intervals,
        send_lateness_us,
        connect_latency_us: (with_connect == files.len()).then(|| Percentiles::of(&connect)),
        note,
    })
}

pub fn summary(m: &Merged) -> String {
    let l = &m.latency_us;
    let mut s = format!(
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
    );
    if let Some(l) = &m.send_lateness_us {
        s += &format!(
            "send lateness: p50 {}  p99 {}  max {}\n",
            human_us(l.p50 as f64),
            human_us(l.p99 as f64),
            human_us(l.max as f64),
        );
    }
    s
}
