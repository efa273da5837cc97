//! A cell run by several load-gen clients at once (a suite's `clients = N`): how the load is shared
//! among them, and how their runs become the cell's one run document and interval log, exactly:
//! counts are added, and every percentile comes from histograms added second by second from the
//! clients' hlogs, never from averaged percentiles.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use pollbench_schema::file::write_json_atomically;
use pollbench_schema::hlog::{
    by_second, new_histogram, read_log, sum_of_seconds, write_series, Log, Tagged, CONNECT_TAG,
    SEND_LATENESS_TAG, UNCORRECTED_TAG,
};
use pollbench_schema::run::{ClientPart, Errors, IntervalReport, Percentiles, RunReport};

/// Client `k`'s share of `total` (connections, idle connections, a rate) over `clients`: an even
/// split, the remainder to the first clients, so the shares add up to the total.
pub fn share(total: u64, clients: usize, k: usize) -> u64 {
    let n = clients as u64;
    total / n + u64::from((k as u64) < total % n)
}

/// One client's finished run: where it ran, its run document, and its interval log.
pub struct Part {
    pub host: String,
    pub run: RunReport,
    pub log: Log,
}

impl Part {
    /// Read a client's JSON and hlog.
    pub fn read(host: String, json: &Path, hlog: &Path) -> Result<Part, String> {
        Ok(Part {
            host,
            run: pollbench_schema::file::read_json(json)?,
            log: read_log(hlog)?,
        })
    }
}

/// A tagged series added over every part, if every part has it (a figure over some clients'
/// messages only would pass for all of them).
fn tagged(parts: &[Part], tag: &str) -> Option<BTreeMap<u64, Histogram<u64>>> {
    let series: Option<Vec<_>> = parts.iter().map(|p| p.log.tagged.get(tag)).collect();
    series.map(by_second)
}

/// The merged run document of `parts` (at least one), and its interval log written to `hlog`.
pub fn merge(parts: &[Part], hlog: &Path) -> Result<RunReport, String> {
    let first = &parts.first().ok_or("no client finished")?.run;
    let latency = by_second(parts.iter().map(|p| &p.log.latency));
    let uncorrected = tagged(parts, UNCORRECTED_TAG).ok_or_else(|| {
        "a client's hlog has no uncorrected series (a load-gen older than the runner?)".to_string()
    })?;
    let lateness = tagged(parts, SEND_LATENESS_TAG);
    let connect = tagged(parts, CONNECT_TAG);
    let sum = |f: fn(&RunReport) -> u64| parts.iter().map(|p| f(&p.run)).sum::<u64>();
    let sum_f = |f: fn(&RunReport) -> f64| parts.iter().map(|p| f(&p.run)).sum::<f64>();
    let messages = sum(|r| r.messages);
    let mut errors = Errors::default();
    for p in parts {
        errors.add(&p.run.errors);
    }
    let connects: Option<u64> = parts.iter().map(|p| p.run.connects).sum();
    let report = RunReport {
        schema: first.schema.clone(),
        config: merged_config(parts, hlog),
        connections: parts.iter().map(|p| p.run.connections).sum(),
        connections_alive_at_end: parts.iter().map(|p| p.run.connections_alive_at_end).sum(),
        messages,
        unfinished_messages: sum(|r| r.unfinished_messages),
        bytes: sum(|r| r.bytes),
        // The clients ran at once: their windows overlap, so rates add up.
        duration_s: parts.iter().map(|p| p.run.duration_s).fold(0.0, f64::max),
        // The clients started together (--start-at): the first window's opening is the merge's.
        window_start_unix_s: parts
            .iter()
            .filter_map(|p| p.run.window_start_unix_s)
            .reduce(f64::min),
        throughput_msgs_per_s: sum_f(|r| r.throughput_msgs_per_s),
        throughput_bytes_per_s: sum_f(|r| r.throughput_bytes_per_s),
        latency_us: Percentiles::of(&sum_of_seconds(&latency)),
        latency_uncorrected_us: Percentiles::of(&sum_of_seconds(&uncorrected)),
        errors,
        intervals: intervals(&latency),
        stopped_early: parts.iter().find_map(|p| {
            p.run
                .stopped_early
                .as_ref()
                .map(|why| format!("{}: {why}", p.host))
        }),
        client_cpu_us_per_msg: client_cpu_us_per_msg(parts),
        send_lateness_us: lateness
            .as_ref()
            .map(|l| Percentiles::of(&sum_of_seconds(l))),
        connects,
        connections_per_s: connects
            .map(|_| parts.iter().filter_map(|p| p.run.connections_per_s).sum()),
        connect_latency_us: connect
            .as_ref()
            .map(|c| Percentiles::of(&sum_of_seconds(c))),
        clients: Some(parts.iter().map(Part::summary).collect()),
    };
    write_log(
        hlog,
        &latency,
        &uncorrected,
        lateness.as_ref(),
        connect.as_ref(),
    )
    .map_err(|e| format!("cannot write {}: {e}", hlog.display()))?;
    Ok(report)
}

