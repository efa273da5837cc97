//! The SVG charts of one sweep of a run: throughput and latency against connections (or idle
//! connections), and the latency percentile spectrum of every backend at one load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pollbench_schema::results::Cell;
use pollbench_schema::run::RunReport;
use pollbench_schema::summary::{CellSummary, Estimate, Summary};

use pollbench_schema::hlog;

use crate::render::charts::{self, Labels, Series, Spectrum, YAxis};

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

/// A figure a ratio chart draws: its name in summary.json's verdicts, in words, and where it goes.
struct RatioMetric {
    name: &'static str,
    words: &'static str,
    higher_is_better: bool,
    /// What a ratio on the better side of 1 says.
    better: &'static str,
    /// The chart it goes beside: SWEEP-BESIDE.svg.
    beside: &'static str,
}

/// The figures a ratio chart can draw: msgs/s (closed loop), p99 and p50 latency (open loop),
/// connections/s (churn).
const RATIO_METRICS: [RatioMetric; 4] = [
    RatioMetric {
        name: "msgs_per_s",
        words: "msgs/s",
        higher_is_better: true,
        better: "more msgs/s",
        beside: "throughput",
    },
    RatioMetric {
        name: "p99_us",
        words: "p99 latency",
        higher_is_better: false,
        better: "a lower p99",
        beside: "p99",
    },
    RatioMetric {
        name: "p50_us",
        words: "p50 latency",
        higher_is_better: false,
        better: "a lower p50",
        beside: "p99",
    },
    RatioMetric {
        name: "connections_per_s",
        words: "connections/s",
        higher_is_better: true,
        better: "more connections/s",
        beside: "connections-per-s",
    },
];

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
        if let Some((metric, chart)) = self.ratio_chart() {
            // Beside the chart of the same figure in absolute terms, where there is one.
            let beside = format!("{}-{}.svg", self.name, metric.beside);
            let at = shown.iter().position(|c| c.0 == beside);
            shown.insert(at.map_or(shown.len(), |i| i + 1), chart);
        }
        if let Some(chart) = self.spectrum() {
            shown.push(chart);
        }
        (shown, linked)
    }

    /// The figure the sweep's verdicts resolve, which its ratio chart draws: connections/s with
    /// churn, p99 (else p50) latency in open loop (every cell has a rate), else msgs/s.
    fn ratio_metric(&self) -> Option<&'static RatioMetric> {
        let judged = |name: &str| {
            self.summary
                .verdicts
                .iter()
                .any(|v| v.sweep == self.name && v.metric == name)
        };
        let cells = self.cells.iter();
        let candidates: &[&RatioMetric] =
            if cells.clone().any(|c| c.messages_per_connection.is_some()) {
                &[&RATIO_METRICS[3]]
            } else if cells.clone().all(|c| c.rate.is_some()) {
                &[&RATIO_METRICS[1], &RATIO_METRICS[2]]
            } else {
                &[&RATIO_METRICS[0]]
            };
        candidates.iter().copied().find(|m| judged(m.name))
    }

    /// The ratio of each column to the sweep's first (the baseline) at each row, on the figure
    /// [`SweepView::ratio_metric`] picks, from the verdicts: the per-round ratio's median and its
    /// interval, inverted where the baseline is the verdict's `a`. A row where a column has no
    /// verdict against the baseline has no point. With the interval's confidences, as a fraction.
    fn ratio_series(&self, metric: &RatioMetric) -> (Vec<Series>, Vec<f64>) {
        let Some((base, others)) = self.columns.split_first() else {
            return (Vec::new(), Vec::new());
        };
        let mut confidence = Vec::new();
        let mut series = Vec::new();
        for (i, col) in others.iter().enumerate() {
            let (mut points, mut bars) = (Vec::new(), Vec::new());
            for v in &self.summary.verdicts {
                if v.sweep != self.name || v.metric != metric.name {
                    continue;
                }
                let r = &v.ratio;
                let (median, lo, hi) = if v.a == *base && v.b == *col {
                    // The median of the inverted rounds (with an even count not the inverse of
                    // the median); the interval's bounds invert exactly (order statistics).
                    let inverted: Vec<f64> = v.per_round.iter().map(|x| 1.0 / x).collect();
                    let median = crate::analysis::stats::median_interval(&inverted)
                        .map_or(1.0 / r.median, |i| i.median);
                    (median, 1.0 / r.hi, 1.0 / r.lo)
                } else if v.a == *col && v.b == *base {
                    (r.median, r.lo, r.hi)
                } else {
                    continue;
                };
                let x = v.row as f64;
                points.push((x, median));
                bars.push((x, lo, hi));
                confidence.push(r.confidence);
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !points.is_empty() {
                series.push(Series {
                    label: col.clone(),
                    // The column's look in the sweep's other charts.
                    look: i + 1,
                    points,
                    bars,
                });
            }
        }
        (series, confidence)
    }

    /// The chart of each column's ratio to the sweep's first column, with the figure it is on:
    /// None where the sweep has one column, or no verdict against the first.
    fn ratio_chart(&self) -> Option<(&'static RatioMetric, Chart)> {
        let metric = self.ratio_metric()?;
        let (series, confidence) = self.ratio_series(metric);
        let base = self.columns.first()?;
        if series.is_empty() {
            return None;
        }
        let (sweep, x, what) = (self.name, self.x, metric.words);
        let file = format!("{sweep}-ratio.svg");
        let title = format!("{sweep}: {what} relative to {base}, against {x}");
        let confidence = span(confidence.iter().map(|c| c * 100.0), |c| format!("{c:.1}"));
        let notes = [
            self.run_note(),
            format!(
                "points: the median of the per-round ratio column / {base} ({what}, paired by \
                 round); bars: its {confidence}% interval"
            ),
            format!(
                "dashed line at 1: the same as {base}; {} 1: {}",
                if metric.higher_is_better {
                    "above"
                } else {
                    "below"
                },
                metric.better
            ),
        ];
        let y = format!("{what} / the baseline's (log scale)");
        let labels = Labels {
            title: &title,
            notes: &notes,
            x,
            y: &y,
        };
        match charts::ratio_chart(&self.dir.join(&file), &labels, &series, self.by_idle) {
            Ok(()) => Some((metric, (file, title))),
            Err(e) => {
                eprintln!("pollbench: {e}");
                None
            }
        }
    }

    /// The latency percentile spectrum of every backend at one load of the sweep (see
    /// [`SweepView::spectrum_row`]): each cell's histogram over the measured windows of all its
    /// rounds, and in open loop its uncorrected latency beside the corrected.
    fn spectrum(&self) -> Option<Chart> {
        let (at, done) = self.spectrum_row()?;
        let mut rounds = Vec::new();
        let spectra: Vec<Spectrum> = done
            .iter()
            .filter_map(|c| match self.spectrum_of(c) {
                Ok((s, n)) => {
                    rounds.push(n as f64);
                    Some(s)
                }
                Err(e) => {
                    eprintln!("pollbench: {e}");
                    None
                }
            })
            .collect();
        if spectra.is_empty() {
            return None;
        }
        let open = done.iter().filter(|c| c.rate.is_some()).count();
        let merged = rounds.iter().any(|&n| n > 1.0);
        let file = format!("{}-spectrum.svg", self.name);
        let title = format!(
            "{}: latency by percentile at {at} {}{}",
            self.name,
            self.x,
            if merged { ", all rounds merged" } else { "" }
        );
        let mut notes = vec![self.run_note()];
        if merged {
            let n = span(rounds.into_iter(), |n| format!("{n:.0}"));
            notes.push(format!(
                "each cell: one histogram of the measured windows of all its rounds ({n}), so a \
                 slow round shows in the tail"
            ));
        }
        let paired = spectra.iter().any(|s| s.uncorrected.is_some());
        notes.push(match (open, done.len() - open) {
            _ if paired => "solid: corrected latency (from each message's intended send time); \
                            dashed, same colour: uncorrected (from its actual send)"
                .into(),
            (_, 0) => "corrected latency (from each message's intended send time); the logs \
                       have no uncorrected latency"
                .into(),
            (0, _) => "closed loop: latency from each message's send".into(),
            _ => "corrected latency in open loop, from the send in closed loop".into(),
        });
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
        match charts::spectrum_chart(&self.dir.join(&file), &labels, &spectra) {
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

    /// The spectra of cell `c` and the rounds they come from: the latency of all its rounds'
    /// measured windows (ID.rK.hlog, or ID.hlog where it ran once) in one histogram, and in open
    /// loop the uncorrected latency the same way, where every round's log has it.
    fn spectrum_of(&self, c: &Cell) -> Result<(Spectrum, usize), String> {
        let cells = self.dir.join("cells");
        let n = self.summary.cell(&c.id).map_or(0, |s| s.rounds);
        let logs: Vec<PathBuf> = if n >= 2 {
            (1..=n)
                .map(|k| cells.join(format!("{}.r{k}.hlog", c.id)))
                .collect()
        } else {
            vec![cells.join(format!("{}.hlog", c.id))]
        };
        let mut corrected = hlog::new_histogram();
        let mut uncorrected = c.rate.map(|_| hlog::new_histogram());
        for path in &logs {
            let log = hlog::read_log(path)?;
            for (_, h) in &log.latency {
                corrected
                    .add(h)
                    .map_err(|e| format!("{}: {e:?}", path.display()))?;
            }
            uncorrected = match (uncorrected, log.total_of(hlog::UNCORRECTED_TAG)) {
                (Some(mut sum), Some(h)) => {
                    sum.add(&h)
                        .map_err(|e| format!("{}: {e:?}", path.display()))?;
                    Some(sum)
                }
                _ => None,
            };
        }
        let spectrum = Spectrum {
            label: c.label.clone(),
            look: self
                .columns
                .iter()
                .position(|col| *col == c.label)
                .unwrap_or(0),
            corrected: charts::spectrum_points(&corrected),
            uncorrected: uncorrected.map(|h| charts::spectrum_points(&h)),
        };
        Ok((spectrum, logs.len()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use pollbench_schema::summary::{Judgement, VerdictSummary};

    /// A cell of column `label` at `connections`, open loop at `rate` if given.
    fn cell(label: &str, connections: usize, rate: Option<u64>) -> Cell {
        serde_json::from_value(serde_json::json!({
            "id": format!("s-{label}-c{connections}"), "label": label, "sweep": "s",
            "backend": "epoll", "trigger": null, "accept": null, "connections": connections,
            "idle": 0, "rate": rate, "size": "64B", "pipeline": 1, "server_threads": 1,
            "client_threads": 1
        }))
        .unwrap()
    }

    fn verdict(metric: &str, row: usize, a: &str, b: &str, ratio: [f64; 3]) -> VerdictSummary {
        VerdictSummary {
            sweep: "s".into(),
            row,
            metric: metric.into(),
            a: a.into(),
            b: b.into(),
            ratio: Estimate {
                median: ratio[0],
                lo: ratio[1],
                hi: ratio[2],
                confidence: 0.969,
            },
            verdict: Judgement::NoClearDifference,
            limited_by: None,
            per_round: Vec::new(),
        }
    }

    /// The ratio series of a sweep of columns base, b and c at 10 and 100 connections.
    fn ratios(rate: Option<u64>, verdicts: Vec<VerdictSummary>) -> (&'static str, Vec<Series>) {
        let cells: Vec<Cell> = ["base", "b", "c"]
            .iter()
            .flat_map(|l| [cell(l, 10, rate), cell(l, 100, rate)])
            .collect();
        let cells: Vec<&Cell> = cells.iter().collect();
        let columns: Vec<String> = ["base", "b", "c"].map(String::from).into();
        let summary = Summary {
            schema: pollbench_schema::summary::SCHEMA.into(),
            method: String::new(),
            cells: Vec::new(),
            verdicts,
            pairs_judged: Vec::new(),
        };
        let view = SweepView {
            dir: Path::new("run"),
            name: "s",
            x: "connections",
            cells: &cells,
            columns: &columns,
            by_idle: false,
            completed: &BTreeMap::new(),
            summary: &summary,
            rounds: true,
        };
        let metric = view.ratio_metric().expect("a metric with verdicts");
        (metric.name, view.ratio_series(metric).0)
    }

    #[test]
    fn a_ratio_is_to_the_first_column_inverted_where_that_is_a_and_absent_without_a_verdict() {
        let (metric, series) = ratios(
            None,
            vec![
                verdict("msgs_per_s", 10, "base", "b", [2.0, 1.0, 4.0]),
                verdict("msgs_per_s", 100, "b", "base", [1.5, 1.2, 1.8]),
                verdict("msgs_per_s", 10, "b", "c", [9.0, 9.0, 9.0]),
                verdict("p99_us", 10, "c", "base", [3.0, 3.0, 3.0]),
            ],
        );
        assert_eq!(metric, "msgs_per_s", "closed loop: msgs/s");
        assert_eq!(series.len(), 1, "c has no msgs/s verdict against base");
        let b = &series[0];
        assert_eq!((b.label.as_str(), b.look), ("b", 1));
        assert_eq!(b.points, [(10.0, 0.5), (100.0, 1.5)]);
        assert_eq!(b.bars, [(10.0, 0.25, 1.0), (100.0, 1.2, 1.8)]);
    }

    #[test]
    fn an_open_loop_sweep_draws_the_ratio_of_p99_else_p50() {
        let p99 = verdict("p99_us", 10, "c", "base", [3.0, 2.0, 4.0]);
        let p50 = verdict("p50_us", 10, "c", "base", [2.0, 1.0, 3.0]);
        let msgs = verdict("msgs_per_s", 10, "c", "base", [1.0, 1.0, 1.0]);
        let (metric, series) = ratios(Some(1000), vec![msgs.clone(), p50.clone(), p99]);
        assert_eq!(metric, "p99_us");
        assert_eq!(
            (series[0].look, &series[0].points[..]),
            (2, &[(10.0, 3.0)][..])
        );
        assert_eq!(ratios(Some(1000), vec![msgs, p50]).0, "p50_us");
    }
}
