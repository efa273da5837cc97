//! `pollbench calibration DIR...`: what a suite can resolve, over repeated runs of it. In each run,
//! every column of a sweep is judged against the sweep's first column on each metric (the
//! calibrate suite: epoll, epoll again for the A/A pair, and epoll with planted costs); the table
//! counts, pair by pair and metric by metric, how often each verdict came out over the runs and how
//! much one round's ratio spread; a line what the runs' steadiness probes say the machine allows;
//! and a second table how much each cell's msgs/s spread over its rounds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use pollbench_schema::file::read_json;
use pollbench_schema::results::Meta;
use pollbench_schema::summary::{Judgement, Summary};

use crate::analysis::stats::median_interval;
use crate::analysis::steadiness::Reading;

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
            print!(
                "{}\n{}\n{}",
                table(&summaries),
                steadiness(&metas),
                spread(&metas)
            );
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
        }
    }
    let n = runs.len();
    let mut out = format!(
        "{n} runs. Each row: a column against its sweep's first on one metric; how many runs \
         judged a better, b better or no clear difference, the median over runs of each \
         run's median ratio a/b, and the standard deviation of the ratio a/b of a single round \
         (every round of every run).\n\n| sweep | row | a vs b | metric | a better | b better | no \
         clear difference | ratio a/b | one round's ratio, sd |\n|---|---|---|---|---|---|---|---|---|\n"
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
            match sd(&t.rounds) {
                Some(sd) => format!("{sd:.3}"),
                None => "-".into(),
            }
        );
    }
    out
}

/// Sample standard deviation; None for fewer than two values.
fn sd(values: &[f64]) -> Option<f64> {
    let n = values.len();
    (n >= 2).then(|| {
        let mean = values.iter().sum::<f64>() / n as f64;
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    })
}

/// What the runs' steadiness probes read (the suite's `steadiness`): how much the machine's own
/// speed moved between adjacent cell-long windows, and the smallest difference that made
/// judgeable 9 times in 10 at the runs' rounds; to hold against the table's per-round sd.
fn steadiness(runs: &[Meta]) -> String {
    let read: Vec<(Reading, usize)> = runs
        .iter()
        .filter_map(|m| {
            let rounds = m.suite_settings.as_ref().map_or(1, |s| s.repeat);
            Some((Reading::of(m.steadiness.as_ref()?)?, rounds))
        })
        .collect();
    if read.is_empty() {
        return "No run has a steadiness probe (the suite's `steadiness`).\n".into();
    }
    let adjacent: Vec<f64> = read.iter().map(|(r, _)| r.adjacent()).collect();
    let judged: Vec<f64> = read
        .iter()
        .filter_map(|(r, rounds)| r.smallest_judged(*rounds))
        .collect();
    let median = |v: &[f64]| median_interval(v).map_or(f64::NAN, |i| i.median);
    let most = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    let least = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::min);
    let mut out = format!(
        "The machine's own speed, from the steadiness probe of {} of the {} runs (fixed work on \
         every core, windows as long as a cell; of its arithmetic and its loads through the \
         shared cache, the less steady): the ratio of adjacent windows had a standard deviation \
         of {:.3} (median over runs; {:.3} to {:.3})",
        read.len(),
        runs.len(),
        median(&adjacent),
        least(&adjacent),
        most(&adjacent),
    );
    if !judged.is_empty() {
        let _ = write!(
            out,
            ", so that a pair of columns spread no more than that gets a verdict 9 times in 10 \
             from a difference of about {:.1}% (median over runs; {:.1}% to {:.1}%)",
            100.0 * median(&judged),
            100.0 * least(&judged),
            100.0 * most(&judged),
        );
    }
    out.push_str(".\n");
    out
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
            text.contains("| calibrate | 100 | epoll vs epoll #2 | server_cpu_us_per_msg | 0 of 2 | 0 of 2 | 2 of 2 | 1.000 | 0.016 |"),
            "{text}"
        );
        assert!(
            text.contains("| epoll vs epoll --work 250ns | server_cpu_us_per_msg | 1 of 2 | 0 of 2 | 1 of 2 | 0.960 | - |"),
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

    /// The probes' line reads each run's adjacent-window spread and the difference it makes
    /// judgeable at that run's rounds; runs without a probe are counted, not read.
    #[test]
    fn the_steadiness_line_reads_every_probe() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../results/20261202T125637Z-vm-completion/meta.json"
        ))
        .unwrap();
        let without: Meta = serde_json::from_str(&text).unwrap();
        assert!(steadiness(std::slice::from_ref(&without)).starts_with("No run has"));
        let probe = |windows: &[f64]| Meta {
            steadiness: Some(pollbench_schema::results::Steadiness {
                window_s: 4.0,
                clock: "thread CPU time".into(),
                arithmetic_chunk: 1,
                cache_bytes: 2 << 20,
                cache_chunk: 1,
                cores: vec![pollbench_schema::results::CoreSpeed {
                    core: Some(0),
                    arithmetic_per_s: vec![5.0; windows.len()],
                    cache_per_s: windows.to_vec(),
                }],
            }),
            ..without.clone()
        };
        let (a, b) = (probe(&[100.0, 110.0, 100.0]), probe(&[100.0; 4]));
        let line = steadiness(&[a.clone(), b, without]);
        let sd_a = Reading::of(a.steadiness.as_ref().unwrap())
            .unwrap()
            .adjacent();
        let rounds = rounds_of(&a);
        let judged = Reading::of(a.steadiness.as_ref().unwrap())
            .unwrap()
            .smallest_judged(rounds)
            .unwrap();
        // Medians over two runs: halfway between run a's and the steady run's 0.
        assert!(
            line.contains("from the steadiness probe of 2 of the 3 runs"),
            "{line}"
        );
        assert!(
            line.contains(&format!(
                "{:.3} (median over runs; 0.000 to {sd_a:.3})",
                sd_a / 2.0
            )),
            "{line}"
        );
        assert!(
            line.contains(&format!(
                "about {:.1}% (median over runs; 0.0% to {:.1}%)",
                50.0 * judged,
                100.0 * judged
            )),
            "{line}"
        );
    }

    fn rounds_of(meta: &Meta) -> usize {
        meta.suite_settings.as_ref().map_or(1, |s| s.repeat)
    }
}
