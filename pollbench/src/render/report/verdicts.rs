//! The verdicts as the report shows them: the metrics its tables show and judge, the column of a
//! row that the verdicts on a table's metric put ahead of every other (its bold), the run's count
//! of pairs judged against what chance alone would call, and each sweep's lists of verdicts.

use std::fmt::Write as _;

use pollbench_schema::results::Cell;
use pollbench_schema::summary::{CellSummary, Estimate, Judgement, Summary, VerdictSummary};

use super::markdown::Markdown;
use super::run::Sweep;
use crate::analysis::stats::{false_call_rate, order_statistics, CONFIDENCE};
use crate::analysis::verdicts::pairs_judged;

/// A metric of summary.json as the report shows it.
pub(super) struct Metric {
    /// Its name in summary.json (a verdict's `metric`).
    pub(super) name: &'static str,
    /// Its name in a table's heading or a sentence: "msgs/s".
    pub(super) short: &'static str,
    /// What its verdict list is on, with the direction that is better.
    pub(super) long: &'static str,
    /// A cell's figure of it.
    pub(super) of: fn(&CellSummary) -> Option<Estimate>,
}

pub(super) const MSGS_PER_S: Metric = Metric {
    name: "msgs_per_s",
    short: "msgs/s",
    long: "msgs/s (closed loop; higher is better)",
    of: |s| s.msgs_per_s,
};
pub(super) const P50: Metric = Metric {
    name: "p50_us",
    short: "p50 latency",
    long: "p50 latency (open loop; lower is better)",
    of: |s| s.p50_us,
};
pub(super) const P99: Metric = Metric {
    name: "p99_us",
    short: "p99 latency",
    long: "p99 latency (open loop; lower is better)",
    of: |s| s.p99_us,
};
pub(super) const SERVER_CPU: Metric = Metric {
    name: "server_cpu_us_per_msg",
    short: "server CPU µs per message",
    long: "the server's CPU time per message (lower is better; over the span the cost table says)",
    of: |s| s.server_cpu_us_per_msg,
};
pub(super) const SERVER_SYSCALLS: Metric = Metric {
    name: "server_syscalls_per_msg",
    short: "server system calls per message",
    long: "the server's system calls per message (lower is better)",
    of: |s| s.server_syscalls_per_msg,
};
pub(super) const CONNECTIONS_PER_S: Metric = Metric {
    name: "connections_per_s",
    short: "connections/s",
    long: "connections per second (churn; higher is better)",
    of: |s| s.connections_per_s,
};

/// Every metric judged, as the report names them.
const METRICS: [&Metric; 6] = [
    &MSGS_PER_S,
    &P50,
    &P99,
    &SERVER_CPU,
    &SERVER_SYSCALLS,
    &CONNECTIONS_PER_S,
];

/// The report's name of summary.json's metric `name`.
fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.into_iter().find(|m| m.name == name)
}

/// A ratio a/b as a verdict shows it: three significant figures (0.913, 1.26, 13.4, 44487), and
/// more where those would print it on the other side of 1 than it is, or at 1 when it is not: a
/// verdict's bound of 1.004 reads 1.004, never 1.00 beside "a better".
pub(super) fn ratio_text(v: f64) -> String {
    let text = |extra: usize| pollbench_common::significant(v, 3 + extra);
    (0..12)
        .map(text)
        .find(|t| t.parse::<f64>().ok().and_then(|p| p.partial_cmp(&1.0)) == v.partial_cmp(&1.0))
        .unwrap_or_else(|| text(12))
}

/// One judged pair, as the report lists it: "epoll vs poll: 1.12 [1.05, 1.20], epoll better".
fn verdict_text(v: &VerdictSummary) -> String {
    let said = match v.verdict {
        Judgement::ABetter => format!("{} better", v.a),
        Judgement::BBetter => format!("{} better", v.b),
        Judgement::NoClearDifference if v.ratio.confidence < CONFIDENCE => format!(
            "not judged (the interval has {:.0}% confidence; 6 rounds give 95%)",
            100.0 * v.ratio.confidence
        ),
        Judgement::NoClearDifference => "no clear difference".into(),
    };
    format!(
        "{} vs {}: {} [{}, {}], {said}{}",
        v.a,
        v.b,
        ratio_text(v.ratio.median),
        ratio_text(v.ratio.lo),
        ratio_text(v.ratio.hi),
        v.limited_by
            .as_ref()
            .map_or(String::new(), |why| format!(" ({why})"))
    )
}

