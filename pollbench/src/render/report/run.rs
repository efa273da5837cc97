//! A run directory as its report reads it: meta.json, the summary, the cells' load-gen runs, and
//! each sweep's layout (its x axis, columns and rows).

use std::collections::BTreeMap;
use std::path::Path;

use pollbench_schema::file::read_json;
use pollbench_schema::results::{Cell, Meta, Outcome};
use pollbench_schema::run::RunReport;
use pollbench_schema::summary::Summary;

/// The load-gen run of cell `id` in run directory `dir`: None when the cell left no such file (it
/// failed before load-gen wrote it, or was skipped); an error naming the file and field when the
/// file is there but not a run document.
fn cell_run(dir: &Path, id: &str) -> Result<Option<RunReport>, String> {
    let path = dir.join("cells").join(format!("{id}.json"));
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// The load-gen run of every cell of `meta` that left one, by cell id: read once for the tables
/// and the charts.
pub(super) fn cell_runs<'m>(
    dir: &Path,
    meta: &'m Meta,
) -> Result<BTreeMap<&'m str, RunReport>, String> {
    let mut runs = BTreeMap::new();
    for c in &meta.cells {
        if let Some(run) = cell_run(dir, &c.id)? {
            runs.insert(c.id.as_str(), run);
        }
    }
    Ok(runs)
}

/// A run being reported: what its Markdown and its charts are written from.
pub(super) struct Run<'a> {
    pub(super) dir: &'a Path,
    pub(super) meta: &'a Meta,
    /// Every cell's figures over its rounds, and the verdicts: what summary.json holds.
    pub(super) summary: &'a Summary,
    pub(super) outcomes: BTreeMap<&'a str, &'a Outcome>,
    /// The load-gen run of every cell that left one.
    pub(super) data: &'a BTreeMap<&'a str, RunReport>,
    /// The runs of the cells that completed: what the charts plot.
    pub(super) completed: BTreeMap<&'a str, &'a RunReport>,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        dir: &'a Path,
        meta: &'a Meta,
        summary: &'a Summary,
        data: &'a BTreeMap<&'a str, RunReport>,
    ) -> Run<'a> {
        let outcomes: BTreeMap<&str, &Outcome> =
            meta.outcomes.iter().map(|o| (o.id.as_str(), o)).collect();
        let completed = data
            .iter()
            .filter(|(id, _)| outcomes.get(*id).is_some_and(|o| o.is_ok()))
            .map(|(id, run)| (*id, run))
            .collect();
        Run {
            dir,
            meta,
            summary,
            outcomes,
            data,
            completed,
        }
    }

    /// The run's sweeps, in the order of their cells.
    pub(super) fn sweeps(&self) -> Vec<Sweep<'a>> {
        let mut names: Vec<&str> = self.meta.cells.iter().map(|c| c.sweep.as_str()).collect();
        names.dedup();
        names
            .into_iter()
            .map(|name| Sweep::of(self.meta, name))
            .collect()
    }
}

/// One sweep's layout in the report: a column per label, a row per connection (or idle) count.
pub(super) struct Sweep<'a> {
    pub(super) name: &'a str,
    /// The x axis: "connections" or "idle connections".
    pub(super) x: &'static str,
    pub(super) cells: Vec<&'a Cell>,
    /// The cells' labels, in the order their first cells come.
    pub(super) columns: Vec<String>,
    /// The rows' connection (or idle connection) counts, ascending.
    pub(super) rows: Vec<usize>,
    /// The rows are idle connections: the sweep varies those.
    pub(super) by_idle: bool,
}

impl<'a> Sweep<'a> {
    /// The layout of sweep `name` of the run.
    fn of(meta: &'a Meta, name: &'a str) -> Sweep<'a> {
        let cells: Vec<&Cell> = meta.cells.iter().filter(|c| c.sweep == name).collect();
        let by_idle = cells.iter().any(|c| c.idle > 0);
        let mut columns: Vec<String> = Vec::new();
        for c in &cells {
            if !columns.contains(&c.label) {
                columns.push(c.label.clone());
            }
        }
        let mut rows: Vec<usize> = cells.iter().map(|c| c.row(by_idle)).collect();
        rows.sort();
        rows.dedup();
        Sweep {
            name,
            x: if by_idle {
                "idle connections"
            } else {
                "connections"
            },
            cells,
            columns,
            rows,
            by_idle,
        }
    }

    /// The cell of column `label` at `row`.
    pub(super) fn cell(&self, label: &str, row: usize) -> Option<&'a Cell> {
        self.cells
            .iter()
            .copied()
            .find(|c| c.label == label && c.row(self.by_idle) == row)
    }
}
