//! One run of a suite: its run directory, its cells in order with progress, meta.json kept current
//! after every cell, and the report at the end (also after an interruption).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use pollbench_schema::file::write_json_atomically;
use pollbench_schema::results::{
    Cell, CellStatus, Meta, Outcome, Rounds, SuiteSettings, META_FILE,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::place::network::Network;
use crate::run::binaries::Binaries;
use crate::run::disturbance::Sample;
use crate::run::suite::{Suite, RUN_SUITE_FILE};

/// A suite being run into its directory.
pub struct SuiteRun {
    dir: PathBuf,
    meta: Meta,
    cells: Vec<Cell>,
    /// Rounds of the suite, and runs of a cell finished so far (for the progress lines).
    rounds: usize,
    runs_done: usize,
    bar: Option<indicatif::ProgressBar>,
    /// Where the cells' processes run (namespaces, if any, deleted when the run is dropped).
    net: Network,
}

impl SuiteRun {
    /// Create the run directory (under `results`, or results/ beside the suite's scripts/) and write
    /// its first meta.json, before any cell runs: an interrupted suite, even one interrupted in its
    /// first cell, still leaves a directory its report can be built from.
    pub fn start(
        path: &Path,
        suite: &Suite,
        sweeps: &[String],
        bins: &mut Binaries,
        results: Option<PathBuf>,
    ) -> Result<SuiteRun, String> {
        // Launched hosts are checked before anything is written: the same build everywhere, and
        // the server host's own capabilities.
        let local_bins = bins
            .bench_server
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut net = suite.network(&local_bins);
        let mut hosts = None;
        if let Some((capabilities, facts)) = net.prepare(&bins.bench_server, &bins.load_gen)? {
            bins.capabilities = capabilities;
            hosts = Some(facts);
        }
        let name = Suite::name_of(path);
        let started = SystemTime::now();
        let dir = create_run_dir(path, &name, sweeps, results, started)?;
        // Labels name what bench-server runs ("kqueue (libkqueue)" where that is what kqueue is).
        let cells = suite.cells(|backend| match crate::run::external::name_of(backend) {
            Some(name) => format!("{name} (external)"),
            None => bins
                .capabilities
                .server(backend)
                .map_or_else(|| backend.to_string(), |s| s.mechanism.clone()),
        });
        let meta = crate::run::machine::collect_meta(
            &name,
            suite.text.clone(),
            humantime::format_rfc3339_seconds(started).to_string(),
            cells.clone(),
        );
        let meta = Meta {
            sweeps: (!sweeps.is_empty()).then(|| sweeps.to_vec()),
            topology: net.describe(),
            hosts,
            externals: (!suite.externals.is_empty()).then(|| suite.externals.clone()),
            suite_settings: Some(SuiteSettings {
                repeat: suite.repeat,
                pin: suite.pin,
            }),
            ..meta
        };
        eprintln!(
            "suite {name} ({}): {} cells, results in {}",
            suite.description,
            cells.len(),
            dir.display()
        );
        let run = SuiteRun {
            dir,
            meta,
            rounds: suite.repeat,
            runs_done: 0,
            bar: progress_bar(cells.len() * suite.repeat),
            cells,
            net,
        };
        run.save_meta()?;
        run.save_suite()?;
        Ok(run)
    }

    /// Write suite.toml: the suite as this run runs it (its text, with only the sweeps `--sweep`
    /// chose), so `pollbench suite DIR/suite.toml` reruns it.
    fn save_suite(&self) -> Result<(), String> {
        let text = crate::run::suite::as_ran(&self.meta)
            .map_err(|e| format!("cannot write {RUN_SUITE_FILE}: {e}"))?;
        pollbench_schema::file::write_atomically(&self.dir.join(RUN_SUITE_FILE), text.as_bytes())
            .map_err(|e| format!("cannot write {RUN_SUITE_FILE}: {e}"))
    }

    /// Run the suite's rounds: every cell once per round, in an order shuffled per round by row
    /// ([`blocked_order`]; one round: the suite's order). A cell that fails or is skipped in a round is not run again.
    /// Ok(true) when the runner was interrupted: cells with at least one completed round are still
    /// recorded, from the rounds they completed.
    pub fn run_cells(&mut self, suite: &Suite, bins: &Binaries) -> Result<bool, String> {
        let cells_dir = self.dir.join("cells");
        let rounds = suite.repeat;
        let mut shuffle = (rounds > 1).then(|| {
            let seed = suite.seed.unwrap_or_else(seed_from_clock);
            self.meta.rounds = Some(Rounds {
                seed,
                order: Vec::new(),
                disturbance: Vec::new(),
                blocks: Some(ROW_BLOCKS.into()),
            });
            rand::rngs::StdRng::seed_from_u64(seed)
        });
        if shuffle.is_some() {
            // suite.toml again, now with the seed just drawn: a rerun shuffles the same way.
            self.save_suite()?;
        }
        let mut progress: Vec<Progress> = vec![Progress::Rounds(Vec::new()); self.cells.len()];
        let mut interrupted = false;
        let suite_began = Sample::now();
        'rounds: for round in 1..=rounds {
            let round_began = Sample::now();
            let mut order: Vec<usize> = (0..self.cells.len()).collect();
            if let (Some(rng), Some(record)) = (&mut shuffle, &mut self.meta.rounds) {
                order = blocked_order(&self.cells, rng);
                record
                    .order
                    .push(order.iter().map(|&i| self.cells[i].id.clone()).collect());
            }
            for i in order {
                let Progress::Rounds(completed) = &mut progress[i] else {
                    continue;
                };
                let cell = &self.cells[i];
                if let Some(bar) = &self.bar {
                    bar.set_message(cell.id.clone());
                }
                let Ok(outcome) =
                    crate::run::cell::run_round(cell, suite, bins, &self.net, &cells_dir, round)
                else {
                    interrupted = true;
                    break 'rounds;
                };
                self.show(round, &outcome);
                if outcome.is_ok() && rounds > 1 {
                    completed.push(round);
                } else {
                    // Final: a one-round cell, or one that failed or was skipped. Recorded at once,
                    // so a run that dies without cleanup still has it in meta.json.
                    progress[i] = Progress::Recorded;
                    self.meta.outcomes.push(outcome);
                    self.note_disturbance(suite_began);
                    self.save_meta()?;
                }
            }
            if let (Some(began), Some(now), Some(record)) =
                (round_began, Sample::now(), &mut self.meta.rounds)
            {
                record.disturbance.push(began.until(&now));
            }
            self.note_disturbance(suite_began);
            self.save_meta()?;
        }
        // Cells of several rounds, from the rounds they completed (all of them unless interrupted).
        for (cell, state) in self.cells.iter().zip(progress) {
            if let Progress::Rounds(completed) = state {
                if !completed.is_empty() {
                    let outcome = crate::run::cell::combine_rounds(cell, &cells_dir, &completed);
                    self.meta.outcomes.push(outcome);
                }
            }
        }
        self.note_disturbance(suite_began);
        self.save_meta()?;
        Ok(interrupted)
    }

    /// Record in meta.json what disturbed the suite from `began` until now.
    fn note_disturbance(&mut self, began: Option<Sample>) {
        if let (Some(began), Some(now)) = (began, Sample::now()) {
            self.meta.disturbance = Some(began.until(&now));
        }
    }

    /// Write the summary and the report, and say how the suite ended: the exit status.
    pub fn finish(self, interrupted: bool) -> Result<i32, String> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let summary = crate::analysis::summary::write(&self.dir, &self.meta)?;
        let report = crate::render::report::write(&self.dir, &self.meta, &summary)?;
        println!("report: {}", report.display());
        let total = self.cells.len();
        if interrupted {
            eprintln!(
                "pollbench: interrupted after {} of {total} cells; the report covers those",
                self.meta.outcomes.len(),
            );
            return Ok(130);
        }
        let failed = self
            .meta
            .outcomes
            .iter()
            .filter(|o| o.status == CellStatus::Failed)
            .count();
        if failed > 0 {
            eprintln!("pollbench: {failed} of {total} cells failed (see the report)");
            return Ok(1);
        }
        Ok(0)
    }

    /// One line per finished run of a cell: above the progress bar on a terminal, plain otherwise.
    fn show(&mut self, round: usize, outcome: &Outcome) {
        self.runs_done += 1;
        let reason = outcome
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let of_round = match self.rounds {
            1 => String::new(),
            n => format!(" (round {round}/{n})"),
        };
        let line = format!(
            "[{}/{}] {}{of_round}: {}{reason}",
            self.runs_done,
            self.cells.len() * self.rounds,
            outcome.id,
            outcome.status,
        );
        match &self.bar {
            Some(bar) => {
                bar.println(line);
                bar.inc(1);
            }
            None => eprintln!("{line}"),
        }
    }

    fn save_meta(&self) -> Result<(), String> {
        write_json_atomically(&self.dir.join(META_FILE), &self.meta)
            .map_err(|e| format!("cannot write meta.json: {e}"))
    }
}

