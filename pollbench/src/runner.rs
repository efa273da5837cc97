//! One run of a suite: its run directory, its cells in order with progress, meta.json kept current
//! after every cell, and the report at the end (also after an interruption).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use pollbench_schema::file::write_json_atomically;
use pollbench_schema::results::{Cell, CellStatus, Meta, Outcome};

use crate::binaries::Binaries;
use crate::suite::Suite;

/// A suite being run into its directory.
pub struct SuiteRun {
    dir: PathBuf,
    meta: Meta,
    cells: Vec<Cell>,
    bar: Option<indicatif::ProgressBar>,
}

impl SuiteRun {
    /// Create the run directory (under `results`, or results/ beside the suite's scripts/) and write
    /// its first meta.json, before any cell runs: an interrupted suite, even one interrupted in its
    /// first cell, still leaves a directory its report can be built from.
    pub fn start(
        path: &Path,
        suite: &Suite,
        bins: &Binaries,
        results: Option<PathBuf>,
    ) -> Result<SuiteRun, String> {
        let name = path
            .file_stem()
            .map_or("suite".into(), |s| s.to_string_lossy().to_string());
        let results = results.unwrap_or_else(|| default_results(path));
        let started = SystemTime::now();
        let stamp = humantime::format_rfc3339_seconds(started)
            .to_string()
            .replace([':', '-'], "");
        let dir = crate::report::new_run_dir(&results, &stamp, &name).map_err(|e| {
            format!(
                "cannot create a run directory in {}: {e}",
                results.display()
            )
        })?;
        // Labels name what bench-server runs ("kqueue (libkqueue)" where that is what kqueue is).
        let cells = suite.cells(|backend| {
            bins.capabilities
                .server(backend)
                .map_or_else(|| backend.to_string(), |s| s.mechanism.clone())
        });
        let meta = crate::report::collect_meta(
            &name,
            std::fs::read_to_string(path).unwrap_or_default(),
            humantime::format_rfc3339_seconds(started).to_string(),
            cells.clone(),
        );
        eprintln!(
            "suite {name} ({}): {} cells, results in {}",
            suite.description,
            cells.len(),
            dir.display()
        );
        let run = SuiteRun {
            dir,
            meta,
            bar: progress_bar(cells.len()),
            cells,
        };
        run.save_meta()?;
        Ok(run)
    }

    /// Run every cell in order, recording each outcome as it comes; Ok(true) when the runner was
    /// interrupted (the cell under way is then not recorded).
    pub fn run_cells(&mut self, suite: &Suite, bins: &Binaries) -> Result<bool, String> {
        let cells_dir = self.dir.join("cells");
        for i in 0..self.cells.len() {
            let cell = &self.cells[i];
            if let Some(bar) = &self.bar {
                bar.set_message(cell.id.clone());
            }
            let Ok(outcome) = crate::cell::run_cell(cell, suite, bins, &cells_dir) else {
                return Ok(true);
            };
            self.show(i, &outcome);
            self.meta.outcomes.push(outcome);
            self.save_meta()?;
        }
        Ok(false)
    }

    /// Write the report and say how the suite ended: the exit status.
    pub fn finish(self, interrupted: bool) -> Result<i32, String> {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let report = crate::report::write_report(&self.dir)?;
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

    /// One line per finished cell: above the progress bar on a terminal, plain otherwise.
    fn show(&self, i: usize, outcome: &Outcome) {
        let reason = outcome
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let line = format!(
            "[{}/{}] {}: {}{reason}",
            i + 1,
            self.cells.len(),
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
        write_json_atomically(&self.dir.join("meta.json"), &self.meta)
            .map_err(|e| format!("cannot write meta.json: {e}"))
    }
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

/// A progress bar with the cells done and the time left, on a terminal only.
fn progress_bar(cells: usize) -> Option<indicatif::ProgressBar> {
    std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(cells as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "[{elapsed_precise}] {wide_bar} {pos}/{len} cells, {eta} left  {msg}",
            )
            .expect("valid template"),
        );
        bar
    })
}
