//! `pollbench calibration DIR...`: what a suite can resolve, over repeated runs of it. In each run,
//! every column of a sweep is judged against the sweep's first column on each metric (the
//! calibrate suite: epoll, epoll again for the A/A pair, and epoll with planted costs); the table
//! counts, pair by pair and metric by metric, how often each verdict came out over the runs, how
//! much one round's ratio spread, and what that spread lets the runs' rounds resolve; a second table
//! how much each cell's msgs/s spread over its rounds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use pollbench_schema::file::read_json;
use pollbench_schema::results::Meta;
use pollbench_schema::summary::{Judgement, Summary};

use crate::analysis::stats::{median_interval, rounds_to_reach, side_share_needed};

#[derive(clap::Args, Debug)]
pub struct CalibrationArgs {
    /// Run directories of the same suite (each with its summary.json), one per repetition.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

/// Print the tables; 1 when a directory cannot be read.
pub fn run(args: CalibrationArgs) -> i32 {
    let read = || -> Result<(Vec<Summary>, Vec<Meta>), String> {
        let summaries = args
            .dirs
            .iter()
            .map(|dir| read_json(&dir.join("summary.json")))
            .collect::<Result<_, _>>()?;
        let metas = args
            .dirs
            .iter()
            .map(|dir| Meta::read(dir))
            .collect::<Result<_, _>>()?;
        Ok((summaries, metas))
    };
    match read() {
        Ok((summaries, metas)) => {
            print!("{}\n{}", table(&summaries), spread(&metas));
            0
        }
        Err(e) => {
            eprintln!("pollbench: {e}");
            1
        }
    }
}

/// One pair on one metric at one row of a sweep.
type Key = (String, usize, String, String, String);

/// How the runs judged one pair: the verdicts by kind and each run's median ratio a/b.
#[derive(Default)]
struct Tally {
    a_better: usize,
    b_better: usize,
    no_clear: usize,
    ratios: Vec<f64>,
    /// Every run's per-round ratios a/b.
    rounds: Vec<f64>,
    /// Rounds in a run (the most any run had).
    rounds_per_run: usize,
}

/// The Markdown table of the verdicts of every column against its sweep's first, over `runs`.
fn table(runs: &[Summary]) -> String {
    let mut tallies: BTreeMap<Key, Tally> = BTreeMap::new();
    let mut order: Vec<Key> = Vec::new();
    for summary in runs {
        for v in &summary.verdicts {
            let first = summary.cells.iter().find(|c| c.sweep == v.sweep);
            if first.is_none_or(|c| c.column != v.a) {
                continue;
            }
            let key = (
                v.sweep.clone(),
                v.row,
                v.a.clone(),
                v.b.clone(),
                v.metric.clone(),
            );
            if !tallies.contains_key(&key) {
                order.push(key.clone());
            }
            let tally = tallies.entry(key).or_default();
            match v.verdict {
                Judgement::ABetter => tally.a_better += 1,
                Judgement::BBetter => tally.b_better += 1,
                Judgement::NoClearDifference => tally.no_clear += 1,
            }
            tally.ratios.push(v.ratio.median);
            tally.rounds.extend(&v.per_round);
            tally.rounds_per_run = tally.rounds_per_run.max(v.per_round.len());
        }
    }
    let n = runs.len();
    let mut out = format!(
        "{n} runs. Each row: a column against its sweep's first on one metric; how many runs \
         judged a better, b better or no clear difference, the median over runs of each \
         run's median ratio a/b, and how much the ratio a/b of a single round spreads (every round \
         of every run, as a standard deviation: 1.4826 x its median absolute deviation, which a \
         few wild rounds do not carry off); then, from those rounds themselves, re-centred on \
         their median and shifted by a difference (no distribution assumed), the smallest \
         difference a run of this many rounds would judge 9 times in 10, and the fewest rounds \
         that would judge 5% that often: what this machine would take.\n\n| sweep | row | a vs \
         b | metric | a better | b better | no clear difference | ratio a/b | one round's ratio, \
         spread | judged 9 in 10 from | rounds for 5% |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for key in &order {
        let t = &tallies[key];
        let (sweep, row, a, b, metric) = key;
        let _ = writeln!(
            out,
            "| {sweep} | {row} | {a} vs {b} | {metric} | {} of {n} | {} of {n} | {} of {n} | {:.3} | {} |",
            t.a_better,
            t.b_better,
            t.no_clear,
            median_interval(&t.ratios).map_or(f64::NAN, |i| i.median),
            resolving(t),
        );
    }
    out
}

/// The last three cells of a pair's row ("-" where unknown): how much one round's ratio spreads;
/// then, from those rounds themselves re-centred on their median (no distribution assumed: the
/// same rounds, shifted by a difference), the smallest difference a run of its rounds would
/// judge 9 times in 10, and the fewest rounds that would judge 5% that often.
fn resolving(t: &Tally) -> String {
    let (Some(spread), Some(centre)) = (robust_sd(&t.rounds), median_interval(&t.rounds)) else {
        return "- | - | -".into();
    };
    let relative: Vec<f64> = t.rounds.iter().map(|r| r / centre.median).collect();
    // The share of rounds on the side of 1 a true difference of `d` puts them, either way round
    // (the less of the two: a verdict either way must be reached).
    let share = |d: f64| {
        let count = |f: &dyn Fn(f64) -> bool| relative.iter().filter(|&&r| f(r)).count();
        // a worse by d (ratio 1/(1+d)) and a better by d (ratio 1+d): the same distance in logs.
        let lower = count(&|r| r / (1.0 + d) < 1.0);
        let higher = count(&|r| r * (1.0 + d) > 1.0);
        lower.min(higher) as f64 / relative.len() as f64
    };
    let judged = match side_share_needed(t.rounds_per_run, POWER) {
        None => "no verdicts".to_string(),
        Some(needed) => (1..1000)
            .map(|permille| permille as f64 / 1000.0)
            .find(|&d| share(d) >= needed)
            .map_or("over 100%".into(), |d| format!("{:.1}%", 100.0 * d)),
    };
    let five = rounds_to_reach(share(0.05), POWER, MOST_ROUNDS)
        .map_or(format!("over {MOST_ROUNDS}"), |r| r.to_string());
    format!("{spread:.3} | {judged} | {five}")
}

/// The share of runs a difference worth reporting should be judged in.
const POWER: f64 = 0.9;

/// The most rounds the table looks at for 5%.
const MOST_ROUNDS: usize = 200;

/// The spread of `values` as a standard deviation, robustly: 1.4826 x their median absolute
/// deviation from their median, which is the standard deviation of normally spread values and is
/// not carried off by a few wild ones (one round's p50 ratio of 100 among ratios near 1); None for
/// fewer than two values.
fn robust_sd(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let median = median_interval(values)?.median;
    let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    Some(1.4826 * median_interval(&deviations)?.median)
}

/// How far one cell's msgs/s moves over the rounds of one run: its coefficient of variation
/// (standard deviation over mean) and its slowest round over its median round.
fn cell_spread(msgs_per_s: &[f64]) -> Option<(f64, f64)> {
    if msgs_per_s.len() < 2 {
        return None;
    }
    let n = msgs_per_s.len() as f64;
    let mean = msgs_per_s.iter().sum::<f64>() / n;
    let var = msgs_per_s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let median = median_interval(msgs_per_s)?.median;
    let slowest = msgs_per_s.iter().copied().fold(f64::INFINITY, f64::min);
    (mean > 0.0 && median > 0.0).then(|| (var.sqrt() / mean, slowest / median))
}

/// The Markdown table of how much each closed-loop cell's msgs/s spread over its rounds, run by
/// run: the median over runs of the cell's coefficient of variation, its largest, and the lowest
/// ratio of a cell's slowest round to its median round.
fn spread(runs: &[Meta]) -> String {
    let mut by_cell: BTreeMap<(String, usize, String), Vec<(f64, f64)>> = BTreeMap::new();
    let mut order = Vec::new();
    for meta in runs {
        for cell in &meta.cells {
            // In open loop msgs/s is the rate: its spread says nothing.
            let Some(outcome) = meta
                .outcome(&cell.id)
                .filter(|o| o.is_ok() && cell.rate.is_none())
            else {
                continue;
            };
            let msgs: Vec<f64> = outcome.repeats.iter().map(|r| r.msgs_per_s).collect();
            let Some(one) = cell_spread(&msgs) else {
                continue;
            };
            let by_idle = meta
                .cells
                .iter()
                .any(|c| c.sweep == cell.sweep && c.idle > 0);
            let row = cell.row(by_idle);
            let key = (cell.sweep.clone(), row, cell.label.clone());
            if !by_cell.contains_key(&key) {
                order.push(key.clone());
            }
            by_cell.entry(key).or_default().push(one);
        }
    }
    if order.is_empty() {
        return "No closed-loop cell with rounds: no msgs/s spread to show (in open loop msgs/s \
                is the rate).\n"
            .into();
    }
    let mut out = format!(
        "Each closed-loop cell's msgs/s over its rounds, in {} runs: the median over runs of its \
         coefficient of variation (sd / mean), the largest, and the lowest ratio of its slowest \
         round to its median round.\n\n| sweep | row | column | runs | CV, median | CV, \
         largest | slowest / median, lowest |\n|---|---|---|---|---|---|---|\n",
        runs.len()
    );
    for key in &order {
        let spreads = &by_cell[key];
        let cvs: Vec<f64> = spreads.iter().map(|s| s.0).collect();
        let largest = cvs.iter().copied().fold(0.0, f64::max);
        let lowest = spreads.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
        let (sweep, row, column) = key;
        let _ = writeln!(
            out,
            "| {sweep} | {row} | {column} | {} | {:.1}% | {:.1}% | {lowest:.2} |",
            spreads.len(),
            100.0 * median_interval(&cvs).map_or(f64::NAN, |i| i.median),
            100.0 * largest,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollbench_schema::summary::{Estimate, VerdictSummary};

    fn verdict(b: &str, metric: &str, verdict: Judgement, ratio: f64) -> VerdictSummary {
        VerdictSummary {
            sweep: "calibrate".into(),
            row: 100,
            metric: metric.into(),
            a: "epoll".into(),
            b: b.into(),
            ratio: Estimate {
                median: ratio,
                lo: ratio,
                hi: ratio,
                confidence: 0.97,
            },
            verdict,
            limited_by: None,
            per_round: Vec::new(),
        }
    }

    fn run(verdicts: Vec<VerdictSummary>) -> Summary {
        let cells = ["epoll", "epoll #2", "epoll --work 250ns"]
            .iter()
            .map(|col| {
                let mut c = crate::analysis::summary::tests::cell(col, "calibrate", col, 100);
                c.column = col.to_string();
                c
            })
            .collect();
        Summary {
            schema: pollbench_schema::summary::SCHEMA.into(),
            method: String::new(),
            cells,
            verdicts,
            pairs_judged: Vec::new(),
        }
    }

    #[test]
    fn a_cells_spread_is_its_cv_and_its_slowest_round_against_the_median() {
        let (cv, slowest) = cell_spread(&[100.0, 100.0, 100.0, 100.0, 100.0, 40.0]).unwrap();
        // mean 90, sd sqrt(3000/5) = 24.49
        assert!((cv - 24.494_897 / 90.0).abs() < 1e-6, "{cv}");
        assert!((slowest - 0.4).abs() < 1e-12, "{slowest}");
        assert_eq!(cell_spread(&[5.0, 5.0]), Some((0.0, 1.0)));
        assert_eq!(cell_spread(&[5.0]), None);
    }

    #[test]
    fn the_runs_are_counted_pair_by_pair_against_the_first_column() {
        let cpu = "server_cpu_us_per_msg";
        let runs = [
            run(vec![
                VerdictSummary {
                    per_round: vec![1.0, 1.02],
                    ..verdict("epoll #2", cpu, Judgement::NoClearDifference, 1.01)
                },
                verdict("epoll --work 250ns", cpu, Judgement::ABetter, 0.95),
            ]),
            run(vec![
                VerdictSummary {
                    per_round: vec![0.98, 1.0],
                    ..verdict("epoll #2", cpu, Judgement::NoClearDifference, 0.99)
                },
                verdict(
                    "epoll --work 250ns",
                    cpu,
                    Judgement::NoClearDifference,
                    0.97,
                ),
            ]),
        ];
        let text = table(&runs);
        assert!(text.starts_with("2 runs."), "{text}");
        assert!(
            text.contains("| calibrate | 100 | epoll vs epoll #2 | server_cpu_us_per_msg | 0 of 2 | 0 of 2 | 2 of 2 | 1.000 | 0.015 | no verdicts | 6 |"),
            "{text}"
        );
        assert!(
            text.contains("| epoll vs epoll --work 250ns | server_cpu_us_per_msg | 1 of 2 | 0 of 2 | 1 of 2 | 0.960 | - | - | - |"),
            "{text}"
        );
        // A pair not against the first column is not counted.
        let mut other = run(vec![]);
        other.verdicts.push(VerdictSummary {
            a: "epoll #2".into(),
            ..verdict("epoll --work 250ns", cpu, Judgement::ABetter, 0.9)
        });
        assert_eq!(table(&[other]).lines().count(), 4);
    }

    /// What a pair's rounds resolve, from those rounds shifted: rounds at 0.9 and 1.1 of their
    /// median need a difference above 11.1% before all of them fall on one side (1.1/(1+d) < 1
    /// and 0.9 x (1+d) > 1), so 6 rounds judge it 9 times in 10 from 11.2% (the first 0.1% step
    /// past); at 5% half the rounds fall each way, which no number of rounds turns into a call.
    #[test]
    fn what_a_pair_resolves_is_read_from_its_own_rounds() {
        let cpu = "server_cpu_us_per_msg";
        let runs: Vec<Summary> = (0..2)
            .map(|_| {
                run(vec![VerdictSummary {
                    per_round: vec![0.9, 1.1, 0.9, 1.1, 0.9, 1.1],
                    ..verdict("epoll #2", cpu, Judgement::NoClearDifference, 1.0)
                }])
            })
            .collect();
        let text = table(&runs);
        assert!(
            text.contains("| 1.000 | 0.148 | 11.2% | over 200 |"),
            "{text}"
        );
        // Steady rounds: any difference a verdict can see, 5% in the fewest rounds that judge.
        let steady = run(vec![VerdictSummary {
            per_round: vec![1.0, 1.001, 0.999, 1.0, 1.0, 1.0],
            ..verdict("epoll #2", cpu, Judgement::NoClearDifference, 1.0)
        }]);
        let text = table(&[steady]);
        assert!(text.contains("| 0.000 | 0.2% | 6 |"), "{text}");
    }
}