/// The column of a row (`at_row`: the row's cell in each column) whose cell the verdicts on
/// `metric` call better than every other column's that has the figure: better in a clear
/// difference against each, not merely the best median. None where any pair is not clearly
/// apart, or not judged at all (its cells differ in two dimensions, or have too few rounds).
pub(super) fn winner(
    summary: &Summary,
    sweep: &str,
    row: usize,
    metric: &Metric,
    at_row: &[Option<&Cell>],
) -> Option<usize> {
    let has_figure = |c: &Option<&Cell>| {
        c.and_then(|c| summary.cell(&c.id))
            .is_some_and(|s| (metric.of)(s).is_some())
    };
    let shown: Vec<usize> = (0..at_row.len())
        .filter(|&i| has_figure(&at_row[i]))
        .collect();
    if shown.len() < 2 {
        return None;
    }
    let label = |i: usize| at_row[i].map_or("", |c| c.label.as_str());
    let better = |i: usize, j: usize| {
        summary.verdicts.iter().any(|v| {
            v.sweep == sweep
                && v.row == row
                && v.metric == metric.name
                && ((v.a == label(i) && v.b == label(j) && v.verdict == Judgement::ABetter)
                    || (v.a == label(j) && v.b == label(i) && v.verdict == Judgement::BBetter))
        })
    };
    shown
        .iter()
        .copied()
        .find(|&i| shown.iter().all(|&j| j == i || better(i, j)))
}

/// Whether two column labels name the same server, one of them a backend listed again
/// (`epoll` and `epoll #2`, `epoll 64B` and `epoll #2 64B`): an A/A pair.
pub(super) fn same_server(a: &str, b: &str) -> bool {
    let plain = |label: &str| -> Vec<String> {
        label
            .split_whitespace()
            .filter(|w| !(w.starts_with('#') && w[1..].parse::<usize>().is_ok()))
            .map(str::to_string)
            .collect()
    };
    a != b && plain(a) == plain(b)
}

/// "1 pair", "6 pairs".
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "1.8" expected false calls: a count with the digits its size needs.
fn expected_text(v: f64) -> String {
    pollbench_common::human_figure(v)
}

