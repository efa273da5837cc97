//! The verdicts of a run: the pairs of columns at the same row of a sweep that differ in one
//! dimension ([`one_dimension_apart`]), judged on each metric where the sweep can resolve it,
//! paired by round ([`paired`]).

use std::collections::BTreeMap;

use pollbench_schema::results::Cell;
use pollbench_schema::summary::{CellSummary, PairsJudged, VerdictSummary};

use crate::analysis::stats::{false_call_rate, paired, Judgement};
use crate::analysis::summary::{estimate, Figures};

/// A completed cell's rounds, as the verdicts pair them.
pub(super) struct Judged<'a> {
    pub(super) cell: &'a Cell,
    pub(super) figures: Vec<Figures>,
}

/// A figure the verdicts judge, on the cells whose sweeps can resolve it.
struct Metric {
    /// Its name in summary.json.
    name: &'static str,
    /// Its value in a round.
    value: fn(&Figures) -> Option<f64>,
    /// Its value over the measured window, where there is one (the server's cost): used when
    /// both cells of a pair have it in every round, so a pair is never window against whole life.
    window: Option<fn(&Figures) -> Option<f64>>,
    higher_is_better: bool,
    /// The cells it is judged on: msgs/s in closed loop (in open loop every column keeps the same
    /// rate), latency in open loop (in closed loop it follows throughput), connections/s with
    /// churn, the server's cost everywhere.
    judged_on: fn(&Cell) -> bool,
}

/// Every metric judged, in the order summary.json lists their verdicts.
const METRICS: [Metric; 6] = [
    Metric {
        name: "msgs_per_s",
        value: |f| f.msgs_per_s,
        window: None,
        higher_is_better: true,
        judged_on: |c| c.rate.is_none(),
    },
    Metric {
        name: "p50_us",
        value: |f| f.p50_us,
        window: None,
        higher_is_better: false,
        judged_on: |c| c.rate.is_some(),
    },
    Metric {
        name: "p99_us",
        value: |f| f.p99_us,
        window: None,
        higher_is_better: false,
        judged_on: |c| c.rate.is_some(),
    },
    Metric {
        name: "server_cpu_us_per_msg",
        value: |f| f.server_cpu_us_per_msg,
        window: Some(|f| f.window_cpu_us_per_msg),
        higher_is_better: false,
        judged_on: |_| true,
    },
    Metric {
        name: "server_syscalls_per_msg",
        value: |f| f.server_syscalls_per_msg,
        window: Some(|f| f.window_syscalls_per_msg),
        higher_is_better: false,
        judged_on: |_| true,
    },
    Metric {
        name: "connections_per_s",
        value: |f| f.connections_per_s,
        window: None,
        higher_is_better: true,
        judged_on: |c| c.messages_per_connection.is_some(),
    },
];

impl Metric {
    /// The two cells' values round by round, if both have it in every round.
    fn values(&self, a: &Judged, b: &Judged) -> Option<(Vec<f64>, Vec<f64>)> {
        if !(self.judged_on)(a.cell) || !(self.judged_on)(b.cell) {
            return None;
        }
        let of = |j: &Judged, pick: fn(&Figures) -> Option<f64>| -> Option<Vec<f64>> {
            j.figures.iter().map(pick).collect()
        };
        if let Some(window) = self.window {
            if let (Some(wa), Some(wb)) = (of(a, window), of(b, window)) {
                return Some((wa, wb));
            }
        }
        Some((of(a, self.value)?, of(b, self.value)?))
    }

    /// The verdict on a/b, where `paired` judges as if higher were better.
    fn judge(&self, verdict: Judgement) -> Judgement {
        match (self.higher_is_better, verdict) {
            (false, Judgement::ABetter) => Judgement::BBetter,
            (false, Judgement::BBetter) => Judgement::ABetter,
            (_, verdict) => verdict,
        }
    }
}

/// What a pair of cells can differ in, each a dimension of its own: the server (its backend and
/// flags), its trigger mode, its accept strategy, its threads, the message size, the pipeline
/// depth, the messages per connection (churn), the open-loop rate, the client's threads, and the
/// load (connections and idle connections, which a row fixes). `epoll level` against `io_uring
/// oneshot` is two apart: no one cause could be read from it.
fn dimensions_apart(a: &Cell, b: &Cell) -> usize {
    let server = |c: &Cell| (c.backend.clone(), c.server_flags.clone());
    [
        server(a) != server(b),
        a.trigger != b.trigger,
        a.accept != b.accept,
        a.server_threads != b.server_threads,
        a.size != b.size,
        a.pipeline != b.pipeline,
        a.messages_per_connection != b.messages_per_connection,
        a.rate != b.rate,
        a.client_threads != b.client_threads,
        (a.connections, a.idle) != (b.connections, b.idle),
    ]
    .into_iter()
    .filter(|&apart| apart)
    .count()
}

