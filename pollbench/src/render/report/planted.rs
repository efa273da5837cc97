//! Known differences a sweep planted, and which of them its verdicts found: a column whose server
//! spins `--work D` per message beside the same server without it (the calibrate suite's). Per
//! metric, the smallest planted cost its verdicts judged worse, the ones they missed, and the A/A
//! pairs' verdicts: what this run could resolve, measured rather than assumed.

use std::fmt::Write as _;

use pollbench_schema::results::Cell;
use pollbench_schema::summary::{Judgement, VerdictSummary};

use super::markdown::Markdown;
use super::run::Sweep;
use super::verdicts::{same_server, Metric, P50, P99, SERVER_CPU, SERVER_SYSCALLS};

/// The work a cell's server was given per message (`--work D` among its flags), in nanoseconds.
fn planted_ns(cell: &Cell) -> Option<u64> {
    let at = cell.server_flags.iter().position(|f| f == "--work")?;
    let value = cell.server_flags.get(at + 1)?;
    pollbench_common::parse_duration(value)
        .ok()
        .map(|d| d.as_nanos() as u64)
}

/// The server a cell runs with its planted work taken away: its backend and its flags without
/// `--work D` and the `--message-size S` that goes with it.
fn unplanted_server(cell: &Cell) -> String {
    let mut words = vec![cell.backend.clone()];
    let mut flags = cell.server_flags.iter();
    while let Some(flag) = flags.next() {
        if flag == "--work" || flag == "--message-size" {
            flags.next();
        } else {
            words.push(flag.clone());
        }
    }
    words.join(" ")
}

/// What a sweep's verdicts on one metric said of its planted differences.
#[derive(Debug, Default, PartialEq)]
struct Found {
    /// Planted costs (ns) judged worse than the same server without them, and those not.
    judged: Vec<u64>,
    missed: Vec<u64>,
    /// The A/A pairs' verdicts: (clear differences, pairs).
    aa: (usize, usize),
}

/// The verdicts on `metric` in `verdicts` (one sweep's) of a planted column (`planted`: its work
/// per message, by label) against a column of the same server without the work (`server`: the
/// server without its planted work, by label), and of the A/A pairs.
fn found(
    verdicts: &[&VerdictSummary],
    planted: &dyn Fn(&str) -> Option<u64>,
    server: &dyn Fn(&str) -> Option<String>,
    metric: &str,
) -> Found {
    let mut found = Found::default();
    // A planted cost is judged when every column without the work it was paired with (epoll and
    // epoll #2) reads better than it.
    let mut planted_costs: std::collections::BTreeMap<u64, bool> = Default::default();
    for v in verdicts.iter().filter(|v| v.metric == metric) {
        let one_server = server(&v.a).is_some() && server(&v.a) == server(&v.b);
        match (planted(&v.a), planted(&v.b)) {
            (None, Some(ns)) | (Some(ns), None) if one_server => {
                // Lower is better on every metric a planted cost shows in.
                let plain_better = if planted(&v.a).is_none() {
                    Judgement::ABetter
                } else {
                    Judgement::BBetter
                };
                *planted_costs.entry(ns).or_insert(true) &= v.verdict == plain_better;
            }
            (None, None) if same_server(&v.a, &v.b) => {
                found.aa.1 += 1;
                if v.verdict != Judgement::NoClearDifference {
                    found.aa.0 += 1;
                }
            }
            _ => {}
        }
    }
    for (ns, judged) in planted_costs {
        if judged {
            found.judged.push(ns);
        } else {
            found.missed.push(ns);
        }
    }
    found
}

/// "200 ns", "1 µs".
fn ns_text(ns: u64) -> String {
    if ns >= 1000 && ns.is_multiple_of(1000) {
        format!("{} µs", ns / 1000)
    } else {
        format!("{ns} ns")
    }
}