impl Markdown<'_> {
    /// The run's verdicts counted by metric (summary.json's `pairs_judged`): the pairs judged, the
    /// clear differences among them, and how many of those chance alone would give, for a run
    /// of `rounds` rounds.
    pub(super) fn pairs_judged(&mut self, rounds: usize) {
        let counted = &self.run.summary.pairs_judged;
        if counted.is_empty() {
            return;
        }
        let (k, confidence) = order_statistics(rounds.max(1));
        let rate = false_call_rate(confidence);
        let why = if rate == 0.0 {
            format!(
                "with {rounds} rounds no interval reaches {:.0}%, so no verdict calls a \
                 difference, and none by chance",
                100.0 * CONFIDENCE
            )
        } else if k == 1 {
            format!(
                "each verdict calls a difference that is not there with probability {:.1}% \
                 (with {rounds} rounds a call needs all {rounds} per-round ratios on one side of \
                 1, and chance puts them there 2 times in {})",
                100.0 * rate,
                1u64 << rounds.min(63)
            )
        } else {
            format!(
                "each verdict calls a difference that is not there with probability {:.1}% (one \
                 minus the {:.1}% confidence of its interval over {rounds} rounds)",
                100.0 * rate,
                100.0 * confidence
            )
        };
        let _ = writeln!(
            self.md,
            "Pairs judged in this run, by metric, with the clear differences among them and how \
             many chance alone would give if no two columns differed: {why}. A count of clear \
             differences near its chance figure says little on its own.\n"
        );
        let _ = writeln!(
            self.md,
            "| metric | pairs judged | clear differences | expected by chance alone |\n\
             |---|---|---|---|"
        );
        for p in counted {
            let _ = writeln!(
                self.md,
                "| {} | {} | {} | {} |",
                metric(&p.metric).map_or(p.metric.as_str(), |m| m.short),
                p.pairs,
                p.clear_differences,
                expected_text(p.expected_false_calls)
            );
        }
        self.md.push('\n');
    }

    /// A sweep's verdicts under its tables, on `metrics` in that order (the sweep's lead metric
    /// first): the A/A pairs first, in the open (their verdicts are the noise floor every other
    /// verdict stands on), then each metric's pairs in a folded list whose heading counts them
    /// against chance.
    pub(super) fn verdict_lists(&mut self, sweep: &Sweep, metrics: &[&Metric]) {
        let summary = self.run.summary;
        let on = |m: &Metric| -> Vec<&VerdictSummary> {
            let mut v: Vec<&VerdictSummary> = summary
                .verdicts
                .iter()
                .filter(|v| v.sweep == sweep.name && v.metric == m.name)
                .collect();
            v.sort_by_key(|v| v.row);
            v
        };
        let line = |v: &VerdictSummary| format!("- {} {}: {}", v.row, sweep.x, verdict_text(v));
        let same: Vec<(&Metric, Vec<&VerdictSummary>)> = metrics
            .iter()
            .map(|&m| {
                let aa = on(m).into_iter().filter(|v| same_server(&v.a, &v.b));
                (m, aa.collect::<Vec<_>>())
            })
            .filter(|(_, aa)| !aa.is_empty())
            .collect();
        if !same.is_empty() {
            let _ = writeln!(
                self.md,
                "A/A, the same server twice (its verdicts are this run's noise floor; the ratio \
                 a/b per round, its median and interval):\n"
            );
            for (m, aa) in &same {
                for v in aa {
                    let _ = writeln!(self.md, "- {} {}, {}: {}", v.row, sweep.x, m.short, {
                        verdict_text(v)
                    });
                }
            }
            self.md.push('\n');
        }
        for &m in metrics {
            let mut verdicts = on(m);
            if verdicts.is_empty() {
                continue;
            }
            verdicts.sort_by_key(|v| (v.row, !same_server(&v.a, &v.b)));
            let counted = &pairs_judged(verdicts.iter().copied())[0];
            let _ = writeln!(
                self.md,
                "<details><summary>Verdicts on {}: {} judged, {} clear {}, {} expected by chance \
                 alone; paired by round (the ratio a/b per round, its median and \
                 interval)</summary>\n",
                m.long,
                plural(counted.pairs, "pair", "pairs"),
                counted.clear_differences,
                if counted.clear_differences == 1 {
                    "difference"
                } else {
                    "differences"
                },
                expected_text(counted.expected_false_calls)
            );
            for v in verdicts {
                let _ = writeln!(self.md, "{}", line(v));
            }
            let _ = writeln!(self.md, "\n</details>\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_listed_again_is_the_same_server_and_others_are_not() {
        assert!(same_server("epoll", "epoll #2"));
        assert!(same_server("epoll 64B", "epoll #2 64B"));
        assert!(same_server("epoll #2", "epoll #3"));
        assert!(!same_server("epoll", "epoll"));
        assert!(!same_server("epoll 64B", "epoll #2 32KiB"));
        assert!(!same_server("epoll", "poll"));
        assert!(!same_server("kqueue (libkqueue)", "epoll #2"));
    }

    fn estimate(median: f64, lo: f64, hi: f64) -> Option<Estimate> {
        Some(Estimate {
            median,
            lo,
            hi,
            confidence: 0.969,
        })
    }

    fn verdict(a: &str, b: &str, metric: &str, verdict: Judgement) -> VerdictSummary {
        VerdictSummary {
            sweep: "s".into(),
            row: 100,
            metric: metric.into(),
            a: a.into(),
            b: b.into(),
            ratio: estimate(1.2, 0.9, 1.5).unwrap(),
            verdict,
            limited_by: None,
            per_round: Vec::new(),
        }
    }

    fn suite_cell(label: &str) -> Cell {
        serde_json::from_value(serde_json::json!({
            "id": label, "label": label, "sweep": "s", "backend": label, "trigger": null,
            "accept": null, "connections": 100, "idle": 0, "rate": null, "size": "64B",
            "pipeline": 1, "server_threads": 1, "client_threads": 1
        }))
        .unwrap()
    }

    /// A row of columns a, b, c whose msgs/s medians are 150k, 100k and 90k, and p50s 20, 30 and
    /// 40 µs.
    fn row(verdicts: Vec<VerdictSummary>) -> Summary {
        let cell = |id: &str, msgs: f64, p50: f64| CellSummary {
            msgs_per_s: estimate(msgs, msgs * 0.9, msgs * 1.1),
            p50_us: estimate(p50, p50 * 0.9, p50 * 1.1),
            ..crate::analysis::summary::tests::cell(id, "s", id, 100)
        };
        Summary {
            schema: pollbench_schema::summary::SCHEMA.into(),
            method: String::new(),
            cells: vec![
                cell("a", 150e3, 20.0),
                cell("b", 100e3, 30.0),
                cell("c", 90e3, 40.0),
            ],
            verdicts,
            pairs_judged: Vec::new(),
        }
    }

    /// Bold only where the verdicts on the table's metric put a column ahead of every other: not
    /// on the best median alone, not against a column it was not judged against, and not from
    /// another metric's verdicts.
    #[test]
    fn a_row_has_a_winner_only_where_its_verdicts_say_so() {
        let (a, b, c) = (suite_cell("a"), suite_cell("b"), suite_cell("c"));
        let at_row = [Some(&a), Some(&b), Some(&c)];
        let bold = |summary: &Summary, metric: &Metric| winner(summary, "s", 100, metric, &at_row);
        let msgs = "msgs_per_s";
        // The medians differ, but no pair reads a clear difference: no bold.
        let unclear = row(vec![
            verdict("a", "b", msgs, Judgement::NoClearDifference),
            verdict("a", "c", msgs, Judgement::NoClearDifference),
            verdict("b", "c", msgs, Judgement::NoClearDifference),
        ]);
        assert_eq!(bold(&unclear, &MSGS_PER_S), None);
        // Better than one column, not clearly apart from the other: no bold.
        let half = row(vec![
            verdict("a", "b", msgs, Judgement::ABetter),
            verdict("a", "c", msgs, Judgement::NoClearDifference),
            verdict("b", "c", msgs, Judgement::NoClearDifference),
        ]);
        assert_eq!(bold(&half, &MSGS_PER_S), None);
        // Better than b, and a vs c never judged (two dimensions apart): no bold.
        let unjudged = row(vec![verdict("a", "b", msgs, Judgement::ABetter)]);
        assert_eq!(bold(&unjudged, &MSGS_PER_S), None);
        // Better than both, in either order of the pair: bold, on msgs/s only.
        let clear = row(vec![
            verdict("a", "b", msgs, Judgement::ABetter),
            verdict("c", "a", msgs, Judgement::BBetter),
            verdict("b", "c", msgs, Judgement::NoClearDifference),
        ]);
        assert_eq!(bold(&clear, &MSGS_PER_S), Some(0));
        assert_eq!(bold(&clear, &P50), None);
        // A column without the figure (it did not complete) is not in the contest.
        let mut without_c = row(vec![verdict("a", "b", msgs, Judgement::ABetter)]);
        without_c.cells[2].msgs_per_s = None;
        assert_eq!(bold(&without_c, &MSGS_PER_S), Some(0));
    }

    /// A verdict's bounds are printed on the side of 1 they are on: "better" never sits beside a
    /// bound that reads 1.00.
    #[test]
    fn ratio_bounds_never_round_onto_1() {
        assert_eq!(ratio_text(1.2649), "1.26");
        assert_eq!(ratio_text(1.0041), "1.004");
        assert_eq!(ratio_text(1.00004), "1.00004");
        assert_eq!(ratio_text(0.9996), "0.9996");
        assert_eq!(ratio_text(0.91349), "0.913");
        assert_eq!(ratio_text(0.054), "0.0540");
        assert_eq!(ratio_text(0.9), "0.900");
        assert_eq!(ratio_text(1.0), "1.00");
        assert_eq!(ratio_text(13.391), "13.4");
        assert_eq!(ratio_text(44487.07), "44487");
        let mut v = verdict("a", "b", "msgs_per_s", Judgement::ABetter);
        v.ratio = estimate(1.1, 1.0041, 1.2649).unwrap();
        assert_eq!(verdict_text(&v), "a vs b: 1.10 [1.004, 1.26], a better");
        v.verdict = Judgement::BBetter;
        v.ratio = estimate(0.95, 0.9, 0.99951).unwrap();
        assert_eq!(verdict_text(&v), "a vs b: 0.950 [0.900, 0.9995], b better");
    }
}
