//! The SVG charts of one sweep of a run: throughput and latency against connections (or idle
//! connections), and the latency percentile spectrum of every backend at one load.

use std::collections::BTreeMap;
use std::path::Path;

use pollbench_schema::results::Cell;
use pollbench_schema::run::RunReport;
use pollbench_schema::summary::{CellSummary, Estimate, Summary};

use pollbench_schema::file::read_json;

use crate::render::charts::{self, Labels, Series, YAxis};

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
    fn series(&self, plot: &Plot) -> Vec<Series> {
        self.columns
            .iter()
            .enumerate()
            .map(|(look, col)| {
                let (points, bars) = self
                    .cells
                    .iter()
                    .filter(|c| c.label == *col)
                    .filter_map(|c| self.point(plot, c))
                    .unzip::<_, _, Vec<_>, Vec<_>>();
                Series {
                    label: col.clone(),
                    look,
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
        let notes = [self.run_note(), self.bars_note(plot)];
        let labels = Labels {
            title: &title,
            notes: &notes,
            x,
            y: plot.y,
        };
        let chart = charts::line_chart(
            &self.dir.join(&file),
            &labels,
            &series,
            self.by_idle,
            plot.axis,
        );
        Some(chart.map(|()| (file, title)))
    }

    /// Which run the charts come from: the run directory's name.
    fn run_note(&self) -> String {
        let name = self.dir.file_name().map_or_else(
            || self.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        format!("run {name}")
    }

    /// What the points and bars of `plot` are, in words, from the cells it draws.
    fn bars_note(&self, plot: &Plot) -> String {
        let figure = match plot.figure {
            Some(figure) if self.rounds || plot.run.is_none() => figure,
            // What the point method draws: the cell's ID.json, its median round by msgs/s.
            _ if self.rounds => {
                return "points: each cell's median round by msgs/s (this figure has no median \
                        over rounds); no bars"
                    .into()
            }
            _ => {
                return "points: each cell's load-gen run (the median by msgs/s where it \
                        repeated); no bars"
                    .into()
            }
        };
        let drawn: Vec<(usize, f64)> = self
            .cells
            .iter()
            .filter(|c| self.completed.contains_key(c.id.as_str()))
            .filter_map(|c| self.summary.cell(&c.id))
            .filter_map(|cell| Some((cell.rounds, figure(cell)?.confidence)))
            .filter(|&(n, _)| n >= 2)
            .collect();
        if drawn.is_empty() {
            return "points: one round each; no bars".into();
        }
        let rounds = span(drawn.iter().map(|d| d.0 as f64), |n| format!("{n:.0}"));
        let confidence = span(drawn.iter().map(|d| d.1 * 100.0), |c| format!("{c:.1}"));
        // Below some 9 rounds the interval is the extremes (the summary's method).
        let extremes = drawn
            .iter()
            .all(|&(n, c)| (c - (1.0 - 2.0 * 0.5f64.powi(n as i32))).abs() < 1e-3);
        let bars = if extremes {
            format!("lowest to highest round ({confidence}% interval of the median)")
        } else {
            format!("{confidence}% interval of the median (order statistics)")
        };
        format!("points: medians over {rounds} rounds; bars: {bars}")
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

    /// The latency percentile spectrum of every backend at one load of the sweep (see
    /// [`SweepView::spectrum_row`]): each cell's median round, by p99 in open loop (where every
    /// round runs at the same msgs/s) and by msgs/s in closed loop.
    fn spectrum(&self) -> Option<Chart> {
        let (at, done) = self.spectrum_row()?;
        let series: Vec<Series> = done
            .iter()
            .filter_map(|c| match self.spectrum_series(c) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("pollbench: {e}");
                    None
                }
            })
            .collect();
        if series.is_empty() {
            return None;
        }
        let open = done.iter().filter(|c| c.rate.is_some()).count();
        let (by, why) = match (open, done.len() - open) {
            (_, 0) => ("p99", "open loop: every round runs at the same msgs/s"),
            (0, _) => ("msgs/s", "closed loop"),
            _ => ("p99 (open loop) or msgs/s", "mixed loops"),
        };
        let file = format!("{}-spectrum.svg", self.name);
        let title = format!(
            "{}: latency by percentile at {at} {}, median round by {by}",
            self.name, self.x
        );
        let notes = [
            self.run_note(),
            format!("each line: its cell's median round by {by} ({why})"),
        ];
        let x = format!(
            "percentile (each line stops where fewer than {} samples lie beyond)",
            charts::SPECTRUM_TAIL
        );
        let labels = Labels {
            title: &title,
            notes: &notes,
            x: &x,
            y: "latency",
        };
        match charts::spectrum_chart(&self.dir.join(&file), &labels, &series) {
            Ok(()) => Some((file, title)),
            Err(e) => {
                eprintln!("pollbench: {e}");
                None
            }
        }
    }

    /// The load the spectrum is drawn at, and its completed cells in column order: the largest
    /// connection (or idle) count that every backend with a completed cell completed, else the
    /// largest any completed.
    fn spectrum_row(&self) -> Option<(usize, Vec<&Cell>)> {
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
        let cells = self
            .columns
            .iter()
            .filter_map(|col| {
                done.iter()
                    .copied()
                    .find(|c| row(c) == at && c.label == *col)
            })
            .collect();
        Some((at, cells))
    }

    /// The spectrum of cell `c`: its median round's histogram (see [`SweepView::median_round`]),
    /// or its ID.hlog in a run without rounds.
    fn spectrum_series(&self, c: &Cell) -> Result<Series, String> {
        let cells = self.dir.join("cells");
        let (hlog, label) = match self.median_round(c)? {
            Some((k, n)) => (
                cells.join(format!("{}.r{k}.hlog", c.id)),
                format!("{} (round {k} of {n})", c.label),
            ),
            None => (cells.join(format!("{}.hlog", c.id)), c.label.clone()),
        };
        let h = pollbench_schema::hlog::total(&hlog)?;
        Ok(Series {
            label,
            look: self
                .columns
                .iter()
                .position(|col| *col == c.label)
                .unwrap_or(0),
            points: charts::spectrum_points(&h),
            bars: Vec::new(),
        })
    }

    /// The median round of cell `c` and its rounds, (k, n): by p99 in open loop (every round
    /// runs at the cell's rate, so msgs/s cannot tell them apart), else by msgs/s (the round
    /// copied to ID.*); None in a run without rounds.
    fn median_round(&self, c: &Cell) -> Result<Option<(usize, usize)>, String> {
        let n = self.summary.cell(&c.id).map_or(0, |s| s.rounds);
        if !self.rounds || n < 2 {
            return Ok(None);
        }
        let mut rounds = Vec::with_capacity(n);
        for k in 1..=n {
            let path = self.dir.join("cells").join(format!("{}.r{k}.json", c.id));
            let run: RunReport = read_json(&path)?;
            let key = if c.rate.is_some() {
                run.latency_us.p99 as f64
            } else {
                run.throughput_msgs_per_s
            };
            rounds.push((k, key));
        }
        rounds.sort_by(|a, b| a.1.total_cmp(&b.1));
        Ok(Some((rounds[(n - 1) / 2].0, n)))
    }
}

/// The range of `values` as `show` writes them: one value, or "lo–hi".
fn span(values: impl Iterator<Item = f64>, show: impl Fn(f64) -> String) -> String {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = (show(lo), show(hi));
    if lo == hi {
        lo
    } else {
        format!("{lo}–{hi}")
    }
}
