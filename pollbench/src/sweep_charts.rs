//! The SVG charts of one sweep of a run: throughput and latency against connections (or idle
//! connections), and the latency percentile spectrum of every backend at one load.

use std::collections::BTreeMap;
use std::path::Path;

use pollbench_schema::results::Cell;
use pollbench_schema::run::RunReport;

/// A chart written into the run directory: (file name, description).
pub type Chart = (String, String);

/// What a chart plots of one cell's load-gen run.
type Metric = fn(&RunReport) -> f64;

/// One sweep of a run, as its charts need it.
pub struct SweepView<'a> {
    pub dir: &'a Path,
    pub name: &'a str,
    /// The x axis: "connections" or "idle connections".
    pub x: &'a str,
    pub cells: &'a [&'a Cell],
    /// The report's columns: the cells' labels (backend, and what else the sweep varies).
    pub columns: &'a [String],
    pub by_idle: bool,
    /// The load-gen runs of the cells that completed, by id.
    pub completed: &'a BTreeMap<&'a str, &'a RunReport>,
}

impl SweepView<'_> {
    /// The SVG charts of one sweep, as (file name, description): those to show (throughput, p99, the
    /// latency spectrum) and those to link (p50, p99.9).
    pub fn charts(&self) -> (Vec<Chart>, Vec<Chart>) {
        let (sweep, x) = (self.name, self.x);
        let series = |metric: &dyn Fn(&RunReport) -> f64| -> Vec<crate::charts::Series> {
            self.columns
                .iter()
                .map(|col| crate::charts::Series {
                    label: col.clone(),
                    points: self
                        .cells
                        .iter()
                        .filter(|c| c.label == *col)
                        .filter_map(|c| {
                            let run = self.completed.get(c.id.as_str())?;
                            Some((c.row(self.by_idle) as f64, metric(run)))
                        })
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect()
        };
        let (mut shown, mut linked) = (Vec::new(), Vec::new());
        use crate::charts::YAxis;
        let plots: [(&str, &str, Metric, bool, YAxis); 4] = [
            (
                "throughput",
                "messages per second",
                |r| r.throughput_msgs_per_s,
                true,
                YAxis::Linear,
            ),
            (
                "p99",
                "p99 latency",
                |r| r.latency_us.p99 as f64,
                true,
                YAxis::LogMicros,
            ),
            (
                "p50",
                "p50 latency",
                |r| r.latency_us.p50 as f64,
                false,
                YAxis::LogMicros,
            ),
            (
                "p999",
                "p99.9 latency",
                |r| r.latency_us.p999 as f64,
                false,
                YAxis::LogMicros,
            ),
        ];
        for (name, y, metric, show, y_axis) in plots {
            let series = series(&metric);
            if series.is_empty() {
                continue; // no cell of the sweep completed: nothing to draw
            }
            let file = format!("{sweep}-{name}.svg");
            let title = format!("{sweep}: {y} against {x}");
            let chart = crate::charts::line_chart(
                &self.dir.join(&file),
                &title,
                x,
                y,
                &series,
                self.by_idle,
                y_axis,
            );
            match chart {
                Ok(()) => if show { &mut shown } else { &mut linked }.push((file, title)),
                Err(e) => eprintln!("pollbench: {e}"),
            }
        }
        if let Some(chart) = self.spectrum() {
            shown.push(chart);
        }
        (shown, linked)
    }

    /// The latency percentile spectrum of every backend at one load of the sweep: the largest
    /// connection (or idle) count that every backend with a completed cell completed, else the largest
    /// any completed.
    fn spectrum(&self) -> Option<Chart> {
        let row = |c: &Cell| c.row(self.by_idle);
        let done: Vec<&Cell> = self
            .cells
            .iter()
            .copied()
            .filter(|c| self.completed.contains_key(c.id.as_str()))
            .collect();
        let ran: Vec<&String> = self
            .columns
            .iter()
            .filter(|col| done.iter().any(|c| c.label == **col))
            .collect();
        let everywhere = done
            .iter()
            .map(|c| row(c))
            .filter(|&r| {
                ran.iter()
                    .all(|col| done.iter().any(|c| row(c) == r && c.label == **col))
            })
            .max();
        let at = everywhere.or_else(|| done.iter().map(|c| row(c)).max())?;
        let series: Vec<crate::charts::Series> = self
            .columns
            .iter()
            .filter_map(|col| {
                let cell = done.iter().find(|c| row(c) == at && c.label == *col)?;
                let hlog = self.dir.join("cells").join(format!("{}.hlog", cell.id));
                match pollbench_schema::hlog::total(&hlog) {
                    Ok(h) => Some(crate::charts::Series {
                        label: col.clone(),
                        points: crate::charts::spectrum_points(&h),
                    }),
                    Err(e) => {
                        eprintln!("pollbench: {e}");
                        None
                    }
                }
            })
            .collect();
        if series.is_empty() {
            return None;
        }
        let file = format!("{}-spectrum.svg", self.name);
        let title = format!("{}: latency by percentile at {at} {}", self.name, self.x);
        match crate::charts::spectrum_chart(&self.dir.join(&file), &title, &series) {
            Ok(()) => Some((file, title)),
            Err(e) => {
                eprintln!("pollbench: {e}");
                None
            }
        }
    }
}