impl Markdown<'_> {
    /// A sweep with planted differences: per metric, what its verdicts found of them.
    pub(super) fn planted(&mut self, sweep: &Sweep) {
        let planted = |label: &str| -> Option<u64> {
            sweep
                .cells
                .iter()
                .find(|c| c.label == label)
                .and_then(|c| planted_ns(c))
        };
        let server = |label: &str| -> Option<String> {
            sweep
                .cells
                .iter()
                .find(|c| c.label == label)
                .map(|c| unplanted_server(c))
        };
        if !sweep.cells.iter().any(|c| planted_ns(c).is_some()) {
            return;
        }
        let verdicts: Vec<&VerdictSummary> = self
            .run
            .summary
            .verdicts
            .iter()
            .filter(|v| v.sweep == sweep.name)
            .collect();
        let _ = writeln!(
            self.md,
            "Planted differences: columns whose server spins `--work D` per message beside the \
             same server without it, judged against it (worse where the verdict says the server \
             without the work is better), and the A/A pairs (the same server twice; a clear \
             difference there is a false call).\n\n| metric | smallest planted cost judged | \
             planted costs not judged | A/A pairs with a clear difference |\n|---|---|---|---|"
        );
        let metrics: [&Metric; 4] = [&SERVER_CPU, &SERVER_SYSCALLS, &P50, &P99];
        for metric in metrics {
            let f = found(&verdicts, &planted, &server, metric.name);
            if f.judged.is_empty() && f.missed.is_empty() && f.aa.1 == 0 {
                continue;
            }
            let list = |v: &[u64]| -> String {
                if v.is_empty() {
                    "none".into()
                } else {
                    v.iter()
                        .map(|&ns| ns_text(ns))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            let _ = writeln!(
                self.md,
                "| {} | {} | {} | {} of {} |",
                metric.short,
                f.judged.first().map_or("none".into(), |&ns| ns_text(ns)),
                list(&f.missed),
                f.aa.0,
                f.aa.1
            );
        }
        self.md.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollbench_schema::summary::Estimate;

    fn verdict(a: &str, b: &str, metric: &str, verdict: Judgement) -> VerdictSummary {
        VerdictSummary {
            sweep: "calibrate".into(),
            row: 100,
            metric: metric.into(),
            a: a.into(),
            b: b.into(),
            ratio: Estimate {
                median: 1.0,
                lo: 0.9,
                hi: 1.1,
                confidence: 0.969,
            },
            verdict,
            limited_by: None,
            per_round: Vec::new(),
        }
    }

    #[test]
    fn the_smallest_planted_cost_judged_and_the_a_a_false_calls_are_counted() {
        let cpu = "server_cpu_us_per_msg";
        let all = [
            verdict("epoll", "epoll #2", cpu, Judgement::BBetter),
            verdict(
                "epoll",
                "epoll --work 200ns",
                cpu,
                Judgement::NoClearDifference,
            ),
            verdict("epoll", "epoll --work 1us", cpu, Judgement::ABetter),
            verdict("epoll #2", "epoll --work 1us", cpu, Judgement::ABetter),
            verdict("epoll --work 500ns", "epoll", cpu, Judgement::BBetter),
            // Judged against one plain column and not the other: not judged.
            verdict(
                "epoll #2",
                "epoll --work 500ns",
                cpu,
                Judgement::NoClearDifference,
            ),
            verdict("epoll", "epoll --work 4us", cpu, Judgement::ABetter),
            // Another server without the work is not the planted column's baseline.
            verdict("poll", "epoll --work 200ns", cpu, Judgement::ABetter),
            // A planted column better than the plain one is not a finding of the planted cost.
            verdict("epoll #2", "epoll --work 2us", cpu, Judgement::BBetter),
            verdict(
                "epoll",
                "epoll --work 1us",
                "p50_us",
                Judgement::NoClearDifference,
            ),
        ];
        let verdicts: Vec<&VerdictSummary> = all.iter().collect();
        let planted = |label: &str| -> Option<u64> {
            let d = label.split("--work ").nth(1)?;
            pollbench_common::parse_duration(d)
                .ok()
                .map(|d| d.as_nanos() as u64)
        };
        let server = |label: &str| -> Option<String> {
            let plain = label.split(" --work").next()?;
            Some(plain.trim_end_matches(" #2").to_string())
        };
        assert_eq!(
            found(&verdicts, &planted, &server, cpu),
            Found {
                judged: vec![1000, 4000],
                missed: vec![200, 500, 2000],
                aa: (1, 1),
            }
        );
        assert_eq!(
            found(&verdicts, &planted, &server, "p50_us"),
            Found {
                judged: vec![],
                missed: vec![1000],
                aa: (0, 0),
            }
        );
    }

    #[test]
    fn planted_work_is_read_from_the_server_flags() {
        let cell: Cell = serde_json::from_value(serde_json::json!({
            "id": "c", "label": "epoll --work 1us", "sweep": "s", "backend": "epoll",
            "server_flags": ["--work", "1us", "--message-size", "64B"], "trigger": null,
            "accept": null, "connections": 10, "idle": 0, "rate": 1000, "size": "64B",
            "pipeline": 1, "server_threads": 1, "client_threads": 1
        }))
        .unwrap();
        assert_eq!(planted_ns(&cell), Some(1000));
        assert_eq!(unplanted_server(&cell), "epoll");
        assert_eq!(ns_text(1000), "1 µs");
        assert_eq!(ns_text(200), "200 ns");
    }
}