/// Whether a pair of cells is judged: they differ in one dimension at most, so a verdict on them
/// says what that one dimension does. None apart is the same server listed twice (`epoll` and
/// `epoll #2`): the A/A pair, judged for the noise floor. Two or more apart (epoll at 1 message
/// per connection against io_uring at 100) are not judged: no one cause could be read from it.
fn one_dimension_apart(a: &Cell, b: &Cell) -> bool {
    dimensions_apart(a, b) <= 1
}

/// Every pair of columns at the same row of a sweep that differ in one dimension, on every metric
/// its cells can resolve, paired by round: metric by metric, in the order of the sweep's columns.
pub(super) fn verdicts(
    cells: &[CellSummary],
    by_round: &BTreeMap<&str, Judged>,
) -> Vec<VerdictSummary> {
    let mut verdicts = Vec::new();
    for metric in &METRICS {
        for (i, a) in cells.iter().enumerate() {
            for b in &cells[i + 1..] {
                if a.sweep != b.sweep || a.row != b.row || a.column == b.column {
                    continue;
                }
                let (Some(ja), Some(jb)) =
                    (by_round.get(a.id.as_str()), by_round.get(b.id.as_str()))
                else {
                    continue;
                };
                if !one_dimension_apart(ja.cell, jb.cell) {
                    continue;
                }
                let Some((ra, rb)) = metric.values(ja, jb) else {
                    continue;
                };
                let Some((ratio, verdict)) = paired(&ra, &rb) else {
                    continue;
                };
                verdicts.push(VerdictSummary {
                    sweep: a.sweep.clone(),
                    row: a.row,
                    metric: metric.name.into(),
                    a: a.column.clone(),
                    b: b.column.clone(),
                    ratio: estimate(ratio),
                    verdict: metric.judge(verdict),
                    limited_by: (metric.name == "msgs_per_s"
                        && (a.client_bound == Some(true) || b.client_bound == Some(true)))
                    .then(|| "limited by the client: see cost".into()),
                    per_round: ra.iter().zip(&rb).map(|(a, b)| a / b).collect(),
                });
            }
        }
    }
    verdicts
}