/// Where a cell stands in a suite's rounds.
#[derive(Clone)]
enum Progress {
    /// Still running: the rounds it completed so far.
    Rounds(Vec<usize>),
    /// Its outcome is in meta.json.
    Recorded,
}

/// What meta.json's `rounds.blocks` says of a round's order: the cells of a row ran back to back.
const ROW_BLOCKS: &str = "row";

/// One round's order of `cells` (indices): each row of a sweep (the cells of one connection and
/// idle count, which its verdicts compare) is a block, its cells back to back in a shuffled order,
/// the blocks in a shuffled order. Cells compared run minutes apart when a round shuffles them
/// all, and the machine drifts in that time (issue 23: adjacent seconds agree far better than
/// seconds 30 s apart); in a block they run side by side.
fn blocked_order(cells: &[Cell], rng: &mut impl rand::Rng) -> Vec<usize> {
    // (sweep, connections, idle): a row.
    type Row<'a> = (&'a str, usize, usize);
    let mut blocks: Vec<(Row, Vec<usize>)> = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        let row = (cell.sweep.as_str(), cell.connections, cell.idle);
        match blocks.iter_mut().find(|(r, _)| *r == row) {
            Some((_, block)) => block.push(i),
            None => blocks.push((row, vec![i])),
        }
    }
    blocks.shuffle(rng);
    blocks
        .into_iter()
        .flat_map(|(_, mut block)| {
            block.shuffle(rng);
            block
        })
        .collect()
}

