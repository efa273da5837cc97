//! The report's SVG charts: each sweep's, drawn into the run directory by
//! [`crate::render::sweep_charts`].

use crate::render::sweep_charts::{Chart, SweepView};

use super::run::{Run, Sweep};

/// A sweep's charts, written: those the report shows, and those it links.
pub(super) struct SweepCharts {
    pub(super) shown: Vec<Chart>,
    pub(super) linked: Vec<Chart>,
}

/// Write the charts of `sweep` of `run`.
pub(super) fn write(run: &Run, sweep: &Sweep) -> SweepCharts {
    let view = SweepView {
        dir: run.dir,
        name: sweep.name,
        x: sweep.x,
        cells: &sweep.cells,
        columns: &sweep.columns,
        by_idle: sweep.by_idle,
        completed: &run.completed,
        summary: run.summary,
        rounds: run.meta.rounds.is_some(),
    };
    let (shown, linked) = view.charts();
    SweepCharts { shown, linked }
}
