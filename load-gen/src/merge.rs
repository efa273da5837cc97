//! `load-gen merge`: combine the interval logs of several client machines into one summary, exactly
//! (histograms are added, never averaged), aligning intervals on wall-clock seconds. The logs'
//! tagged series are merged the same way, each apart: the latency from the actual send
//! (`Tag=uncorrected`), send lateness (`Tag=send_lateness`) and connect latency (`Tag=connect`).

use std::path::PathBuf;

use pollbench_common::human_us;
use pollbench_schema::hlog::{
    by_second, read_log, sum_of_seconds, Intervals, Log, CONNECT_TAG, SEND_LATENESS_TAG,
    UNCORRECTED_TAG,
};
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
    /// Latency from each message's actual send (the logs' `Tag=uncorrected` series); null unless
    /// every log has it (load-gen writes it since issue 14; older logs lack it).
    pub latency_uncorrected_us: Option<Percentiles>,
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

/// One tagged series of every log that has it, and the logs that do not.
struct Series<'a> {
    tag: &'static str,
    present: Vec<&'a Intervals>,
    missing: Vec<String>,
}

impl<'a> Series<'a> {
    /// `tag`'s series in each of `logs`.
    fn of(tag: &'static str, logs: &'a [(PathBuf, Log)]) -> Series<'a> {
        let mut series = Series {
            tag,
            present: Vec::new(),
            missing: Vec::new(),
        };
        for (path, log) in logs {
            match log.tagged.get(series.tag) {
                Some(intervals) => series.present.push(intervals),
                None => series.missing.push(path.display().to_string()),
            }
        }
        series
    }

    /// Its percentiles, only if every log had it: a figure over some clients' messages would pass
    /// for all of them.
    fn over_all(&self) -> Option<Percentiles> {
        self.missing
            .is_empty()
            .then(|| Percentiles::of(&sum_of_seconds(&by_second(self.present.iter().copied()))))
    }
}

pub fn merge(files: &[PathBuf]) -> Result<Merged, String> {
    let logs = files
        .iter()
        .map(|path| Ok((path.clone(), read_log(path)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let by_second = by_second(logs.iter().map(|(_, log)| &log.latency));
    let total = sum_of_seconds(&by_second);
    let lateness = Series::of(SEND_LATENESS_TAG, &logs);
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
    let note = (!lateness.missing.is_empty() && lateness.missing.len() < files.len()).then(|| {
        format!(
            "send lateness left out: not in {} (closed loop, or written before load-gen logged it)",
            lateness.missing.join(", ")
        )
    });
    Ok(Merged {
        schema: "pollbench.load-gen.merge/1",
        files: files.to_vec(),
        messages: total.len(),
        duration_s,
        throughput_msgs_per_s: total.len() as f64 / duration_s.max(1) as f64,
        latency_us: Percentiles::of(&total),
        latency_uncorrected_us: Series::of(UNCORRECTED_TAG, &logs).over_all(),
        intervals,
        send_lateness_us: lateness.over_all(),
        connect_latency_us: Series::of(CONNECT_TAG, &logs).over_all(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;
    use pollbench_schema::hlog::{new_histogram, write_series, Tagged};
    use std::time::{Duration, SystemTime};

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    /// The uncorrected series of two logs merges exactly (counts add up, the maximum is the
    /// larger one); with a log that lacks it (written before load-gen logged it), it is null
    /// rather than a figure over some clients only.
    #[test]
    fn the_uncorrected_series_merges_and_is_null_unless_every_log_has_it() {
        let dir = std::env::temp_dir().join(format!("merge-uncorrected-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let write = |name: &str, latency: &[u64], uncorrected: Option<&[u64]>| {
            let path = dir.join(name);
            let l = hist(latency);
            let u = uncorrected.map(hist);
            let u_refs: Vec<&Histogram<u64>> = u.iter().collect();
            let tagged: Vec<Tagged> = u
                .as_ref()
                .map(|_| Tagged {
                    tag: UNCORRECTED_TAG,
                    intervals: &u_refs,
                })
                .into_iter()
                .collect();
            write_series(&path, &[&l], &tagged, start).unwrap();
            path
        };
        let a = write("a.hlog", &[900, 1000], Some(&[100, 200]));
        let b = write("b.hlog", &[800], Some(&[5000]));
        let old = write("old.hlog", &[700], None);

        let both = merge(&[a.clone(), b]).unwrap();
        assert_eq!(both.messages, 3);
        let u = both.latency_uncorrected_us.expect("every log has it");
        assert!(u.max.abs_diff(5000) <= 5, "{}", u.max);
        assert!(u.p50.abs_diff(200) <= 1, "{}", u.p50);

        let mixed = merge(&[a, old]).unwrap();
        assert_eq!(mixed.messages, 3);
        assert!(mixed.latency_uncorrected_us.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