/// `verdicts` counted metric by metric, in the order the metrics first come: the pairs judged,
/// the clear differences, and the clear differences chance alone would give.
pub fn pairs_judged<'a>(
    verdicts: impl IntoIterator<Item = &'a VerdictSummary>,
) -> Vec<PairsJudged> {
    let mut counted: Vec<PairsJudged> = Vec::new();
    for v in verdicts {
        let at = match counted.iter().position(|p| p.metric == v.metric) {
            Some(at) => at,
            None => {
                counted.push(PairsJudged {
                    metric: v.metric.clone(),
                    pairs: 0,
                    clear_differences: 0,
                    expected_false_calls: 0.0,
                });
                counted.len() - 1
            }
        };
        let p = &mut counted[at];
        p.pairs += 1;
        if v.verdict != Judgement::NoClearDifference {
            p.clear_differences += 1;
        }
        p.expected_false_calls += false_call_rate(v.ratio.confidence);
    }
    counted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::summary::tests::cell;

    /// A suite cell of column `column` at `connections`, open loop at `rate` if given.
    fn suite_cell(id: &str, rate: Option<u64>) -> Cell {
        serde_json::from_value(serde_json::json!({
            "id": id, "label": id, "sweep": "s", "backend": "epoll", "trigger": null,
            "accept": null, "connections": 10, "idle": 0, "rate": rate, "size": "64B",
            "pipeline": 1, "server_threads": 1, "client_threads": 1
        }))
        .unwrap()
    }

    /// Rounds whose figures `set` makes from each of `values`.
    fn rounds<'a>(cell: &'a Cell, values: &[f64], set: fn(&mut Figures, f64)) -> Judged<'a> {
        let figures = values
            .iter()
            .map(|&v| {
                let mut f = Figures::default();
                set(&mut f, v);
                f
            })
            .collect();
        Judged { cell, figures }
    }

    const FAST: [f64; 6] = [150.0, 160.0, 140.0, 155.0, 150.0, 145.0];
    const SLOW: [f64; 6] = [100.0, 104.0, 97.0, 101.0, 99.0, 100.0];

    #[test]
    fn verdicts_pair_the_columns_of_one_row_of_one_sweep_only() {
        let cells = [
            cell("a10", "s", "a", 10),
            cell("a20", "s", "a", 20),
            cell("b10", "s", "b", 10),
            cell("b20", "s", "b", 20),
            cell("c10", "other", "c", 10),
        ];
        let closed = suite_cell("closed", None);
        let msgs = |values: &[f64]| rounds(&closed, values, |f, v| f.msgs_per_s = Some(v));
        let by_round: BTreeMap<&str, Judged> = [
            ("a10", msgs(&FAST)),
            ("b10", msgs(&SLOW)),
            ("a20", msgs(&SLOW)),
            ("b20", msgs(&SLOW)),
            ("c10", msgs(&FAST)),
        ]
        .into();
        let v = verdicts(&cells, &by_round);
        let said: Vec<(usize, &str, &str, Judgement)> = v
            .iter()
            .map(|v| (v.row, v.a.as_str(), v.b.as_str(), v.verdict))
            .collect();
        assert_eq!(
            said,
            [
                (10, "a", "b", Judgement::ABetter),
                (20, "a", "b", Judgement::NoClearDifference),
            ]
        );
        assert!(v.iter().all(|v| v.sweep == "s" && v.metric == "msgs_per_s"));
        // A cell whose client was busy is named as the limit of its msgs/s verdicts.
        let mut bound = cells.clone();
        bound[2].client_bound = Some(true);
        let limited: Vec<Option<String>> = verdicts(&bound, &by_round)
            .into_iter()
            .map(|v| v.limited_by)
            .collect();
        assert_eq!(
            limited,
            [Some("limited by the client: see cost".to_string()), None]
        );
        // A cell without rounds (it failed, or the run has none) is in no verdict.
        let without: BTreeMap<&str, Judged> = [("a10", msgs(&[1.0; 6]))].into();
        assert!(verdicts(&cells, &without).is_empty());
    }

    /// The pairs are counted per metric, with the clear differences chance alone would give:
    /// 2/64 a pair at 6 rounds, none where an interval has too few rounds to call one.
    #[test]
    fn pairs_judged_count_each_metric_and_what_chance_would_call() {
        let verdict = |metric: &str, verdict: Judgement, confidence: f64| VerdictSummary {
            sweep: "s".into(),
            row: 10,
            metric: metric.into(),
            a: "a".into(),
            b: "b".into(),
            ratio: pollbench_schema::summary::Estimate {
                median: 1.0,
                lo: 0.9,
                hi: 1.1,
                confidence,
            },
            verdict,
            limited_by: None,
            per_round: Vec::new(),
        };
        let six = crate::analysis::stats::order_statistics(6).1;
        let five = crate::analysis::stats::order_statistics(5).1;
        let verdicts = [
            verdict("msgs_per_s", Judgement::ABetter, six),
            verdict("p99_us", Judgement::NoClearDifference, six),
            verdict("msgs_per_s", Judgement::NoClearDifference, six),
            verdict("msgs_per_s", Judgement::NoClearDifference, five),
        ];
        let counted = pairs_judged(&verdicts);
        let said: Vec<(&str, usize, usize)> = counted
            .iter()
            .map(|p| (p.metric.as_str(), p.pairs, p.clear_differences))
            .collect();
        assert_eq!(said, [("msgs_per_s", 3, 1), ("p99_us", 1, 0)]);
        assert!((counted[0].expected_false_calls - 2.0 * 2.0 / 64.0).abs() < 1e-12);
        assert!((counted[1].expected_false_calls - 2.0 / 64.0).abs() < 1e-12);
    }

    /// A pair is judged when its cells differ in one dimension (or none: the A/A pair), not when
    /// they differ in two.
    #[test]
    fn only_pairs_one_dimension_apart_are_judged() {
        let base = suite_cell("base", None);
        let with = |change: fn(&mut Cell)| {
            let mut c = base.clone();
            change(&mut c);
            c
        };
        let io_uring = with(|c| c.backend = "io_uring".into());
        let pipelined = with(|c| c.pipeline = 8);
        let batched = with(|c| c.server_flags = vec!["--batch".into(), "32".into()]);
        let churn_1 = with(|c| c.messages_per_connection = Some(1));
        let io_uring_churn_100 = with(|c| {
            c.backend = "io_uring".into();
            c.messages_per_connection = Some(100);
        });
        let shared_churn_100 = with(|c| {
            c.accept = Some("shared".into());
            c.messages_per_connection = Some(100);
        });
        let bigger_pipelined = with(|c| {
            c.size = "4KiB".into();
            c.pipeline = 8;
        });
        // Judged: the same server twice, only the server, only the pipeline, only the churn.
        assert!(one_dimension_apart(&base, &base.clone()));
        assert!(one_dimension_apart(&base, &io_uring));
        assert!(one_dimension_apart(&base, &batched));
        assert!(one_dimension_apart(&base, &pipelined));
        assert!(one_dimension_apart(&base, &churn_1));
        let edge = with(|c| c.trigger = Some("edge".into()));
        let io_uring_oneshot = with(|c| {
            c.backend = "io_uring".into();
            c.trigger = Some("oneshot".into());
        });
        assert!(one_dimension_apart(&base, &edge));
        // Not judged: server and churn, size and pipeline, or backend and trigger differ.
        assert!(!one_dimension_apart(&edge, &io_uring_oneshot));
        assert!(!one_dimension_apart(&churn_1, &io_uring_churn_100));
        assert!(!one_dimension_apart(&churn_1, &shared_churn_100));
        assert!(!one_dimension_apart(&base, &bigger_pipelined));

        // And the verdicts leave those pairs out: a, b, c at one row; b is a's server at another
        // churn, c another server at that other churn.
        let cells = [
            cell("a", "s", "epoll 1 msgs/conn", 10),
            cell("b", "s", "epoll 100 msgs/conn", 10),
            cell("c", "s", "io_uring 100 msgs/conn", 10),
        ];
        let epoll_100 = with(|c| c.messages_per_connection = Some(100));
        let msgs = |cell, values: &[f64]| rounds(cell, values, |f, v| f.msgs_per_s = Some(v));
        let by_round: BTreeMap<&str, Judged> = [
            ("a", msgs(&churn_1, &SLOW)),
            ("b", msgs(&epoll_100, &FAST)),
            ("c", msgs(&io_uring_churn_100, &FAST)),
        ]
        .into();
        let pairs: Vec<(String, String)> = verdicts(&cells, &by_round)
            .into_iter()
            .map(|v| (v.a, v.b))
            .collect();
        assert_eq!(
            pairs,
            [
                ("epoll 1 msgs/conn".into(), "epoll 100 msgs/conn".into()),
                (
                    "epoll 100 msgs/conn".into(),
                    "io_uring 100 msgs/conn".into()
                ),
            ]
        );
    }

    /// Each metric is judged where its sweep can resolve it, lower is better for latency and
    /// cost, and a pair's cost is over the window only when both cells have it.
    #[test]
    fn each_metric_is_judged_where_it_resolves_and_in_its_direction() {
        let cells = [cell("a", "s", "a", 10), cell("b", "s", "b", 10)];
        let verdict = |by_round: BTreeMap<&str, Judged>| -> Vec<(String, Judgement)> {
            verdicts(&cells, &by_round)
                .into_iter()
                .map(|v| (v.metric, v.verdict))
                .collect()
        };
        // Open loop: a's p99 is the higher one, so b is better; msgs/s is not judged at all.
        let open = suite_cell("open", Some(1000));
        let both = |f: &mut Figures, v: f64| {
            f.msgs_per_s = Some(v);
            f.p99_us = Some(v);
        };
        let said = verdict(
            [
                ("a", rounds(&open, &FAST, both)),
                ("b", rounds(&open, &SLOW, both)),
            ]
            .into(),
        );
        assert_eq!(said, [("p99_us".to_string(), Judgement::BBetter)]);
        // Cost: whole life says a costs more (b better); the window, where both have it, says
        // the opposite, and wins; with one side lacking it, whole life for both.
        let closed = suite_cell("closed", None);
        let cost = |whole: &[f64], window: Option<&[f64]>| {
            let mut j = rounds(&closed, whole, |f, v| f.server_cpu_us_per_msg = Some(v));
            if let Some(window) = window {
                for (f, &w) in j.figures.iter_mut().zip(window) {
                    f.window_cpu_us_per_msg = Some(w);
                }
            }
            j
        };
        let cpu = |said: Vec<(String, Judgement)>| {
            said.into_iter()
                .find(|(m, _)| m == "server_cpu_us_per_msg")
                .map(|(_, j)| j)
        };
        let whole = verdict([("a", cost(&FAST, None)), ("b", cost(&SLOW, None))].into());
        assert_eq!(cpu(whole), Some(Judgement::BBetter));
        let windowed = verdict(
            [
                ("a", cost(&FAST, Some(&SLOW))),
                ("b", cost(&SLOW, Some(&FAST))),
            ]
            .into(),
        );
        assert_eq!(cpu(windowed), Some(Judgement::ABetter));
        let one_sided = verdict([("a", cost(&FAST, Some(&SLOW))), ("b", cost(&SLOW, None))].into());
        assert_eq!(cpu(one_sided), Some(Judgement::BBetter));
    }
}