/// The clients' configurations as one: the first's, with the loads added up and `hlog` as the log.
fn merged_config(parts: &[Part], hlog: &Path) -> pollbench_schema::run::RunConfig {
    let mut config = parts[0].run.config.clone();
    config.connections = parts.iter().map(|p| p.run.config.connections).sum();
    config.idle = parts.iter().map(|p| p.run.config.idle).sum();
    config.rate = parts.iter().map(|p| p.run.config.rate).sum();
    config.hlog = Some(hlog.to_path_buf());
    config.json = None;
    config
}

/// Client CPU per message over every client: each client's per-message figure times its
/// messages is its CPU time. None where a client did not measure it.
fn client_cpu_us_per_msg(parts: &[Part]) -> Option<f64> {
    let messages: u64 = parts.iter().map(|p| p.run.messages).sum();
    let cpu_us: Option<f64> = parts
        .iter()
        .map(|p| {
            p.run
                .client_cpu_us_per_msg
                .map(|c| c * p.run.messages as f64)
        })
        .sum();
    cpu_us.filter(|_| messages > 0).map(|c| c / messages as f64)
}

impl Part {
    /// What the merged run says of this client.
    fn summary(&self) -> ClientPart {
        ClientPart {
            host: self.host.clone(),
            connections: self.run.connections,
            messages: self.run.messages,
            throughput_msgs_per_s: self.run.throughput_msgs_per_s,
            p99_us: self.run.latency_us.p99,
            errors: self.run.errors.total(),
        }
    }
}

/// The merged run document and log: `json` and `hlog`, each written atomically.
pub fn merge_into(parts: &[Part], json: &Path, hlog: &Path) -> Result<RunReport, String> {
    let report = merge(parts, hlog)?;
    write_json_atomically(json, &report)
        .map_err(|e| format!("cannot write {}: {e}", json.display()))?;
    Ok(report)
}

/// Whole seconds from the first, as load-gen reports them.
fn intervals(latency: &BTreeMap<u64, Histogram<u64>>) -> Vec<IntervalReport> {
    let Some(&first) = latency.keys().next() else {
        return Vec::new();
    };
    latency
        .iter()
        .map(|(s, h)| IntervalReport {
            second: (s - first) as usize,
            throughput_msgs_per_s: h.len(),
            p99_us: if h.is_empty() {
                0
            } else {
                h.value_at_quantile(0.99)
            },
        })
        .collect()
}

fn refs(v: &[Histogram<u64>]) -> Vec<&Histogram<u64>> {
    v.iter().collect()
}

/// The merged interval log: one histogram per second from the first second any client logged (an
/// empty one where none did), each series tagged as in load-gen's own logs.
fn write_log(
    path: &Path,
    latency: &BTreeMap<u64, Histogram<u64>>,
    uncorrected: &BTreeMap<u64, Histogram<u64>>,
    lateness: Option<&BTreeMap<u64, Histogram<u64>>>,
    connect: Option<&BTreeMap<u64, Histogram<u64>>>,
) -> std::io::Result<()> {
    let (Some(&first), Some(&last)) = (latency.keys().next(), latency.keys().next_back()) else {
        return Err(std::io::Error::other("no interval in any client's log"));
    };
    let empty = new_histogram();
    let seconds = |series: &BTreeMap<u64, Histogram<u64>>| -> Vec<Histogram<u64>> {
        (first..=last)
            .map(|s| series.get(&s).unwrap_or(&empty).clone())
            .collect()
    };
    let latency = seconds(latency);
    let uncorrected = seconds(uncorrected);
    let lateness = lateness.map(seconds);
    let connect = connect.map(seconds);
    let (latency, uncorrected) = (refs(&latency), refs(&uncorrected));
    let lateness = lateness.as_deref().map(refs);
    let connect = connect.as_deref().map(refs);
    let mut tags = vec![Tagged {
        tag: UNCORRECTED_TAG,
        intervals: &uncorrected,
    }];
    if let Some(l) = &lateness {
        tags.push(Tagged {
            tag: SEND_LATENESS_TAG,
            intervals: l,
        });
    }
    if let Some(c) = &connect {
        tags.push(Tagged {
            tag: CONNECT_TAG,
            intervals: c,
        });
    }
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(first);
    write_series(path, &latency, &tags, start)
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_to_the_total_and_differ_by_at_most_one() {
        for (total, clients) in [(10, 2), (11, 3), (1, 4), (0, 2), (1000, 7)] {
            let shares: Vec<u64> = (0..clients).map(|k| share(total, clients, k)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total, "{shares:?}");
            let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(hi - lo <= 1, "{shares:?}");
        }
    }
}