/// A seed for a suite that names none: the clock's nanoseconds (recorded in meta.json, so the
/// orders can be reproduced with `seed = N` in the suite).
fn seed_from_clock() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The run directory of suite `name` (file `path`) started at `started`: under `results`, or
/// results/ beside the suite's scripts/.
fn create_run_dir(
    path: &Path,
    name: &str,
    sweeps: &[String],
    results: Option<PathBuf>,
    started: SystemTime,
) -> Result<PathBuf, String> {
    // A run of some sweeps only is named for them too, so it is not taken for the whole suite.
    let dir_name = std::iter::once(name)
        .chain(sweeps.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-");
    let results = results.unwrap_or_else(|| default_results(path));
    let stamp = humantime::format_rfc3339_seconds(started)
        .to_string()
        .replace([':', '-'], "");
    new_run_dir(&results, &stamp, &dir_name).map_err(|e| {
        format!(
            "cannot create a run directory in {}: {e}",
            results.display()
        )
    })
}

/// A new run directory under `results`: never an existing one.
fn new_run_dir(results: &Path, stamp: &str, suite: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(results)?;
    for n in 1.. {
        let name = if n == 1 {
            format!("{stamp}-{}-{suite}", crate::run::machine::host_name())
        } else {
            format!("{stamp}-{}-{suite}-{n}", crate::run::machine::host_name())
        };
        let dir = results.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::create_dir(dir.join("cells"))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!()
}

/// results/ beside the scripts/ the suite came from, or ./results.
fn default_results(suite: &Path) -> PathBuf {
    suite
        .canonicalize()
        .ok()
        .and_then(|p| {
            p.ancestors()
                .find(|a| a.join("scripts").is_dir())
                .map(|a| a.join("results"))
        })
        .unwrap_or_else(|| PathBuf::from("results"))
}

/// A progress bar with the runs of cells done and the time left, on a terminal only.
fn progress_bar(runs: usize) -> Option<indicatif::ProgressBar> {
    std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(runs as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "[{elapsed_precise}] {wide_bar} {pos}/{len} runs, {eta} left  {msg}",
            )
            .expect("valid template"),
        );
        bar
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::suite::tests::{suite, HEAD};
    use std::collections::HashSet;

    /// A round's order keeps a row's cells together, shuffles within and between rows, and holds
    /// every cell once.
    #[test]
    fn a_rounds_order_runs_each_row_as_a_block() {
        let cells = suite(&format!(
            "{HEAD}[[sweep]]\nname = \"a\"\nbackends = [\"epoll\", \"poll\", \"select\", \"epoll\"]\n\
             connections = [1, 10, 100]\n[[sweep]]\nname = \"b\"\nbackends = [\"epoll\", \"poll\"]\n\
             connections = [1, 10]\nidle = [0, 5]\n"
        ))
        .unwrap()
        .cells(str::to_string);
        let row = |i: usize| (cells[i].sweep.clone(), cells[i].connections, cells[i].idle);
        let mut orders = Vec::new();
        for seed in 0..20 {
            let order = blocked_order(&cells, &mut rand::rngs::StdRng::seed_from_u64(seed));
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..cells.len()).collect::<Vec<_>>());
            // A row, once left, is never seen again.
            let mut seen = Vec::new();
            for pair in order.windows(2) {
                if row(pair[0]) != row(pair[1]) {
                    seen.push(row(pair[0]));
                    assert!(!seen.contains(&row(pair[1])), "seed {seed}: {order:?}");
                }
            }
            assert_eq!(seen.len() + 1, 3 + 4, "seed {seed}: 7 rows");
            orders.push(order);
        }
        // Shuffled: rows in other orders, and cells within a row too.
        let row_orders: HashSet<Vec<_>> = orders
            .iter()
            .map(|o| {
                // Rows come in blocks: one entry each.
                let mut rows: Vec<_> = o.iter().map(|&i| row(i)).collect();
                rows.dedup();
                rows
            })
            .collect();
        assert!(row_orders.len() > 10, "{row_orders:?}");
        let within: HashSet<Vec<usize>> = orders
            .iter()
            .map(|o| o.iter().copied().filter(|&i| row(i) == row(0)).collect())
            .collect();
        assert!(within.len() > 5, "{within:?}");
    }
}
