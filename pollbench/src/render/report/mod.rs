//! A run directory's report: report.md and the SVG charts it shows, rebuilt from meta.json, the
//! run's summary (summary.json) and the cells' files. One module per output format (`markdown`,
//! `svg`) and one per section of report.md (`header`, `tables`, `cost`, `verdicts`, `clients`,
//! `notes`, `planted`); `run` is what they read.

mod clients;
mod cost;
mod header;
mod markdown;
mod notes;
mod planted;
mod run;
mod svg;
mod tables;
mod verdicts;

use std::path::{Path, PathBuf};

use pollbench_schema::results::Meta;
use pollbench_schema::summary::Summary;

use markdown::Markdown;
use run::{cell_runs, Run};

/// Write report.md of run directory `dir` (and the charts it shows) from its meta.json, its
/// summary and the cells' files; the path of report.md.
pub fn write(dir: &Path, meta: &Meta, summary: &Summary) -> Result<PathBuf, String> {
    let data = cell_runs(dir, meta)?;
    let run = Run::new(dir, meta, summary, &data);
    let sweeps = run.sweeps();
    let charts: Vec<svg::SweepCharts> = sweeps.iter().map(|s| svg::write(&run, s)).collect();
    let mut md = Markdown::new(&run);
    md.header();
    for (sweep, charts) in sweeps.iter().zip(&charts) {
        md.sweep(sweep, charts);
    }
    md.clients();
    md.notes_and_suite();
    let path = dir.join("report.md");
    md.write(&path)?;
    Ok(path)
}
