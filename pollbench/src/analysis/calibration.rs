//! `pollbench calibration DIR...`: what a suite can resolve, over repeated runs of it. In each run,
//! every column of a sweep is judged against the sweep's first column on each metric (the
//! calibrate suite: epoll, epoll again for the A/A pair, and epoll with planted costs); the table
//! counts, pair by pair and metric by metric, how often each verdict came out over the runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use pollbench_schema::file::read_json;
use pollbench_schema::summary::{Judgement, Summary};

use crate::analysis::stats::median_interval;

#[derive(clap::Args, Debug)]
pub struct CalibrationArgs {
    /// Run directories of the same suite (each with its summary.json), one per repetition.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

/// Print the table; 1 when a directory cannot be read.
pub fn run(args: CalibrationArgs) -> i32 {
    let summaries: Result<Vec<Summary>, String> = args
        .dirs
        .iter()
        .map(|dir| read_json(&dir.join("summary.json")))
        .collect();
    match summaries {
        Ok(summaries) => {
            print!("{}", table(&summaries));
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
        }
    }
    let n = runs.len();
    let mut out = format!(
        "{n} runs. Each row: a column against its sweep's first on one metric; how many runs \
         judged a better, b better or no clear difference, and the median over runs of each \
         run's median ratio a/b.\n\n| sweep | row | a vs b | metric | a better | b better | no \
         clear difference | ratio a/b |\n|---|---|---|---|---|---|---|---|\n"
    );
    for key in &order {
        let t = &tallies[key];
        let (sweep, row, a, b, metric) = key;
        let _ = writeln!(
            out,
            "| {sweep} | {row} | {a} vs {b} | {metric} | {} of {n} | {} of {n} | {} of {n} | {:.3} |",
            t.a_better,
            t.b_better,
            t.no_clear,
            median_interval(&t.ratios).map_or(f64::NAN, |i| i.median)
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
    fn the_runs_are_counted_pair_by_pair_against_the_first_column() {
        let cpu = "server_cpu_us_per_msg";
        let runs = [
            run(vec![
                verdict("epoll #2", cpu, Judgement::NoClearDifference, 1.01),
                verdict("epoll --work 250ns", cpu, Judgement::ABetter, 0.95),
            ]),
            run(vec![
                verdict("epoll #2", cpu, Judgement::NoClearDifference, 0.99),
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
            text.contains("| calibrate | 100 | epoll vs epoll #2 | server_cpu_us_per_msg | 0 of 2 | 0 of 2 | 2 of 2 | 1.000 |"),
            "{text}"
        );
        assert!(
            text.contains("| epoll vs epoll --work 250ns | server_cpu_us_per_msg | 1 of 2 | 0 of 2 | 1 of 2 | 0.960 |"),
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
}
