//! The SVG charts of one sweep of a run: throughput and latency against connections (or idle
//! connections), and the latency percentile spectrum of every backend at one load.

use std::collections::BTreeMap;
use std::path::Path;

use pollbench_schema::results::Cell;
use pollbench_schema::run::RunReport;
use pollbench_schema::summary::{CellSummary, Estimate, Summary};

use crate::render::charts::YAxis;

/// A chart written into the run directory: (file name, description).
pub type Chart = (String, String);

/// What a chart plots of one cell's load-gen run.
type Metric = fn(&RunReport) -> f64;

/// What a chart plots of one cell's summary: a median over rounds and its interval.
type Figure = fn(&CellSummary) -> Option<Estimate>;

/// A point of a line: (x, y).
type Point = (f64, f64);

/// An interval drawn as an error bar: (x, lo, hi).
type Bar = (f64, f64, f64);

/// One chart of a sweep.
struct Plot {
    /// The file is SWEEP-NAME.svg.
    name: &'static str,
    /// The y axis.
    y: &'static str,
    /// Shown in the report (else linked).
    show: bool,
    axis: YAxis,
    /// From the cell's (median) load-gen run, in runs without rounds.
    run: Option<Metric>,
    /// From the summary: always where there is no `run`, and in runs with rounds.
    figure: Option<Figure>,
}

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
    /// Every cell's figures; with `rounds`, the charts plot their medians with intervals.
    pub summary: &'a Summary,
    pub rounds: bool,
}

impl SweepView<'_> {
    /// The point (x, y) of one cell on `plot`, with its interval (x, lo, hi) when it has one.
    fn point(&self, plot: &Plot, c: &Cell) -> Option<(Point, Option<Bar>)> {
        let run = self.completed.get(c.id.as_str())?;
        let x = c.row(self.by_idle) as f64;
        match (plot.run, plot.figure) {
            (Some(metric), _) if !self.rounds => Some(((x, metric(run)), None)),
            (_, Some(figure)) => {
                let cell = self.summary.cell(&c.id)?;
                let e = figure(cell)?;
                let bar = (cell.rounds >= 2).then_some((x, e.lo, e.hi));
                Some(((x, e.median), bar))
            }
            (Some(metric), None) => Some(((x, metric(run)), None)),
            (None, None) => None,
        }
    }

    /// The lines of `plot`: one per column with a point.
    fn series(&self, plot: &Plot) -> Vec<crate::render::charts::Series> {
        self.columns
            .iter()
            .map(|col| {
                let (points, bars) = self
                    .cells
                    .iter()
                    .filter(|c| c.label == *col)
                    .filter_map(|c| self.point(plot, c))
                    .unzip::<_, _, Vec<_>, Vec<_>>();
                crate::render::charts::Series {
                    label: col.clone(),
                    points,
                    bars: bars.into_iter().flatten().collect(),
                }
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    }

    /// The chart of `plot`, written: None where no cell of the sweep has it.
    fn line_chart(&self, plot: &Plot) -> Option<Result<Chart, String>> {
        let series = self.series(plot);
        if series.is_empty() {
            return None;
        }
        let (sweep, x) = (self.name, self.x);
        let file = format!("{sweep}-{}.svg", plot.name);
        let title = format!("{sweep}: {} against {x}", plot.y);
        let chart = crate::render::charts::line_chart(
            &self.dir.join(&file),
            &title,
            x,
            plot.y,
            &series,
            self.by_idle,
            plot.axis,
        );
        Some(chart.map(|()| (file, title)))
    }

    /// The SVG charts of one sweep, as (file name, description): those to show (throughput, p99,
    /// the server's CPU per message, the latency spectrum) and those to link (p50, p99.9).
    pub fn charts(&self) -> (Vec<Chart>, Vec<Chart>) {
        let (mut shown, mut linked) = (Vec::new(), Vec::new());
        let plots = [
            Plot {
                name: "throughput",
                y: "messages per second",
                show: true,
                axis: YAxis::Linear,
                run: Some(|r| r.throughput_msgs_per_s),
                figure: Some(|c| c.msgs_per_s),
            },
            Plot {
                name: "p99",
                y: "p99 latency",
                show: true,
                axis: YAxis::LogMicros,
                run: Some(|r| r.latency_us.p99 as f64),
                figure: Some(|c| c.p99_us),
            },
            Plot {
                name: "server-cpu",
                y: "server CPU µs per message",
                show: true,
                axis: YAxis::Linear,
                run: None,
                figure: Some(|c| c.server_cpu_us_per_msg),
            },
            Plot {
                name: "connections-per-s",
                y: "connections per second",
                show: true,
                axis: YAxis::Linear,
                run: None,
                figure: Some(|c| c.connections_per_s),
            },
            Plot {
                name: "empty-wakeups",
                y: "empty listener wake-ups per accept",
                show: true,
                axis: YAxis::Linear,
                run: None,
                figure: Some(|c| c.empty_wakeups_per_accept),
            },
            Plot {
                name: "p50",
                y: "p50 latency",
                show: false,
                axis: YAxis::LogMicros,
                run: Some(|r| r.latency_us.p50 as f64),
                figure: Some(|c| c.p50_us),
            },
            Plot {
                name: "p999",
                y: "p99.9 latency",
                show: false,
                axis: YAxis::LogMicros,
                run: Some(|r| r.latency_us.p999 as f64),
                figure: None,
            },
        ];
        for plot in &plots {
            match self.line_chart(plot) {
                Some(Ok(chart)) => if plot.show { &mut shown } else { &mut linked }.push(chart),
                Some(Err(e)) => eprintln!("pollbench: {e}"),
                None => {} // no cell of the sweep has it: nothing to draw
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
        let series: Vec<crate::render::charts::Series> = self
            .columns
            .iter()
            .filter_map(|col| {
                let cell = done.iter().find(|c| row(c) == at && c.label == *col)?;
                let hlog = self.dir.join("cells").join(format!("{}.hlog", cell.id));
                match pollbench_schema::hlog::total(&hlog) {
                    Ok(h) => Some(crate::render::charts::Series {
                        label: col.clone(),
                        points: crate::render::charts::spectrum_points(&h),
                        bars: Vec::new(),
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
        match crate::render::charts::spectrum_chart(&self.dir.join(&file), &title, &series) {
            Ok(()) => Some((file, title)),
            Err(e) => {
                eprintln!("pollbench: {e}");
                None
            }
        }
    }
}
